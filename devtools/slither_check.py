"""Slither over vPerp's contracts, offline, compared with a tracked triage file.

Slither (through crytic-compile) needs a solc. The project's compiler is the official WebAssembly build
behind the shim in ``tools/solcx/solc-v<version>``, which answers ``--version`` and ``--standard-json``
only, so the contracts are handed to it as one standard-JSON input built here, with the settings
``ape compile`` uses (``ape-config.yaml``: version, EVM version, via-IR, optimizer runs) and a remapping
of ``@openzeppelin/contracts`` into ``node_modules``. Nothing is downloaded.

Slither's detectors work on the solc AST (lifted to SlithIR), never on bytecode, so only the AST and ABI
are requested: solc skips code generation, which through the WebAssembly compiler with via-IR takes
over a minute, while the AST is the same byte for byte (checked when this was written). Code
generation itself is ``ape compile``'s job. crytic-compile insists on bytecode fields in the output, so
empty ones are filled in (``_AstOnlyStandardJson``).

Scope: every ``.sol`` under ``contracts/`` except ``contracts/mocks/`` (test-only); findings located
only in ``node_modules`` (OpenZeppelin) are dropped.

A finding is identified by ``<detector>:<where>``, where ``<where>`` names the code the finding points
at without line numbers (``Contract.function``, ``Contract.variable``, ``Contract.function.local``,
``Contract`` or the file for pragma-level findings), so a finding keeps its identity when code moves.
Several instances of one detector in one function share an id and one triage entry.

The triage file (``security/slither-triage.yaml``) lists ids with a verdict and a reason:

- ``false-positive``: the detector is wrong about this code;
- ``accepted``: the pattern is there and intended (the reason says why it is safe);
- ``issue``: a real problem, open until the contract is fixed (the check fails while it is reported).

An entry may carry ``hidden_by: <id prefix>``: a finding Slither cannot see while a finding with that
prefix is reported (functions Slither fails to lift to its IR hide what is inside them), triaged in
advance so that closing the gap does not break the check; it is not reported as stale meanwhile.

``check()`` returns the untriaged findings, the open issues and the stale entries (triaged ids Slither
no longer reports: fixed or moved; they are reported but do not fail the check).

Command line: ``python -m devtools.slither_check [--json OUT] [--list]`` (``./run.sh slither``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TRIAGE_FILE = ROOT / "security" / "slither-triage.yaml"
VERDICTS = ("false-positive", "accepted", "issue")
EXCLUDED_DIRS = ("contracts/mocks/",)
DEPENDENCY_DIRS = ("node_modules/",)


# --------------------------------------------------------------------------------------------------
# Compilation input


def compiler_settings(root: Path = ROOT) -> dict:
    """The ``solidity:`` section of ape-config.yaml, so Slither compiles exactly what Ape compiles."""
    with open(root / "ape-config.yaml", encoding="utf-8") as f:
        cfg = yaml.safe_load(f) or {}
    sol = cfg.get("solidity", {}) or {}
    return {
        "version": str(sol.get("version", "0.8.28")),
        "evm_version": sol.get("evm_version"),
        "via_ir": bool(sol.get("via_ir", False)),
        "optimize": bool(sol.get("optimize", True)),
        "runs": int(sol.get("optimization_runs", 200)),
    }


def solc_shim(root: Path = ROOT, version: str | None = None) -> Path:
    version = version or compiler_settings(root)["version"]
    return root / "tools" / "solcx" / f"solc-v{version}"


def source_files(root: Path = ROOT) -> list[str]:
    """Project-relative paths of the analysed sources (mocks excluded), sorted. Hidden folders are
    skipped: Ape may keep copies of dependencies in `contracts/.cache/` (OpenZeppelin on a fresh
    clone), which are not the project's sources and, compiled alongside them, crash the compiler."""
    out = []
    for p in sorted((root / "contracts").rglob("*.sol")):
        rel = p.relative_to(root).as_posix()
        if rel.startswith(EXCLUDED_DIRS) or any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        out.append(rel)
    return out


