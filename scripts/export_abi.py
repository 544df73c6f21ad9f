"""`ape run export_abi`: write the ABIs integrators need to `abi/` (committed; re-run after contract changes).

    abi/Vault.json, ClearingHouse.json, LiquidationEngine.json, LiquidityPool.json, AmmController.json,
        PerpReader.json, OrderRouter.json the core contracts and the periphery (reader, order router)
    abi/GovernanceTimelock.json, RiskGovernor.json, CircuitBreaker.json
                                          governance (docs/governance.md): the timelock, the modules' owner,
                                          the breakers of a governed deployment
    abi/IVault.json, IClearingHouse.json, ILiquidationEngine.json, ILiquidityPool.json, IAmmController.json,
        IPerpReader.json, IOrderRouter.json, IRiskGovernor.json, ICircuitBreaker.json,
        AggregatorV3Interface.json        the interfaces (external surface with errors, events, structs)
    abi/IERC20Metadata.json               the standard ERC-20 surface of the collateral token
    abi/mocks/MockERC20.json, MockAggregator.json   local chains only: mintable collateral, settable feed
    abi/signatures.json                   every function, custom error and event of the files above, by
                                          selector, in the layout of cast's signature cache

Each ABI file is the plain JSON ABI list (web3.py: `w3.eth.contract(address=..., abi=json.load(f))`). The
output is stable: exporting unchanged contracts rewrites identical files.

`cast` decodes a revert's custom error, an event or calldata only from signatures it knows: it reads
them from `~/.foundry/cache/signatures` (`{"functions": {selector: "name(types)"}, "errors": {...},
"events": {topic0: "Name(types)"}}`), the file `abi/signatures.json` is written in. `./run.sh cast`
merges it into that cache (docs/cast.md). `python scripts/export_abi.py --check` (no Ape, no compiler)
says whether abi/signatures.json matches the ABI files next to it.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

SIGNATURES_FILE = "signatures.json"


def canonical_type(param: dict) -> str:
    """The ABI type as it appears in a signature: tuples spelled out, `tuple[2][]` -> `(...)[2][]`."""
    kind = param["type"]
    if kind.startswith("tuple"):
        return "(" + ",".join(canonical_type(c) for c in param.get("components", [])) + ")" + kind[len("tuple"):]
    return kind


def signature(entry: dict) -> str:
    return f"{entry['name']}({','.join(canonical_type(i) for i in entry.get('inputs', []))})"


def keccak_hex(text: str) -> str:
    from eth_hash.auto import keccak

    return "0x" + keccak(text.encode()).hex()


def signatures_of(abi_dir: Path) -> dict[str, dict[str, str]]:
    """Every function, error and event of the ABI files under `abi_dir` (signatures.json excluded), keyed
    by selector (4 bytes; 32 for events), as cast's signature cache holds them. Two different signatures
    with one selector would make decoding ambiguous: that is an error."""
    out: dict[str, dict[str, str]] = {"functions": {}, "errors": {}, "events": {}}
    kinds = {"function": "functions", "error": "errors", "event": "events"}
    for path in sorted(abi_dir.rglob("*.json")):
        if path.name == SIGNATURES_FILE:
            continue
        for entry in json.loads(path.read_text()):
            group = kinds.get(entry.get("type"))
            if group is None or (group == "events" and entry.get("anonymous")):
                continue
            sig = signature(entry)
            digest = keccak_hex(sig)
            key = digest if group == "events" else digest[:10]
            if out[group].get(key, sig) != sig:
                raise ValueError(f"{path}: {sig} and {out[group][key]} share the selector {key}")
            out[group][key] = sig
    return {group: dict(sorted(entries.items())) for group, entries in out.items()}


def dump_signatures(signatures: dict) -> str:
    return json.dumps(signatures, indent=2) + "\n"


def write_signatures(abi_dir: Path) -> tuple[Path, bool]:
    """(Re)write `abi_dir/signatures.json` from the ABI files there; returns (path, changed)."""
    path = abi_dir / SIGNATURES_FILE
    text = dump_signatures(signatures_of(abi_dir))
    changed = not path.is_file() or path.read_text() != text
    if changed:
        path.write_text(text)
    return path, changed


def export(project, out: Path) -> list[tuple[Path, bool]]:
    """Write every ABI file under `out`, then the signatures file; returns (path, changed) pairs."""
    from vperp.client import dump_abi, expected_abis

    written = []
    for rel, abi in expected_abis(project).items():
        path = out / Path(rel).relative_to("abi")
        path.parent.mkdir(parents=True, exist_ok=True)
        text = dump_abi(abi)
        changed = not path.is_file() or path.read_text() != text
        if changed:
            path.write_text(text)
        written.append((path, changed))
    written.append(write_signatures(out))
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
    click.echo(f"{len(results)} files in {target} ({sum(c for _, c in results)} changed)")


if __name__ == "__main__":  # `python scripts/export_abi.py --check|--write [ABI_DIR]`: signatures only, no Ape
    mode, folder = (sys.argv[1:] + ["--check"])[0], Path((sys.argv[2:] or [Path(__file__).parent.parent / "abi"])[0])
    if mode == "--write":
        print(*write_signatures(folder))
    else:
        fresh = dump_signatures(signatures_of(folder))
        current = (folder / SIGNATURES_FILE).read_text() if (folder / SIGNATURES_FILE).is_file() else ""
        print(f"{folder / SIGNATURES_FILE}: {'up to date' if current == fresh else 'OUT OF DATE'}")
        sys.exit(current != fresh)
