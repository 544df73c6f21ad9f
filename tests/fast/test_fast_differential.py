"""The fast differential fuzz: the Ape fuzzers' step sequences on the compiled contracts in pyrevm
(vperp.fast) and in the reference model, compared after every step (tests/helpers/fast_harness.py).

Steps are drawn by the differential fuzz's own strategies (tests/helpers/differential.py: every step kind incl.
the owner's setConcentration, the liquidation chunks with their recoveries, the drift chunks, some of them
concentrated), plus four chunks of this module: an
attacker round (two attackers trade against each other on one market and close, nothing else in
between but time), a liquidation carried to its end (a take, or redos and the backstop, then the bad
debt), an LP round trip (deposit, request, cooldown, redeem or withdraw) and a run of hours (a block in
most of 2-7 consecutive hours: the hourly funding samples and their day-long TWAP anchors). An example
is a list of 20-30 such chunks, run from a snapshot of the warmed-up deployment (helpers.differential's
traders, prefunding and warm-up whale, built by chain_harness.build_env itself).

After every step: the revert (error name and arguments) and the trade, liquidation, AMM and Vault
events equal the model's (chain_harness.Runner.step), the lean views equal the model's, and the exploit
properties hold (fast_harness.Properties). At the end of every example the wide lean views (every
touched account's health, both markets' funding state, every auction and LP); every tenth example also
chain_harness's full comparison (every view the Ape fuzzers compare).

Profiles (tests/conftest.py loads the Hypothesis profile):
- CI (default): derandomized, so every run explores the same examples; at least 20,000 steps
  (asserted), about half a minute on this machine.
- `VPERP_FUZZ=long`: fresh draws, at least 1,000,000 steps (`VPERP_FAST_STEPS=n` sets another target).
`VPERP_FAST_GAS=warm` runs the chain without exact gas (about 30 % faster; gas figures then not a
node's). The module prints steps/s and what was exercised at the end.

A failure is shrunk by Hypothesis (each chunk toward its simplest form), then cut down by removing steps
while it still fails the same way (fast_harness.minimize: delta debugging, every trial with the full
comparison), and printed as a list of step tuples: keep it in `FIXED` below (run every time by
`test_fixed_examples`; `test_concentrated_depth_and_peg` runs helpers.differential's concentrated shape with its
checks of the amplified depth sync), or replay it with VPERP_FAST_REPLAY='<the list>' (or a file holding it):
`VPERP_FAST_REPLAY=... ./run.sh test tests/fast -k replay -s` (prints the step trace).
"""
from __future__ import annotations

import ast
import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from helpers import differential as td
from helpers import fast_harness as fh
from helpers.chain_harness import print_report