def standard_json_input(root: Path = ROOT) -> dict:
    s = compiler_settings(root)
    settings: dict = {
        # AST and ABI only: no code generation (see the module docstring).
        "outputSelection": {"*": {"*": ["abi"], "": ["ast"]}},
        "remappings": [
            "@openzeppelin/contracts/=node_modules/@openzeppelin/contracts/",
            "solady/=node_modules/solady/src/",
        ],
        "optimizer": {"enabled": s["optimize"], "runs": s["runs"]},
        "viaIR": s["via_ir"],
    }
    if s["evm_version"]:
        settings["evmVersion"] = s["evm_version"]
    sources = {
        rel: {"content": (root / rel).read_text(encoding="utf-8")} for rel in source_files(root)
    }
    return {"language": "Solidity", "sources": sources, "settings": settings}


# --------------------------------------------------------------------------------------------------
# Running Slither


def _quiet_logs() -> None:
    for name in ("CryticCompile", "Slither", "Detectors", "Printers"):
        logging.getLogger(name).setLevel(logging.ERROR)


class _IrFailures(logging.Handler):
    """Collects Slither's "Impossible to generate IR for C.f (...)" errors: functions whose SlithIR could
    not be built are invisible to most detectors, so each one is reported as a finding of its own
    (detector name ``slither-ir-failure``) and must be triaged like any other."""

    PARSERS = ("ContractSolcParsing", "SlitherSolcParsing", "FunctionSolc")

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.results: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage().strip()
        marker = "Impossible to generate IR for "
        if marker not in msg:
            sys.stderr.write(msg + "\n")
            return
        rest = msg.split(marker, 1)[1]
        name = rest.split(" (", 1)[0].strip()
        location = rest.split(" (", 1)[1].split(")", 1)[0] if " (" in rest else ""
        if location.startswith(DEPENDENCY_DIRS):
            return
        self.results.append({
            "check": "slither-ir-failure",
            "impact": "Analysis",
            "confidence": "High",
            "description": msg,
            "vperp_id": f"slither-ir-failure:{name}",
        })

    def __enter__(self):
        for n in self.PARSERS:
            lg = logging.getLogger(n)
            lg.addHandler(self)
            lg.propagate = False
        return self

    def __exit__(self, *exc):
        for n in self.PARSERS:
            lg = logging.getLogger(n)
            lg.removeHandler(self)
            lg.propagate = True


def _ast_only_platform(input_json: dict, root: Path):
    """A crytic-compile platform that compiles ``input_json`` as given (no codegen) through the shim."""
    from crytic_compile.compilation_unit import CompilationUnit
    from crytic_compile.compiler.compiler import CompilerVersion
    from crytic_compile.platform.solc import get_version
    from crytic_compile.platform.solc_standard_json import (
        SolcStandardJson,
        parse_standard_json_output,
        run_solc_standard_json,
    )

    class _AstOnlyStandardJson(SolcStandardJson):
        def compile(self, crytic_compile, **kwargs):  # noqa: D102 - see the module docstring
            solc = kwargs["solc"]
            settings = self._json["settings"]
            unit = CompilationUnit(crytic_compile, "standard_json")
            unit.compiler_version = CompilerVersion(
                compiler="solc",
                version=get_version(solc, None),
                optimized=settings["optimizer"]["enabled"],
                optimize_runs=settings["optimizer"].get("runs"),
                via_ir=settings.get("viaIR", False),
            )
            out = run_solc_standard_json(
                self._json, unit.compiler_version, solc_disable_warnings=True,
                working_dir=str(root), solc=solc,
            )
            empty = {"object": "", "sourceMap": ""}
            for contracts in out.get("contracts", {}).values():
                for info in contracts.values():
                    info["evm"] = {"bytecode": dict(empty), "deployedBytecode": dict(empty)}
            parse_standard_json_output(out, unit, solc_working_dir=str(root))

    return _AstOnlyStandardJson(input_json)


