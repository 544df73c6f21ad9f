"""Compiling the contracts (and mutants of them) the way `ape compile` does, without Ape.

The input is solc's standard JSON with ape-config.yaml's settings (version, EVM version, via-IR, optimizer
runs) and Ape's remapping of each npm dependency to `contracts/.cache/<name>/<version>` (the unit names
Ape uses, so the metadata, and so the bytecode, match Ape's), the dependency's files read from
`node_modules`. It goes to the WebAssembly solc behind `tools/solcx/solc-v<version>` (the shim Ape uses).

Two things make a mutant cheap to build:
- only the source units that contain or (transitively) import the mutated file are asked for bytecode:
  solc generates code only for what the output selection names, so a mutant of Vault.sol compiles Vault
  alone (about 3 s) instead of everything (about 40 s); the other contracts keep the baseline's code;
- `strip_metadata` removes the CBOR metadata (which hashes the source text) from bytecode, so a mutant
  whose code is identical to the original's is recognised as equivalent without running a test.
"""
from __future__ import annotations

import json
import posixpath
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

IMPORT = re.compile(r'\bimport\s+(?:[^"\';]*?\bfrom\s+)?["\']([^"\']+)["\']', re.S)
# solc's CBOR metadata: {"ipfs": <34-byte multihash>, "solc": <3-byte version>} and its 2-byte length.
CBOR = re.compile(r"a264697066735822[0-9a-f]{68}64736f6c6343[0-9a-f]{6}0033")
CODE_OUTPUTS = ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]


def strip_metadata(code_hex: str) -> str:
    """Bytecode (hex, with or without 0x) without solc's metadata, wherever it is embedded."""
    code = code_hex[2:] if code_hex.startswith("0x") else code_hex
    return CBOR.sub("", code.lower())


@dataclass
class ProjectConfig:
    """What ape-config.yaml says about compiling."""

    version: str
    settings: dict  # standard-JSON settings without outputSelection
    remaps: dict[str, tuple[str, Path]] = field(default_factory=dict)  # import prefix -> (unit prefix, folder)


def project_config(root: Path) -> ProjectConfig:
    cfg = yaml.safe_load((root / "ape-config.yaml").read_text()) or {}
    sol = cfg.get("solidity") or {}
    contracts_folder = cfg.get("contracts_folder", "contracts")
    settings: dict = {
        "optimizer": {"enabled": bool(sol.get("optimize", True)), "runs": int(sol.get("optimization_runs", 200))},
        "viaIR": bool(sol.get("via_ir", False)),
    }
    if sol.get("evm_version"):
        settings["evmVersion"] = sol["evm_version"]
    npm = {d["name"]: d.get("npm") for d in cfg.get("dependencies") or [] if d.get("name")}
    remaps, remappings = {}, []
    for entry in sol.get("import_remapping") or []:
        key, _, target = entry.partition("=")
        name, _, version = target.partition("/")
        unit_prefix = f"{contracts_folder}/.cache/{name}/{version}"  # where Ape puts its copy
        folder = root / "node_modules" / (npm.get(name) or name)
        remaps[key.rstrip("/") + "/"] = (unit_prefix + "/", folder)
        remappings.append(f"{key.rstrip('/')}={unit_prefix}")
    if remappings:
        settings["remappings"] = remappings
    return ProjectConfig(str(sol.get("version", "0.8.28")), settings, remaps)


class CompileError(Exception):
    pass


