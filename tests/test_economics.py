"""The economics tooling: the simulator's oracle agent and basis trader (vperp/sim.py), the price-impact
table and the report (vperp/economics.py), and `ape run economics` (scripts/economics.py).

Everything but the last test is pure (no chain): the oracle's posting rule and its staleness check, the
basis trader's decisions on synthetic views, the price-impact figures against the reference model's own
trade and against closed forms for the comparison venues, the measure table from synthetic summaries,
the plots, and every new command-line option's bad input (one click error, nothing runs). The last test
runs `ape run economics --quick` end to end on Anvil into a temporary folder and checks the document's
sections and that its "now" column is made of the runs' `summary.json` figures.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from vperp import economics as econ
from vperp.config import default_config
from vperp.sim import (
    WAD,
    Arbitrageur,
    BasisTrader,
    OraclePolicy,
    SimError,
    View,
    command_line,
    parse_seeds,
)

ROOT = Path(__file__).resolve().parent.parent
DT = 300


# ---------------------------------------------------------------------------- the oracle agent


def test_oracle_defaults_post_every_step():
    assert OraclePolicy(0, 0) == OraclePolicy()  # the command line's 0s are the defaults
    p = OraclePolicy()
    assert p.every_step and p.longest_gap(DT) == DT
    assert all(p.should_post(100, 100, t, t - 1) for t in range(1, 50))  # even an unchanged answer


def test_oracle_posts_on_a_move_past_the_threshold_or_the_heartbeat():
    p = OraclePolicy(deviation_bps=50, heartbeat=3600)
    last, at = 3000_00000000, 1_000
    assert p.should_post(last, None, at, None)  # never posted in the run: post
    assert not p.should_post(last + last // 200, last, at + 300, at)  # exactly 0.5 %: not more than the threshold
    assert p.should_post(last + last // 200 + 1, last, at + 300, at)  # one unit past it
    assert p.should_post(last - last // 200 - 1, last, at + 300, at)  # down as well as up
    assert not p.should_post(last + 1, last, at + 3599, at)
    assert p.should_post(last, last, at + 3600, at)  # heartbeat elapsed, unchanged answer
    hb_only = OraclePolicy(heartbeat=900)
    assert not hb_only.should_post(2 * last, last, at + 600, at)  # no deviation trigger
    assert hb_only.should_post(last, last, at + 900, at)


def test_oracle_settings_that_would_let_a_feed_go_stale_are_refused():
    feeds = {m.symbol: m.heartbeat for m in default_config().markets}
    assert set(feeds.values()) == {86_400}  # the shipped mock feeds: stale after 24 h
    OraclePolicy(50, 86_400).check(DT, feeds)  # a post at most every 86,400 s: never older than the limit
    OraclePolicy(50, 86_399).check(DT, feeds)  # rounded up to whole steps: 86,400
    assert OraclePolicy(0, 86_401).longest_gap(DT) == 86_700
    with pytest.raises(SimError, match=r"may go 86700 s without an update.*ETH: 86400 s.*StaleOracle"):
        OraclePolicy(0, 86_401).check(DT, feeds)
    with pytest.raises(SimError, match="needs --oracle-heartbeat"):
        OraclePolicy(50, 0).check(DT, feeds)
    with pytest.raises(SimError, match=">= 0"):
        OraclePolicy(-1, 0).check(DT, feeds)
    with pytest.raises(SimError, match="BTC: 600 s"):  # the shortest limit of the deployment decides
        OraclePolicy(10, 900).check(DT, {"ETH": 86_400, "BTC": 600})


# ---------------------------------------------------------------------------- the basis trader


def view(rate: float, size: float = 0.0, agent: str = "basis", price: float = 3000.0, spot: float | None = None,
         equity: float = 500_000) -> View:
    """One market (ETH) seen by `agent`: the applied funding `rate` per hour, its `size` in ETH."""
    x = 10_000 * WAD
    spot = price if spot is None else spot
    return View(step=10, now=0, index={"ETH": int(price * WAD)}, spot={"ETH": int(spot * WAD)},
                reserves={"ETH": (x, int(x * spot))}, twaps={"ETH": (int(spot * WAD), int(price * WAD))},
                history={"ETH": [price] * 20}, size={(agent, "ETH"): int(size * WAD)}, value={agent: int(equity * WAD)},
                free={agent: int(equity * WAD)}, min_size={"ETH": 10**16}, imr={"ETH": 10**17},
                funding={"ETH": int(rate * WAD)})


def basis() -> BasisTrader:
    return BasisTrader("basis", None, 500_000, max_leverage=2)


def test_basis_trader_stays_out_while_funding_pays_little():
    b = basis()
    assert b.side(0.0, 0.0) == 0 and b.side(0.00002, 0.0) == 0 and b.side(-0.00002, 0.0) == 0
    assert b.orders(view(0.00002), None) == []


def test_basis_trader_takes_the_side_funding_pays():
    b = basis()
    (short,) = b.orders(view(0.00005), None)  # longs pay: it sells
    (long_,) = b.orders(view(-0.00005), None)  # shorts pay: it buys
    assert short.base < 0 < long_.base and short.symbol == "ETH"
    # Toward 2x its equity, at most 200,000 of notional a step: 66.66 ETH at 3,000.
    assert abs(short.base) == pytest.approx(200_000 / 3000 * WAD, rel=1e-3)


def test_basis_trader_holds_while_paid_and_unwinds_when_funding_stops_paying():
    b = basis()
    target = 2 * 500_000 / 3000  # 333.3 ETH short at full size
    assert b.side(0.00002, -target) == -1  # below the entry rate but above the exit rate: stays
    assert b.orders(view(0.00002, size=-target), None) == []  # at its target: nothing to do
    (close,) = b.orders(view(0.000005, size=-10), None)  # the rate fell under the exit rate: buys back all
    assert close.base == 10 * WAD
    (flip,) = b.orders(view(-0.00005, size=-10), None)  # the rate turned: it closes and goes long
    assert flip.base > 10 * WAD
    assert b.side(-0.000005, -10) == 0  # a small rate against it: out, not the other side


def test_the_arbitrageur_does_not_react_to_funding():
    """Why the basis trader exists: the arbitrageur trades the vAMM toward the index whatever funding pays."""
    arb = Arbitrageur("arb", None, 2_000_000, max_leverage=5)
    for spot in (3000.0, 3030.0):
        orders = [arb.orders(view(rate, agent="arb", spot=spot, equity=2_000_000), None) for rate in (-0.001, 0.0, 0.001)]
        assert orders[0] == orders[1] == orders[2]
    assert arb.orders(view(0.001, agent="arb", spot=3000.0, equity=2_000_000), None) == []


# ---------------------------------------------------------------------------- price impact


@pytest.fixture(scope="module")
def table():
    return econ.compute_impact_table()


def test_vperp_rows_are_the_models_own_trades(table):
    """Each figure is the model's trade: the quote and fee `Model.quote` and the fee rate give, per notional at
    the index, and the post-trade price the quote view reports (whatever curve the model has)."""
    model = econ.deployed_model()
    for market in ("ETH", "BTC"):
        mid = next(i for i, m in model.markets.items() if m.symbol == market)
        index = model.index_price(mid, econ.T0 + 12)
        fee_rate, band = model.markets[mid].taker_fee, model.markets[mid].max_spread
        for n in econ.NOTIONALS:
            base = econ.base_for(model, market, n)
            for side in (1, -1):
                row = econ.find(table.vperp, market, side, n)
                quote, price_after = model.quote(mid, side * base)
                if abs(price_after - index) > index * band // WAD:  # the band's rule, from a price at the index
                    assert row.reverts == "reverts on the band" and row.cost_bps is None
                    continue
                fee = -(-abs(quote) * fee_rate // WAD)
                at_index = base * index / WAD  # USD in WAD
                paid = -quote if side > 0 else quote
                assert row.reverts is None
                assert row.impact_bps == pytest.approx(10_000 * side * (paid - at_index) / at_index, rel=1e-12)
                assert row.fee_bps == pytest.approx(10_000 * fee / at_index, rel=1e-12)
                assert row.move_pct == pytest.approx(100 * (price_after - index) / index, rel=1e-12)


def test_the_largest_order_inside_the_band_is_the_last_lot_that_does_not_revert(table):
    model = econ.deployed_model()
    for row in table.vperp_largest:
        lot = next(m.min_position_size for m in model.markets.values() if m.symbol == row.market)
        base = econ.base_for(model, row.market, row.notional) + 1  # the notional was rounded down
        lots = round(base / lot)
        assert econ.model_trade(model, row.market, row.side * lots * lot)[1] is None
        assert econ.model_trade(model, row.market, row.side * (lots + 1) * lot)[1] == "PriceBandExceeded"
        assert abs(row.move_pct) <= 100 * default_config().markets[0].max_spread


def test_gmx_rows_follow_the_published_formula(table):
    g = econ.GmxV2Impact()
    for n in econ.NOTIONALS:
        row = econ.find(table.gmx, "ETH", 1, n)
        assert row.impact_bps == pytest.approx(10_000 * min(12e-11 * n, 0.005))  # factor x n^2 / n, balanced start
        assert row.cost_bps == pytest.approx(row.impact_bps + 7.0)
    # A trade that narrows an existing imbalance earns a rebate (a negative impact cost).
    assert g.impact(1_000_000, -1, long_oi=5_000_000).impact_bps < 0
    # The cap: past 0.5 % of the size the negative impact stops growing.
    assert g.impact(100_000_000, 1).impact_bps == pytest.approx(50.0)


def test_perp_v1_rows_are_constant_product_with_its_fluctuation_limit(table):
    p = econ.PerpV1Amm()
    y = p.quote_reserve
    for n in econ.NOTIONALS:  # each moves the price more than 1.2 %: (y / (y - n))^2 - 1 > 0.012 already at 100k
        assert (y / (y - min(n, y - 1))) ** 2 - 1 > p.fluctuation
        assert econ.find(table.perp_v1, "ETH", 1, n).reverts == "reverts on the fluctuation limit"
    buy, sell = table.perp_v1_largest
    assert buy.notional == pytest.approx(y * (1 - 1 / math.sqrt(1.012)), rel=1e-6)
    assert buy.impact_bps == pytest.approx(10_000 * buy.notional / (y - buy.notional), rel=1e-6)  # x / (x - b) - 1
    assert sell.impact_bps == pytest.approx(10_000 * sell.notional / (y + sell.notional), rel=1e-6)
    assert buy.move_pct == pytest.approx(1.2, abs=1e-4) and sell.move_pct == pytest.approx(-1.2, abs=1e-4)


def test_impact_markdown_has_every_venue_size_and_side(table):
    md = econ.impact_markdown(table)
    for label in ("| vPerp (shipped) | ETH | 100k |", "| vPerp (shipped) | BTC | 10M |",
                  "| vPerp (plain.yaml) | ETH | 1M |", "| vPerp (plain.yaml) | BTC | 10M |",
                  "| GMX v2 | ETH | 1M |", "| Perp v1 | ETH | 10M |", "largest inside the band",
                  "largest inside the fluctuation limit"):
        assert label in md
    one_m = econ.find(table.vperp, "ETH", 1, 1_000_000)
    assert f"**{one_m.cost_bps:.1f}**" in md


def test_the_shipped_curve_meets_the_goal_for_the_same_capital(table):
    """Issue 13's price goal on the shipped markets, same 10M pool: a 1M order at most 50 bps all in and a 10M order
    executing, where the plain curve reverts on the band; the depth is 10x the plain one and the amplification
    within its bound."""
    from vperp.config import max_amplification

    for side in (1, -1):
        assert econ.find(table.vperp, "ETH", side, 1_000_000).cost_bps <= 50
        assert not econ.find(table.vperp, "ETH", side, 10_000_000).reverts
        assert econ.find(table.plain, "ETH", side, 10_000_000).reverts
    for m in default_config().markets:
        assert wad_of(m.depth_amplification) <= max_amplification(wad_of(m.depth_range))


def wad_of(x) -> int:
    from vperp.config import wad

    return wad(x)


def test_impact_plot_has_both_curves(tmp_path):
    manifest: dict = {}
    out = econ.plot_impact(tmp_path / "impact.png", manifest=manifest)
    assert out.exists() and out.stat().st_size > 10_000
    labels = manifest["impact.png"]["lines"]
    assert any("shipped" in lab for lab in labels) and any("plain.yaml" in lab for lab in labels)


def test_depth_multiple_is_where_the_cost_crosses_the_target():
    k = econ.depth_multiple_for("ETH", 1_000_000, 50)
    assert 1 < k < math.inf
    assert econ.depth_multiple_for("ETH", 1_000_000, 5) == math.inf  # under the 10 bps fee: no depth does it


# ---------------------------------------------------------------------------- the report (synthetic runs)


def fake_summary(seed: int, **kw) -> dict:
    s = dict(seed=seed, steps=24, step_seconds=300, kicks=2, takes=2, redos=0, backstops=0, bad_debt=80_000.0,
             bad_debt_from_insurance=80_000.0, bad_debt_from_pool=0.0, insurance_min=20_000.0,
             lp_share_price_start=1.0, lp_share_price_end=1.001, lp_share_price_drawdown=0.002)
    s.update(kw)
    return s


def write_fake_runs(root: Path, per_scenario: dict[str, list[dict]]) -> None:
    for sc, summaries in per_scenario.items():
        (root / sc).mkdir(parents=True)
        for s in summaries:
            d = root / sc / f"seed{s['seed']}"
            d.mkdir()
            (d / "summary.json").write_text(json.dumps(s))
            rows = ["step,time_s,pool_share_price"] + [f"{k},{300 * k},{1 + 0.0001 * k * s['seed']}" for k in range(1, 25)]
            (d / "steps.csv").write_text("\n".join(rows) + "\n")
        (root / sc / "aggregate.json").write_text(json.dumps({"seeds": [s["seed"] for s in summaries]}))
        (root / sc / "aggregate.md").write_text(f"{sc}, 24 steps\n\n| seed | kicks |\n|---|---|\n| 1 | 2 |\n")


def test_measures_come_from_the_summaries(tmp_path, table):
    write_fake_runs(tmp_path, {
        "crash": [fake_summary(1, bad_debt_from_pool=1_234.0, takes=0, backstops=2, lp_share_price_drawdown=0.031),
                  fake_summary(2)],
        "squeeze": [fake_summary(1, lp_share_price_end=0.95), fake_summary(2, lp_share_price_end=1.002)],
    })
    runs = econ.load_runs(tmp_path, ["crash", "squeeze"])
    now = econ.measures_now(runs, table)
    assert now["crash_pool_bad_debt"].startswith("0 to 1,234 USD over 2 seeds (the pool paid in 1 of 2)")
    assert "insurance fund lowest 20,000 USD" in now["crash_pool_bad_debt"]
    assert now["crash_share_drawdown"] == "0.20 % to 3.10 % over 2 seeds"
    assert now["crash_takes"] == "2 takes, 2 backstops (4 kicks, 0 redos) over 2 seeds; seeds with kicks and no take: 1"
    assert now["lp_return_squeeze"] == "-5.000 % to +0.200 % over 2 seeds (mean -2.400 %; below 0 in 1)"
    assert now["lp_return_trend"] == now["lp_return_calm"] == "not run"
    assert now["cost_1m"].startswith(f"{econ.find(table.vperp, 'ETH', 1, 1_000_000).cost_bps:.1f} bps (buy)")
    md = econ.measure_markdown(now)
    assert md.count("\n") == 2 + len(econ.MEASURES)
    assert "| crash: LP share-price drawdown (peak to trough) | 24-25 %" in md


def test_report_has_its_sections_and_plots(tmp_path, table):
    runs = tmp_path / "runs"
    write_fake_runs(runs, {"crash": [fake_summary(1), fake_summary(2)], "calm": [fake_summary(1)]})
    ctx = econ.ReportContext("ape run economics --quick", "abc1234", "ethereum:local:foundry", [1, 2], 24, 61.0)
    path = econ.write_report(tmp_path / "doc", runs, ["crash", "calm"], ctx, table)
    md = path.read_text()
    headings = [line for line in md.splitlines() if line.startswith("#")]
    assert headings == ["# vPerp economics: the issue 13 measures, the simulator's runs and price impact",
                        "## The measures", "## LP return per scenario and seed", "## The runs, per scenario and seed",
                        "### crash", "### calm", "## Price impact at deployment"]
    assert "took 1 min 1 s" in md and "commit abc1234" in md
    for sc in ("crash", "calm"):
        png = tmp_path / "doc" / "img" / f"economics_{sc}.png"
        assert f"(img/economics_{sc}.png)" in md
        assert int.from_bytes(png.read_bytes()[16:20], "big") == 1000  # the PNG header's width


def test_share_price_plot_overlays_every_seed(tmp_path):
    write_fake_runs(tmp_path, {"crash": [fake_summary(s) for s in (1, 2, 3)]})
    manifest = {}
    econ.plot_share_prices("crash", [tmp_path / "crash" / f"seed{s}" for s in (1, 2, 3)], tmp_path / "p.png",
                           shock=(0.5, 1.5), manifest=manifest)
    assert manifest["p.png"]["size_px"][0] == 1000
    assert manifest["p.png"]["lines"] == ["seed 1", "seed 2", "seed 3"]


# ---------------------------------------------------------------------------- bad input: one line, nothing runs


@pytest.fixture
def nothing_runs(monkeypatch):
    """Record any attempt to run a simulation or the economics command's runs."""
    calls = []
    import vperp.sim as sim

    monkeypatch.setattr(sim, "run_from_cli", lambda **kw: calls.append(kw))
    monkeypatch.setattr(sim, "run_simulation", lambda *a, **kw: calls.append(a))
    return calls


