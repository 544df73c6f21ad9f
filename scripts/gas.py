"""`ape run gas`: regenerate docs/gas.md from a fresh local deployment."""
from pathlib import Path

import click
from ape import accounts, chain
from ape.cli import ConnectedProviderCommand, network_option

from vperp.gas import measure, read_previous, render


@click.command(cls=ConnectedProviderCommand)
@network_option()
@click.option("--out", default="docs/gas.md", show_default=True, help="where to write the table")
def cli(network, out):
    """Measure gas of every user-facing operation and write the table."""
    path = Path(out)
    previous = read_previous(path)
    rows = measure(accounts.test_accounts, chain)
    text = render(rows, previous)
    path.write_text(text)
    click.echo(text)
