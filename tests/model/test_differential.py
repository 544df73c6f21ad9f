"""Differential fuzz: random action sequences on chain and in the reference model (vperp.model).

Hypothesis draws a list of steps (deposits, withdrawals, margin transfers, opens of random size and
sign on ETH and BTC, reduces/flips, closes, levering up to the margin limit, oracle moves incl. zero
answers, time jumps of 1 s .. 2 days or to an hour boundary, funding pokes; kick, take, redo, cancel, backstop,
resolveBadDebt, and in a liquidation chunk the owner's recovery (a deposit, or the index moving back);
LP deposit, mint, requestWithdraw, redeem, withdraw; the AMM controller's syncDepth and repeg, also as a
"drift" chunk: an index jump, time for the TWAPs to diverge, then repegs and a depth sync; the owner's
setConcentration, mostly a valid range and amplification (up to exactly maxAmplification(range)), sometimes
one past the bound, zero, a range out of bounds or an unknown market, also at the start of a third of the
drift chunks, whose depth sync then follows the amplified target) for three
traders on their cross (0) and isolated (1, 2) sub-accounts (each also keeper, taker and LP). The
harness (chain_harness.py) also compares the pool's NAV, totalAssets, supply, reserve, withdrawable
assets, depositAssets, maxDeposit/maxMint and lpFlowsSuspended, tradersPnl and tradersExitPnl, the Vault's
pendingBadDebt and per-account shortfallOf and liquidationState, the engine's live notional and
auctions, the LPs' shares, requests, maxRedeem and maxWithdraw, the AMM controller's repegCost,
lastRepeg, depthCost, lastDepthSync and netExitValue, and the Kick/Take/Redo/AuctionCancelled/Backstop,
ShortfallRecorded/BadDebt (deposits and transfers into an account with an estimate lower it),
DepthSynced/DepthSyncCost and Repeg events, and (this module's `ConcentrationSteps`) the AMM controller's
concentration (range, amplification, effective amplification) and pegPrice for every market a step acted on,
ConcentrationSet and maxAmplification(range). Every step runs on chain and in
the model, and the test asserts, to the wei:
- after every step: a revert on chain <=> a `ModelRevert` with the same custom error name and the
  same arguments; a successful trade's `PositionChanged` event == the model's trade result; the
  Vault's poolBalance, insuranceFund and token balance; for each market the step acted on,
  marketState (reserves, spot, OI, cumulative funding, rate, target, last index, last update, last
  dislocation) and
  fundingState (applied/target rate, premium, TWAPs, 1 h/8 h projections); for each account the
  step acted on (and, after an oracle move, every account holding that market): collateral,
  open-market bitmap, both positions (size, openNotional, pendingFunding), accountValue,
  freeCollateral, marginRequirements, or the same revert (e.g. StaleOracle) from those views;
- at the start and end of every example, everything: both markets (plus markPrice, indexPrice,
  quote), every account the example touched (plus isLiquidatable) and the pool's previewDeposit,
  previewMint, convertToShares and convertToAssets, after all time jumps.
A failed step leaves the model unchanged (it is atomic like a transaction), so the comparison after
it also proves the chain changed nothing observable.

Setup (once per module, before the snapshot): a fresh deployment, traders funded (sub 0: 200k,
sub 1: 50k, sub 2 empty) and a whale that skews ETH long and BTC short and lets the TWAPs sample across
an hour boundary (the funding target is re-sampled once an hour), so every example starts with live
funding of both signs, ten minutes into an hour. Each example then runs inside
`chain.snapshot()` / `chain.restore()`, so examples do not leak state. Transactions go to the node
through web3 (see `Runner`); views are read in one `eth_call` through the BatchCaller mock.

Profiles: default (CI, a smoke layer: the fast tier carries the depth) 3 examples of 5-9 chunks (a chunk is one step, or a liquidation in the
making: lever, adverse jump, kick, then takes, redos, a backstop, or a recovery and a cancel), plus the
first three of the fixed shapes in `SHAPES` below (a funding-rounding regression, a liquidation under
water, a drift); the fast tier replays all of them (also the recovery paths, a backstop the auction's
price cuts short, a recovered account's backstop, credits into an account in liquidation, the LP-flow
wait after a gap traded back, a take with a stale feed), and `test_concentrated_depth_and_peg` (the
concentrated shape, `CONCENTRATED`, with its checks of the amplified depth sync, on both tiers);
`VPERP_FUZZ=long` 500 examples of 23-27 chunks.
`VPERP_FUZZ_EXAMPLES=n` overrides the example count, `VPERP_FUZZ_SHRINK=0` skips shrinking.
The run prints steps, steps/second and what was exercised at the end of the module.
Failing examples found by the fuzz are kept as `@example` regressions on the test.
"""
from __future__ import annotations

