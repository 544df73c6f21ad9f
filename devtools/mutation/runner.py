"""Running the tests against one mutant at a time, in a private copy of the project.

A `Workspace` is a temporary directory holding a snapshot of the project (contracts/, tests/, vperp/,
ape-config.yaml, pyproject.toml, tools/; node_modules linked), compiled once by `ape compile` there, so
its `.build/__local__.json` is Ape's own manifest. For a mutant it
1. builds the mutated source with `Compiler.bytecode` (the source units that include the file only);
2. compares the new code with the baseline's without metadata: identical code is an *equivalent* mutant
   (no test can tell them apart), a compile error a *stillborn* one;
3. otherwise writes the mutated file into its contracts/ and the new bytecode (and the mutated source
   text, so Ape sees its manifest as up to date and does not recompile) into its manifest, and runs each
   test stage with pytest in the workspace (`VPERP_BUILD` points the fast tier at the manifest; Ape's
   tests deploy from it); the first stage with a failing test kills the mutant;
4. restores the original file and manifest.
Nothing is ever written under the project's own contracts/ or .build/.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import io
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from .compile import CompileError, Compiler, strip_metadata
from .operators import Mutant

SNAPSHOT_PATHS = ("contracts", "tests", "vperp", "devtools", "tools", "ape-config.yaml", "pyproject.toml")

# The fast tier's quick profile (a tenth of CI's examples; derandomized like CI, so the same examples
# every run), and the order its tests run in: cheapest and most targeted first, pytest stops at the
# first failure.
QUICK_ENV = {"VPERP_FAST_STEPS": "1500", "VPERP_FUZZ_EXAMPLES": "60", "VPERP_FUZZ_STATEFUL_RUNS": "15"}
FAST_TESTS = (
    "tests/fast/test_fast_chain.py::test_blocks_time_and_reverts",
    "tests/fast/test_fast_chain.py::test_snapshot_revert",
    "tests/fast/test_fast_stateful.py::test_fast_exploit_scripts",
    "tests/fast/test_fast_stateful.py::test_fast_protocol_state_machine",
    "tests/fast/test_fast_differential.py::test_fixed_examples",
    "tests/fast/test_fast_differential.py::test_fast_chain_matches_model",
    "tests/fast/test_erc4626_properties.py",
)
# The Ape unit tests (embedded chain) relevant to each production file: the second stage, for what the
# fast tier let through.
KILLS = "tests/test_mutation_kills.py"  # tests written for earlier survivors (a few seconds): first, for every file
UNIT_TESTS = {
    "contracts/Vault.sol": (KILLS, "tests/vault/test_vault_deposit.py", "tests/vault/test_vault_withdraw.py",
                            "tests/vault/test_vault_admin.py", "tests/vault/test_vault_collateral.py"),
    "contracts/ClearingHouse.sol": (KILLS, "tests/clearinghouse/test_trading_open.py",
                                    "tests/clearinghouse/test_trading_positions.py",
                                    "tests/clearinghouse/test_trading_errors.py", "tests/clearinghouse/test_funding.py",
                                    "tests/liquidation/test_liquidation.py", "tests/test_module_surface.py"),
    "contracts/clearinghouse/ClearingHouseStorage.sol": (KILLS, "tests/clearinghouse/test_trading_open.py",
                                                         "tests/clearinghouse/test_funding.py",
                                                         "tests/clearinghouse/test_trading_errors.py"),
    "contracts/clearinghouse/ClearingHouseAccrual.sol": (KILLS, "tests/clearinghouse/test_trading_open.py",
                                                         "tests/clearinghouse/test_funding.py",
                                                         "tests/clearinghouse/test_trading_errors.py"),
    "contracts/clearinghouse/ClearingHouseConfigurator.sol": (KILLS, "tests/clearinghouse/test_trading_errors.py",
                                                              "tests/clearinghouse/test_funding.py",
                                                              "tests/sdk/test_config_bounds.py",
                                                              "tests/clearinghouse/test_configurator.py",
                                                              "tests/liquidation/test_liquidation.py"),
    "contracts/clearinghouse/ClearingHouseSettlement.sol": (KILLS, "tests/liquidation/test_liquidation.py",
                                                            "tests/clearinghouse/test_trading_positions.py"),
    "contracts/LiquidationEngine.sol": (KILLS, "tests/liquidation/test_liquidation.py",
                                        "tests/incidents/test_maker_black_thursday.py",
                                        "tests/incidents/test_perp_v1_cascade.py", "tests/incidents/test_euler.py"),
    "contracts/LiquidityPool.sol": (KILLS, "tests/pool/test_pool.py"),
    "contracts/AmmController.sol": (KILLS, "tests/amm/test_amm_controller.py"),
    "contracts/libraries/WadMath.sol": (KILLS, "tests/clearinghouse/test_trading_open.py",
                                        "tests/clearinghouse/test_trading_positions.py", "tests/pool/test_pool.py"),
    "contracts/libraries/VAmmMath.sol": (KILLS, "tests/clearinghouse/test_trading_open.py",
                                         "tests/clearinghouse/test_trading_positions.py",
                                         "tests/amm/test_amm_controller.py"),
    "contracts/libraries/FundingMath.sol": (KILLS, "tests/clearinghouse/test_funding_math.py",
                                            "tests/clearinghouse/test_funding.py"),
    "contracts/libraries/OracleLib.sol": (KILLS, "tests/clearinghouse/test_trading_errors.py",
                                          "tests/clearinghouse/test_trading_open.py"),
    "contracts/periphery/PerpReader.sol": (KILLS, "tests/sdk/test_reader.py"),
}

STATUSES = ("killed", "survived", "timeout", "stillborn", "equivalent", "error")


@dataclass
class Stage:
    name: str
    tests: tuple[str, ...]
    env: dict = field(default_factory=dict)
    timeout: float = 900.0
    deselect: tuple[str, ...] = ()


@dataclass
class Result:
    mutant: Mutant
    status: str
    stage: str = ""  # the stage that decided (compile, bytecode, fast, unit)
    killer: str = ""  # the first failing test
    detail: str = ""
    seconds: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"mutant": self.mutant.to_json(), "status": self.status, "stage": self.stage,
                "killer": self.killer, "detail": self.detail, "seconds": self.seconds}

    @classmethod
    def from_json(cls, d: dict) -> "Result":
        return cls(Mutant.from_json(d["mutant"]), d["status"], d.get("stage", ""), d.get("killer", ""),
                   d.get("detail", ""), d.get("seconds", {}))


@dataclass
class TestRun:
    outcome: str  # passed, failed, timeout, error
    failed: list[str]
    seconds: float
    tail: str


def snapshot(root: Path, dest: Path, ref: str | None = None) -> str:
    """Copy the project's files into `dest`: the working tree (ref None) or a git revision. Returns a
    description of what was copied."""
    dest.mkdir(parents=True, exist_ok=True)
    if ref:
        rev = subprocess.run(["git", "rev-parse", ref], cwd=root, capture_output=True, text=True,
                             check=True).stdout.strip()
        data = subprocess.run(["git", "archive", rev, *SNAPSHOT_PATHS], cwd=root, capture_output=True,
                              check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(dest, filter="data")
        what = f"git {rev[:10]}"
    else:
        ignore = shutil.ignore_patterns(".cache", "__pycache__", ".hypothesis", ".pytest_cache")
        for rel in SNAPSHOT_PATHS:
            src = root / rel
            if src.is_dir():
                shutil.copytree(src, dest / rel, ignore=ignore, symlinks=True)
            elif src.exists():
                shutil.copy2(src, dest / rel)
        head = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=root, capture_output=True,
                              text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *SNAPSHOT_PATHS], cwd=root,
                               capture_output=True, text=True).stdout.strip()
        what = f"working tree at {head}" + (" (with uncommitted changes)" if dirty else "")
    (dest / "node_modules").symlink_to(root / "node_modules")
    return what


class Workspace:
    def __init__(self, snapshot_dir: Path, path: Path, log=print):
        self.path = path
        self.log = log
        if path.exists():
            shutil.rmtree(path)
        shutil.copytree(snapshot_dir, path, symlinks=True)
        self.build = path / ".build" / "__local__.json"
        self.env = dict(os.environ)
        bindir = str(Path(sys.executable).parent)
        self.env.update({
            "PATH": os.pathsep.join([bindir, str(path / "node_modules" / ".bin"), self.env.get("PATH", "")]),
            "SOLCX_BINARY_PATH": str(path / "tools" / "solcx"),
            "MPLBACKEND": "Agg",
            "PYTHONPATH": str(path),  # the snapshot's vperp, not the (possibly changing) checkout's
            "VPERP_BUILD": str(self.build),
            "VPERP_FUZZ_SHRINK": "0",  # a kill needs a failure, not its minimal form
            "PYTHONDONTWRITEBYTECODE": "1",
        })
        for key in ("VPERP_FUZZ", "VPERP_FUZZ_RANDOM", "VPERP_COVERAGE", "VPERP_FAST_REPLAY", "VPERP_FAST_GAS"):
            self.env.pop(key, None)
        self.compiler = Compiler(path)
        self.manifest_text = ""
        self.baseline: dict[str, tuple[str, str]] = {}

    def ape_compile(self) -> float:
        """Ape's own build of the snapshot (once): the manifest every mutant's build is patched into."""
        started = time.perf_counter()
        ape = shutil.which("ape", path=self.env["PATH"]) or "ape"
        proc = subprocess.run([ape, "compile", "-f"], cwd=self.path, env=self.env, capture_output=True, text=True)
        if proc.returncode != 0 or not self.build.exists():
            raise RuntimeError(f"ape compile failed in {self.path}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        self.manifest_text = self.build.read_text()
        manifest = json.loads(self.manifest_text)
        self.baseline = {name: (strip_metadata((ct.get("deploymentBytecode") or {}).get("bytecode") or ""),
                                strip_metadata((ct.get("runtimeBytecode") or {}).get("bytecode") or ""))
                         for name, ct in manifest["contractTypes"].items()}
        return time.perf_counter() - started

    def check_compiler(self, units: list[str]) -> list[str]:
        """Contracts of `units` whose code from `Compiler` differs from Ape's (there should be none)."""
        types = self.compiler.bytecode(units)
        return [n for n, t in types.items() if n in self.baseline
                and (strip_metadata(t["deployment"]), strip_metadata(t["runtime"])) != self.baseline[n]]

    # ------------------------------------------------------------------------ one mutant

    def build_mutant(self, mutant: Mutant, timeout: float = 600) -> tuple[str, dict, str]:
        """("stillborn" | "equivalent" | "built", new contract types, detail)."""
        text = mutant.apply(self.compiler.text(mutant.file))
        units = self.compiler.dependents(mutant.file)
        try:
            types = self.compiler.bytecode(units, {mutant.file: text}, timeout=timeout)
        except CompileError as exc:
            first = next((ln for ln in str(exc).splitlines() if "Error" in ln), str(exc).splitlines()[0])
            return "stillborn", {}, first.strip()
        except subprocess.TimeoutExpired:
            return "stillborn", {}, f"compile timed out after {timeout:.0f} s"
        changed = {n: t for n, t in types.items()
                   if n in self.baseline and (strip_metadata(t["deployment"]), strip_metadata(t["runtime"])) != self.baseline[n]}
        if not changed:
            return "equivalent", {}, "identical bytecode (metadata aside) in " + ", ".join(sorted(types))
        return "built", changed, "changed: " + ", ".join(sorted(changed))

    def install(self, mutant: Mutant, changed: dict) -> None:
        text = mutant.apply(self.compiler.text(mutant.file))
        (self.path / mutant.file).write_text(text, encoding="utf-8")
        manifest = json.loads(self.manifest_text)
        for name, t in changed.items():
            ct = manifest["contractTypes"][name]
            ct["deploymentBytecode"] = {"bytecode": "0x" + t["deployment"]}
            ct["runtimeBytecode"] = {"bytecode": "0x" + t["runtime"]}
        src = manifest.get("sources", {}).get(mutant.file)
        if src is not None:
            src["content"] = _ape_content(text)
            src.pop("checksum", None)
        self.build.write_text(json.dumps(manifest))

    def restore(self, mutant: Mutant | None = None) -> None:
        if mutant is not None:
            (self.path / mutant.file).write_text(self.compiler.text(mutant.file), encoding="utf-8")
        self.build.write_text(self.manifest_text)

    # ------------------------------------------------------------------------ tests

    def pytest(self, stage: Stage, timeout: float | None = None, stop_first: bool = True) -> TestRun:
        junit = Path(tempfile.mkstemp(prefix="junit-", suffix=".xml", dir=self.path)[1])
        cmd = [sys.executable, "-m", "pytest", *stage.tests, *(["-x"] if stop_first else []), "-q",
               "-p", "no:cacheprovider", "-o", "addopts=", "--junitxml", str(junit), "-W", "ignore"]
        for d in stage.deselect:
            cmd += ["--deselect", d]
        env = dict(self.env, **stage.env)
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=self.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout or stage.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the pytest process this call started, and its children
            out, _ = proc.communicate()
            junit.unlink(missing_ok=True)
            return TestRun("timeout", [], time.perf_counter() - started, (out or "")[-2000:])
        seconds = time.perf_counter() - started
        failed = _junit_failures(junit)
        junit.unlink(missing_ok=True)
        if proc.returncode == 0:
            return TestRun("passed", [], seconds, out[-2000:])
        if failed:
            return TestRun("failed", failed, seconds, out[-4000:])
        return TestRun("error", [], seconds, out[-4000:])


