"""`ape run simulate`: the agent-based economic simulation of vPerp on a local chain (docs/simulator.md).

    ./run.sh ape run simulate --scenario crash --steps 150 --seed 7 --out sim_out/
    ./run.sh ape run simulate --scenario squeeze --network ethereum:local:foundry   # Anvil: faster
    ./run.sh ape run simulate --prices my_prices.csv --out sim_csv/                 # index from a CSV

Writes `steps.csv` (one row per step), `summary.json` and PNG plots to the output folder and prints
the summary (liquidations, bad debt, insurance and pool NAV paths, reverts by error name, steps/s).
"""
import click
from ape.cli import network_option

from vperp.sim import cli_options, run_from_cli, simulator_command


@click.command(cls=simulator_command())
@network_option(default="ethereum:local:foundry")
@cli_options
def cli(network, **kwargs):
    """Run the vPerp economic simulator on a local network."""
    run_from_cli(**kwargs)
