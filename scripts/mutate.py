"""`ape run mutate [options]`: mutation testing of the contracts (`python -m devtools.mutation`; the options
are the same, `ape run mutate --help` lists them). See docs/testing.md, "Mutation testing"."""
import sys
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's devtools/
from devtools.mutation.cli import main  # noqa: E402


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                 "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def cli(args):
    """Mutation testing of the contracts: mutants built in a temporary copy, the fast tier and the unit tests
    against each, the score and the survivors (python -m devtools.mutation --help)."""
    raise SystemExit(main(list(args)))
