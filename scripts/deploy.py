"""`ape run deploy`: deploy vPerp from a config file to any Ape network and record it.

    ./run.sh ape run deploy                                              # embedded local chain, test account 0
    ./run.sh ape run deploy --network ethereum:local:foundry             # Anvil
    ./run.sh ape run deploy --network ethereum:sepolia:node --account deployer --config deployments/config/sepolia.yaml

What it does:
  * loads and validates the config (`vperp.config_file`); mock oracles/collateral are refused on a
    network that is not local (chain id 1337/31337, a network named "local", or a fork);
  * on local networks uses test account 0 unless `--account` is given (elsewhere `--account` is required);
  * checks real feeds and collateral before sending anything (code at the address, decimals, a fresh
    positive answer, the deployer's balances);
  * deploys with `vperp.deploy` and writes `deployments/<network>.json`: chain id, first block, the
    address of every contract (collateral and each market's oracle included), the config used and
    the ABI file of each contract;
  * is idempotent: when that file exists for the connected chain id and every recorded address still
    has code, it prints "already deployed" and reuses it (nothing is sent). A file for another chain
    id is an error; a file whose contracts are gone is redeployed on local chains (they restart empty)
    and an error elsewhere. `--force` deploys afresh and overwrites the file in every case.
Errors are one line (click), never a traceback.
"""

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Callable

import click
from ape.cli import ConnectedProviderCommand, account_option, network_option
from ape.exceptions import ApeException
from rich.console import Console
from rich.table import Table

from vperp.client import (DeploymentError, build_record, check_chain, default_deployment_path, dump_abi,
                          expected_abis, missing_code, read_deployment, write_record)
from vperp.config import DeployConfig
from vperp.config_file import ConfigError, check_network, config_to_dict, is_local_network, load_config

DEFAULT_CONFIG = "deployments/config/local.yaml"
console = Console(width=120)


@dataclass
class DeployResult:
    path: Path
    record: dict
    reused: bool


def resolve_account(account, chain_id: int, network_name: str):
    """The deployer: `account` if given; test account 0 on a local network; otherwise an error."""
    from ape import accounts

    if account is not None:
        return account
    if is_local_network(chain_id, network_name):
        return accounts.test_accounts[0]
    raise DeploymentError(f"--account is required on '{network_name}' (chain id {chain_id}): "
                          "give an alias from `ape accounts list`")


def preflight(config: DeployConfig, deployer, chain, project) -> None:
    """Check what the deployment depends on before sending anything: real feeds and collateral, balances."""
    provider = chain.provider
    if deployer.balance == 0:
        raise DeploymentError(f"deployer {deployer.address} has no ETH on '{provider.network.name}' to pay for gas")
    if config.collateral != "mock":
        if not provider.get_code(config.collateral):
            raise DeploymentError(f"collateral: no contract at {config.collateral} on chain id {chain.chain_id}")
        token = project.MockERC20.at(config.collateral, fetch_from_explorer=False, detect_proxy=False)
        decimals = token.decimals()
        if decimals != config.collateral_decimals:
            raise DeploymentError(f"decimals: the config says {config.collateral_decimals} but the collateral "
                                  f"token at {config.collateral} has {decimals}")
        need = (Decimal(str(config.pool_seed)) + Decimal(str(config.insurance_seed))) * 10**decimals
        have = token.balanceOf(deployer)
        if have < need:
            raise DeploymentError(f"pool_seed + insurance_seed need {need / 10**decimals} of the collateral, "
                                  f"deployer {deployer.address} holds {Decimal(have) / 10**decimals}")
    now = chain.pending_timestamp
    for i, m in enumerate(config.markets):
        if m.oracle == "mock":
            continue
        field = f"markets[{i}].oracle ({m.symbol})"
        if not provider.get_code(m.oracle):
            raise DeploymentError(f"{field}: no contract at {m.oracle} on chain id {chain.chain_id}")
        feed = project.MockAggregator.at(m.oracle, fetch_from_explorer=False, detect_proxy=False)
        if feed.decimals() != m.oracle_decimals:
            raise DeploymentError(f"markets[{i}].oracle_decimals ({m.symbol}): the config says {m.oracle_decimals}, "
                                  f"the feed at {m.oracle} has {feed.decimals()}")
        _, answer, _, updated_at, _ = feed.latestRoundData()
        if answer <= 0:
            raise DeploymentError(f"{field}: the feed's answer is not positive ({answer})")
        if updated_at + m.heartbeat < now:
            raise DeploymentError(f"{field}: the feed's last update is {now - updated_at} s old, more than "
                                  f"heartbeat {m.heartbeat} s: listing would revert StaleOracle")