LONG = os.environ.get("VPERP_FUZZ", "").lower() == "long"
TARGET = int(os.environ.get("VPERP_FAST_STEPS", 1_000_000 if LONG else 20_000))
STEPS_PER_EXAMPLE = 36  # about, with 20-30 chunks (measured: see docs/testing.md)
EXAMPLES = int(os.environ.get("VPERP_FUZZ_EXAMPLES", TARGET * 12 // (10 * STEPS_PER_EXAMPLE)))
EXACT_GAS = os.environ.get("VPERP_FAST_GAS", "exact") != "warm"
FULL_EVERY = 10  # chain_harness's full comparison on every n-th example
PROBE_EVERY = 2  # the free-position close probe on every n-th step

WHALE = td.TRADERS  # the warm-up's skewing trader
ATTACKERS = (td.TRADERS + 1, td.TRADERS + 2)


@pytest.fixture(scope="module")
def env(request):
    e = fh.build_fast_env(td.TRADERS + 3, td.PREFUND, td.WARMUP, exact_gas=EXACT_GAS)
    assert all(mk.rate and mk.target for mk in e.base_model.markets.values()), "warm-up left funding inactive"
    fh.reset_fast()
    started, cpu = time.perf_counter(), time.process_time()
    yield e
    profile = "long" if LONG else "ci"
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    s = fh.FAST
    print_report(request, fh.report(profile) + (
        f"\n  module: {wall:.1f} s wall, {cpu:.1f} s CPU = {s['steps'] / max(cpu, 1e-9):.0f} steps per CPU second "
        f"with step generation; in examples {s['steps'] / max(s['cpu'], 1e-9):.0f} steps per CPU second; "
        f"gas {'exact (a node' + chr(39) + 's)' if EXACT_GAS else 'warm (not a node' + chr(39) + 's)'}"))


# ---------------------------------------------------------------------------- steps


@st.composite
def _attack_st(draw):
    """An attacker round: one attacker opens, the other takes the other side, both close, in some order,
    with only time passing in between (the properties check the pair never gains: fast_harness)."""
    a, b = draw(st.permutations(ATTACKERS))
    mid, side = draw(td.markets_st), draw(st.sampled_from([1, -1]))
    ppb = draw(st.integers(10**5, 3 * 10**7))
    wait = st.sampled_from([1, 1, 60, 600])
    first, second = draw(st.permutations([a, b]))
    steps = [("open", a, 0, mid, side, ppb, "any", True), ("time", draw(wait)),
             ("open", b, 0, mid, -side, ppb, "any", True), ("time", draw(wait)),
             ("close", first, 0, mid, "any", True), ("close", second, 0, mid, "any", True)]
    return [s for s in steps if s[0] != "time" or s[1] > 1]


@st.composite
def _liquidation_st(draw):
    """A liquidation carried to its end (helpers.stateful's crash_and_take and auction_runs_out in one): the
    index meets the vAMM, an account levers up to its limit, the index gaps 8-35 % against it, the keeper
    kicks; then a taker comes while the discount grows, or the auction expires, is redone and
    backstopped; the bad debt, if any, is resolved."""
    t, sub, mid, side = draw(td.traders_st), draw(st.sampled_from([0, 1, 1])), draw(td.markets_st), draw(
        st.sampled_from([1, -1]))
    keeper = draw(td.traders_st)
    taker = draw(td.traders_st.filter(lambda x: x != t))
    steps = [("oracle", mid, "spot", 0, 0), ("lever", t, sub, mid, side, 100),
             ("oracle", mid, "jump", 0, -side * draw(st.integers(800, 3500))), ("kick", keeper, t, sub, 0)]
    if draw(st.booleans()):
        steps += [("time", draw(st.sampled_from([1, 300, 900, 1700]))),
                  ("take", taker, 0, 0, draw(st.sampled_from(["all", "all", "half", "exact"])), "any")]
        if draw(st.booleans()):
            steps += [("time", 60), ("take", taker, 0, 0, "all", "any")]
    else:
        for _ in range(draw(st.integers(0, 3))):
            steps += [("time", 1801), ("poke", 1), ("poke", 2), ("redo", keeper, 0)]
        steps += [("time", 1801), ("backstop", keeper, 0)]
    steps.append(("baddebt", keeper, t, sub))
    return steps


@st.composite
def _lp_round_st(draw):
    """An LP's round trip: a deposit, a withdrawal request, the cooldown (the feeds answering again after
    it), then a redeem or a withdraw of part or all of it, maybe a depth sync."""
    t = draw(td.traders_st)
    steps = [("lpdeposit", t, draw(st.integers(10**9, 10**12))), ("lprequest", t, draw(st.sampled_from([100, 50, 10]))),
             ("time", draw(st.sampled_from([86_400, 86_400 + 3600, 3 * 86_400 + 1]))),
             ("oracle", 1, "spot", 0, 0), ("oracle", 2, "spot", 0, 0),
             (draw(st.sampled_from(["lpredeem", "lpwithdraw"])), t, draw(st.sampled_from([100, 50, -1])))]
    if draw(st.booleans()):
        steps.append(("syncdepth", draw(td.markets_st)))
    return steps


@st.composite
def _hours_st(draw):
    """Funding through the hours: 2-7 hours in a row, each entered at a drawn second (its first, its second, half
    an hour in, its last), most with a poke, a small trade or an index step and a poke on one market, some with
    nothing (no block in that hour: its hourly slot keeps an older hour's observation, which the day-long TWAP
    skips). The hourly samples then read anchors the example wrote, probe past idle hours, and in a long
    example find slots of hours more than 25 back (the slots are reused)."""
    mid = draw(td.markets_st)
    steps = [("oracle", mid, "same", 0, 0)]  # the feed answers (a stale one would revert every poke of the run)
    for _ in range(draw(st.integers(2, 7))):
        steps.append(("time", "hour", draw(st.sampled_from([0, 0, 1, 1800, 3599]))))
        act = draw(st.sampled_from(["poke", "poke", "open", "oracle", "none"]))
        if act == "poke":
            steps.append(("poke", mid))
        elif act == "open":
            steps.append(("open", draw(td.traders_st), 0, mid, draw(st.sampled_from([1, -1])),
                          draw(st.integers(10**5, 5 * 10**6)), "any", True))
        elif act == "oracle":
            steps += [("oracle", mid, "step", draw(st.integers(-300, 300)), 0), ("poke", mid)]
    return steps


chunk_st = st.one_of(td.step_st.map(lambda x: [x]), td.step_st.map(lambda x: [x]), td._crash_st(), td._drift_st(),
                     _attack_st(), _liquidation_st(), _lp_round_st(), _hours_st())
steps_st = st.lists(chunk_st, min_size=20, max_size=30).map(td._flatten)


FAILED: list = []  # the last failing step list (after Hypothesis's shrinking: the shrunk one)


def run(env, steps, full_every=FULL_EVERY):
    try:
        fh.run_example(env, steps, attackers=ATTACKERS, full_every=full_every, probe_every=PROBE_EVERY)
    except AssertionError as e:
        FAILED[:] = [steps]
        raise AssertionError(f"{e}\nreplayable step list:\n{steps!r}") from None


# ---------------------------------------------------------------------------- fixed examples

# Failing sequences found by this fuzz (and shapes worth running every time) stay here.
FIXED = [
    # a liquidation under water taken in two parts, an unpaid redo, the bad debt resolved by the take
    [("lever", 0, 0, 1, 1, 100), ("oracle", 1, "jump", 0, -2000), ("kick", 1, 0, 0, 0), ("time", 600),
     ("take", 2, 0, 0, "half", "any"), ("time", 1801), ("redo", 1, 0), ("time", 600),
     ("take", 2, 0, 0, "all", "exact"), ("baddebt", 1, 0, 0)],
    # an attacker round at a constant index, each side in turn
    [("open", 4, 0, 1, 1, 2 * 10**7, "any", True), ("open", 5, 0, 1, -1, 2 * 10**7, "any", True),
     ("close", 4, 0, 1, "any", True), ("close", 5, 0, 1, "any", True),
     ("open", 5, 0, 2, -1, 3 * 10**7, "any", True), ("time", 600), ("open", 4, 0, 2, 1, 3 * 10**7, "any", True),
     ("close", 5, 0, 2, "any", True), ("close", 4, 0, 2, "any", True)],
    # the backstop the band cuts short, after three unpaid redos
    [("lever", 0, 0, 1, 1, 100), ("oracle", 1, "spot", 0, 0), ("lever", 0, 0, 1, 1, 100),
     ("oracle", 1, "jump", 0, -2000), ("kick", 1, 0, 0, 0), ("time", 1801), ("redo", 1, 0), ("time", 1801),
     ("redo", 1, 0), ("time", 1801), ("redo", 1, 0), ("time", 1801), ("oracle", 1, "spot", 0, 0),
     ("backstop", 1, 0), ("backstop", 1, 0), ("oracle", 1, "spot", 0, 0), ("backstop", 1, 0),
     ("baddebt", 2, 0, 0)],
    # LP flows: a deposit, a request, the cooldown, a redeem and a withdraw (feeds refreshed), a depth sync
    [("lpdeposit", 1, 10**11), ("lprequest", 1, 50), ("time", 86_400), ("oracle", 1, "same", 0, 0),
     ("oracle", 2, "same", 0, 0), ("lpredeem", 1, 50), ("lpwithdraw", 1, 50), ("syncdepth", 1), ("repeg", 1)],
]


def test_fixed_examples(env):
    """The fast tier's own shapes, then every fixed shape of the Ape differential fuzz (td.SHAPES: that
    layer replays only the first three on the real client in CI), each with the full comparison."""
    for steps in FIXED + td.SHAPES:
        run(env, steps, full_every=1)


def test_concentrated_depth_and_peg(env):
    """helpers.differential.CONCENTRATED with its checks (helpers.differential.run_concentrated: the amplified depth
    sync), every step with the lean views and the properties, then the wide and the full comparison."""
    fc = env.fc
    token = fc.snapshot()
    try:
        runner = fh.FastRunner(env, fh.fast_copy(env.base_model))
        runner.props.set_attackers(ATTACKERS)
        runner.compare((), fh.MARKETS, full=True)
        td.run_concentrated(runner, fh.fast_step)
        runner.lean_check(runner.seen, fh.MARKETS, range(1, runner.model.auction_count + 2), runner.lps, wide=True)
        runner.compare(runner.seen, fh.MARKETS, full=True)
    finally:
        fc.revert(token)


def _replay_source():
    text = os.environ.get("VPERP_FAST_REPLAY", "").strip()
    if text and Path(text).is_file():
        text = Path(text).read_text()
    return text


def test_replay(env):
    """VPERP_FAST_REPLAY: a step list (Python literal, as the fuzz prints it) or a file holding one (or a
    list of them), replayed with every check; without it, the fixed examples' first replays as a check
    that the replay path works."""
    text = _replay_source()
    lists = ast.literal_eval(text) if text else [FIXED[0]]
    if lists and isinstance(lists[0], tuple):
        lists = [lists]
    for steps in lists:
        runner = fh.run_example(env, [tuple(s) for s in steps], attackers=ATTACKERS, full_every=1)
        if text:
            print("\n" + runner.trace())


# ---------------------------------------------------------------------------- the fuzz


@settings(max_examples=EXAMPLES, deadline=None, database=None if not LONG else settings.default.database,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large],
          phases=[p for p in Phase if p != Phase.shrink or os.environ.get("VPERP_FUZZ_SHRINK", "1") != "0"],
          print_blob=True)
@given(steps=steps_st)
def _fuzz(env, steps):
    run(env.env, steps)


class _Env:
    """The environment as the fuzz's argument: a short repr, so a failure prints only the step list."""

    def __init__(self, env):
        self.env = env

    def __repr__(self) -> str:
        return "env"


def test_fast_chain_matches_model(env):
    """The campaign: EXAMPLES drawn examples; at least TARGET steps (CI: 20,000) and every kind of action
    went through at least once; the attacker and NAV properties were exercised."""
    s = fh.FAST
    before = s["steps"]
    try:
        _fuzz(_Env(env))
    except AssertionError:
        if FAILED and os.environ.get("VPERP_FUZZ_SHRINK", "1") != "0":
            # Hypothesis shrinks the chunks, but an example keeps its 20 chunks: cut it down further
            steps = fh.minimize(env, FAILED[0], attackers=ATTACKERS, probe_every=PROBE_EVERY)
            print(f"\nminimized replayable step list ({len(steps)} steps; keep it in FIXED, or replay it with "
                  f"VPERP_FAST_REPLAY):\n{steps!r}")
            run(env, steps)  # fails again, now with the short list in its message
        raise
    assert s["steps"] - before >= TARGET, f"only {s['steps'] - before} steps (target {TARGET}): raise EXAMPLES"
    for kind in ("open", "reduce", "close", "lever", "deposit", "withdraw", "transfer", "oracle", "poke", "kick",
                 "take", "redo", "backstop", "baddebt", "cancel", "lpdeposit", "lprequest", "lpredeem", "lpwithdraw",
                 "syncdepth", "repeg", "concentrate", "syncdepth (amplified)", "repeg (amplified)"):
        assert s["ok"][kind] or kind in ("baddebt", "cancel"), f"no {kind} step went through"
    assert s["kinds"]["concentrate"] > s["ok"]["concentrate"], "no invalid concentration was drawn"
    assert s["props"]["attacker rounds closed"] and s["props"]["trade NAV == pool fee"]