def one_click_error(result) -> str:
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    return errors[0]


@pytest.mark.parametrize("args, message", [
    (["--oracle-deviation-bps", "-1"], "'--oracle-deviation-bps': -1 is not in the range x>=0"),
    (["--oracle-deviation-bps", "ten"], "'--oracle-deviation-bps': 'ten' is not a valid integer"),
    (["--oracle-heartbeat", "-5"], "'--oracle-heartbeat': -5 is not in the range x>=0"),
    (["--oracle-deviation-bps", "50"], "--oracle-deviation-bps needs --oracle-heartbeat"),
    (["--oracle-heartbeat", "90000"], "may go 90000 s without an update"),
    (["--basis-trader", "yes"], "unexpected extra argument (yes)"),
])
def test_simulator_options_bad_input_is_one_click_error(args, message, nothing_runs):
    error = one_click_error(CliRunner().invoke(command_line(), args))
    assert message in error
    assert nothing_runs == []


@pytest.fixture(scope="module")
def economics_script():
    from helpers.scripts import load_script

    return load_script("economics")


@pytest.mark.parametrize("args, message", [
    (["--seeds", "5-1"], "'--seeds': '5-1' is not a seed or a range like 1-5"),
    (["--seeds", "1,1"], "seed 1 appears twice"),
    (["--steps", "0"], "'--steps': 0 is not in the range x>=1"),
    (["--scenarios", "crash,boom"], "'boom' is not a scenario"),
    (["--scenarios", "crash,crash"], "names a scenario twice"),
    (["--scenarios", ""], "is not a scenario"),
    (["--quick", "yes"], "unexpected extra argument (yes)"),
    (["--config", "deployments/config/missing.yaml"], "does not exist"),
    (["--basis-trader", "yes"], "unexpected extra argument (yes)"),
])
def test_economics_options_bad_input_is_one_click_error(args, message, economics_script, monkeypatch):
    calls = []
    monkeypatch.setattr(economics_script, "run_seeds", lambda *a, **kw: calls.append(a))
    monkeypatch.setattr(economics_script, "write_report", lambda *a, **kw: calls.append(a))
    error = one_click_error(CliRunner().invoke(economics_script.cli, args))
    assert message in error
    assert calls == []


