"""`ape run gas`: regenerate docs/gas.md and docs/gas.json from a fresh local deployment."""
import sys
from pathlib import Path

import click
from ape import accounts, chain
from ape.cli import ConnectedProviderCommand, network_option

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's devtools/
from devtools.gas import measure, read_previous, render, to_json  # noqa: E402


@click.command(cls=ConnectedProviderCommand)
@network_option()
@click.option("--out", default="docs/gas.md", show_default=True, help="where to write the table")
@click.option("--json-out", default="docs/gas.json", show_default=True,
              help="where the last run's figures are read from ('previous') and this run's are written")
def cli(network, out, json_out):
    """Measure gas of every user-facing operation and write the table."""
    path, json_path = Path(out), Path(json_out)
    previous = read_previous(json_path, path)
    rows = measure(accounts.test_accounts, chain)
    name = chain.provider.network.choice
    text = render(rows, previous, name)
    path.write_text(text)
    json_path.write_text(to_json(rows, name))
    click.echo(text)