import copy
import os
import time

import pytest
from hypothesis import example, given, settings

from helpers.chain_harness import MARKETS, STATS, build_env, print_report, report_line, reset_stats, step_and_compare
from helpers.differential import (CONCENTRATION, LONG, PEG_RULE, PEG_RULE_OUTCOMES, PREFUND, SHAPES, TRADERS, WARMUP,
                                  DiffRunner, concentration_line, run_concentrated, steps_st)

@pytest.fixture(scope="module")
def env(accounts, chain, project, request):
    # accounts[1..3] are the fuzzed traders; accounts[4] is a whale that skews both markets before
    # the snapshot, so that every example starts with live funding (nonzero target and rate).
    # Every example starts with funded accounts (sub 0: 200k, sub 1: 50k; sub 2 empty), so most
    # opens trade instead of failing on margin; deposits remain one of the fuzzed steps.
    e = build_env(accounts, chain, project, TRADERS + 1, PREFUND, WARMUP)
    assert all(mk.rate and mk.target for mk in e.base_model.markets.values()), "warm-up left funding inactive"
    reset_stats()
    CONCENTRATION.update(dict.fromkeys(CONCENTRATION, 0))
    yield e
    print_report(request, report_line("long" if LONG else "ci", "differential fuzz") + concentration_line())


@example(steps=SHAPES[0])
@example(steps=SHAPES[1])
@example(steps=SHAPES[2])
@settings(settings.get_profile("vperp-differential"))
@given(steps=steps_st)
def test_chain_matches_model(env, steps):
    chain = env.chain
    sid = chain.snapshot()
    start, cpu0 = time.perf_counter(), time.process_time()
    try:
        runner = DiffRunner(env, copy.deepcopy(env.base_model))
        runner.compare((), MARKETS, full=True)  # the starting state agrees
        for step in steps:
            # Per step: what the step can have moved. Every account, auction and LP the example
            # touched is compared again at the end, after all time jumps and oracle moves.
            step_and_compare(runner, step)
        runner.compare(runner.seen, MARKETS, full=True)
    finally:
        STATS["seconds"] += time.perf_counter() - start
        if os.environ.get("VPERP_FUZZ_TIMES"):
            with open(os.environ["VPERP_FUZZ_TIMES"], "a") as fh:
                fh.write(f"{len(steps)} {time.perf_counter() - start:.2f} {time.process_time() - cpu0:.2f}\n")
        STATS["examples"] += 1
        chain.restore(sid)


@pytest.mark.skipif(not LONG, reason="the rest of the fixed shapes run on the real client with VPERP_FUZZ=long; "
                                      "CI replays them on the fast tier (tests/fast/test_fast_differential.py)")
@pytest.mark.parametrize("index", range(3, len(SHAPES)))
def test_fixed_shapes_on_the_real_client(env, index):
    """VPERP_FUZZ=long: every fixed shape the smoke layer leaves to the fast tier, on this client too."""
    test_chain_matches_model.hypothesis.inner_test(env, SHAPES[index])


def test_the_stale_peg_rule_refuses_increases_until_the_repeg(env):
    """PEG_RULE on the real client, chain == model after every step, each step's outcome as PEG_RULE_OUTCOMES."""
    chain = env.chain
    sid = chain.snapshot()
    try:
        runner = DiffRunner(env, copy.deepcopy(env.base_model))
        outcomes = []
        for step in PEG_RULE:
            step_and_compare(runner, step)
            outcomes.append(runner.last_error and runner.last_error[0])
        assert outcomes == PEG_RULE_OUTCOMES, f"{outcomes}\n" + runner.trace()
        runner.compare(runner.seen, MARKETS, full=True)
    finally:
        chain.restore(sid)


def test_concentrated_depth_and_peg(env):
    """CONCENTRATED on the real client, chain == model after every step, with its checks (run_concentrated)."""
    chain = env.chain
    sid = chain.snapshot()
    start = time.perf_counter()
    try:
        runner = DiffRunner(env, copy.deepcopy(env.base_model))
        run_concentrated(runner, step_and_compare)
        runner.compare(runner.seen, MARKETS, full=True)
    finally:
        STATS["seconds"] += time.perf_counter() - start
        STATS["examples"] += 1
        chain.restore(sid)
