"""`ape run keeper`: run the vPerp keeper (poke funding and the breakers, kick, take, redo, backstop) over a deployment.

    ./run.sh ape run keeper --network ethereum:local:foundry --once          # one pass, test account 0
    ./run.sh ape run keeper --network ethereum:local:test --fresh --deposit 50000 --once
    ./run.sh ape run keeper --network ethereum:sepolia:node --account keeper --interval 12

The deployment comes from `deployments/<network>.json` (or `--deployment FILE`); with `--fresh` (local
networks only) the system is deployed first from `--config` and that file is (over)written. Every action
of every pass is logged with its gas. Ctrl-C (or SIGTERM) stops cleanly ("stopped", exit status 0).

The keeper account pays gas for every action, so one without ETH is refused. It takes auctions into its
own cross account, so one without collateral (in its wallet or deposited) is refused too, unless
`--kick-only`; `--deposit N` deposits N of the collateral first (minted, when the collateral is the mock).
A pass that fails (someone else took the auction first, a stale feed) is logged and the loop goes on;
with `--once` it is an error.

When the deployment record names a circuit breaker (`"governance": {"mode": "timelock", "breaker": ...}`,
docs/governance.md), every pass also calls its permissionless `pokeAll()` and logs each breaker that trips
(a warning) or clears and each restriction applied; a deployment with a direct owner has none.
"""
import logging
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import click
from ape.cli import ConnectedProviderCommand, account_option, network_option
from ape.exceptions import ApeException
from rich.console import Console

from vperp.client import Client, ClientError, DeploymentError, default_deployment_path, write_record
from vperp.config_file import ConfigError, is_local_network, load_config
from vperp.deployment import deploy_governed
from vperp.keeper import Keeper

DEFAULT_CONFIG = "deployments/config/local.yaml"
console = Console(width=120, log_path=False)


class KeeperError(Exception):
    """A reason the keeper cannot run (one line)."""


def one_line(err: Exception) -> str:
    return "; ".join(line.strip() for line in str(err).splitlines() if line.strip()) or type(err).__name__


def resolve_account(account, chain):
    from ape import accounts

    if account is not None:
        return account
    net = chain.provider.network.name
    if is_local_network(chain.chain_id, net):
        return accounts.test_accounts[0]
    raise KeeperError(f"--account is required on '{net}' (chain id {chain.chain_id}): an alias from `ape accounts list`")


def fresh_deployment(config_path, deployer, path: Path, chain) -> Client:
    """Deploy afresh from `config_path` (local networks only), write `path`, return a Client over it."""
    from vperp import deploy

    if not is_local_network(chain.chain_id, chain.provider.network.name):
        raise KeeperError(f"--fresh deploys mocks and is for local networks only, not "
                          f"'{chain.provider.network.name}' (chain id {chain.chain_id})")
    config = load_config(config_path)
    signer = None
    if config.governance is not None:
        from vperp.deployment import admin_signer

        signer = admin_signer(config.governance, deployer, local=True)
        if signer is None:
            raise KeeperError(f"governance.admin {config.governance.admin}: --fresh cannot sign the breaker's "
                              "wiring (name the keeper account or a test account as the admin)")
    first = chain.blocks.head.number + 1
    system = deploy(deployer, config)
    gov = deploy_governed(system, signer)
    write_record(path, _deploy_script().governed_record(system, gov, config, chain, first))
    return Client.from_deployment(path)