class Compiler:
    """Standard-JSON compiles of a project tree (`root`: contracts/, ape-config.yaml, tools/ or `solc`,
    node_modules/), with any source replaced by other text (`overrides`)."""

    def __init__(self, root: Path, solc: Path | None = None, contracts_folder: str = "contracts"):
        self.root = Path(root)
        self.config = project_config(self.root)
        self.solc = Path(solc) if solc else self.root / "tools" / "solcx" / f"solc-v{self.config.version}"
        self.contracts_folder = contracts_folder
        self._text: dict[str, str] = {}
        self._imports: dict[str, list[str]] = {}
        self.units = self._collect()

    # ---------------------------------------------------------------- sources

    def project_files(self) -> list[str]:
        base = self.root / self.contracts_folder
        return sorted(p.relative_to(self.root).as_posix() for p in base.rglob("*.sol")
                      if not any(part.startswith(".") for part in p.relative_to(base).parts))

    def _resolve(self, unit: str, imp: str) -> str:
        for prefix, (unit_prefix, _) in self.config.remaps.items():
            if imp.startswith(prefix):
                return unit_prefix + imp[len(prefix):]
        if imp.startswith("."):
            return posixpath.normpath(posixpath.join(posixpath.dirname(unit), imp))
        return imp

    def _read(self, unit: str) -> str:
        for unit_prefix, folder in self.config.remaps.values():
            if unit.startswith(unit_prefix):
                return (folder / unit[len(unit_prefix):]).read_text(encoding="utf-8")
        return (self.root / unit).read_text(encoding="utf-8")

    def _collect(self) -> list[str]:
        todo, seen = list(self.project_files()), set()
        while todo:
            unit = todo.pop()
            if unit in seen:
                continue
            seen.add(unit)
            self._text[unit] = self._read(unit)
            self._imports[unit] = [self._resolve(unit, i) for i in IMPORT.findall(_code_only(self._text[unit]))]
            todo.extend(self._imports[unit])
        return sorted(seen)

    def text(self, unit: str) -> str:
        return self._text[unit]

    def dependents(self, unit: str) -> list[str]:
        """The project's source units whose code includes `unit`'s: itself and every unit importing it,
        directly or not."""
        out = {unit}
        changed = True
        while changed:
            changed = False
            for u, imps in self._imports.items():
                if u not in out and any(i in out for i in imps):
                    out.add(u)
                    changed = True
        return sorted(u for u in out if not self._is_dependency(u))

    def _is_dependency(self, unit: str) -> bool:
        return any(unit.startswith(p) for p, _ in self.config.remaps.values())

    # ---------------------------------------------------------------- compiling

    def standard_input(self, select: dict[str, dict], overrides: dict[str, str] | None = None) -> dict:
        """`select`: unit -> its outputSelection entry; units not named get no output (no code)."""
        overrides = overrides or {}
        sources = {u: {"content": overrides.get(u, self._text[u])} for u in self.units}
        settings = dict(self.config.settings)
        settings["outputSelection"] = {u: select.get(u, {}) for u in self.units}
        return {"language": "Solidity", "sources": sources, "settings": settings}

    def run(self, standard_input: dict, timeout: float | None = None) -> dict:
        proc = subprocess.run([str(self.solc), "--standard-json", "--base-path", str(self.root)],
                              input=json.dumps(standard_input), capture_output=True, text=True, cwd=self.root,
                              timeout=timeout)
        if proc.returncode != 0 or not proc.stdout.strip():
            raise CompileError(f"solc exited {proc.returncode}: {proc.stderr[-2000:]}")
        out = json.loads(proc.stdout)
        errors = [e.get("formattedMessage") or e.get("message", "") for e in out.get("errors", [])
                  if e.get("severity") == "error"]
        if errors:
            raise CompileError("\n".join(errors))
        return out

    def asts(self, units: list[str]) -> dict[str, dict]:
        """The AST of each unit (no code generation: about 2 s)."""
        out = self.run(self.standard_input({u: {"": ["ast"]} for u in units}))
        return {u: out["sources"][u]["ast"] for u in units}

    def bytecode(self, units: list[str], overrides: dict[str, str] | None = None,
                 timeout: float | None = None) -> dict[str, dict]:
        """contract name -> {"abi", "deployment", "runtime"} (hex without 0x) for every contract of `units`."""
        out = self.run(self.standard_input({u: {"*": CODE_OUTPUTS} for u in units}, overrides), timeout=timeout)
        types = {}
        for unit in units:
            for name, data in (out.get("contracts", {}).get(unit) or {}).items():
                types[name] = {"abi": data.get("abi", []), "deployment": data["evm"]["bytecode"]["object"],
                               "runtime": data["evm"]["deployedBytecode"]["object"], "unit": unit}
        return types


def _code_only(text: str) -> str:
    """`text` with comments blanked (so an import in a comment is not followed)."""
    return re.sub(r"//[^\n]*|/\*.*?\*/", lambda m: " " * len(m.group(0)), text, flags=re.S)
