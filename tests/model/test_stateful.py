"""Stateful fuzz: a Hypothesis `RuleBasedStateMachine` over the whole protocol, checked against the
reference model (vperp.model) after every step and against the protocol's invariants (numbered as in
docs/specification.md, section 11).

Actors (bundles): traders on cross (0) and isolated (1, 2) sub-accounts, an attacker pair that
trades against itself, a keeper, an LP, and every trader may also act as taker, keeper or LP.
Rules: deposit, withdraw, transferMargin, open, reduce/flip, close, lever up to the margin limit,
oracle steps and jumps (the index may also go to zero), time jumps, funding pokes, kick (the market
bestMarketToKick names, or a given one), take (partial, whole, dust, below minimum, at or past the
limit), redo, backstop (also after the owner recovers: it cancels), cancel (after the owner maybe adds
margin), resolveBadDebt, LP deposit / requestWithdraw / redeem / withdraw, the AMM controller's syncDepth
and repeg (also after an index jump and time for the TWAPs to diverge), the attacker pair's round trip
at a constant index, and the exploit attempts of the value-safety review (F1-F8 below) and of its
follow-up (credits into accounts in liquidation, a trade back after a gap).

After every step (chain_harness.Runner): reverts equal by error name and arguments, the trade and
liquidation events, and every view the step can have moved, to the wei. Then the invariants, on
the model (equal to the chain by the comparison just made):
- invariant 1: the Vault's token balance (as WAD) == sum of collateral + insurance fund + pool
  balance, exactly (every ledger move is zero-sum; a deficit would show as a shortfall).
- invariant 2 and the GMX v1 lesson: per market, long/short open interest == the sums over positions;
  the traders' net size == the vAMM's base moved since listing; the pool's aggregates (sum of open
  notionals, sum of funding bases) == the sums over positions; tradersPnl from aggregates == summed
  position by position (compared on chain too, through the pool's NAV view).
- invariants 4 and 13: the attacker pair's round trip at a constant index never ends with more
  collateral than it started with.
- invariant 6: |applied rate| <= the market's cap.
- invariant 8: every action other than an oracle move, a time jump or a liquidation step leaves the
  health (value - maintenance, at that step's timestamp) of every account it did not act on as it
  was or better.
- invariants 10 and 12: every auctioned part is backed by exactly the live auctions' sizes, with the
  position's sign, never more than the position; a finished auction leaves no auctioned size.
- invariant 14: live auction notional == the sum over live auctions, <= the global cap.
- invariant 15: the insurance fund only falls by the bad debt it pays and the keeper bounties of kicks
  under water (499a26b; each at most maxKeeperReward); a resolved account is at zero.
- invariant 16: an LP withdrawal leaves the pool's NAV at or above its reserve for open interest.
- The AMM controller: the pool values positions at their vAMM exit, so a depth sync moves NAV by exactly
  minus the cost it books (DepthSyncCost): a deepening one by at most min(maxDepthCost x NAV, takerFee x
  maxSpread x quote reserve), a shrinking one never down; a repeg (iii) by exactly minus the cost it books
  (Repeg, repegCost: the change of the net position's exit value; REPEG_WEI of tolerance, none needed so
  far), |cost| within maxRepegCost x NAV (a net short's plus the price's own truncation, a few hundred
  wei).

Exploit properties (the value-safety review's findings; `PROPS` counts how often each was checked):
- F1: an account in auction that withdraws or moves all it may keeps value >= its auctioned parts'
  maintenance backing (rule `withdraw_in_auction`, checked after every withdrawal and transfer); and a
  bad debt resolved at the index of the engine's last shortfall record for the account exceeds that
  record by at most the funding its positions paid since and a few wei per fill (the insurance fund
  never pays more than was recorded), unless the owner itself traded in between.
- F2: a sandwich around syncDepth (LP deposit, open, sync, close in consecutive blocks at one index)
  never gains (`sandwich_depth_sync`).
- F3: every trade moves the pool's NAV by its pool fee (plus the insurance share while the estimates
  exceed the insurance fund) within 4 wei.
- F4: on chain, navWad == poolBalance - tradersExitPnl - uncoveredBadDebt and depositAssets ==
  max(0, poolBalance - tradersExitPnl) / tokenScale after every rule; every LP deposit's shares (mint's
  assets) are floor(assets (supply + 1e6) / (depositAssets + 1)) (the ceiling of the inverse) at the
  pre-step state: priced before the bad-debt set-aside; the pool's part of a resolved bad debt exceeds
  the uncovered estimate NAV held by at most F1's slack; an LP's matured redemption right after a gap
  past the band is refused (LpFlowsSuspended) while the untrusted open interest exceeds the tolerance,
  and otherwise pays at most its share of NAV (`gap_lp_exit`), and a deposit probed then is refused too.
  Untrusted, from first principles: a stale or zero feed, a vAMM outside its band, an index more than the
  band from the last one accrued, or a block less than a TWAP window ago that found a gap (the vAMM in
  its band around the old index, out around the new one).
  (i) collateral credited to an account in liquidation (deposit, margin transfer) lowers its estimate one
  for one, floor 0 (checked after every such step); an LP depositing ahead of the set-aside's release (a
  top-up, a cancel, a take) ends with shares worth no more than it paid, up to what time alone (funding)
  would have given the same shares and a token unit (`credit_then_release`);
  (ii) a trade back to the index in the block after a gap does not end the LP-flow wait: that block's
  accrual records the gap first (lastDislocation), and deposits stay refused for a TWAP window from it
  (`gap_then_trade_back`, probed at once and up to 898 s later).
- F5: at the step's index, a kick's keeper reward and penalty and a redo's tip never take the account
  below the worst fill of its auctions, and an account already below it pays nothing (its recorded
  shortfall is the deficit; its keeper's bounty, chip x notional within maxKeeperReward and the fund,
  comes from the insurance fund); a redo of a recovered account cancels, unpaid; a backstop cancels only an
  account at or above targetHealth x (free maintenance + auctioned backing), and then trades nothing.
- F7: with a valid index and no pause, closing any free position at any price goes through (one
  position per rule, in turn, by eth_call; the model agrees).
- F8: the ERC-4626 views answer (never revert) what the model says (depositAssets, previewDeposit and
  previewMint too); maxDeposit == 0 iff a deposit of one unit is refused for a reason other than
  ZeroShares; redeem(maxRedeem) and withdraw(maxWithdraw) go through whenever positive (eth_call).
Every CI run also plays one fixed script per exploit (`test_exploit_scripts`): the machine's own rules
in a fixed order, every invariant after each rule.

Profiles: CI (default, a smoke layer: the fast tier's machine carries the depth) 1 run of up to 30 rules, plus the scripts; `VPERP_FUZZ=long` 200 runs x 60 steps (hours, on
either chain: add `--network ethereum:local:foundry` for Anvil). `VPERP_FUZZ_EXAMPLES=n` overrides.
The run prints steps/s and what was exercised.
"""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from helpers.chain_harness import STATS, build_env, print_report, report_line, reset_stats
from helpers.stateful import LONG, PREFUND, PROPS, RUNS, SCRIPTS, STEPS, WARMUP, WHALE, Protocol, run_script