def test_economics_config_and_carry_agent_reach_every_run_and_the_report(economics_script, monkeypatch, tmp_path):
    """`--config FILE --basis-trader`: every run (the breaker comparison's too) deploys the file with the carry agent,
    the price-impact rows are the file's deployment, and the report names the setting."""
    calls, reports = [], []
    monkeypatch.setattr(economics_script, "run_seeds", lambda *a, **kw: calls.append(kw))
    monkeypatch.setattr(economics_script, "write_report", lambda *a, **kw: reports.append(a) or tmp_path / "x.md")
    path = "deployments/config/concentrated.yaml"
    (tmp_path / "runs").mkdir()
    result = CliRunner().invoke(economics_script.cli, ["--network", "ethereum:local:test", "--config", path,
                                                       "--basis-trader", "--scenarios", "crash",
                                                       "--breakers-scenarios", "crash", "--breakers-seeds", "1",
                                                       "--seeds", "1",
                                                       "--runs", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert len(calls) == 1 + 1  # the crash run (also the breakers-off one) and the breakers-on run
    assert all(kw["config"] == path and kw["basis_trader"] for kw in calls)
    (_, _, _, ctx, impact), = [r[:5] for r in reports]
    assert ctx.setting == f"the deployment in `{path}`, with the simulator's funding-carry agent (`--basis-trader`)"
    assert impact.setting == path and impact.config["ETH"]["taker_fee"] == 0.001
    md = econ.impact_markdown(impact)
    assert f"| vPerp ({path}) | ETH | 1M |" in md


def test_economics_quick_is_two_seeds_of_24_steps(economics_script):
    assert parse_seeds(economics_script.QUICK_SEEDS) == [1, 2] and economics_script.QUICK_STEPS == 24
    assert parse_seeds(economics_script.DEFAULT_SEEDS) == [1, 2, 3, 4, 5] and economics_script.DEFAULT_STEPS == 150


# ---------------------------------------------------------------------------- end to end on Anvil


# One seed over an hour and a step (the fewest steps with two hourly funding samples, which the funding ratio
# compares), and the breaker comparison on the crash only (its breakers-off run is the main crash run): every
# section and figure of the document still comes from runs, in about a sixth of the time (the --quick defaults,
# two seeds of 24 steps, took 6.5 min of the suite). Several seeds per cell: the fake-run tests above and
# tests/test_sim.py's `--seeds 2-3` run.
QUICK_RUN_STEPS = 13


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """`ape run economics --seeds 1 --steps 13 --breakers-scenarios crash --breakers-seeds 1 --no-run-plots` into
    a temporary folder, on Anvil (the runs' own plots are test_sim's business: about 2 s a run saved)."""
    if shutil.which("anvil") is None:
        pytest.skip("anvil is not on PATH (./run.sh test puts node_modules/.bin there)")
    out = tmp_path_factory.mktemp("economics")
    ape = shutil.which("ape") or str(ROOT / ".venv" / "bin" / "ape")
    proc = subprocess.run([ape, "run", "economics", "--seeds", "1", "--steps", str(QUICK_RUN_STEPS),
                           "--breakers-scenarios", "crash", "--breakers-seeds", "1", "--no-run-plots", "--out", str(out / "doc"),
                           "--runs", str(out / "runs")],
                          cwd=ROOT, capture_output=True, text=True, timeout=900, env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, proc.stdout


def now_column(md: str) -> dict[str, str]:
    section = md.split("## The measures", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| measure")]
    label_to_key = {v: k for k, v in econ.MEASURES.items()}
    return {label_to_key[r.split(" | ")[0][2:]]: r.split(" | ")[2] for r in rows}


def test_quick_run_writes_the_document_from_its_runs(quick_run):
    out, stdout = quick_run
    md = (out / "doc" / "economics.md").read_text()
    for heading in ("## The measures", "## LP return per scenario and seed", "## The runs, per scenario and seed",
                    "### crash", "### trend", "### calm", "### squeeze", "## Price impact at deployment"):
        assert f"\n{heading}\n" in md, heading
    assert f"seeds 1, {QUICK_RUN_STEPS} steps" in md and "./run.sh ape run economics --seeds 1" in md
    for sc in econ.SCENARIO_ORDER:
        png = out / "doc" / "img" / f"economics_{sc}.png"
        assert int.from_bytes(png.read_bytes()[16:20], "big") == 1000
        assert sorted(p.name for p in (out / "runs" / sc).iterdir()) == ["aggregate.json", "aggregate.md", "seed1"]
    assert "wrote" in stdout

    # Every "now" figure is the runs' own: recomputed here from the summary.json files.
    now = now_column(md)
    summaries = {sc: [json.loads((out / "runs" / sc / f"seed{s}" / "summary.json").read_text()) for s in (1,)]
                 for sc in econ.SCENARIO_ORDER}
    runs = econ.load_runs(out / "runs", econ.SCENARIO_ORDER)
    assert {sc: [{k: v for k, v in s.items() if k != "_dir"} for s in rs] for sc, rs in runs.items()} == summaries
    assert now == econ.measures_now(runs, econ.compute_impact_table())
    # The funding ratio is measured on the runs' own steps (crash and squeeze, ETH and BTC): a seed x two markets
    # each; without the run folders it cannot be.
    from vperp.funding_compare import chain_ratio

    crash = [chain_ratio(s["_dir"], sym) for s in runs["crash"] for sym in ("ETH", "BTC")]
    assert len(crash) == 2 and now["funding_ratio"].startswith(f"{min(crash):.3f}")
    assert f"{max(crash):.3f} (crash)" in now["funding_ratio"]
    # The shipped markets' 3-hour period: the same runs against that rule's own unsmoothed form, and the held
    # premium's closed form (docs/funding.md, "Two ratios").
    from dataclasses import replace

    from vperp.funding_compare import Params, held_premium_ratio

    own = [chain_ratio(s["_dir"], sym, replace(Params(), period_hours=3)) for s in runs["crash"] for sym in ("ETH", "BTC")]
    lo, hi = f"{min(own):.4f}", f"{max(own):.4f}"
    assert f"own rule unsmoothed (premium / 3): {lo if lo == hi else f'{lo} to {hi}'} (crash)" in now["funding_ratio"]
    assert f"on a held premium {held_premium_ratio(3, 24, 12):.3f} against premium / 24" in now["funding_ratio"]
    assert econ.measures_now(summaries, econ.compute_impact_table())["funding_ratio"] == "not run (crash, squeeze)"
    crash = summaries["crash"]
    pool = sorted(f"{s['bad_debt_from_pool']:,.0f}" for s in crash)
    assert now["crash_pool_bad_debt"].startswith(pool[0])
    assert f"insurance fund lowest {min(s['insurance_min'] for s in crash):,.0f} USD" in now["crash_pool_bad_debt"]
    for s in crash:
        assert f"{100 * s['lp_share_price_drawdown']:.2f} %" in now["crash_share_drawdown"]
    assert now["crash_takes"].startswith(f"{sum(s['takes'] for s in crash)} takes, "
                                         f"{sum(s['backstops'] for s in crash)} backstops")
    for sc in ("trend", "calm", "squeeze"):
        for s in summaries[sc]:
            ret = s["lp_share_price_end"] / s["lp_share_price_start"] - 1
            assert f"{100 * ret:+.3f} %" in now[f"lp_return_{sc}"] or "to" in now[f"lp_return_{sc}"]
            assert f"| {sc} | {s['seed']} | {s['lp_share_price_start']:.6f} | {s['lp_share_price_end']:.6f} |" in md
    # Numbers in the crash and LP cells that are not counts all come from those files.
    allowed = {f"{s[k]:,.0f}" for sc in summaries.values() for s in sc
               for k in ("bad_debt_from_pool", "bad_debt", "insurance_min")}
    for n in re.findall(r"\d[\d,]*(?= USD)", now["crash_pool_bad_debt"]):
        assert n in allowed, n