def run_slither(root: Path = ROOT) -> list[dict]:
    """Compile with the WebAssembly shim and run every Slither detector; return the raw results."""
    from slither import Slither
    from slither.detectors import all_detectors
    from slither.detectors.abstract_detector import AbstractDetector

    _quiet_logs()
    shim = solc_shim(root)
    if not os.access(shim, os.X_OK):
        raise RuntimeError(f"compiler shim not found or not executable: {shim}")
    target = _ast_only_platform(standard_json_input(root), root)
    cwd = os.getcwd()
    os.chdir(root)  # the shim resolves imports (remapped into node_modules) from the working directory
    with _IrFailures() as ir_failures:
        try:
            sl = Slither(
                target,
                solc=str(shim),
                solc_working_dir=str(root),
                filter_paths=[d.rstrip("/") for d in DEPENDENCY_DIRS + EXCLUDED_DIRS],
            )
            detectors = [
                d
                for d in vars(all_detectors).values()
                if isinstance(d, type) and issubclass(d, AbstractDetector) and d is not AbstractDetector
            ]
            for d in sorted(detectors, key=lambda c: c.ARGUMENT):
                sl.register_detector(d)
            results = [r for per_detector in sl.run_detectors() for r in per_detector]
        finally:
            os.chdir(cwd)
    return ir_failures.results + results


# --------------------------------------------------------------------------------------------------
# Stable identities


def _parent_function(elem: dict) -> dict | None:
    parent = elem.get("type_specific_fields", {}).get("parent")
    while parent is not None and parent.get("type") not in ("function", "contract"):
        parent = parent.get("type_specific_fields", {}).get("parent")
    return parent


def _contract_of(elem: dict) -> str | None:
    parent = elem.get("type_specific_fields", {}).get("parent")
    while parent is not None:
        if parent.get("type") == "contract":
            return parent.get("name")
        parent = parent.get("type_specific_fields", {}).get("parent")
    return None


def element_name(elem: dict) -> str:
    """A line-free name for one Slither result element."""
    kind = elem.get("type")
    name = elem.get("name", "")
    if kind == "contract":
        return name
    if kind == "function":
        contract = _contract_of(elem)
        return f"{contract}.{name}" if contract else name
    if kind == "node":
        parent = _parent_function(elem)
        if parent is not None:
            return element_name(parent)
        return elem.get("source_mapping", {}).get("filename_relative", name)
    if kind == "variable":
        parent = elem.get("type_specific_fields", {}).get("parent")
        if parent is not None and parent.get("type") == "function":
            return f"{element_name(parent)}.{name}"
        contract = _contract_of(elem)
        return f"{contract}.{name}" if contract else name
    if kind == "pragma":
        return elem.get("source_mapping", {}).get("filename_relative", "pragma")
    # enums, structs, events, custom errors: Contract.Name when they belong to a contract
    contract = _contract_of(elem)
    return f"{contract}.{name}" if contract else name


def finding_id(result: dict) -> str:
    if "vperp_id" in result:
        return result["vperp_id"]
    elements = result.get("elements") or []
    where = element_name(elements[0]) if elements else "-"
    return f"{result['check']}:{where}"


def _in_scope(result: dict) -> bool:
    files = {
        e.get("source_mapping", {}).get("filename_relative", "")
        for e in result.get("elements") or []
    }
    files.discard("")
    if not files:
        return True
    return any(
        not f.startswith(DEPENDENCY_DIRS + EXCLUDED_DIRS) and "/node_modules/" not in f
        for f in files
    )


@dataclass
class Finding:
    id: str
    check: str
    impact: str
    confidence: str
    descriptions: list[str] = field(default_factory=list)


def findings(results: list[dict]) -> dict[str, Finding]:
    out: dict[str, Finding] = {}
    for r in results:
        if not _in_scope(r):
            continue
        fid = finding_id(r)
        f = out.setdefault(fid, Finding(fid, r["check"], r["impact"], r["confidence"]))
        f.descriptions.append(r.get("description", "").strip())
    return dict(sorted(out.items()))


