"""`ape run simulate`: the agent-based economic simulation of vPerp on a local chain (docs/simulator.md).

    ./run.sh ape run simulate --scenario crash --steps 150 --seed 7 --out sim_out/
    ./run.sh ape run simulate --scenario squeeze --network ethereum:local:foundry   # Anvil: faster
    ./run.sh ape run simulate --prices my_prices.csv --out sim_csv/                 # index from a CSV

Writes `steps.csv` (one row per step), `summary.json` and PNG plots to the output folder and prints
the summary (liquidations, bad debt, insurance and pool NAV paths, reverts by error name, steps/s).
"""
import click
from ape.cli import ConnectedProviderCommand, network_option

from vperp import chain_io
from vperp.sim import cli_options, run_from_cli


class SimulatorCommand(ConnectedProviderCommand):
    """Ape's connected command, its Anvil started as the simulator's own command line starts it (vperp/chain_io.py):
    without step traces, Ape's record of its nodes cleared of stopped ones first."""

    def invoke(self, ctx: click.Context):
        chain_io.forget_stopped_nodes()
        chain_io.anvil_without_step_traces()
        return super().invoke(ctx)


@click.command(cls=SimulatorCommand)
@network_option(default="ethereum:local:foundry")
@cli_options
def cli(network, **kwargs):
    """Run the vPerp economic simulator on a local network."""
    run_from_cli(**kwargs)
