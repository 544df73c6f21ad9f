"""The economic simulator (vperp/sim.py, docs/simulator.md).

The index-path generators are pure functions, tested without a chain. The simulation itself is run the
way a user runs it, `python -m vperp.sim` on Anvil (the embedded chain executes the EVM in Python and
is about five times slower on this workload); the tests read its outputs: the CSV (one row per step, every
column), the plots, the index the oracles were given, the Vault's conservation and the liquidations of the
crash. A short `--seeds` run next to a lone run of one of its seeds (another process, the YAML config, the
every-step oracle options) checks the per-seed folders, the seed table and the byte-for-byte reproducibility.
The Chainlink-like oracle run simulates the concentrated setting with delayed orders on (concentrated.yaml):
every trade there is an order committed to the OrderRouter and executed by the keeper after the next round.
Runs whose plots no test reads pass `--no-plots`. The seed table, drawdowns and plots are also tested on
synthetic rows, without a chain.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vperp.sim import (
    HOUR,
    ORDER_COLUMNS,
    SCENARIOS,
    OraclePolicy,
    OrderBook,
    PathSpec,
    Shock,
    SimError,
    SimSummary,
    aggregate_markdown,
    columns,
    drawdown,
    gbm_path,
    get_scenario,
    index_paths,
    order_wait,
    parse_seeds,
    plot_run,
    read_price_csv,
    shock_window,
    write_aggregate,
)

ROOT = Path(__file__).resolve().parent.parent
from vperp import economics as econ  # noqa: E402
CONCENTRATED = "deployments/config/concentrated.yaml"  # the concentrated setting, delayed orders on
STEPS, SEED, DT = 18, 3, 300  # 18 steps: the crash (from step 1, 4 % a step for 12 steps) and 6 more
START = {"ETH": 3000.0, "BTC": 60000.0}


# ---------------------------------------------------------------------------- index paths (pure)



def _staggered(commands: list[list[str]], gap: float = 6.0) -> list[subprocess.Popen]:
    """Start the simulator runs `gap` seconds apart: each starts its own Anvil node, and several starting in the same
    second on a loaded machine once missed Ape's 20-second wait for the node's RPC (a fresh-clone CI run)."""
    import time

    procs = []
    for k, cmd in enumerate(commands):
        if k:
            time.sleep(gap)  # waits for a process, not chain time
        procs.append(subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      env={**os.environ, "COLUMNS": "200"}))
    return procs

def log_returns(path):
    return [math.log(b / a) for a, b in zip(path, path[1:])]


def test_gbm_path_is_reproducible_and_starts_at_the_price():
    spec = PathSpec(drift=0.1, vol=0.05, jump_rate=3, jump_std=0.02)
    a = gbm_path(3000.0, spec, 500, DT, random.Random("x"))
    b = gbm_path(3000.0, spec, 500, DT, random.Random("x"))
    c = gbm_path(3000.0, spec, 500, DT, random.Random("y"))
    assert a == b and a != c
    assert len(a) == 501 and a[0] == 3000.0 and min(a) > 0


def test_gbm_log_returns_have_the_configured_drift_and_volatility():
    drift, vol, n = 0.2, 0.04, 40_000
    r = log_returns(gbm_path(100.0, PathSpec(drift=drift, vol=vol), n, DT, random.Random(1)))
    h = DT / 86_400
    mean = sum(r) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in r) / (n - 1))
    assert sd == pytest.approx(vol * math.sqrt(h), rel=0.02)
    # The mean of n draws has a standard error of sd / sqrt(n): allow four of them.
    assert abs(mean - (drift - vol**2 / 2) * h) < 4 * sd / math.sqrt(n)


def test_without_volatility_the_path_is_the_drift_exactly():
    path = gbm_path(50.0, PathSpec(drift=0.3, vol=0.0), 288, DT, random.Random(0))
    assert path[-1] == pytest.approx(50.0 * math.exp(0.3), rel=1e-12)  # 288 steps of 5 min = one day


def test_jumps_arrive_at_the_poisson_rate_with_their_size():
    rate, n = 24.0, 20_000  # one jump an hour on average, so ~0.083 per 5-minute step
    r = log_returns(gbm_path(100.0, PathSpec(vol=0.0, jump_rate=rate, jump_mean=-0.01, jump_std=0.0),
                             n, DT, random.Random(2)))
    jumps = [round(x / -0.01) for x in r]  # each step's return is a whole number of -1 % jumps
    assert all(abs(x - j * -0.01) < 1e-9 for x, j in zip(r, jumps))
    expected = rate * DT / 86_400 * n
    assert abs(sum(jumps) - expected) < 4 * math.sqrt(expected)


def test_shock_moves_by_its_factor_over_its_duration():
    m = Shock(start=0.2, factor=0.6, duration=HOUR).multipliers(STEPS, DT)
    first = round(0.2 * STEPS)
    assert m[:first + 1] == [1.0] * (first + 1)
    assert m[first + 12] == pytest.approx(0.6) and m[-1] == pytest.approx(0.6)
    assert all(b < a for a, b in zip(m[first:first + 12], m[first + 1:first + 13]))
    # Too short a run for the start fraction: the move starts early enough to complete.
    assert Shock(0.9, 0.6, HOUR).multipliers(12, DT)[-1] == pytest.approx(0.6)


def largest_fall_within_an_hour(prices, dt=DT):
    """Computed here from the definition, independently of vperp.sim.max_drop_within."""
    worst = 0.0
    for i in range(len(prices)):
        for j in range(i + 1, len(prices)):
            if (j - i) * dt > HOUR:
                break
            worst = max(worst, (prices[i] - prices[j]) / prices[i])
    return worst


def test_crash_scenario_index_falls_40_percent_within_an_hour():
    paths = index_paths(get_scenario("crash"), STEPS, SEED, START, DT)
    assert largest_fall_within_an_hour(paths["ETH"]) == pytest.approx(0.40, abs=0.02)
    assert largest_fall_within_an_hour(paths["BTC"]) == pytest.approx(0.30, abs=0.02)
    assert largest_fall_within_an_hour(index_paths(get_scenario("calm"), STEPS, SEED, START, DT)["ETH"]) < 0.05


def test_squeeze_rallies_and_scenarios_differ():
    eth = index_paths(get_scenario("squeeze"), 60, SEED, START, DT)["ETH"]
    assert max(eth) / eth[0] > 1.25
    assert get_scenario("squeeze").whale_side == -1 and get_scenario("crash").whale_side == 1
    assert set(SCENARIOS) == {"calm", "trend", "crash", "squeeze", "thin"}
    with pytest.raises(SimError, match="unknown scenario"):
        get_scenario("meltdown")


def test_price_csv_gives_the_path_and_other_markets_keep_theirs(tmp_path):
    f = tmp_path / "prices.csv"
    f.write_text("time,ETH,note\n0,2000,a\n300,1900.5,b\n600,1800,c\n")
    prices = read_price_csv(f, ["ETH", "BTC"])
    assert prices == {"ETH": [2000.0, 1900.5, 1800.0]}
    paths = index_paths(get_scenario("calm"), 2, SEED, START, DT, prices=prices)
    assert paths["ETH"] == [2000.0, 1900.5, 1800.0]
    assert paths["BTC"] == index_paths(get_scenario("calm"), 2, SEED, START, DT)["BTC"]
    with pytest.raises(SimError, match="3 rows for ETH; 5 steps need 6"):
        index_paths(get_scenario("calm"), 5, SEED, START, DT, prices=prices)


@pytest.mark.parametrize("text, message", [
    ("time,SOL\n0,1\n", "no column named after a market"),
    ("ETH\n2000\n-1\n", "must be a positive price"),
    ("ETH\n2000\nabc\n", "is not a number"),
    ("ETH\n2000\n", "at least two rows"),
])
def test_price_csv_errors_are_named(tmp_path, text, message):
    f = tmp_path / "p.csv"
    f.write_text(text)
    with pytest.raises(SimError, match=message):
        read_price_csv(f, ["ETH", "BTC"])


@pytest.mark.parametrize("text, seeds", [("1-5", [1, 2, 3, 4, 5]), ("7", [7]), ("1,3,7", [1, 3, 7]),
                                         ("1-3, 9", [1, 2, 3, 9]), ("-2", [-2])])
def test_parse_seeds_reads_ranges_and_lists(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text, message", [("5-1", "not a seed or a range"), ("a", "not a seed or a range"),
                                           ("1,,2", "not a seed or a range"), ("1-3,2", "seed 2 appears twice")])
def test_parse_seeds_refuses_bad_lists(text, message):
    with pytest.raises(SimError, match=message):
        parse_seeds(text)


def test_drawdown_is_peak_to_trough():
    assert drawdown([1.0, 2.0, 1.5, 3.0, 2.4, 2.7, 2.0]) == (pytest.approx(1 / 3), 3, 6)
    assert drawdown([1.0, 1.1, 1.2]) == (0.0, 0, 0)  # never falls
    assert drawdown([5.0]) == (0.0, 0, 0)


def test_shock_window_is_the_shock_in_hours():
    assert shock_window(get_scenario("crash"), 150, DT) == (2.5, 3.5)
    assert shock_window(get_scenario("squeeze"), 150, DT) == (3.75, 5.75)
    assert shock_window(get_scenario("calm"), 150, DT) is None
    assert shock_window(get_scenario("crash"), 150, DT, symbols=["SOL"]) is None  # markets priced from a file


def synthetic_rows(n=40):
    """Rows with every CSV column: a crash-like index, a share price that dips, and counters of which
    some stay zero throughout."""
    rows = []
    for k in range(1, n + 1):
        r = {c: 0.0 for c in columns(["ETH", "BTC"])}
        r.update(step=k, time_s=DT * k, eth_index=3000 - 20 * k, eth_mark=3000 - 18 * k, eth_spot=3000 - 19 * k,
                 btc_index=60000.0, btc_mark=60000.0, btc_spot=60000.0, pool_nav=13e6 - 1e4 * (k % 7),
                 pool_share_price=1.0 - 0.001 * (k % 9), insurance_fund=1e5, kicks=float(k > 10), takes=float(k > 12))
        rows.append(r)
    return rows


def test_plots_are_1000_px_wide_shade_the_shock_and_keep_zero_series(tmp_path):
    manifest = {}
    paths = plot_run(synthetic_rows(), ["ETH", "BTC"], tmp_path, shock=(1.0, 2.0), manifest=manifest)
    assert {p.stem for p in paths} == set(manifest) == {
        "mark_vs_index", "funding", "open_interest", "insurance_fund", "pool_nav", "lp_share_price", "bad_debt",
        "liquidations"}
    for name, m in manifest.items():
        assert m["size_px"][0] >= 1000, name
        data = (tmp_path / f"{name}.png").read_bytes()
        assert int.from_bytes(data[16:20], "big") == m["size_px"][0]  # the PNG header's width
    # Redos and backstops are zero throughout: drawn and labelled as such, not left out.
    assert manifest["liquidations"]["lines"] == [["kicks", "takes", "redos (0 throughout)", "backstops (0 throughout)"]]
    assert manifest["bad_debt"]["lines"] == [["cumulative bad debt (0 throughout)", "paid by insurance (0 throughout)",
                                              "paid by the pool (0 throughout)"]]
    # Every axis of every plot shows the shaded shock span and names it in its legend.
    for name, m in manifest.items():
        assert all(legend == lines + ["shock"] for legend, lines in zip(m["legends"], m["lines"])), name
    assert len(manifest["mark_vs_index"]["legends"]) == 2  # one axis per market
    plain = {}
    plot_run(synthetic_rows(), ["ETH", "BTC"], tmp_path / "plain", manifest=plain)
    assert all("shock" not in legend for m in plain.values() for legend in m["legends"])


# ---------------------------------------------------------------------------- delayed orders (pure)


def test_an_order_waits_at_most_the_longest_gap_between_posts():
    """The time added to an order's deadline for the next oracle round: one step when the feed posts every step,
    the heartbeat rounded up to whole steps otherwise (the oracle agent acts at step boundaries)."""
    assert order_wait(OraclePolicy(), DT) == DT
    assert order_wait(OraclePolicy(50, 3600), DT) == 3600
    assert order_wait(OraclePolicy(0, 3601), DT) == 3900


def test_the_order_book_follows_each_order_to_its_outcome():
    book = OrderBook(["ETH", "BTC"])
    book.sent("arb", "ETH")  # the commit went through; its event is read later
    assert book.is_open("arb", "ETH") and not book.is_open("arb", "BTC") and not book.is_open("whale", "ETH")
    book.committed(1, "arb", "ETH", at=1_000, round_id=5)
    book.sent("whale", "ETH")
    book.committed(2, "whale", "ETH", at=1_001, round_id=5)
    book.hold("ETH")  # the arbitrageur's next order, while its first is open
    assert book.is_open("arb", "ETH") and book.row()["orders_open"] == "2"
    assert book.executed(1, 1_300, 6).agent == "arb" and not book.is_open("arb", "ETH")
    book.executed(2, 1_601, 7, refusal="SlippageExceeded")  # used up: no longer open either
    assert not book.is_open("whale", "ETH")
    book.sent("keeper", "BTC")
    book.committed(3, "keeper", "BTC", at=1_002, round_id=9)
    assert book.cancelled(3).agent == "keeper" and not book.is_open("keeper", "BTC")
    book.committed(5, "noise2", "BTC", at=1_003, round_id=9)
    book.cancelled(5, missed=True)  # its deadline passed before a round: its fee paid the keeper
    book.sent("noise1", "BTC")
    book.committed(4, "noise1", "BTC", at=1_700, round_id=9)
    assert book.row() == {"orders_committed": "5", "orders_executed": "1", "orders_failed": "1", "orders_lapsed": "2",
                          "orders_open": "1"}
    s = book.summary(keeper_fee_wei=10**14, wait_s=DT)
    assert {k: s[k] for k in ("committed", "executed", "failed", "lapsed", "missed", "held_back", "open_at_end")} == {
        "committed": 5, "executed": 1, "failed": 1, "lapsed": 2, "missed": 1, "held_back": 1, "open_at_end": 1}
    assert (s["mean_delay_s"], s["min_delay_s"], s["max_delay_s"]) == (450.0, 300, 600)  # executed and failed both
    assert s["rounds_waited"] == {"1": 1, "2": 1} and s["failed_reasons"] == {"SlippageExceeded": 1}
    assert s["by_market"]["ETH"] == {"committed": 2, "executed": 1, "failed": 1, "lapsed": 0, "missed": 0,
                                     "held_back": 1, "open_at_end": 0, "mean_delay_s": 450.0, "min_delay_s": 300, "max_delay_s": 600}
    assert s["by_market"]["BTC"]["mean_delay_s"] is None and s["by_market"]["BTC"]["open_at_end"] == 1
    assert (s["markets"], s["keeper_fee_wei"], s["wait_s"]) == (["ETH", "BTC"], 10**14, DT)
    json.dumps(s)  # the summary writes it as it is


def test_order_columns_only_with_delayed_orders():
    plain = columns(["ETH", "BTC"])
    assert columns(["ETH", "BTC"], orders=False) == plain
    assert columns(["ETH", "BTC"], orders=True) == plain + list(ORDER_COLUMNS)
    both = columns(["ETH", "BTC"], breakers=True, orders=True)
    assert both == columns(["ETH", "BTC"], breakers=True) + list(ORDER_COLUMNS)  # the order columns last


def bare_summary(**changes) -> SimSummary:
    """A SimSummary with every field it must have set to a plain value, for its rendering."""
    values = {}
    for f in dataclasses.fields(SimSummary):
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
            continue
        kind = str(f.type)
        values[f.name] = ({} if kind.startswith("dict") else None if "None" in kind else [] if kind.startswith("list")
                          else 0 if kind in ("int", "float")
                          else True if kind == "bool" else "x")
    values["csv"] = "out/steps.csv"
    return dataclasses.replace(SimSummary(**values), **changes)


def test_the_summary_has_an_orders_record_only_with_delayed_orders():
    plain = bare_summary()
    assert "orders" not in json.loads(plain.to_json()) and not any("delayed orders" in x for x in plain.lines())
    book = OrderBook(["ETH"])
    book.committed(1, "arb", "ETH", at=0, round_id=1)
    book.executed(1, 299, 2, refusal="SlippageExceeded")
    on = bare_summary(orders=book.summary(10**14, DT))
    assert json.loads(on.to_json())["orders"]["failed_reasons"] == {"SlippageExceeded": 1}
    (line,) = [x for x in on.lines() if x.startswith("delayed orders")]
    assert line == ("delayed orders (ETH; keeper fee 0.0001 ETH): 1 committed, 0 executed, 1 failed (SlippageExceeded "
                    "1), 0 lapsed (0 missed the next round), 0 open at the end, 0 held back (an order of the agent still open in the market); "
                    "commit to execution mean 299.0 s, max 299 s")


def fake_run(folder: Path, seed: int, kicks: int, bad_debt: float, shares: list[float], reverts: dict) -> Path:
    folder.mkdir(parents=True)
    rows = synthetic_rows(len(shares))
    for r, s in zip(rows, shares):
        r["pool_share_price"] = s
        r["pool_nav"] = 1e7 * s
    with (folder / "steps.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns(["ETH", "BTC"]))
        w.writeheader()
        w.writerows(rows)
    (folder / "summary.json").write_text(json.dumps(dict(
        seed=seed, kicks=kicks, takes=1, redos=0, backstops=kicks - 1, bad_debt=bad_debt,
        bad_debt_from_insurance=bad_debt / 2, bad_debt_from_pool=bad_debt / 2, max_live_auction_notional=1000.0 * seed,
        wall_seconds=60.0 + seed, reverts=reverts)))
    return folder


def test_seed_table_sums_and_averages_the_runs(tmp_path):
    a = fake_run(tmp_path / "seed1", 1, 2, 100.0, [1.0, 1.02, 0.9996, 1.01], {"SlippageExceeded": 3})
    b = fake_run(tmp_path / "seed2", 2, 3, 0.0, [1.0, 0.99, 0.98, 1.0], {"SlippageExceeded": 1, "RepegNotNeeded": 1})
    agg = write_aggregate([a, b], tmp_path, title="t")
    assert json.loads((tmp_path / "aggregate.json").read_text()) == agg
    assert agg["seeds"] == [1, 2]
    s1, s2 = agg["per_seed"]
    assert s1["lp_share_price_drawdown"] == pytest.approx(1 - 0.9996 / 1.02, abs=1e-6)
    assert s2["lp_share_price_drawdown"] == pytest.approx(0.02, abs=1e-6)
    assert s1["nav_drawdown"] == pytest.approx(s1["lp_share_price_drawdown"], abs=1e-6)
    a_ = agg["aggregate"]
    assert a_["kicks"] == {"sum": 5, "mean": 2.5, "min": 2, "max": 3}
    assert a_["bad_debt"]["sum"] == 100.0 and a_["runs_with_bad_debt"] == 1 and a_["runs_with_backstops"] == 2
    assert a_["reverts"] == {"RepegNotNeeded": 1, "SlippageExceeded": 4}
    md = (tmp_path / "aggregate.md").read_text()
    assert md == aggregate_markdown(agg, "t")
    lines = md.splitlines()
    assert lines[4].startswith("| 1 | 2 | 1 | 0 | 1 | 100 | 50 | 50 | 2.00% | 2.00% | 1,000 | SlippageExceeded 3 | 61 |")
    assert lines[6].startswith("| sum | 5 |") and "SlippageExceeded 4, RepegNotNeeded 1" in lines[6]
    assert lines[7].startswith("| mean | 2.5 |") and lines[8].startswith("| max | 3 |")


# ---------------------------------------------------------------------------- a run on the chain


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One run of `python -m vperp.sim` (crash, seed 3, with its plots): its output folder, in a list. (A seed's
    runs in two processes are compared in `seed_runs`.)"""
    if shutil.which("anvil") is None:
        pytest.skip("anvil is not on PATH (./run.sh test puts node_modules/.bin there)")
    out = tmp_path_factory.mktemp("sim")
    proc = subprocess.run([sys.executable, "-m", "vperp.sim", "--network", "ethereum:local:foundry",
                           "--scenario", "crash", "--steps", str(STEPS), "--seed", str(SEED), "--out", str(out)],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env={**os.environ, "COLUMNS": "200"}, timeout=240)
    assert proc.returncode == 0, proc.stdout
    return [out]