# --------------------------------------------------------------------------------------------------
# Triage


def load_triage(path: Path = TRIAGE_FILE) -> dict[str, dict]:
    if not path.exists():
        return {}
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    entries: dict[str, dict] = {}
    for i, e in enumerate(data.get("findings") or []):
        fid = e.get("id")
        if not fid:
            raise ValueError(f"{path}: entry {i} has no id")
        if fid in entries:
            raise ValueError(f"{path}: {fid} listed twice")
        if e.get("verdict") not in VERDICTS:
            raise ValueError(f"{path}: {fid}: verdict must be one of {VERDICTS}")
        if not str(e.get("reason", "")).strip():
            raise ValueError(f"{path}: {fid}: a reason is required")
        entries[fid] = e
    return entries


@dataclass
class Report:
    found: dict[str, Finding]
    triage: dict[str, dict]
    seconds: float

    @property
    def untriaged(self) -> list[Finding]:
        return [f for fid, f in self.found.items() if fid not in self.triage]

    @property
    def open_issues(self) -> list[Finding]:
        return [
            f
            for fid, f in self.found.items()
            if self.triage.get(fid, {}).get("verdict") == "issue"
        ]

    def _hidden(self, entry: dict) -> bool:
        prefix = entry.get("hidden_by")
        return bool(prefix) and any(fid.startswith(prefix) for fid in self.found)

    @property
    def stale(self) -> list[str]:
        """Triaged ids Slither no longer reports (and that no reported finding is known to hide)."""
        return sorted(
            fid for fid, e in self.triage.items() if fid not in self.found and not self._hidden(e)
        )

    @property
    def ok(self) -> bool:
        return not self.untriaged and not self.open_issues

    def counts(self) -> Counter:
        return Counter(f.check for f in self.found.values())

    def summary(self) -> str:
        lines = [
            f"Slither: {len(self.found)} findings ({sum(len(f.descriptions) for f in self.found.values())}"
            f" instances) in {self.seconds:.1f} s; triage {TRIAGE_FILE.relative_to(ROOT)}"
        ]
        verdicts = Counter(self.triage[fid]["verdict"] for fid in self.found if fid in self.triage)
        lines.append(
            "  " + ", ".join(f"{v}: {verdicts.get(v, 0)}" for v in VERDICTS)
            + f", untriaged: {len(self.untriaged)}"
        )
        for f in self.open_issues:
            lines.append(f"OPEN ISSUE {f.id} [{f.impact}/{f.confidence}]: {self.triage[f.id]['reason']}")
        for f in self.untriaged:
            lines.append(f"UNTRIAGED {f.id} [{f.impact}/{f.confidence}]")
            for d in f.descriptions:
                lines.append("    " + d.replace("\n", "\n    "))
        for fid in self.stale:
            lines.append(f"stale triage entry (no longer reported; remove it): {fid}")
        return "\n".join(lines)


def check(root: Path = ROOT, triage_path: Path = TRIAGE_FILE) -> Report:
    t0 = time.monotonic()
    found = findings(run_slither(root))
    return Report(found, load_triage(triage_path), time.monotonic() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="./run.sh slither", description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", metavar="OUT", help="also write the findings (id, detector, text) here")
    ap.add_argument("--list", action="store_true", help="print every finding with its description")
    args = ap.parse_args(argv)
    report = check()
    if args.list:
        for f in report.found.values():
            verdict = report.triage.get(f.id, {}).get("verdict", "UNTRIAGED")
            print(f"{f.id} [{f.impact}/{f.confidence}] {verdict}")
            for d in f.descriptions:
                print("    " + d.replace("\n", "\n    "))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(
                {fid: {"check": f.check, "impact": f.impact, "confidence": f.confidence,
                       "descriptions": f.descriptions} for fid, f in report.found.items()},
                out, indent=2,
            )
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
