"""External-function coverage of the production contracts, measured inside the embedded chain's EVM.

Ape's `--coverage` collects nothing for Solidity here (docs/testing.md says why), so this module
measures what the issue asks for directly: which external functions of each production contract ran,
on any path. It wraps py-evm's `apply_computation`, which runs every call frame: a user's
transaction, a contract calling another (ClearingHouse -> Vault.settleTrade), and every `eth_call`
(views, including those batched through the BatchCaller mock). For each frame it records the code
that ran and the 4-byte selector it was called with, and whether the frame succeeded.

At the end, each recorded code is matched to a production contract by its runtime bytecode (equal
length and at least 90 % equal bytes: immutables differ per deployment, and the pool's fill 3.7 %
of its code), and every selector of that contract's ABI is reported as reached (some frame ran it),
reached only by reverting calls, or not reached. Only the embedded chain runs py-evm in-process, so
only it can be measured this way (Anvil is a separate binary). Statements, lines and branches are
measured by devtools.srccoverage; `document` puts both reports in one file.

Use: `./run.sh coverage` (the test suite with VPERP_COVERAGE set; writes docs/coverage.md).
"""
from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from pathlib import Path

# Every deployed production contract: the five modules, the ClearingHouse's configurator (run by delegatecall: its
# frames run its own code), the periphery and the governance layer.
PRODUCTION = ("Vault", "ClearingHouse", "ClearingHouseConfigurator", "LiquidationEngine", "LiquidityPool", "AmmController",
              "OrderRouter", "PerpReader", "RiskGovernor", "CircuitBreaker", "GovernanceTimelock")
# Contracts reported on the functions their own source declares only: the configurator's ABI also has what it
# inherits with the ClearingHouse's layout (the owner's functions, the constants), which the ClearingHouse answers
# itself and never forwards.
OWN_FUNCTIONS_ONLY = {"ClearingHouseConfigurator": "contracts/clearinghouse/ClearingHouseConfigurator.sol"}


def _declared(source: Path) -> set[str]:
    return set(re.findall(r"function\s+(\w+)\s*\(", source.read_text()))

_codes: dict[bytes, bytes] = {}  # sha256 of runtime code -> code
_calls: dict[bytes, dict[bytes, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))  # ok, failed
_installed = False


def install() -> None:
    """Wrap py-evm's per-frame entry point (idempotent)."""
    global _installed
    if _installed:
        return
    from eth.vm.computation import BaseComputation

    original = BaseComputation.apply_computation.__func__

    def apply_computation(cls, state, message, transaction_context, parent_computation=None):
        computation = original(cls, state, message, transaction_context, parent_computation=parent_computation)
        if not message.is_create and len(message.code) > 0:
            code = bytes(message.code)
            key = hashlib.sha256(code).digest()
            _codes.setdefault(key, code)
            _calls[key][bytes(message.data[:4])][1 if computation.is_error else 0] += 1
        return computation

    BaseComputation.apply_computation = classmethod(apply_computation)
    _installed = True


def _selector(signature: str) -> bytes:
    from eth_utils import keccak

    return keccak(text=signature)[:4]


def _functions(abi: list[dict]) -> dict[bytes, str]:
    out = {}
    for item in abi:
        if item.get("type") == "function":
            types = ",".join(_canonical(i) for i in item.get("inputs", []))
            sig = f"{item['name']}({types})"
            out[_selector(sig)] = sig
    return out


def _canonical(param: dict) -> str:
    t = param["type"]
    if t.startswith("tuple"):
        inner = ",".join(_canonical(c) for c in param.get("components", []))
        return f"({inner}){t[5:]}"
    return t


def _similar(a: bytes, b: bytes) -> bool:
    if len(a) != len(b) or not a:
        return False
    same = sum(x == y for x, y in zip(a, b))
    return same >= 0.9 * len(a)


def report(build_file: Path) -> tuple[str, dict[str, dict]]:
    """Markdown report and per-contract figures from what was recorded so far."""
    build = json.loads(Path(build_file).read_text())["contractTypes"]
    figures: dict[str, dict] = {}
    lines = ["## External functions", "",
             "A function is *reached* when some frame ran it to success; *reverts only* when every frame that",
             "ran it reverted.", "",
             "| contract | functions | reached | reverts only | not reached |", "|---|---:|---:|---:|---:|"]
    details = []
    for name in PRODUCTION:
        ct = build[name]
        runtime = bytes.fromhex(ct["runtimeBytecode"]["bytecode"].removeprefix("0x"))
        functions = _functions(ct["abi"])
        if name in OWN_FUNCTIONS_ONLY:
            own = _declared(Path(build_file).resolve().parents[1] / OWN_FUNCTIONS_ONLY[name])  # the build's checkout
            functions = {sel: sig for sel, sig in functions.items() if sig.split("(")[0] in own}
        merged: dict[bytes, list[int]] = defaultdict(lambda: [0, 0])
        for key, code in _codes.items():
            if _similar(code, runtime):
                for sel, (ok, failed) in _calls[key].items():
                    merged[sel][0] += ok
                    merged[sel][1] += failed
        reached = sorted(sig for sel, sig in functions.items() if merged[sel][0])
        reverts_only = sorted(sig for sel, sig in functions.items() if not merged[sel][0] and merged[sel][1])
        missing = sorted(sig for sel, sig in functions.items() if not merged[sel][0] and not merged[sel][1])
        figures[name] = {"functions": len(functions), "reached": len(reached), "reverts_only": reverts_only,
                         "missing": missing}
        lines.append(f"| {name} | {len(functions)} | {len(reached)} | {len(reverts_only)} | {len(missing)} |")
        if reverts_only or missing:
            details.append(f"\n### {name}\n")
            details += [f"- not reached: `{sig}`" for sig in missing]
            details += [f"- reached by reverting calls only: `{sig}`" for sig in reverts_only]
    total = sum(f["functions"] for f in figures.values())
    hit = sum(f["reached"] for f in figures.values())
    lines.append(f"| **all** | {total} | {hit} | {total - hit - sum(len(f['missing']) for f in figures.values())} "
                 f"| {sum(len(f['missing']) for f in figures.values())} |")
    if not details:
        lines += ["", "Every external function of every production contract was reached."]
    return "\n".join(lines + details) + "\n", figures


def document(functions_md: str, sources_md: str) -> str:
    """docs/coverage.md: statement, line and branch coverage (devtools.srccoverage), then functions."""
    head = ["# Coverage", "",
            "Produced by `./run.sh coverage`: the whole test suite on the embedded chain, with every call frame",
            "the EVM runs recorded (transactions, contract-to-contract calls, views and constructors). How it is",
            "measured, and what the figures mean: [testing.md](testing.md#coverage).", "",
            "## Statements, lines and branches", "",
            "Production sources only (mocks, interfaces and OpenZeppelin are not counted). A branch is one",
            "direction of an `if` or a `?:`; *unresolved* branches are those whose deciding jump the optimizer",
            "removed or merged, so they are neither counted as taken nor as missed.", ""]
    return "\n".join(head) + "\n" + sources_md + "\n" + functions_md
