"""Command line: `python -m devtools.mutation [options]` (also `./run.sh ape run mutate [options]`)."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import shlex
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import report
from .compile import Compiler
from .operators import OPERATORS, Mutant, generate
from .runner import FAST_TESTS, QUICK_ENV, UNIT_TESTS, Result, Stage, Workspace, evaluate, snapshot

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ("contracts/*.sol", "contracts/libraries/*.sol", "contracts/periphery/*.sol")  # not mocks, interfaces


def production_files(compiler: Compiler) -> list[str]:
    def interface(u: str) -> bool:  # `I` + a capital: IPerpReader.sol next to PerpReader.sol
        name = u.rsplit("/", 1)[-1]
        return len(name) > 1 and name[0] == "I" and name[1].isupper()

    return [u for u in compiler.project_files()
            if (u.count("/") == 1 or u.startswith(("contracts/libraries/", "contracts/periphery/"))) and not interface(u)]


def all_mutants(compiler: Compiler, files: list[str], operators) -> list[Mutant]:
    asts = compiler.asts(files)
    out: list[Mutant] = []
    for f in files:
        out += generate(f, compiler.text(f), asts[f], operators)
    return out


def sample(mutants: list[Mutant], n: int | None, seed: int) -> list[Mutant]:
    """`n` mutants stratified by (file, operator): every stratum gets one while `n` allows, the rest is
    shared in proportion to the strata's sizes (largest remainders); within a stratum, at random. The
    result is in a random order, so a run cut short is still a spread sample."""
    rng = random.Random(seed)
    if n is None or n >= len(mutants):
        chosen = list(mutants)
        rng.shuffle(chosen)
        return chosen
    strata: dict[tuple, list[Mutant]] = defaultdict(list)
    for m in mutants:
        strata[(m.file, m.operator)].append(m)
    keys = sorted(strata)
    for k in keys:
        rng.shuffle(strata[k])
    quota = Counter()
    if n >= len(keys):
        for k in keys:
            quota[k] = 1
    else:
        for k in rng.sample(keys, n):
            quota[k] = 1
    left = n - sum(quota.values())
    if left > 0:
        room = {k: len(strata[k]) - quota[k] for k in keys}
        total = sum(room.values())
        shares = {k: left * room[k] / total for k in keys}
        for k in keys:
            quota[k] += int(shares[k])
        rest = n - sum(quota.values())
        for k in sorted(keys, key=lambda k: (shares[k] - int(shares[k]), rng.random()), reverse=True)[:rest]:
            quota[k] += 1
    chosen = [m for k in keys for m in strata[k][:quota[k]]]
    rng.shuffle(chosen)
    return chosen


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m devtools.mutation", description=(
        "Mutation testing of the production contracts: one mutant at a time, built in a temporary copy of "
        "the project, against the fast tier (quick profile) and then the relevant Ape unit tests."))
    p.add_argument("--sample", type=int, default=None, help="run N mutants, stratified by file and operator")
    p.add_argument("--seed", type=int, default=1, help="sampling seed (default 1)")
    p.add_argument("--file", action="append", default=[], help="only this source (repeatable; a path or a name "
                   "such as Vault)")
    p.add_argument("--operators", default=",".join(OPERATORS), help="comma-separated operators (default all: "
                   + ", ".join(OPERATORS) + ")")
    p.add_argument("--ids", default="", help="comma-separated mutant ids to run (from a report), instead of sampling")
    p.add_argument("--jobs", type=int, default=1, help="mutants in parallel, one workspace each (default 1)")
    p.add_argument("--ref", default=None, help="test a git revision (git archive) instead of the working tree")
    p.add_argument("--profile", choices=("quick", "ci"), default="quick",
                   help="fast-tier profile: quick (a tenth of CI's examples, default) or ci")
    p.add_argument("--no-unit", action="store_true", help="skip the second stage (the relevant Ape unit tests)")
    p.add_argument("--budget", type=float, default=None, help="start no new mutant after this many minutes")
    p.add_argument("--results", default=None, help="JSON-lines results file; mutants already in it are skipped "
                   "(resume). Default: <out-dir>/results.jsonl")
    p.add_argument("--out-dir", default=str(ROOT / "out" / "mutation"), help="where results and the report go")
    p.add_argument("--report", default=None, help="also write the report into this markdown file, between its "
                   "markers (e.g. docs/mutation.md)")
    p.add_argument("--report-only", action="store_true", help="write the report from the results file, run nothing")
    p.add_argument("--list", action="store_true", help="list the (sampled) mutants and exit")
    p.add_argument("--allow-baseline-failures", action="store_true",
                   help="deselect tests that fail on the unmutated build instead of stopping")
    p.add_argument("--baseline-only", action="store_true", help="run the stages on the unmutated build and exit")
    p.add_argument("--keep", action="store_true", help="keep the temporary workspaces")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = Path(args.results) if args.results else out_dir / "results.jsonl"
    operators = tuple(o.strip() for o in args.operators.split(",") if o.strip())
    unknown = set(operators) - set(OPERATORS)
    if unknown:
        print(f"unknown operators: {sorted(unknown)}", file=sys.stderr)
        return 2

    tmp = Path(tempfile.mkdtemp(prefix="vperp-mutation-"))
    log_lock = threading.Lock()

    def log(*parts):
        with log_lock:
            print(*parts, flush=True)

    try:
        snap = tmp / "snapshot"
        what = snapshot(ROOT, snap, args.ref)
        compiler = Compiler(snap)
        files = production_files(compiler)
        if args.file:
            files = [f for f in files if f in args.file or Path(f).stem in args.file]
        mutants = all_mutants(compiler, files, operators)
        generated_by_op = Counter(m.operator for m in mutants)
        generated_by_contract = Counter(m.contract for m in mutants)
        if args.ids:
            ids = {i.strip() for i in args.ids.split(",") if i.strip()}
            chosen = [m for m in mutants if m.id in ids]
            selection = f"ids {', '.join(sorted(ids))}"
        else:
            chosen = sample(mutants, args.sample, args.seed)
            selection = (f"a sample stratified by file and operator, seed {args.seed}" if args.sample
                         else "all of them")
        sources = {f: compiler.text(f) for f in files}
        log(f"snapshot: {what}; {len(mutants)} mutants generated over {len(files)} files; {len(chosen)} selected")
        if args.list:
            for m in chosen:
                before, after = m.diff(sources[m.file])
                log(f"{m.id} {m.file}:{m.line} {m.operator:13} {m.function}: {m.description}")
            return 0

        previous = _load(results_path)
        if args.report_only:
            done = [previous[m.id] for m in chosen if m.id in previous]
            meta = json.loads((out_dir / "meta.json").read_text()) if (out_dir / "meta.json").exists() else {}
            _write_report(done or list(previous.values()), meta, sources, out_dir, args.report)
            return 0
        todo = [m for m in chosen if m.id not in previous]
        log(f"{len(chosen) - len(todo)} already in {results_path}; {len(todo)} to run")

        fast_env = dict(QUICK_ENV) if args.profile == "quick" else {}
        units = sorted({t for f in {m.file for m in chosen} for t in UNIT_TESTS.get(f, ())})

        # Workspaces: Ape's build of the snapshot, once, then copied.
        started = time.perf_counter()
        ws0 = Workspace(snap, tmp / "ws0", log)
        log(f"ape compile of the snapshot: {ws0.ape_compile():.0f} s")
        mismatched = ws0.check_compiler(sorted({u for m in chosen for u in compiler.dependents(m.file)}))
        if mismatched:
            log(f"WARNING: the standard-JSON build differs from Ape's for {mismatched}")

        # Baseline: every stage on the unmutated build must pass (its time sets the timeouts).
        base_fast = Stage("fast", FAST_TESTS, fast_env)
        run = ws0.pytest(base_fast, timeout=3600, stop_first=False)
        log(f"baseline fast stage: {run.outcome} in {run.seconds:.0f} s")
        deselect_fast = _baseline_failures(run, "fast", args, log)
        if deselect_fast is None:
            return 1
        fast_timeout = max(3 * run.seconds, run.seconds + 180)
        # The unit modules' baselines run lazily, on the unmutated workspace, the first time a mutant that
        # survived the fast tier needs them (`evaluate`'s `prepare`): modules no mutant reaches cost nothing.
        unit_times: dict[str, float] = {}
        deselect_unit: list[str] = []
        baseline_lock = threading.Lock()
        broken: list[str] = []

        def unit_baseline(ws: Workspace, modules) -> bool:
            with baseline_lock:
                for module in modules:
                    if module in unit_times:
                        continue
                    r = ws.pytest(Stage("unit", (module,)), timeout=3600, stop_first=False)
                    unit_times[module] = r.seconds
                    log(f"baseline {module}: {r.outcome} in {r.seconds:.0f} s")
                    bad = _baseline_failures(r, module, args, log)
                    if bad is None:
                        broken.append(module)
                    else:
                        deselect_unit.extend(bad)
                return not broken

        if args.baseline_only:
            return 0 if args.no_unit or unit_baseline(ws0, units) else 1

        def stages_for(m: Mutant) -> list[Stage]:
            out = [Stage("fast", FAST_TESTS, fast_env, fast_timeout, tuple(deselect_fast))]
            mods = UNIT_TESTS.get(m.file, ()) if not args.no_unit else ()
            if mods:
                out.append(Stage("unit", tuple(mods)))
            return out

        def prepare(ws: Workspace, stage: Stage) -> Stage | None:
            """Called with the workspace unmutated before each stage: the unit stage's baseline, timeout and
            deselected tests (None: a module fails unmutated, so no kill by it would mean anything)."""
            if stage.name != "unit":
                return stage
            if not unit_baseline(ws, stage.tests):
                return None
            base = sum(unit_times[x] for x in stage.tests)
            return Stage(stage.name, stage.tests, stage.env, max(3 * base, base + 180), tuple(deselect_unit))

        stage_text = (f"fast tier, {args.profile} profile ({', '.join(f'{k}={v}' for k, v in fast_env.items()) or 'CI'}; "
                      f"VPERP_FUZZ_SHRINK=0): " + ", ".join(f"`{t}`" for t in FAST_TESTS)
                      + "; then, for a mutant that survives it, "
                      + ("nothing else (--no-unit)" if args.no_unit else
                         "the Ape unit tests of its file on the embedded chain (" +
                         "; ".join(f"{Path(f).stem}: " + ", ".join(Path(t).stem for t in mods)
                                   for f, mods in UNIT_TESTS.items()) + ")")
                      + "; pytest stops at the first failure.")
        meta = {"date": dt.date.today().isoformat(), "snapshot": what, "generated": len(mutants),
                "generated_by_operator": generated_by_op, "generated_by_contract": generated_by_contract,
                "selection": selection, "jobs": args.jobs, "stages": stage_text,
                "command": "python -m devtools.mutation " + " ".join(shlex.quote(a) for a in
                                                                 (sys.argv[1:] if argv is None else argv))}
        workspaces = [ws0] + [Workspace(ws0.path, tmp / f"ws{i}", log) for i in range(1, args.jobs)]
        for ws in workspaces[1:]:
            ws.manifest_text, ws.baseline = ws0.manifest_text, ws0.baseline
        deadline = time.perf_counter() + args.budget * 60 if args.budget else None
        queue = list(todo)
        lock = threading.Lock()
        done: list[Result] = []

        def worker(ws: Workspace):
            while True:
                with lock:
                    if not queue or (deadline and time.perf_counter() > deadline):
                        return
                    m = queue.pop(0)
                    index = len(todo) - len(queue)
                t0 = time.perf_counter()
                try:
                    r = evaluate(ws, m, stages_for(m), lambda st: prepare(ws, st))
                except Exception as exc:  # a tool failure on one mutant must not lose the others
                    ws.restore(m)
                    r = Result(m, "error", "tool", "", f"{type(exc).__name__}: {exc}")
                r.seconds["total"] = round(time.perf_counter() - t0, 1)
                with lock:
                    done.append(r)
                    with results_path.open("a") as fh:
                        fh.write(json.dumps(r.to_json()) + "\n")
                log(f"[{index}/{len(todo)}] {m.id} {m.file}:{m.line} {m.operator}: {r.status}"
                    f"{' by ' + r.killer[:110] if r.killer else ''} ({r.seconds})")

        with ThreadPoolExecutor(max_workers=len(workspaces)) as pool:
            list(pool.map(worker, workspaces))
        meta["wall"] = round(time.perf_counter() - started) + sum(
            previous[m.id].seconds.get("total", 0) for m in chosen if m.id in previous)
        results = [previous[m.id] for m in chosen if m.id in previous] + done
        if len(results) < len(chosen):
            meta["selection"] += f"; {len(chosen) - len(results)} of the selection not run (budget)"
        (out_dir / "meta.json").write_text(json.dumps(meta, indent=1))
        _write_report(results, meta, sources, out_dir, args.report)
        counts = Counter(r.status for r in results)
        log(f"done: {dict(counts)}; score {report.score(counts)}; report {out_dir / 'report.md'}")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"workspaces kept in {tmp}")


def _baseline_failures(run, name, args, log):
    """Tests to deselect (empty when the baseline passed); None to stop."""
    if run.outcome == "passed":
        return []
    if run.outcome == "failed" and args.allow_baseline_failures:
        ids = [f.split(" -- ")[0] for f in run.failed]
        log(f"baseline {name}: deselecting {ids} (fails unmutated)")
        return ids
    log(f"baseline {name} does not pass unmutated ({run.outcome}): {run.failed or ''}\n{run.tail[-3000:]}\n"
        "fix the suite (or pass --allow-baseline-failures, or --ref a revision that passes)")
    return None


def _load(path: Path) -> dict[str, Result]:
    out = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                r = Result.from_json(json.loads(line))
                out[r.mutant.id] = r
    return out


def _write_report(results, meta, sources, out_dir: Path, extra: str | None) -> None:
    text = report.render(results, meta, sources)
    report.write(out_dir / "report.md", text)
    if extra:
        report.write(Path(extra), text)
