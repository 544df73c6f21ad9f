"""The economic simulator (vperp/sim.py, docs/simulator.md).

The index-path generators are pure functions, tested without a chain. The simulation itself is run the
way a user runs it, `python -m vperp.sim` on Anvil (the embedded chain executes the EVM in Python and
is about five times slower on this workload), twice with the same seed, in parallel; the tests read its
outputs: the CSV (one row per step, every column), the plots, the index the oracles were given, the
Vault's conservation, the liquidations of the crash and the byte-for-byte reproducibility.
"""
from __future__ import annotations

import csv
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
    SCENARIOS,
    PathSpec,
    Shock,
    SimError,
    columns,
    gbm_path,
    get_scenario,
    index_paths,
    read_price_csv,
)

ROOT = Path(__file__).resolve().parent.parent
STEPS, SEED, DT = 30, 3, 300
START = {"ETH": 3000.0, "BTC": 60000.0}


# ---------------------------------------------------------------------------- index paths (pure)


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
    assert set(SCENARIOS) == {"calm", "trend", "crash", "squeeze"}
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


# ---------------------------------------------------------------------------- a run on the chain


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs of `python -m vperp.sim` with the same seed, in parallel: their output folders."""
    if shutil.which("anvil") is None:
        pytest.skip("anvil is not on PATH (./run.sh test puts node_modules/.bin there)")
    outs = [tmp_path_factory.mktemp(f"sim{i}") for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-m", "vperp.sim", "--network", "ethereum:local:foundry",
                               "--scenario", "crash", "--steps", str(STEPS), "--seed", str(SEED), "--out", str(out)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "COLUMNS": "200"})
             for out in outs]
    for p in procs:
        output, _ = p.communicate(timeout=240)
        assert p.returncode == 0, output
    return outs


@pytest.fixture(scope="module")
def rows(runs):
    with (runs[0] / "steps.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == columns(["ETH", "BTC"])
        return [{k: float(v) for k, v in r.items()} for r in reader]


@pytest.fixture(scope="module")
def summary(runs):
    return json.loads((runs[0] / "summary.json").read_text())


def test_csv_has_one_row_per_step(rows):
    assert [int(r["step"]) for r in rows] == list(range(1, STEPS + 1))
    assert [r["time_s"] for r in rows] == [DT * k for k in range(1, STEPS + 1)]


def test_plots_are_non_empty_pngs(runs, summary):
    names = {"mark_vs_index", "funding", "open_interest", "insurance_fund", "pool_nav", "bad_debt", "liquidations"}
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
    position or a live auction, its debt is not socialized yet (SPEC 6): positive claims may then exceed
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
    assert min(r["pool_nav"] for r in rows) < rows[0]["pool_nav"]
    assert summary["trades"] > STEPS and all(not k.startswith("revert 0x") for k in summary["reverts"])


def test_the_same_seed_gives_the_same_csv(runs):
    assert (runs[0] / "steps.csv").read_bytes() == (runs[1] / "steps.csv").read_bytes()
