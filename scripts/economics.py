"""`ape run economics`: run the simulator's scenarios over several seeds and write docs/economics.md.

    ./run.sh ape run economics                                  # 4 scenarios x seeds 1-5 x 150 steps
    ./run.sh ape run economics --quick --out /tmp/econ          # 2 seeds x 24 steps: a smoke run
    ./run.sh ape run economics --scenarios crash --seeds 1-3 --steps 60
    ./run.sh ape run economics --report-only                    # rewrite economics.md from the last runs
    ./run.sh ape run economics --network ethereum:local:foundry --basis-trader
                                        # docs/economics.md: the shipped markets, the carry agent in every run
    ./run.sh ape run economics --config deployments/config/plain.yaml --out docs/plain \
        --runs sim_out/economics-plain  # another setting: the plain markets (docs/plain/economics.md)

Then the circuit-breaker comparison: each of --breakers-scenarios (crash, squeeze, thin) over
--breakers-seeds (1-3; --quick: the quick seeds) with `--breakers` into RUNS/breakers_on/<scenario>/,
and without it into RUNS/breakers_off/<scenario>/ unless the main runs already have that scenario and seed
(a run is deterministic per seed, so it is the same run); the section "Circuit breakers: on vs off" and
OUT/img/economics_breakers.png come from them. RUNS/report.json records what the report was written from,
so --report-only can write it again without running anything.

For each scenario, `vperp.sim.run_seeds` runs every seed from the same chain snapshot into
RUNS/<scenario>/seed<S>/ (the simulator's CSV, summary and plots, and the scenario's seed table in
RUNS/<scenario>/aggregate.md); then `vperp.economics.write_report` writes OUT/economics.md (the issue 13
measure table with the figures quoted for 4745643 next to the runs', the LP returns, the seed tables, the
price-impact table) and one LP share-price plot per scenario, every seed overlaid, in
OUT/img/economics_<scenario>.png. Bad options are one line (click's error) and nothing runs.
"""
from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

import click
from ape.cli import network_option

import json

from vperp.economics import (
    BREAKER_SCENARIOS,
    SCENARIO_ORDER,
    BreakerRuns,
    ReportContext,
    compute_impact_table,
    write_report,
)
from vperp.sim import SCENARIOS, SimError, parse_seeds, run_seeds, simulator_command

QUICK_SEEDS, QUICK_STEPS = "1-2", 24
DEFAULT_SEEDS, DEFAULT_STEPS = "1-5", 150
DEFAULT_BREAKER_SEEDS = "1-3"  # the on/off comparison: 4 x 3 runs more, the whole command near 35 min on 2 cores


def _seeds(ctx, param, value):
    if value is None:
        return None
    try:
        return parse_seeds(value)
    except SimError as e:
        raise click.BadParameter(str(e).removeprefix("--seeds: ")) from None


def _breaker_scenarios(ctx, param, value):
    if value.strip() == "none":
        return []
    return _scenarios(ctx, param, value)


def _scenarios(ctx, param, value):
    names = [s.strip() for s in value.split(",")]
    unknown = [s for s in names if s not in SCENARIOS]
    if unknown or not all(names):
        raise click.BadParameter(f"{unknown[0] if unknown else value!r} is not a scenario: a comma-separated list of "
                                 f"{', '.join(SCENARIO_ORDER)}")
    if len(set(names)) != len(names):
        raise click.BadParameter(f"{value!r} names a scenario twice")
    return names


def _impact(config_path: str | None, setting: str):
    """The price-impact table of the deployment file, or of the shipped defaults."""
    if config_path is None:
        return compute_impact_table()
    from vperp.config_file import load_config

    return compute_impact_table(load_config(config_path), setting=setting)


