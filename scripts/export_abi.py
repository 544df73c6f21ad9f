"""`ape run export_abi`: write the ABIs integrators need to `abi/` (committed; re-run after contract changes).

    abi/Vault.json, ClearingHouse.json, LiquidationEngine.json, LiquidityPool.json, AmmController.json
    abi/IVault.json, IClearingHouse.json, ILiquidationEngine.json, ILiquidityPool.json, IAmmController.json,
        AggregatorV3Interface.json        the interfaces (external surface with errors, events, structs)
    abi/IERC20Metadata.json               the standard ERC-20 surface of the collateral token
    abi/mocks/MockERC20.json, MockAggregator.json   local chains only: mintable collateral, settable feed

Each file is the plain JSON ABI list (web3.py: `w3.eth.contract(address=..., abi=json.load(f))`). The
output is stable: exporting unchanged contracts rewrites identical files.
"""
from __future__ import annotations

from pathlib import Path

import click

from vperp.client import dump_abi, expected_abis


def export(project, out: Path) -> list[tuple[Path, bool]]:
    """Write every ABI file under `out`; returns (path, changed) pairs."""
    written = []
    for rel, abi in expected_abis(project).items():
        path = out / Path(rel).relative_to("abi")
        path.parent.mkdir(parents=True, exist_ok=True)
        text = dump_abi(abi)
        changed = not path.is_file() or path.read_text() != text
        if changed:
            path.write_text(text)
        written.append((path, changed))
    return written


@click.command()
@click.option("--out", default=None, help="output directory (default: <project>/abi)")
def cli(out):
    """Write the ABIs of the core contracts, their interfaces and the mocks to abi/."""
    from ape import project

    target = Path(out) if out else Path(project.path) / "abi"
    results = export(project, target)
    for path, changed in results:
        click.echo(f"  {'wrote    ' if changed else 'unchanged'} {path}")
    click.echo(f"{len(results)} ABI files in {target} ({sum(c for _, c in results)} changed)")