@pytest.fixture(scope="module")
def env(accounts, chain, project, request):
    e = build_env(accounts, chain, project, WHALE + 1, PREFUND, WARMUP)
    reset_stats()
    for key in PROPS:
        PROPS[key] = 0
    yield e
    print_report(request, report_line("long" if LONG else "ci", "stateful fuzz")
                 + "; exploit properties checked: " + ", ".join(f"{k} {v}" for k, v in PROPS.items()))


def test_protocol_state_machine(env):
    Protocol.env = env
    run_state_machine_as_test(
        Protocol,
        settings=settings(
            max_examples=RUNS,
            stateful_step_count=STEPS,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[p for p in Phase if p != Phase.shrink or os.environ.get("VPERP_FUZZ_SHRINK", "1") != "0"],
            print_blob=True,
        ),
    )
    assert STATS["steps"] > 0


# ---------------------------------------------------------------------------- scripted exploit attempts


# On the real client in CI: one script per kind of path (a withdrawal in an auction, the auction running out,
# an LP-side exploit); VPERP_FUZZ=long runs them all here too. The fast tier runs every script every time.
# The scripts themselves: helpers.stateful.SCRIPTS.
SMOKE_SCRIPTS = ("F1 withdraw in auction", "F5 redos and backstop", "F2 sandwich")


@pytest.mark.parametrize("name", list(SCRIPTS) if LONG else list(SMOKE_SCRIPTS))
def test_exploit_scripts(env, name):
    run_script(env, name)