def stale_abi_files(project, root: Path) -> list[str]:
    """ABI files of `abi/` that are missing or differ from the compiled contracts."""
    return [rel for rel, abi in expected_abis(project).items()
            if not (root / rel).is_file() or (root / rel).read_text() != dump_abi(abi)]


def summary(record: dict, title: str) -> Table:
    t = Table(title=title, show_header=False)
    t.add_row("network", f"{record.get('ecosystem', '?')}:{record['network']}:{record.get('provider', '?')} "
              f"(chain id {record['chain_id']}), from block {record['block']}")
    for name, addr in record["contracts"].items():
        t.add_row(name, addr)
    for sym, m in record["markets"].items():
        t.add_row(f"market {m['id']} {sym}", f"oracle {m['oracle']}{' (mock)' if m.get('mock') else ''}")
    return t


def config_differences(config: DeployConfig, record: dict) -> list[str]:
    new, old = config_to_dict(config), record.get("config", {})
    diffs = [k for k in new if k != "markets" and new[k] != old.get(k)]
    old_markets = {m.get("symbol"): m for m in old.get("markets", [])}
    for m in new["markets"]:
        if m["symbol"] not in old_markets:
            diffs.append(f"markets.{m['symbol']} (new)")
        elif m != old_markets[m["symbol"]]:
            diffs.append(f"markets.{m['symbol']}")
    diffs += [f"markets.{s} (removed)" for s in old_markets if s not in {m["symbol"] for m in new["markets"]}]
    return diffs


def run(config_path: str | Path = DEFAULT_CONFIG, account=None, out: str | Path | None = None, force: bool = False,
        echo: Callable = console.print) -> DeployResult:
    """Deploy (or reuse) per the module docstring; raises ConfigError / DeploymentError / ApeException."""
    from ape import chain, project

    from vperp import deploy

    config = load_config(config_path)
    chain_id, network_name = chain.chain_id, chain.provider.network.name
    check_network(config, chain_id, network_name)
    path = Path(out) if out else default_deployment_path()
    local = is_local_network(chain_id, network_name)

    if path.exists() and not force:
        record = read_deployment(path)
        check_chain(record, chain_id, path)
        gone = missing_code(record, chain.provider)
        if not gone:
            echo(f"already deployed on '{network_name}' (chain id {chain_id}) from block {record['block']}: "
                 f"reusing {path}")
            diffs = config_differences(config, record)
            if diffs:
                echo(f"[yellow]note[/]: {config_path} differs from the deployed config ({', '.join(diffs)}); "
                     "pass --force to deploy afresh")
            echo(summary(record, "deployment (reused)"))
            return DeployResult(path, record, reused=True)
        if not local:
            raise DeploymentError(f"{path}: no code at {', '.join(gone)} on '{network_name}' (chain id {chain_id}): "
                                  "pass --force to deploy afresh and overwrite the file")
        echo(f"{path}: no code at {gone[0]}{' and others' if len(gone) > 1 else ''} (the local chain restarted): "
             "deploying afresh")

    deployer = resolve_account(account, chain_id, network_name)
    preflight(config, deployer, chain, project)
    echo(f"deploying vPerp to '{network_name}' (chain id {chain_id}) from {deployer.address} "
         f"with {len(config.markets)} markets ({', '.join(m.symbol for m in config.markets)})")
    first_block = chain.blocks.head.number + 1
    system = deploy(deployer, config)
    record = build_record(system, config, chain, first_block)
    write_record(path, record)
    echo(summary(record, f"deployed: {path}"))
    stale = stale_abi_files(project, Path(project.path))
    if stale:
        echo(f"[yellow]note[/]: {', '.join(stale)} missing or out of date: run `ape run export_abi`")
    return DeployResult(path, record, reused=False)


def one_line(err: Exception) -> str:
    return "; ".join(line.strip() for line in str(err).splitlines() if line.strip()) or type(err).__name__


@click.command(cls=ConnectedProviderCommand)
@network_option()
@account_option(prompt=False)
@click.option("--config", "config_path", default=DEFAULT_CONFIG, show_default=True,
              help="deployment YAML (see vperp/config_file.py)")
@click.option("--out", default=None, help="deployment file [default: deployments/<network>.json]")
@click.option("--force", is_flag=True, help="deploy afresh and overwrite the deployment file")
def cli(network, account, config_path, out, force):
    """Deploy vPerp to the connected network and write deployments/<network>.json."""
    try:
        run(config_path, account, out, force)
    except (ConfigError, DeploymentError) as e:
        raise click.ClickException(one_line(e)) from None
    except ApeException as e:
        raise click.ClickException(f"deployment failed: {one_line(e)}") from None