def _commit() -> str:
    """The checkout's short commit, and the paths of the contracts and vperp/ with local changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "contracts", "vperp"], capture_output=True,
                               text=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    changed = [line[3:] for line in dirty if line.strip()]
    return head + (f" (with local changes to {', '.join(changed)})" if changed else "")


@click.command(cls=simulator_command())
@network_option(default="ethereum:local:foundry")
@click.option("--seeds", default=None, callback=_seeds,
              help=f"seeds, a range or a list (1-5, 1,3,7) [default: {DEFAULT_SEEDS}; --quick: {QUICK_SEEDS}]")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help=f"steps per run, 5 minutes each [default: {DEFAULT_STEPS}; --quick: {QUICK_STEPS}]")
@click.option("--scenarios", default=",".join(SCENARIO_ORDER), show_default=True, callback=_scenarios,
              help="comma-separated scenarios")
@click.option("--out", "out_dir", default="docs", show_default=True,
              help="folder for economics.md (plots in OUT/img/)")
@click.option("--runs", "runs_dir", default="sim_out/economics", show_default=True,
              help="folder for the runs' outputs (RUNS/<scenario>/seed<S>/)")
@click.option("--quick", is_flag=True, default=False,
              help=f"a smoke run: {QUICK_SEEDS.replace('-', ' and ')} seeds, {QUICK_STEPS} steps (unless given)")
@click.option("--breakers-scenarios", default=",".join(BREAKER_SCENARIOS), show_default=True,
              callback=_breaker_scenarios, help="scenarios run with the circuit breakers on and off (none: skip)")
@click.option("--breakers-seeds", default=None, callback=_seeds,
              help=f"seeds of the on/off comparison [default: {DEFAULT_BREAKER_SEEDS}; --quick: {QUICK_SEEDS}]")
@click.option("--run-plots/--no-run-plots", default=True, show_default=True,
              help="each run's own PNG plots in RUNS/ (the document's plots are drawn from the CSVs either way)")
@click.option("--config", "config_path", default=None, type=click.Path(exists=True, dir_okay=False),
              help="deployment YAML to run instead of the shipped defaults (collateral and oracles mock); the report "
                   "names it, and its price-impact rows are that deployment's")
@click.option("--basis-trader", is_flag=True, default=False,
              help="add the simulator's funding-carry agent to every run (BasisTrader; off by default)")
@click.option("--report-only", is_flag=True, default=False,
              help="run nothing: write economics.md again from the runs RUNS/report.json names")
def cli(network, seeds, steps, scenarios, out_dir, runs_dir, quick, breakers_scenarios, breakers_seeds, run_plots,
        config_path, basis_trader, report_only):
    """Run the scenarios over the seeds and write economics.md (docs/economics.md by default)."""
    from ape import chain
    from ape.logging import logger

    logger.set_level("WARNING")
    record = Path(runs_dir) / "report.json"
    if report_only:
        if not record.is_file():
            raise click.ClickException(f"{record} does not exist: run the command without --report-only first")
        r = json.loads(record.read_text())
        br = r["breakers"] and BreakerRuns(off={k: [Path(p) for p in v] for k, v in r["breakers"]["off"].items()},
                                           on={k: [Path(p) for p in v] for k, v in r["breakers"]["on"].items()},
                                           seeds=r["breakers"]["seeds"], steps=r["breakers"]["steps"])
        ctx = ReportContext(**r["context"])
        path = write_report(out_dir, runs_dir, r["scenarios"], ctx, _impact(r.get("config"), r.get("setting", "shipped")),
                            breakers=br or None)
        click.echo(f"wrote {path} from the runs in {runs_dir}")
        return
    seeds = seeds or parse_seeds(QUICK_SEEDS if quick else DEFAULT_SEEDS)
    steps = steps or (QUICK_STEPS if quick else DEFAULT_STEPS)
    started = time.perf_counter()
    commit = _commit()  # what the runs are made from: read before they start
    setting = config_path or "shipped"
    impact = _impact(config_path, setting)  # pure: a model error (or a bad file) shows before any run
    # What every run deploys, and with which agents (the breaker comparison's runs too).
    kwargs = {"config": config_path, "basis_trader": basis_trader}
    for sc in scenarios:
        click.echo(f"{sc}: seeds {', '.join(map(str, seeds))}, {steps} steps")

        def echo(summary):
            click.echo(f"  seed {summary.seed}: {summary.wall_seconds:.0f} s; LP share price "
                       f"{summary.lp_share_price_start:.6f} -> {summary.lp_share_price_end:.6f}; bad debt "
                       f"{summary.bad_debt:,.0f} (pool {summary.bad_debt_from_pool:,.0f})")

        try:
            run_seeds(sc, steps, seeds, Path(runs_dir) / sc, on_summary=echo, progress=True, plots=run_plots, **kwargs)
        except SimError as e:
            raise click.ClickException(str(e)) from None
    br = None
    if breakers_scenarios:
        bseeds = breakers_seeds or parse_seeds(QUICK_SEEDS if quick else DEFAULT_BREAKER_SEEDS)
        off: dict[str, list[Path]] = {}
        on: dict[str, list[Path]] = {}
        for sc in breakers_scenarios:
            def echo_b(summary):
                b = summary.breakers
                click.echo(f"  seed {summary.seed}: {summary.wall_seconds:.0f} s; "
                           + (f"trips {b['trips']}, refused {sum(b['refused'].values())}; " if b else "")
                           + f"bad debt {summary.bad_debt:,.0f}; trader PnL {summary.trader_pnl or {}}")

            try:
                if sc in scenarios and set(bseeds) <= set(seeds):
                    off[sc] = [Path(runs_dir) / sc / f"seed{s}" for s in bseeds]
                else:
                    click.echo(f"{sc}, breakers off: seeds {', '.join(map(str, bseeds))}, {steps} steps")
                    run_seeds(sc, steps, bseeds, Path(runs_dir) / "breakers_off" / sc, on_summary=echo_b, progress=True,
                              plots=run_plots, **kwargs)
                    off[sc] = [Path(runs_dir) / "breakers_off" / sc / f"seed{s}" for s in bseeds]
                click.echo(f"{sc}, breakers on: seeds {', '.join(map(str, bseeds))}, {steps} steps")
                run_seeds(sc, steps, bseeds, Path(runs_dir) / "breakers_on" / sc, on_summary=echo_b, progress=True,
                          breakers=True, plots=run_plots, **kwargs)
                on[sc] = [Path(runs_dir) / "breakers_on" / sc / f"seed{s}" for s in bseeds]
            except SimError as e:
                raise click.ClickException(str(e)) from None
        br = BreakerRuns(off=off, on=on, seeds=bseeds, steps=steps)
    provider = chain.provider
    ctx = ReportContext(
        command=" ".join(["./run.sh ape run economics"] + [shlex.quote(a) for a in
                                                              sys.argv[sys.argv.index("economics") + 1:]]
                         if "economics" in sys.argv else ["./run.sh ape run economics"]),
        commit=commit, network=f"{provider.network.ecosystem.name}:{provider.network.name}:{provider.name}",
        seeds=seeds, steps=steps, wall_seconds=time.perf_counter() - started,
        setting=(f"the deployment in `{config_path}`" if config_path else "the shipped deployment defaults")
        + (", with the simulator's funding-carry agent (`--basis-trader`)" if basis_trader else ""))
    record.write_text(json.dumps({
        "scenarios": scenarios, "context": {**ctx.__dict__, "seeds": list(ctx.seeds)},
        "config": config_path, "setting": setting,
        "breakers": br and {"off": {k: [str(p) for p in v] for k, v in br.off.items()},
                            "on": {k: [str(p) for p in v] for k, v in br.on.items()},
                            "seeds": list(br.seeds), "steps": br.steps}}, indent=2) + "\n")
    path = write_report(out_dir, runs_dir, scenarios, ctx, impact, breakers=br)
    click.echo(f"wrote {path} and {len(scenarios)} plots in {Path(out_dir) / 'img'} "
               f"({ctx.wall_seconds / 60:.1f} min)")