@pytest.fixture(scope="module")
def rows(runs):
    with (runs[0] / "steps.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == columns(["ETH", "BTC"], orders=True)  # the shipped markets take delayed orders
        return [{k: float(v) for k, v in r.items()} for r in reader]


@pytest.fixture(scope="module")
def summary(runs):
    return json.loads((runs[0] / "summary.json").read_text())


def test_csv_has_one_row_per_step(rows):
    assert [int(r["step"]) for r in rows] == list(range(1, STEPS + 1))
    assert [r["time_s"] for r in rows] == [DT * k for k in range(1, STEPS + 1)]


def test_plots_are_non_empty_pngs(runs, summary):
    names = {"mark_vs_index", "funding", "open_interest", "insurance_fund", "pool_nav", "lp_share_price", "bad_debt",
             "liquidations"}
    assert {Path(p).stem for p in summary["plots"]} == names
    for name in names:
        data = (runs[0] / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000, name


def test_the_oracles_were_given_the_scenario_path(rows):
    paths = index_paths(get_scenario("crash"), STEPS, SEED, START, DT)
    for sym in ("ETH", "BTC"):
        posted = [r[f"{sym.lower()}_index"] for r in rows]
        assert posted == pytest.approx(paths[sym][1:], abs=1e-8)  # the feeds have 8 decimals
    assert largest_fall_within_an_hour([r["eth_index"] for r in rows]) == pytest.approx(0.40, abs=0.02)


def test_vault_tokens_cover_every_claim(rows, summary):
    """The Vault's tokens equal the signed ledger at every step, and cover every positive claim whenever
    no account is underwater. While a liquidated account's collateral is negative and it still holds a
    position or a live auction, its debt is not socialized yet (docs/liquidation.md#loss-waterfall): positive claims may then exceed
    the tokens by at most that debt; by the end of the run the waterfall has resolved it."""
    for r in rows:
        assert r["vault_tokens"] == r["ledger_total"], r["step"]  # signed balances: exact
        if r["pending_bad_debt"] == 0:
            assert r["vault_tokens"] >= r["claims"], r["step"]  # every positive claim is backed
        else:
            assert r["claims"] - r["vault_tokens"] <= r["pending_bad_debt"] * (1 + 1e-12), r["step"]
    last = rows[-1]
    assert last["pending_bad_debt"] == 0 and last["vault_tokens"] >= last["claims"]
    assert summary["conservation_ok"]


def test_the_crash_liquidates_and_the_losses_follow_the_waterfall(rows, summary):
    last = rows[-1]
    assert last["kicks"] >= 1 and summary["kicks"] == last["kicks"]
    assert max(r["live_auction_notional"] for r in rows) > 0
    # Bad debt is paid by the insurance fund first, then by the pool.
    assert last["bad_debt"] == pytest.approx(last["bad_debt_insurance"] + last["bad_debt_pool"])
    if last["bad_debt_pool"] > 0:
        assert min(r["insurance_fund"] for r in rows) < 1.0
    assert last["bad_debt"] > 0 and min(r["insurance_fund"] for r in rows) < rows[0]["insurance_fund"]  # paid first
    assert summary["trades"] > STEPS and all(not k.startswith("revert 0x") for k in summary["reverts"])


def test_summary_has_the_share_price_drawdown_and_the_pool_pnl_split(rows, summary):
    share = [r["pool_share_price"] for r in rows]
    assert summary["lp_share_price_start"] == share[0] and summary["lp_share_price_end"] == share[-1]
    assert summary["lp_share_price_drawdown"] == pytest.approx(drawdown(share)[0], abs=1e-6)
    assert summary["nav_drawdown"] == pytest.approx(drawdown([r["pool_nav"] for r in rows])[0], abs=1e-6)
    assert summary["shock_hours"] == list(shock_window(get_scenario("crash"), STEPS, DT))
    pnl = summary["pool_pnl"]
    # The events account for every move of the pool's cash; the parts add up to the NAV's change.
    assert pnl["cash_unexplained"] == 0
    parts = [v for k, v in pnl.items() if k not in ("nav_change", "pnl_excluding_lp_flows")]
    assert sum(parts) == pytest.approx(pnl["nav_change"], abs=0.1)
    assert pnl["lp_deposits"] >= 3_000_000 and pnl["fees"] > 0  # both LPs deposit (3M) at step 1; traders pay fees
    assert pnl["bad_debt"] == -summary["bad_debt_from_pool"]
    assert pnl["pnl_excluding_lp_flows"] == pytest.approx(pnl["nav_change"] - pnl["lp_deposits"] - pnl["lp_withdrawals"],
                                                          abs=0.02)


SEEDS_STEPS = 6


@pytest.fixture(scope="module")
def seed_runs(tmp_path_factory):
    """`--seeds 2-3` and, alongside in another process, seed 3 alone from the shipped YAML config (`--config`, the
    same system as the defaults) with a heartbeat of one step and a threshold (so the oracle agent posts every
    step, as by default, through the deviation rule's code): a short crash each (the shock starts at once). The
    two seed-3 CSVs are equal byte for byte only if all three hold: a seed among others runs as alone, the YAML
    is the defaults, and the every-step feed is the default one."""
    if shutil.which("anvil") is None:
        pytest.skip("anvil is not on PATH (./run.sh test puts node_modules/.bin there)")
    many, alone = tmp_path_factory.mktemp("seeds"), tmp_path_factory.mktemp("alone")
    args = [sys.executable, "-m", "vperp.sim", "--network", "ethereum:local:foundry", "--scenario", "crash",
            "--steps", str(SEEDS_STEPS), "--out"]
    procs = _staggered([args + [str(out)] + extra
                        for out, extra in ((many, ["--seeds", "2-3"]),
                                           (alone, ["--seed", "3", "--config", "deployments/config/local.yaml",
                                                    "--no-plots", "--oracle-deviation-bps", "50", "--oracle-heartbeat",
                                                    str(DT)]))])
    outputs = []
    for p in procs:
        output, _ = p.communicate(timeout=240)
        assert p.returncode == 0, output
        outputs.append(output)
    return many, alone, outputs[0]


def test_seeds_write_one_folder_per_seed_and_the_seed_table(seed_runs):
    many, _, output = seed_runs
    agg = json.loads((many / "aggregate.json").read_text())
    assert agg["seeds"] == [2, 3]
    for seed, row in zip((2, 3), agg["per_seed"]):
        s = json.loads((many / f"seed{seed}" / "summary.json").read_text())
        assert s["seed"] == seed and s["steps"] == SEEDS_STEPS
        assert {k: row[k] for k in ("kicks", "takes", "bad_debt", "reverts")} == \
               {k: s[k] for k in ("kicks", "takes", "bad_debt", "reverts")}
        assert (many / f"seed{seed}" / "liquidations.png").is_file()
    md = (many / "aggregate.md").read_text()
    assert md.splitlines()[0] == f"crash, {SEEDS_STEPS} steps, seeds 2, 3"
    assert [line.split("|")[1].strip() for line in md.splitlines()[4:]] == ["2", "3", "sum", "mean", "max"]
    assert "aggregate.md" in output and output.count("scenario crash,") == 2


def test_a_seed_among_others_gives_the_csv_it_gives_alone(seed_runs):
    """Two processes, one seed: the same CSV. Also: the shipped YAML config simulates the shipped defaults, and the
    summary says which ran; and the oracle options that post every step post as the default does."""
    many, alone, _ = seed_runs
    assert (many / "seed3" / "steps.csv").read_bytes() == (alone / "steps.csv").read_bytes()
    by_file, by_default = (json.loads((d / "summary.json").read_text()) for d in (alone, many / "seed3"))
    assert by_file["config"] == "deployments/config/local.yaml" and by_default["config"] == "shipped defaults"
    assert by_file["auctions"] == by_default["auctions"] and set(by_file["auctions"]) == {"ETH", "BTC"}
    assert (many / "seed2" / "steps.csv").read_bytes() != (alone / "steps.csv").read_bytes()


def test_a_config_file_that_does_not_load_is_one_named_line(tmp_path):
    from vperp.sim import SimError, _load_config

    with pytest.raises(SimError, match="config file not found"):
        _load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("markets:\n  - symbol: ETH\n    price: 3000\n    auction_curve: cubic\n")
    with pytest.raises(SimError, match=r"--config .*bad.yaml"):
        _load_config(bad)
    assert _load_config(None) is None


# ---------------------------------------------------------------------------- the oracle agent on the chain

@pytest.fixture(scope="module")
def oracle_runs(tmp_path_factory):
    """Crash, seed 3, next to the `runs` fixture's default run: a Chainlink-like feed (0.5 %, 1 h) with the basis
    trader on, on the concentrated setting with delayed orders (deployments/config/concentrated.yaml: the feed's
    rule is the oracle agent's whatever the deployment, and every trade goes through the OrderRouter). (The
    every-step variant is `seed_runs`' lone run; the options at 0 given explicitly are the defaults:
    OraclePolicy(), tests/test_economics.py.)"""
    if shutil.which("anvil") is None:
        pytest.skip("anvil is not on PATH (./run.sh test puts node_modules/.bin there)")
    variants = {"chainlink": ["--oracle-deviation-bps", "50", "--oracle-heartbeat", "3600", "--basis-trader",
                              "--no-plots", "--config", CONCENTRATED]}
    outs = {k: tmp_path_factory.mktemp(f"oracle_{k}") for k in variants}
    procs = _staggered([[sys.executable, "-m", "vperp.sim", "--network", "ethereum:local:foundry", "--scenario",
                         "crash", "--steps", str(STEPS), "--seed", str(SEED), "--out", str(outs[k])] + extra
                        for k, extra in variants.items()])
    for p in procs:
        output, _ = p.communicate(timeout=300)
        assert p.returncode == 0, output
    return outs


def test_oracle_options_posting_every_step_keep_the_csv_byte_for_byte(runs, seed_runs):
    """The default runs (no oracle option) and the same seed with a heartbeat of one step give the same CSV
    byte for byte (`seed_runs`: its lone run has the options): the oracle agent posts every step as before. (On
    the commit that added it the default CSV was also compared with the previous simulator's, and the options at
    0 given explicitly: identical.)"""
    many, alone, _ = seed_runs
    assert (alone / "steps.csv").read_bytes() == (many / "seed3" / "steps.csv").read_bytes()
    o = json.loads((alone / "summary.json").read_text())["oracle"]
    assert (o["deviation_bps"], o["heartbeat_s"]) == (50, DT)
    assert o["updates"] == {"ETH": SEEDS_STEPS, "BTC": SEEDS_STEPS} and o["max_age_s"] == {"ETH": DT, "BTC": DT}
    s = json.loads((runs[0] / "summary.json").read_text())
    assert s["oracle"] == {"deviation_bps": 0, "heartbeat_s": 0, "updates": {"ETH": STEPS, "BTC": STEPS},
                           "max_age_s": {"ETH": DT, "BTC": DT}, "feed_heartbeat_s": {"ETH": 86_400, "BTC": 86_400}}
    assert s["basis_trader"] is False and "basis" not in s["trades_by_agent"]


def test_a_deviation_feed_posts_on_moves_and_the_heartbeat_and_is_never_stale(oracle_runs):
    out = oracle_runs["chainlink"]
    s = json.loads((out / "summary.json").read_text())
    o = s["oracle"]
    assert (o["deviation_bps"], o["heartbeat_s"]) == (50, 3600) and s["basis_trader"] is True
    with (out / "steps.csv").open(newline="") as f:
        rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    paths = index_paths(get_scenario("crash"), STEPS, SEED, START, DT)
    for sym in ("ETH", "BTC"):
        onchain = [r[f"{sym.lower()}_index"] for r in rows]
        path = [round(p, 8) for p in paths[sym][1:]]
        # Replay the rule on the path: the feed holds its last answer until the move passes 0.5 % or an hour passes.
        posted, last, last_t, expected = 0, None, None, []
        for k, p in enumerate(path, start=1):
            if last is None or k * DT - last_t >= 3600 or abs(p - last) > 0.005 * last:
                last, last_t, posted = p, k * DT, posted + 1
            expected.append(last)
        assert onchain == pytest.approx(expected, abs=1e-8), sym
        assert o["updates"][sym] == posted and 1 < posted < STEPS  # the crash's 4 %-a-step fall posts every step
        assert o["max_age_s"][sym] <= 3600 < o["feed_heartbeat_s"][sym]
    assert not any("Stale" in k for k in s["reverts"])  # no read ever found a stale feed
    assert s["conservation_ok"]


def test_delayed_orders_trade_through_the_router_after_the_next_round(oracle_runs, summary):
    """With delayed orders on (concentrated.yaml) every trade is an order the keeper executed: at least one oracle
    round after its commit (the feed of this run posts on a 0.5 % move or after an hour, so some orders wait several
    steps), within the window after that round, none missing it; conservation exact; no direct trade refused. The
    default run (the shipped markets, delayed orders on) has its record too."""
    out = oracle_runs["chainlink"]
    s = json.loads((out / "summary.json").read_text())
    o = s["orders"]
    assert s["config"] == CONCENTRATED and o["markets"] == ["ETH", "BTC"]
    assert o["committed"] > 0 and o["executed"] > 0 and o["wait_s"] == 3600
    assert o["committed"] == o["executed"] + o["failed"] + o["lapsed"] + o["open_at_end"]
    assert o["missed"] == 0  # every deadline met the next round
    executions = o["executed"] + o["failed"]
    assert sum(o["rounds_waited"].values()) == executions and min(int(k) for k in o["rounds_waited"]) >= 1
    assert 0 < o["min_delay_s"] <= o["mean_delay_s"] <= o["max_delay_s"] <= o["wait_s"] + 60  # the window: 60 s
    assert o["max_delay_s"] > DT  # an order that waited for a feed that did not post at the next step
    for sym, m in o["by_market"].items():
        assert m["committed"] == m["executed"] + m["failed"] + m["lapsed"] + m["open_at_end"], sym
    # Only executions trade; the keeper's closes of what it takes are orders too, outside trades_by_agent.
    assert s["trades"] == o["executed"] and sum(s["trades_by_agent"].values()) <= o["executed"]
    assert "DelayedOrdersOnly" not in s["reverts"] and not any(k.startswith("revert 0x") for k in s["reverts"])
    assert s["conservation_ok"]
    with (out / "steps.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == columns(["ETH", "BTC"], orders=True)
        rows = [{k: float(v) for k, v in r.items()} for r in reader]
    assert all(r["vault_tokens"] == r["ledger_total"] for r in rows)
    last = rows[-1]
    assert (last["orders_committed"], last["orders_executed"], last["orders_failed"], last["orders_lapsed"],
            last["orders_open"]) == (o["committed"], o["executed"], o["failed"], o["lapsed"], o["open_at_end"])
    assert "orders" in summary  # the shipped defaults: delayed orders on, a record


def test_the_curve_choice_table_is_the_committed_evidence():
    """docs/liquidation.md#choosing-the-curve quotes docs/sim_crash_curves.json (the crash over seeds 1-5 on the
    linear and the exponential curve, run from docs/sim/crash_*.yaml): every figure of its table is the JSON's."""
    data = json.loads((ROOT / "docs" / "sim_crash_curves.json").read_text())
    doc = (ROOT / "docs" / "liquidation.md").read_text()
    table = doc[doc.index("| crash, seeds 1-5 |"):]
    table = table[:table.index("\n\n")]
    for curve in ("linear", "exponential"):
        runs = data[curve]["per_seed"]
        assert [r["seed"] for r in runs] == [1, 2, 3, 4, 5]
        counts = " / ".join(str(sum(r[k] for r in runs)) for k in ("kicks", "takes", "redos", "backstops"))
        bad = [r["bad_debt"] for r in runs]
        pool = [r["bad_debt_from_pool"] for r in runs]
        dd = [r["lp_share_price_drawdown"] for r in runs]
        paid = sum(1 for p in pool if p > 0)
        figures = [counts, f"{sum(bad):,.0f} USD ({min(bad):,.0f}-{max(bad):,.0f})",
                   f"{sum(dd) / len(dd):.2%} ({max(dd):.2%})".replace("%", " %"),
                   f"({paid} of 5)"]
        if paid:
            figures.append(f"{sum(pool):,.0f} USD")
        for f in figures:
            assert f in table, (curve, f, table)
    for name in ("linear", "exponential"):
        text = (ROOT / "docs" / "sim" / f"crash_{name}.yaml").read_text()
        assert text.count(f"auction_curve: {name}") == 2  # both markets, not only ETH


def test_the_delayed_orders_table_is_the_committed_evidence():
    """docs/simulator.md#delayed-orders-in-the-simulator quotes docs/sim_delayed_orders.json (concentrated.yaml with
    and without delayed orders, trend and calm, seeds 1-3, 150 steps): every row of its table is the JSON's, and the
    facts the text draws from it hold."""
    data = json.loads((ROOT / "docs" / "sim_delayed_orders.json").read_text())
    doc = (ROOT / "docs" / "simulator.md").read_text()
    table = doc[doc.index("| scenario | seed | delayed orders |"):]
    table = table[:table.index("\n\n")]
    runs = data["runs"]
    assert {(r["scenario"], r["seed"], r["delayed_orders"]) for r in runs} == {
        (sc, seed, on) for sc in ("trend", "calm") for seed in (1, 2, 3) for on in (False, True)}
    pnl_keys = ("pnl_excluding_lp_flows", "fees", "funding_settled", "repeg_cost", "depth_sync_cost",
                "traders_realized_pnl", "traders_open_positions", "bad_debt")
    for r in runs:
        assert r["lp_return"] == r["lp_share_price_end"] / r["lp_share_price_start"] - 1 and r["conservation_ok"]
        usd = ["0" if round(v) == 0 else f"{v:+,.0f}" for v in (r["pool_pnl"][k] for k in pnl_keys)]
        row = f"| {r['scenario']} | {r['seed']} | {'on' if r['delayed_orders'] else 'off'} | {r['lp_return']:+.4%} | "
        row += " | ".join(usd) + " | "
        o = r["orders"]
        if o is None:
            assert not r["delayed_orders"]
            row += f" |  | {r['trades']} |"
        else:
            assert o["committed"] == o["executed"] + o["failed"] + o["lapsed"] + o["open_at_end"]
            assert o["rounds_waited"] == {"1": o["executed"] + o["failed"]} and o["missed"] == o["lapsed"] == 0
            assert r["trades"] == o["executed"] and not r["reverts"]
            row += f"{o['executed']} / {o['failed']} / {o['lapsed']} | {o['mean_delay_s']:.1f} | {r['trades']} |"
        assert row in table, (row, table)
    # The LPs' return moves by at most 0.011 percentage points with delayed orders on.
    by = {(r["scenario"], r["seed"], r["delayed_orders"]): r["lp_return"] for r in runs}
    assert max(abs(by[(sc, seed, True)] - by[(sc, seed, False)]) for sc, seed, _ in by) < 0.00011


# ---------------------------------------------------------------------------- circuit breakers and the thin market


def test_a_shock_that_goes_back_pumps_holds_and_returns():
    sh = Shock(0.3, 1.4, 20 * 60, back_after=30 * 60)
    assert sh.span == 70 * 60
    m = sh.multipliers(150, DT)
    first = sh.start_step(150, DT)
    assert first == 45 and m[:first + 1] == [1.0] * (first + 1)
    assert m[first + 4] == pytest.approx(1.4) and m[first + 10] == pytest.approx(1.4)  # the top, held 30 min
    assert all(b > a for a, b in zip(m[first:first + 4], m[first + 1:first + 5]))
    assert all(b < a for a, b in zip(m[first + 10:first + 14], m[first + 11:first + 15]))
    assert m[first + 14:] == pytest.approx([1.0] * (150 - first - 13))
    # A one-way shock is unchanged by the new field.
    assert Shock(0.2, 0.6, HOUR).span == HOUR


def test_thin_scenario_pumps_thin_only_and_leaves_the_other_paths_alone():
    sc = get_scenario("thin")
    start = {**START, "THIN": 100.0}
    paths = index_paths(sc, 150, SEED, start, DT)
    thin = paths["THIN"]
    rise = max(b / a for i, a in enumerate(thin) for b in thin[i + 1:i + 5])  # within 20 minutes
    assert rise == pytest.approx(1.4, abs=0.05) and thin[-1] / thin[0] == pytest.approx(1.0, abs=0.1)
    calm = index_paths(get_scenario("calm"), 150, SEED, START, DT)
    assert paths["ETH"] == calm["ETH"] and paths["BTC"] == calm["BTC"]  # the same specs, seeded by symbol
    assert sc.extra_markets == ("THIN",) and sc.attack == "THIN"
    assert shock_window(sc, 150, DT) == (3.75, 3.75 + 70 / 60)


def test_breaker_columns_only_with_breakers():
    assert columns(["ETH", "BTC"]) == columns(["ETH", "BTC"], breakers=False)
    extra = columns(["ETH", "BTC"], breakers=True)[len(columns(["ETH", "BTC"])):]
    assert extra == ["eth_restricted", "eth_reduce_only", "eth_cap", "btc_restricted", "btc_reduce_only", "btc_cap"]


def fake_breaker_run(d: Path, seed: int, on: bool, attacker: float, restricted=(), held: int = 0):
    d.mkdir(parents=True)
    s = {"seed": seed, "steps": 6, "step_seconds": DT, "bad_debt": 1000.0 * (not on), "bad_debt_from_pool": 0.0,
         "lp_share_price_start": 1.0, "lp_share_price_end": 1.001 if on else 0.999,
         "pool_pnl": {"pnl_excluding_lp_flows": 500.0 if on else -40_000.0, "fees": 100.0, "repeg_cost": -10.0 * on},
         "insurance_start": 100_000.0,
         "trader_pnl": {"attacker": attacker, "arb": -attacker}}
    if on:
        s["breakers"] = {"trips": {"index_move": 2, "insurance": 1}, "restricted_steps": {"THIN": 3},
                         "refused": {"arb": 4}, "max_move": 0.12, "max_divergence": 0.2, "max_skew_share": 0.05,
                         "min_insurance_factor": 0.9, "min_auction_factor": 1.0,
                         "params": {"move_threshold": 0.05, "cool_off_s": 1800, "divergence_threshold": 0.03,
                                    "divergence_duration_s": 1800, "insurance_target": 0.05,
                                    "auction_soft_share": 0.5, "max_skew_share": 0.2}}
        if held:
            s["breakers"]["peg_held_steps"] = {"THIN": held}
            s["reverts"] = {"PegStale": 2 * held}
    (d / "summary.json").write_text(json.dumps(s))
    cols = ["step", "time_s", "thin_index", "thin_spot"] + (["thin_reduce_only"] if on else [])
    lines = [",".join(cols)] + [",".join(str(v) for v in [k, DT * k, 100 + k, 100 + k / 2] + ([int(k in restricted)] if on else []))
                                for k in range(1, 7)]
    (d / "steps.csv").write_text("\n".join(lines) + "\n")
    return d


def test_the_breaker_section_renders_from_the_summaries(tmp_path):
    off = [fake_breaker_run(tmp_path / "off" / f"seed{s}", s, False, 50_000.0 + s) for s in (1, 2)]
    on = [fake_breaker_run(tmp_path / "on" / f"seed{s}", s, True, 3_000.0 + s, restricted=(2, 3, 4)) for s in (1, 2)]
    br = econ.BreakerRuns(off={"thin": off}, on={"thin": on}, seeds=[1, 2], steps=6)
    md = econ.breakers_markdown(br)
    assert md.startswith("## Circuit breakers: on vs off\n")
    assert "| 1 | off | off |  |  | 1,000 | 0 | -40,000 | -0.100 % | +50,001 | -50,001 |" in md
    assert "| 2 | on | index move 2, insurance 1 | THIN 0.25 h | 4 | 0 | 0 | +500 | +0.100 % | +3,002 | -3,002 |" in md
    assert "the attacker's PnL, mean +50,002 USD off, +3,002 on" in md
    assert "skew never tripped: its largest skew, as a share of the pool NAV was 5.00 % at the most, against a " \
           "threshold of 20 %" in md and "4.65 % of its base reserve" in md
    assert "divergence never tripped" in md and "auctions never tripped" in md
    assert "the pool's PnL differs by +40,500 USD (mean), the largest parts (`pool_pnl` in the summaries): " \
           "repegs -10, fees +0" in md and "The repegs cost the pool more" in md
    assert "100,000 / 5 % = 2,000,000 USD" in md  # the insurance breaker's level
    assert "to 106.0 USD at the top" in md and "highest vAMM price 103.0" in md and "kept 6 % of the gain" in md
    assert "peg guard" not in md  # no hold in these runs
    # With THIN's peg guard holding (the summaries' peg_held_steps): the reading says what the hold did instead.
    held = [fake_breaker_run(tmp_path / "held" / f"seed{s}", s, True, -3_000.0 - s, restricted=(2, 3), held=2 * s)
            for s in (1, 2)]
    md_held = econ.breakers_markdown(econ.BreakerRuns(off={"thin": off}, on={"thin": held}, seeds=[1, 2], steps=6))
    assert "THIN's peg guard held its peg while that lasted (3 steps a run, mean)" in md_held
    assert "6 orders a run toward the index were refused at the held peg (PegStale, mean)" in md_held
    assert "ended at -3,002 USD (mean) against +50,002 without the breakers" in md_held and "kept" not in md_held
    manifest = {}
    png = econ.plot_breakers(off[0], on[0], "THIN", tmp_path / "b.png", manifest=manifest)
    assert int.from_bytes(png.read_bytes()[16:20], "big") == 1000
    assert manifest["b.png"]["lines"] == ["index", "vAMM price, breakers off", "vAMM price, breakers on"]


THIN_STEPS = 16


@pytest.fixture(scope="module")
def thin_runs(tmp_path_factory):
    """The thin scenario, seed 2, 16 steps (the pump from step 2, its top at step 6): twice with --breakers and
    once without, three processes in parallel."""
    if shutil.which("anvil") is None:
        pytest.skip("anvil is not on PATH (./run.sh test puts node_modules/.bin there)")
    variants = {"on_a": ["--breakers"], "on_b": ["--breakers", "--no-plots"], "off": ["--no-plots"]}
    outs = {k: tmp_path_factory.mktemp(f"thin_{k}") for k in variants}
    procs = _staggered([[sys.executable, "-m", "vperp.sim", "--network", "ethereum:local:foundry", "--scenario",
                         "thin", "--steps", str(THIN_STEPS), "--seed", "2", "--out", str(outs[k])] + extra
                        for k, extra in variants.items()])
    for p in procs:
        output, _ = p.communicate(timeout=300)
        assert p.returncode == 0, output
    return outs


def test_breakers_deploy_governance_poke_and_restrict_the_pumped_market(thin_runs):
    out = thin_runs["on_a"]
    s = json.loads((out / "summary.json").read_text())
    with (out / "steps.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == columns(["ETH", "BTC", "THIN"], breakers=True, orders=True)
        rows = list(reader)
    b = s["breakers"]
    assert b["params"]["move_threshold"] == 0.05 and b["params"]["max_skew_share"] == 0.2  # the shipped parameters
    assert b["trips"].get("index_move", 0) >= 1 and b["trips_by_market"]["THIN"]["index_move"] >= 1
    assert b["max_move"] > 0.05
    # Without a config's governance.breaker.markets every market has the global thresholds; per market extremes.
    glob = {"move_threshold": 0.05, "divergence_threshold": 0.03, "divergence_duration_s": 1800, "max_skew_share": 0.2}
    assert b["market_thresholds"] == {sym: glob for sym in ("BTC", "ETH", "THIN")}
    assert b["max_by_market"]["THIN"]["move"] == b["max_move"] > b["max_by_market"]["ETH"]["move"]
    assert b["restricted_steps"]["THIN"] == sum(int(r["thin_restricted"]) for r in rows) > 0
    # THIN's peg guard (the breaker, wired by deploy_governance) held its peg through the pump; ETH and BTC have none.
    assert set(b["peg_held_steps"]) == {"THIN"} and b["peg_held_steps"]["THIN"] >= 1
    # The lowest cap factors are below 1 exactly when their breaker tripped (a market read before its first poke
    # has a stored factor of 0, which is not a trip).
    assert (b["min_insurance_factor"] < 1) == ("insurance" in b["trips"])
    assert (b["min_auction_factor"] < 1) == ("auctions" in b["trips"])
    reduce_only = [int(r["step"]) for r in rows if r["thin_reduce_only"] == "1"]
    assert reduce_only and reduce_only[0] <= 3  # the pump's first step (2) is seen by that step's poke, or the next
    assert all(r["thin_restricted"] == "1" for r in rows if r["thin_reduce_only"] == "1")
    assert set(s["trader_pnl"]) >= {"attacker", "arb", "whale"} and s["trades_by_agent"].get("attacker", 0) >= 1
    assert "pokeAll" not in " ".join(s["reverts"]) and s["conservation_ok"]
    # The refused orders are the OpenInterestCapExceeded reverts seen while restricted (never more).
    assert sum(b["refused"].values()) <= s["reverts"].get("OpenInterestCapExceeded", 0)


def test_the_thin_scenario_is_deterministic_per_seed(thin_runs):
    """Two processes, one seed, breakers on: the same CSV and summary; the second ran with --no-plots, which
    changes nothing but the PNGs (none written, the summary's list empty)."""
    assert (thin_runs["on_a"] / "steps.csv").read_bytes() == (thin_runs["on_b"] / "steps.csv").read_bytes()
    a, b = (json.loads((thin_runs[k] / "summary.json").read_text()) for k in ("on_a", "on_b"))
    for k in ("breakers", "trader_pnl", "reverts", "pool_pnl", "trades_by_agent"):
        assert a[k] == b[k], k
    assert len(a["plots"]) == 8 and b["plots"] == [] and not list(thin_runs["on_b"].glob("*.png"))
    ignored = {"plots", "csv", "wall_seconds", "steps_per_second"}
    assert {k: v for k, v in a.items() if k not in ignored} == {k: v for k, v in b.items() if k not in ignored}


def test_breakers_off_writes_no_breaker_output(thin_runs, runs):
    off = json.loads((thin_runs["off"] / "summary.json").read_text())
    assert "breakers" not in off and "attacker" in off["trader_pnl"]  # the thin scenario has an attacker
    with (thin_runs["off"] / "steps.csv").open(newline="") as f:
        assert csv.DictReader(f).fieldnames == columns(["ETH", "BTC", "THIN"], orders=True)
    # A run of an existing scenario without breakers: the same keys and columns as before the option existed.
    default = json.loads((runs[0] / "summary.json").read_text())
    assert "breakers" not in default and "trader_pnl" not in default