def _ape_content(text: str) -> str:
    # ethpm_types stores source text right-stripped with one trailing newline (Ape's `_detect_change`).
    text = text.rstrip()
    return f"{text}\n" if text else ""


def _junit_failures(path: Path) -> list[str]:
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, FileNotFoundError):
        return []
    out = []
    for case in root.iter("testcase"):
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        if bad is None:
            continue
        cls = case.get("classname", "")
        name = case.get("name", "")
        where = cls.replace(".", "/") + ".py" if cls else ""
        message = (bad.get("message") or "").splitlines()[0][:300] if bad.get("message") else ""
        out.append(f"{where}::{name}" + (f" -- {message}" if message else ""))
    return out


def evaluate(ws: Workspace, mutant: Mutant, stages: list[Stage], prepare=None) -> Result:
    """Build `mutant` in `ws` and run `stages` until one fails. `prepare(stage)`, if given, is called before
    each stage with the workspace unmutated (to run that stage's baseline once) and returns the stage to run
    (None: the stage cannot be trusted, the mutant is a tool error)."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    status, changed, detail = ws.build_mutant(mutant)
    seconds["compile"] = round(time.perf_counter() - started, 1)
    if status != "built":
        return Result(mutant, status, "compile" if status == "stillborn" else "bytecode", "", detail, seconds)
    ws.install(mutant, changed)
    try:
        last = None
        for stage in stages:
            if prepare is not None:
                ws.restore(mutant)
                stage = prepare(stage)
                if stage is None:
                    return Result(mutant, "error", "baseline", "", "a test module fails unmutated", seconds)
                ws.install(mutant, changed)
            run = ws.pytest(stage)
            seconds[stage.name] = round(run.seconds, 1)
            last = run
            if run.outcome == "failed":
                return Result(mutant, "killed", stage.name, run.failed[0], detail, seconds)
            if run.outcome == "timeout":
                return Result(mutant, "timeout", stage.name, "", f"{stage.name} over {stage.timeout:.0f} s", seconds)
            if run.outcome == "error":
                return Result(mutant, "error", stage.name, "", run.tail[-1500:], seconds)
        return Result(mutant, "survived", stages[-1].name if stages else "", "", detail, seconds)
    finally:
        ws.restore(mutant)
