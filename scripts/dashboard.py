"""`ape run dashboard`: serve the operators' dashboard (vperp/dashboard.py) for a deployment on an Ape network.

    ./run.sh ape run dashboard --network ethereum:local:foundry                       # the record of that chain
    ./run.sh ape run dashboard --network ethereum:local:foundry --deployment deployments/local-31337.json --port 8050
    ./run.sh ape run dashboard --demo --port 8050     # embedded chain: deploy, make some state, serve it

The page is at http://127.0.0.1:PORT/ (default 8050) and polls every --refresh seconds (default 5). Without
--deployment the record in deployments/ written for the connected chain (its id and block 0) is used.
`--demo` (local networks only) deploys the system from the default config, makes the state the tests show
(an LP deposit, trades in both markets, three hours of funding, an ETH index drop and a kicked auction) and
writes its record to a temporary folder. Bad input (a missing or malformed file, a record of another chain,
a bad port or refresh) is a one-line error and nothing is served. Ctrl-C stops it.
`python -m vperp.dashboard --rpc URL --deployment FILE` does the same without an Ape network.
"""
import tempfile
from pathlib import Path

import click
from ape.cli import ConnectedProviderCommand, network_option

from vperp.client import DeploymentError, build_record, find_deployment_for_connected_chain, genesis_hash, write_record
from vperp.config_file import is_local_network
from vperp.dashboard import DEFAULT_REFRESH, Dashboard, DashboardError, check_port, demo_state, load_record, run_forever


def demo_record(chain) -> Path:
    from ape import accounts

    from vperp import deploy

    if not is_local_network(chain.chain_id, chain.provider.network.name):
        raise DashboardError(f"--demo deploys mocks and is for local networks only, not "
                             f"'{chain.provider.network.name}' (chain id {chain.chain_id})")
    first = chain.blocks.head.number + 1
    test_accounts = accounts.test_accounts
    system = deploy(test_accounts[0])
    demo_state(system, test_accounts, chain)
    path = Path(tempfile.mkdtemp(prefix="vperp-dashboard-")) / "deployments" / f"demo-{chain.chain_id}.json"
    write_record(path, build_record(system, system.config, chain, first))
    return path


@click.command(cls=ConnectedProviderCommand)
@network_option()
@click.option("--deployment", type=click.Path(dir_okay=False), default=None,
              help="deployment record (default: the one in deployments/ for the connected chain)")
@click.option("--port", default=8050, show_default=True, type=int, help="port on 127.0.0.1 (0: any free port)")
@click.option("--refresh", default=DEFAULT_REFRESH, show_default=True, type=float, help="seconds between polls")
@click.option("--demo", is_flag=True, help="local networks: deploy and make some state to show first")
def cli(network, deployment, port, refresh, demo):
    """Serve the operators' dashboard for a deployment on the connected network."""
    from ape import chain

    try:
        check_port(port)
        if not refresh > 0:
            raise DashboardError(f"--refresh must be a positive number of seconds, got {refresh}")
        if demo and deployment:
            raise DashboardError("--demo writes its own deployment record: leave out --deployment")
        try:
            path = demo_record(chain) if demo else Path(deployment or find_deployment_for_connected_chain())
        except DeploymentError as e:
            raise DashboardError(str(e)) from None
        record = load_record(path, chain.chain_id, genesis_hash(chain))
        run_forever(Dashboard(chain.provider.web3, record, path), port, refresh)
    except DashboardError as e:
        raise click.ClickException(str(e)) from None