def _deploy_script():
    """scripts/deploy.py (its record of a governed deployment), loaded by path: scripts are not a package."""
    import importlib.util
    import sys

    name = "vperp_scripts_deploy"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("deploy.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def breaker_of(client: Client):
    """The CircuitBreaker the deployment record names (`governance.breaker`), or None (a direct owner)."""
    g = client.record.get("governance") or {}
    if g.get("mode") != "timelock" or not g.get("breaker"):
        return None
    return client._contract("CircuitBreaker", g["breaker"], client.record["abi"].get("CircuitBreaker"))


def fund_keeper(client: Client, account, amount) -> None:
    """Deposit `amount` (human units) into the keeper's cross account; mock collateral is minted first."""
    units = client.units(amount)
    short = units - client.collateral.balanceOf(account)
    if short > 0:
        if client.record["config"].get("collateral") != "mock":
            raise KeeperError(f"--deposit {amount}: keeper {account.address} holds only "
                              f"{client.collateral.balanceOf(account) / 10**client.decimals} of the collateral")
        client.collateral.mint(account, short, sender=account)
    client.account = account
    client.deposit(amount)


def check_keeper_funds(client: Client, account, kick_only: bool = False) -> list[str]:
    """Refuse a keeper that cannot pay gas, or (unless kick-only) has no collateral at all; returns warnings."""
    network = client.chain.provider.network.name
    if account.balance == 0:
        raise KeeperError(f"keeper account {account.address} has no ETH on '{network}' to pay for gas")
    wallet = client.collateral.balanceOf(account)
    deposited = client.vault.collateral(account, 0)
    if kick_only:
        return []
    if wallet == 0 and deposited <= 0:
        token = client.record["contracts"]["collateral"]
        try:
            token = f"{client.collateral.symbol()} {token}"
        except ApeException:  # a token without symbol(): the address says enough
            pass
        raise KeeperError(f"keeper account {account.address} holds no collateral ({token}): none in its wallet, "
                          "none in its vault account, so it cannot take auctions; deposit some (--deposit N) "
                          "or pass --kick-only")
    if deposited <= 0:
        return [f"keeper holds {wallet / 10**client.decimals} collateral in its wallet but none in the vault: "
                "it takes auctions only with deposited collateral (--deposit N)"]
    return []


@contextmanager
def stop_on_signals():
    """Ctrl-C (and SIGTERM) raise KeyboardInterrupt inside the block. Ape installs a SIGINT handler that
    exits the process with status 130 at once; the keeper wants to finish with a message and status 0."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    for sig in previous:
        signal.signal(sig, interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_loop(keeper: Keeper, chain, once: bool = False, interval: float = 12.0, log: Callable = console.log,
             sleep: Callable = time.sleep) -> int:
    """Run passes until Ctrl-C (or one with `once`); logs every action; returns the number of passes."""
    with stop_on_signals():
        return _loop(keeper, chain, once, interval, log, sleep)


def _loop(keeper, chain, once, interval, log, sleep) -> int:
    passes = 0
    try:
        while True:
            passes += 1
            block = chain.blocks.head.number
            try:
                actions = keeper.run_once(chain)
            except ApeException as e:
                if once:
                    raise KeeperError(f"keeper pass failed at block {block}: {one_line(e)}") from None
                log(f"[red]pass {passes} failed[/] at block {block}: {one_line(e)}")
                actions = []
            else:
                if not actions:
                    log(f"pass {passes} at block {block}: nothing to do ({len(keeper.accounts)} accounts watched)")
                for a in actions:
                    log(f"pass {passes} at block {block}: {a}")
            if once:
                break
            sleep(interval)
    except KeyboardInterrupt:
        log(f"stopped after {passes} pass{'es' if passes != 1 else ''}")
    return passes


def start(account=None, deployment=None, fresh=False, config_path=DEFAULT_CONFIG, deposit=None, kick_only=False,
          min_discount_bps=100, log: Callable = console.log) -> tuple[Keeper, Client]:
    """Everything before the loop: the deployment, the account, its funds, the Keeper."""
    from ape import chain

    account = resolve_account(account, chain)
    path = Path(deployment) if deployment else default_deployment_path()
    if fresh:
        client = fresh_deployment(config_path, account, path, chain)
        log(f"deployed afresh on '{chain.provider.network.name}': {path}")
    else:
        client = Client.from_deployment(path)
    if deposit is not None:
        fund_keeper(client, account, deposit)
    for warning in check_keeper_funds(client, account, kick_only):
        log(f"[yellow]warning[/]: {warning}")
    breaker = breaker_of(client)
    keeper = Keeper(client.system, account, min_take_discount=min_discount_bps * 10**14, breaker=breaker)
    keeper._scanned_to = client.start_block - 1  # discover traders from the deployment on, not from genesis
    log(f"keeper {account.address} on '{chain.provider.network.name}' (chain id {chain.chain_id}), deployment "
        f"{path}, markets {', '.join(client.market_ids)}; free collateral "
        f"{client.health(owner=account).free_collateral:,.2f}; "
        + (f"pokes circuit breaker {breaker.address} every pass" if breaker is not None else "no circuit breaker"))
    return keeper, client


class _LogHandler(logging.Handler):
    """Sends the keeper's own log (`vperp.keeper`: the auctions it waits on and when each becomes worth
    taking, each take's PnL and position after, bad debt it saw; docs/keeper.md) to the script's output."""

    def __init__(self, log: Callable) -> None:
        super().__init__(logging.INFO)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        self.log(record.getMessage() if record.levelno < logging.WARNING else f"{record.levelname}: {record.getMessage()}")


def route_keeper_log(log: Callable = console.log) -> logging.Logger:
    """Attach (once; a second call replaces the first) the handler above to the `vperp.keeper` logger."""
    logger = logging.getLogger("vperp.keeper")
    for h in [h for h in logger.handlers if isinstance(h, _LogHandler)]:
        logger.removeHandler(h)
    logger.addHandler(_LogHandler(log))
    logger.setLevel(logging.INFO)
    return logger


@click.command(cls=ConnectedProviderCommand)
@network_option()
@account_option(prompt=False)
@click.option("--deployment", default=None, help="deployment file [default: deployments/<network>.json]")
@click.option("--fresh", is_flag=True, help="local networks: deploy afresh from --config first (writes the file)")
@click.option("--config", "config_path", default=DEFAULT_CONFIG, show_default=True, help="config for --fresh")
@click.option("--once", is_flag=True, help="one pass, then exit")
@click.option("--interval", default=12.0, show_default=True, type=click.FloatRange(min=0), help="seconds between passes")
@click.option("--deposit", default=None, help="deposit this much collateral (human units) first")
@click.option("--kick-only", is_flag=True, help="run without collateral (kicks, redos, backstops; no takes)")
@click.option("--min-discount-bps", default=100, show_default=True, type=click.IntRange(0, 10_000),
              help="take auctions once the price is this much better than the index")
def cli(network, account, deployment, fresh, config_path, once, interval, deposit, kick_only, min_discount_bps):
    """Run the vPerp keeper over a deployment."""
    from ape import chain
    from ape.logging import logger

    logger.set_level("WARNING")  # the keeper logs its own actions; one line per transaction would drown them
    route_keeper_log()
    try:
        keeper, _ = start(account, deployment, fresh, config_path, deposit, kick_only, min_discount_bps)
        run_loop(keeper, chain, once=once, interval=interval)
    except KeyboardInterrupt:
        console.log("stopped")
    except (KeeperError, ClientError, ConfigError, DeploymentError) as e:
        raise click.ClickException(one_line(e)) from None
    except ApeException as e:
        raise click.ClickException(f"keeper failed: {one_line(e)}") from None
