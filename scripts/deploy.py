"""`ape run deploy`: deploy vPerp from a config file to any Ape network and record it.

    ./run.sh ape run deploy --rpc http://127.0.0.1:8545                  # a running Anvil, whatever its chain id
    ./run.sh ape run deploy                                              # embedded local chain, test account 0
    ./run.sh ape run deploy --network ethereum:local:foundry             # an Anvil Ape starts and stops itself
    ./run.sh ape run deploy --network ethereum:sepolia:node --account deployer --config deployments/config/sepolia.yaml

`--rpc URL` connects to the node already listening at URL (an Anvil; Ape never starts one in its place)
and reports the chain id it reached. Before connecting it asks the URL for its client, chain id and
block 0, so an unreachable URL or a node that is not Anvil is a one-line error and nothing is written.
`--rpc` with `--network` or `--provider-settings` is refused as ambiguous. Naming a host the ways Ape
offers is refused with the command to type instead: `--provider-settings '{"host": ...}'` (this script's
network option does not read it, so Ape would start its own Anvil, deploy there and stop it), and
`--network ethereum:local:<URL>` when the node's chain id is not the one Ape's local network signs for.

What it does:
  * loads and validates the config (`vperp.config_file`); mock oracles/collateral are refused on a
    network that is not local (chain id 1337/31337, a network named "local", or a fork);
  * on local networks uses test account 0 unless `--account` is given (elsewhere `--account` is required);
  * checks real feeds and collateral before sending anything (code at the address, decimals, a fresh
    positive answer, the deployer's balances);
  * deploys with `vperp.deploy`; with a `governance:` section in the config, then hands the deployed and
    seeded system to governance (`vperp.deployment.deploy_governed`: GovernanceTimelock with the config's
    `timelock_delay`, RiskGovernor with its `admin` and `guardian` owning the five modules, CircuitBreaker
    wired once by the admin when this deploy can sign for it, else by the deployer: `admin_signer`, checked
    before anything is sent); without it the deployer stays the owner (local demos);
  * writes `deployments/<network>-<chain id>.json` (`local-31337.json`; $VPERP_DEPLOYMENTS names another
    folder): chain id, block 0's hash (`genesis`), first block, the address of every contract (collateral,
    each market's oracle and the governance contracts included), the config used, the ABI file of each
    contract, and `governance`: `{"mode": "direct-owner", ...}` or `{"mode": "timelock", "timelock",
    "governor", "breaker", "admin", "guardian", "delay"}` (docs/governance.md);
  * is idempotent: when `deployments/` holds a record for the connected chain (same chain id and block
    0; an older record without block 0 matches on the id) and every recorded address still has code,
    it prints "already deployed" and reuses it (nothing is sent). Records for other chains are ignored,
    whatever their file name; a record whose contracts are gone is redeployed on local chains (they
    restart empty) and an error elsewhere. With `--out FILE`, FILE is the record: one for another chain
    is an error. `--force` deploys afresh and overwrites the file in every case.
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

from vperp.client import (DeploymentError, build_record, check_chain, deployment_path, dump_abi,
                          expected_abis, find_deployment, genesis_hash, missing_code, read_deployment,
                          write_record)
from vperp.config import DeployConfig
from vperp.deployment import (GOVERNANCE_CONTRACTS, admin_signer, deploy_governed, governance_contracts,
                              governance_record)
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
    g = record.get("governance") or {"mode": "direct-owner"}
    if g["mode"] == "timelock":
        t.add_row("governance", f"timelock ({g['delay']} s): admin {g['admin']}, guardian {g['guardian']}")
    else:
        t.add_row("governance", f"direct owner {g.get('owner', record.get('deployer', '?'))} (no timelock)")
    return t


def config_differences(config: DeployConfig, record: dict) -> list[str]:
    new, old = config_to_dict(config), record.get("config", {})
    diffs = [k for k in {**new, **old} if k != "markets" and new.get(k) != old.get(k)]
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
    reached = node_chain_id(chain.provider)
    if reached is not None and reached != chain_id:
        raise DeploymentError(
            f"the node at {getattr(chain.provider, 'uri', '?')} has chain id {reached}, but Ape's '{network_name}' "
            f"network would sign for chain id {chain_id} (the node would refuse every transaction): type "
            f"`./run.sh ape run deploy --rpc {getattr(chain.provider, 'uri', 'URL')}` instead")
    check_network(config, chain_id, network_name)
    genesis = genesis_hash(chain)
    local = is_local_network(chain_id, network_name)
    record = None
    if out:
        path = Path(out)
        if path.exists() and not force:
            record = read_deployment(path)
            check_chain(record, chain_id, path, genesis)  # a file named by hand must be for this chain
    else:
        net = chain.provider.network
        path = fresh_path = deployment_path(chain_id, net.ecosystem.name, net.name)
        found, earlier = find_deployment(chain_id, genesis)
        for f in earlier:
            echo(f"note: ignoring {f.path}: written for an earlier chain with id {chain_id} (another block 0)")
        if found is not None and not force:
            path, record = found.path, found.record
            if path != fresh_path and not record.get("genesis"):
                echo(f"note: {path} is an older record (no block 0 hash) for chain id {chain_id}")
        if path.exists() and record is None and not force and not local:
            raise DeploymentError(f"{path} holds a record for another chain with id {chain_id}: "
                                  "pass --force to overwrite it, or --out FILE")

    if record is not None:
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
        if not out:
            path = fresh_path

    deployer = resolve_account(account, chain_id, network_name)
    signer = None
    if config.governance is not None:
        signer = admin_signer(config.governance, deployer, local)
        if signer is None:
            raise DeploymentError(
                f"governance.admin {config.governance.admin}: this deploy cannot sign for the admin, which wires "
                f"the circuit breaker once at deployment (this build's RiskGovernor does not let its deployer do "
                f"it): deploy from the admin's account (--account), or on a local chain name a test account")
    preflight(config, deployer, chain, project)
    where = f" at {chain.provider.uri}" if getattr(chain.provider, "uri", None) and chain.provider.name != "test" else ""
    echo(f"deploying vPerp to '{network_name}'{where} (chain id {chain_id}) from {deployer.address} "
         f"with {len(config.markets)} markets ({', '.join(m.symbol for m in config.markets)})")
    first_block = chain.blocks.head.number + 1
    system = deploy(deployer, config)
    gov = deploy_governed(system, signer)
    record = governed_record(system, gov, config, chain, first_block)
    write_record(path, record)
    echo(summary(record, f"deployed: {path}"))
    stale = stale_abi_files(project, Path(project.path))
    if stale:
        echo(f"[yellow]note[/]: {', '.join(stale)} missing or out of date: run `ape run export_abi`")
    return DeployResult(path, record, reused=False)


def governed_record(system, gov, config, chain, first_block: int) -> dict:
    """`build_record` plus who owns the modules (`governance`) and, when governed, the governance contracts
    and their ABI files."""
    from vperp.client import abi_relpath

    record = build_record(system, config, chain, first_block)
    extra = governance_contracts(gov)
    record["contracts"].update(extra)
    record["abi"].update({name: abi_relpath(name) for name in GOVERNANCE_CONTRACTS if name in extra})
    record["governance"] = governance_record(system, gov)
    return record


def one_line(err: Exception) -> str:
    return "; ".join(line.strip() for line in str(err).splitlines() if line.strip()) or type(err).__name__


def node_chain_id(provider) -> int | None:
    """The chain id the node itself answers (None when the provider has no node to ask: embedded chain)."""
    if getattr(provider, "name", "") == "test":
        return None
    try:
        return int(provider.web3.eth.chain_id)
    except Exception:  # noqa: BLE001 - no web3 behind this provider
        return None


# ----------------------------------------------------------------------------- --rpc: a node already running

def rpc_request(url: str, method: str, params: list, timeout: float = 5.0):
    """One JSON-RPC call over HTTP with the standard library (no provider, no retries)."""
    import json
    import urllib.error
    import urllib.request

    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            answer = json.loads(resp.read())
    except urllib.error.HTTPError as e:
        raise DeploymentError(f"{url} answered HTTP {e.code} to {method}: not a JSON-RPC node") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DeploymentError(f"cannot reach {url} ({reason}): is the node running? Start one with "
                              "`node_modules/.bin/anvil --port 8545` and pass its URL to --rpc") from None
    except ValueError:
        raise DeploymentError(f"{url} did not answer JSON to {method}: not a JSON-RPC node") from None
    if not isinstance(answer, dict) or "result" not in answer:
        raise DeploymentError(f"{url} refused {method}: {answer.get('error') if isinstance(answer, dict) else answer}")
    return answer["result"]


@dataclass
class Node:
    url: str
    client: str
    chain_id: int
    genesis: str


def probe_rpc(url: str) -> Node:
    """What is at `url`: client, chain id, block 0. Raises DeploymentError with what to do instead."""
    from urllib.parse import urlparse

    parts = urlparse(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise DeploymentError(f"--rpc wants an http(s) URL such as http://127.0.0.1:8545, got {url!r}")
    client = str(rpc_request(url, "web3_clientVersion", []))
    chain_id = int(rpc_request(url, "eth_chainId", []), 16)
    block0 = rpc_request(url, "eth_getBlockByNumber", ["0x0", False]) or {}
    if "anvil" not in client.lower():
        raise DeploymentError(f"{url} is '{client}', not Anvil: --rpc drives Anvil nodes; for another node "
                              "declare its network in ape-config.yaml and pass --network")
    return Node(url, client, chain_id, block0.get("hash", ""))


def connect_rpc(node: Node):
    """An Ape provider context on the running Anvil at `node.url` (never a process of Ape's own)."""
    from ape import networks

    return networks.parse_network_choice("ethereum:local:foundry",
                                         provider_settings={"host": node.url, "manage_process": False})


def check_own_node(provider, named_host: str | None) -> None:
    """Refuse to go on when the user named a host but Ape started a node of its own instead."""
    if named_host and getattr(provider, "process", None) is not None:
        raise DeploymentError(f"you named {named_host}, but Ape started its own Anvil at "
                              f"{getattr(provider, 'uri', '?')} (it would stop, with the deployment, when this "
                              f"command exits): type `./run.sh ape run deploy --rpc {named_host}`")


def named_host(provider_settings) -> str | None:
    if isinstance(provider_settings, dict):
        for key in ("host", "uri", "http_uri"):
            if provider_settings.get(key):
                return str(provider_settings[key])
    return None


class DeployCommand(ConnectedProviderCommand):
    """Ape's connected command, plus `--rpc URL`: connect to the running node at URL instead."""

    def invoke(self, ctx: click.Context):
        from click.core import ParameterSource

        rpc = ctx.params.get("rpc")
        settings = ctx.params.get("provider_settings")
        network_given = ctx.get_parameter_source("network") not in (None, ParameterSource.DEFAULT)
        if rpc is not None:
            if network_given or settings:
                raise click.UsageError("--rpc names the node to deploy to; leave out --network and "
                                       "--provider-settings (give one target)")
            try:
                node = probe_rpc(rpc)
            except DeploymentError as e:
                raise click.ClickException(one_line(e)) from None
            with connect_rpc(node) as provider:
                if provider.chain_id != node.chain_id or getattr(provider, "process", None) is not None:
                    raise click.ClickException(f"Ape did not connect to {rpc} as asked (chain id "
                                               f"{provider.chain_id}, node's {node.chain_id}): nothing deployed")
                return self._invoke(ctx, provider=provider)
        host = named_host(settings)
        if host:
            # This script declares its own network option, which does not read --provider-settings: Ape would
            # start an Anvil of its own, deploy there and stop it. Refuse before any node starts.
            raise click.ClickException(f"--provider-settings is not read by this script (Ape would start its own "
                                       f"Anvil instead of using {host}): type `./run.sh ape run deploy --rpc {host}`")
        return super().invoke(ctx)


@click.command(cls=DeployCommand)
@network_option()
@account_option(prompt=False)
@click.option("--rpc", default=None, metavar="URL",
              help="deploy to the Anvil node already running at URL (any chain id), e.g. http://127.0.0.1:8545")
@click.option("--config", "config_path", default=DEFAULT_CONFIG, show_default=True,
              help="deployment YAML (see vperp/config_file.py)")
@click.option("--out", default=None, help="deployment file [default: deployments/<network>-<chain id>.json]")
@click.option("--force", is_flag=True, help="deploy afresh and overwrite the deployment file")
def cli(network, account, config_path, out, force, rpc=None):
    """Deploy vPerp to a running node (--rpc URL) or an Ape network; write deployments/<network>-<chain id>.json."""
    import os

    from ape import chain

    try:
        check_own_node(chain.provider, os.environ.get("APE_FOUNDRY_HOST"))
        if getattr(chain.provider, "process", None) is not None:
            console.print(f"note: Ape started this Anvil ({chain.provider.uri}) for this command and stops it on "
                          "exit, with the deployment; for a node that stays up start Anvil yourself and pass "
                          "--rpc URL")
        run(config_path, account, out, force)
    except (ConfigError, DeploymentError) as e:
        raise click.ClickException(one_line(e)) from None
    except ApeException as e:
        raise click.ClickException(f"deployment failed: {one_line(e)}") from None
