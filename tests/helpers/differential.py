"""The differential fuzz's vocabulary (tests/model/test_differential.py; the fast tier, tests/fast/, replays it):
the profile's sizes, the warm-up, the concentration step (`ConcentrationSteps`, `DiffRunner`), the Hypothesis
strategies of the steps, the fixed shapes (`SHAPES`) and the concentrated-depth sequence (`run_concentrated`)."""
from __future__ import annotations

import copy
import os

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from helpers.chain_harness import MARKETS, WAD, Runner, _call, _encode, _event_logs, _one_event_data, _topic_int
from eth_utils import keccak

from vperp.config import max_amplification
from vperp.model import mul_wad_down

LONG = os.environ.get("VPERP_FUZZ", "").lower() == "long"
# CI: a smoke layer on the real client (the fast tier, tests/fast, runs the same comparison for >= 20,000 steps).
EXAMPLES, STEPS = (500, 50) if LONG else (3, 15)
EXAMPLES = int(os.environ.get("VPERP_FUZZ_EXAMPLES", EXAMPLES))  # override, e.g. for a quick local run

TRADERS = 3
SUBS = (0, 1, 2)
PREFUND = {0: 200_000, 1: 50_000}  # collateral (human units) each trader starts every example with


# The whale trades at the start of an hour (so the warm-up's timing does not depend on where the deployment
# left the clock), the TWAPs sample for half an hour, then the next hour's first pokes re-sample the funding
# target from the day-long TWAPs (the target moves only then: once an hour), and ten minutes later the applied
# rate has moved toward it and the funding index accrued.
WARMUP = [("time", "hour", 0), ("deposit", TRADERS, 0, "normal", 10**12, 0),
          ("open", TRADERS, 0, 1, 1, 2 * 10**7, "any", True), ("open", TRADERS, 0, 2, -1, 10**7, "any", True),
          ("time", 1000), ("poke", 1), ("poke", 2), ("time", 1000), ("poke", 1), ("poke", 2),
          ("time", "hour", 0), ("poke", 1), ("poke", 2), ("time", 600), ("poke", 1), ("poke", 2)]


# ---------------------------------------------------------------------------- the concentration step


CONCENTRATION_SET = keccak(text="ConcentrationSet(uint32,uint256,uint256)")
# What the concentration steps did, for the module's report line (both tiers count through the mixin).
CONCENTRATION = {"set": 0, "reverted": 0, "amplified_syncs": 0, "amplified_repegs": 0, "peg_tolerance_set": 0,
                 "peg_tolerance_reverted": 0}


class ConcentrationSteps:
    """A mixin over chain_harness.Runner (this module's `DiffRunner`, fast_harness.FastRunner): the step
    ("concentrate", market, range, amplification), AmmController.setConcentration sent by its owner (the
    deployer) and Model.set_concentration; after it goes through, its ConcentrationSet event and the chain's
    maxAmplification(range) (the bound the step was drawn against, vperp.config.max_amplification) are
    compared with the model's. The views it and the peg rule move, concentration(id) (range, amplification,
    effective amplification) and pegPrice(id), are compared for every market a step touched (chain_harness's
    `views`; the fast tier's lean views add them itself)."""

    last_receipt = None

    def _concentrate(self, T, market_id, range_, amplification):
        if market_id in MARKETS:  # an unknown market is one of the drawn reverts (UnknownMarket)
            self.touched_markets.add(market_id)
        data = _encode("setConcentration(uint32,uint256,uint256)", [market_id, range_, amplification])
        return (lambda: self.model.set_concentration(market_id, range_, amplification),
                (self.s.deployer.address, self.amm, data),
                f"setConcentration({market_id}, range={range_}, amplification={amplification})")

    def _pegtol(self, T, market_id, bps):
        """ClearingHouse.setPegTolerance by its owner: the stale-peg rule on (bps > 0) or off (0); bounded 0..500."""
        if market_id in MARKETS:
            self.touched_markets.add(market_id)
        return (lambda: self.model.set_peg_tolerance(market_id, bps),
                (self.s.deployer.address, self.ch, _encode("setPegTolerance(uint32,uint256)", [market_id, bps])),
                f"setPegTolerance({market_id}, {bps} bps)")

    def send(self, sender: str, target: str, data: bytes):
        receipt, err = super().send(sender, target, data)
        self.last_receipt = receipt
        return receipt, err

    def step(self, step: tuple) -> None:
        super().step(step)
        kind = step[0]
        if kind == "concentrate":
            if self.last_error is not None:
                CONCENTRATION["reverted"] += 1
                return
            _, market_id, range_, amplification = step
            logs = _event_logs(self.last_receipt, CONCENTRATION_SET)
            got = (_topic_int(logs[0], 1),) + _one_event_data(self.last_receipt, CONCENTRATION_SET,
                                                               ["uint256", "uint256"])
            assert got == (market_id, range_, amplification), (
                f"ConcentrationSet mismatch: chain {got} vs {(market_id, range_, amplification)}\n" + self.trace())
            ok, raw = self.probe(self.addr[0], self.amm, _encode("maxAmplification(uint256)", [range_]))
            want = max_amplification(range_)
            assert ok and int.from_bytes(raw, "big") == want, (
                f"maxAmplification({range_}): chain {raw} vs vperp.config {want}\n" + self.trace())
            CONCENTRATION["set"] += 1
        elif kind == "pegtol":
            CONCENTRATION["peg_tolerance_set" if self.last_error is None else "peg_tolerance_reverted"] += 1
        elif kind in ("syncdepth", "repeg") and self.last_error is None \
                and self.model.effective_amplification(step[1]) != WAD:
            CONCENTRATION["amplified_syncs" if kind == "syncdepth" else "amplified_repegs"] += 1

    def amm_views(self, markets) -> list:
        m = self.model
        out = []
        for mid in sorted(markets):
            out.append(_call(f"concentration({mid})", self.amm, "concentration(uint32)", ["uint32"], [mid],
                             ["uint256"] * 3, lambda mid=mid: concentration_of(m, mid)))
            out.append(_call(f"pegPrice({mid})", self.amm, "pegPrice(uint32)", ["uint32"], [mid], ["uint256"],
                             lambda mid=mid: m.peg_price(mid)))
        return out

    def views(self, now, accts, markets, full, auctions=(), lps=()):
        return super().views(now, accts, markets, full, auctions, lps) + self.amm_views(markets)


def concentration_of(model, market_id: int) -> tuple[int, int, int]:
    """The model's AmmController.concentration(id): (range, amplification, effective amplification)."""
    return model.concentration.get(market_id, (0, 0)) + (model.effective_amplification(market_id),)


def concentration_line() -> str:
    c = CONCENTRATION
    return (f"; concentration: {c['set']} set ({c['reverted']} reverted), {c['amplified_syncs']} depth syncs and "
            f"{c['amplified_repegs']} repegs under an amplification")


class DiffRunner(ConcentrationSteps, Runner):
    """chain_harness.Runner with the concentration step and views."""


# ---------------------------------------------------------------------------- steps


traders_st = st.integers(0, TRADERS - 1)
subs_st = st.sampled_from([0, 0, 0, 1, 1, 2])  # cross most often; sub 2 starts unfunded
markets_st = st.sampled_from(MARKETS)

# Trade size as parts per billion of the market's listing base reserve: normal (0.001 %..0.5 %, twice),
# dust around the minimum position size, and large (0.5 %..6 %, where the price band bites).
ppb_st = st.one_of(st.integers(10**4, 5 * 10**6), st.integers(10**4, 10**6), st.integers(1, 3000),
                   st.integers(5 * 10**6, 6 * 10**7))
limit_st = st.sampled_from(["any"] * 6 + ["exact"] * 2 + ["tight"])

def _open_st():
    # One strategy object per use: `one_of` merges identical alternatives, and opens should dominate.
    return st.tuples(st.just("open"), traders_st, subs_st, markets_st, st.sampled_from([1, -1]), ppb_st, limit_st,
                     st.sampled_from([True] * 19 + [False]))


# Reduce / close / flip by a percentage of the current position (100 = exact close via openPosition).
reduce_st = st.tuples(st.just("reduce"), traders_st, subs_st, markets_st, st.sampled_from([100, 50, 200, 1, 99, 150]),
                      limit_st)
close_st = st.tuples(st.just("close"), traders_st, subs_st, markets_st, limit_st,
                     st.sampled_from([True] * 19 + [False]))


def _deposit_st():
    # Mostly 1k..100k of collateral; sometimes any amount, rarely zero (ZeroAmount).
    return st.tuples(st.just("deposit"), traders_st, subs_st, st.sampled_from(["normal"] * 8 + ["any", "zero"]),
                     st.integers(10**9, 10**11), st.integers(1, 10**12))


withdraw_st = st.tuples(st.just("withdraw"), traders_st, subs_st, st.sampled_from(["free", "all", "raw"]),
                        st.integers(-2, 2), st.integers(0, 10**11))
transfer_st = st.tuples(st.just("transfer"), traders_st, subs_st, subs_st, st.sampled_from(["free", "raw"]),
                        st.integers(-2, 2), st.integers(0, 10**23))


def _oracle_st():
    return st.tuples(st.just("oracle"), markets_st, st.sampled_from(["step"] * 5 + ["jump"] * 2 + ["same"] * 2 + ["zero"]),
                     st.integers(-500, 500), st.integers(-5000, 10000))


def _time_st():
    # Seconds to two days; mostly minutes to hours (several TWAP quarters, oracle still fresh); or to an hour
    # boundary (the funding target is re-sampled by a market's first update in a new hour): the next block in
    # the next hour's first or second second or half an hour in, or in the current hour's last second (a
    # block there, then the next hour's first block one second later).
    # (One strategy, not a `one_of`: step_st's `one_of` would take in its alternatives and draw time steps more
    # often.)
    seconds = st.one_of(st.integers(1, 120), st.integers(121, 3600), st.integers(200, 7200),
                        st.integers(3601, 2 * 86400), st.just("hour"))
    return st.tuples(st.just("time"), seconds, st.sampled_from([0, 1, -1, 1800])).map(
        lambda s: s if s[1] == "hour" else s[:2])


poke_st = st.tuples(st.just("poke"), markets_st)

# Liquidation: lever up (the largest position the margin allows, in % of it), kick (market 0 = the
# engine's bestMarketToKick), take (auction picked among the live ones; amount and limit modes), redo,
# backstop, resolveBadDebt. Pool: deposit, requestWithdraw (% of shares; -1 = 1 share), redeem (% of the
# request; -1 = one more than requested), withdraw (% of maxWithdraw; -1 = one more than it).
lever_st = st.tuples(st.just("lever"), traders_st, subs_st, markets_st, st.sampled_from([1, -1]),
                     st.sampled_from([100, 100, 90, 60, 105]))
kick_st = st.tuples(st.just("kick"), traders_st, traders_st, subs_st, st.sampled_from([0, 0, 0, 1, 2]))
take_st = st.tuples(st.just("take"), traders_st, st.sampled_from([0, 0, 1, 2]), st.integers(0, 3),
                    st.sampled_from(["all"] * 3 + ["exact", "half", "half", "min", "below", "dust", "zero"]),
                    st.sampled_from(["any"] * 3 + ["exact", "tight"]))
redo_st = st.tuples(st.just("redo"), traders_st, st.integers(0, 3))
cancel_st = st.tuples(st.just("cancel"), traders_st, st.integers(0, 3))
backstop_st = st.tuples(st.just("backstop"), traders_st, st.integers(0, 3))
baddebt_st = st.tuples(st.just("baddebt"), traders_st, traders_st, subs_st)
lp_st = st.one_of(
    st.tuples(st.just("lpdeposit"), traders_st, st.one_of(st.integers(10**6, 10**11), st.integers(0, 10))),
    st.tuples(st.just("lpmint"), traders_st, st.one_of(st.integers(10**12, 10**17), st.integers(0, 10))),
    st.tuples(st.just("lprequest"), traders_st, st.sampled_from([100, 50, 0, -1, 101])),
    st.tuples(st.just("lpredeem"), traders_st, st.sampled_from([100, 50, 0, -1])),
    st.tuples(st.just("lpwithdraw"), traders_st, st.sampled_from([100, 50, 0, -1])),
)

amm_st = st.tuples(st.sampled_from(["syncdepth", "repeg"]), markets_st)

# Concentration (AmmController.setConcentration, by the owner). Ranges from the bounds' ends and between (the
# band's 10 % most often: with the band (maxSpread 10 %) wider than the range, 1 % and 5 % leave the effective
# amplification at 1); mostly a valid amplification, in [1, maxAmplification(range)], either end included;
# sometimes one past the bound, zero, a range out of bounds, or an unknown market.
CONCENTRATION_RANGES = (10**17, 10**16, 5 * 10**17, 10**17, 5 * 10**16, 2 * 10**17)
BAD_RANGES = (10**16 - 1, 5 * 10**17 + 1, 0, WAD)


@st.composite
def _concentrate_st(draw, market=None, valid=False):
    mid = market if market is not None else draw(markets_st)
    mode = "valid" if valid else draw(st.sampled_from(["valid"] * 6 + ["above max", "zero", "range", "market"]))
    if mode == "range":
        return "concentrate", mid, draw(st.sampled_from(BAD_RANGES)), draw(st.sampled_from([10 * WAD, WAD, 0]))
    range_ = draw(st.sampled_from(CONCENTRATION_RANGES))
    top = max_amplification(range_)
    if mode == "above max":
        return "concentrate", mid, range_, top + 1
    if mode == "zero":
        return "concentrate", mid, range_, 0
    amplification = draw(st.one_of(st.integers(WAD, top), st.just(top), st.just(WAD)))
    return "concentrate", draw(st.sampled_from([0, 3])) if mode == "market" else mid, range_, amplification

# The stale-peg rule's tolerance: off, the concentrated setting's 11 bps, wider, the bound, and past it or on an
# unknown market (the reverts).
pegtol_st = st.one_of(st.tuples(st.just("pegtol"), markets_st, st.sampled_from([0, 11, 11, 50, 500, 501])),
                      st.tuples(st.just("pegtol"), st.sampled_from([0, 3]), st.just(11)))

# Opens first: Hypothesis starts from (and shrinks toward) the first alternative, so the simplest
# examples, which a derandomized CI run draws many of, trade instead of only letting time pass.
step_st = st.one_of(_open_st(), _open_st(), _open_st(), _open_st(), _open_st(), reduce_st, close_st,
                    _time_st(), _time_st(), poke_st, st.tuples(st.just("poke"), markets_st), amm_st,
                    _deposit_st(), withdraw_st, transfer_st, _oracle_st(), _oracle_st(),
                    lever_st, kick_st, take_st, redo_st, cancel_st, backstop_st, baddebt_st, lp_st,
                    _concentrate_st(), pegtol_st)


@st.composite
def _crash_st(draw):
    """A liquidation in the making: lever up, the index moves 6-40 % against the position, a keeper
    kicks, time passes, and takers, redos, the backstop, or a recovery (the owner deposits, or the
    index moves back) and a cancel follow."""
    t, sub, mid, sign = draw(traders_st), draw(st.sampled_from([0, 1])), draw(markets_st), draw(st.sampled_from([1, -1]))
    steps = [("lever", t, sub, mid, sign, 100),
             ("oracle", mid, "jump", 0, -sign * draw(st.integers(600, 4000))),
             ("kick", draw(traders_st), t, sub, 0)]
    recover = st.one_of(st.tuples(st.just("deposit"), st.just(t), st.just(sub), st.just("normal"),
                                  st.integers(10**9, 10**11), st.just(0)),
                        st.tuples(st.just("oracle"), st.just(mid), st.just("jump"), st.just(0),
                                  st.integers(300, 1500).map(lambda bps: sign * bps)))
    for _ in range(draw(st.integers(1, 4))):
        steps.append(("time", draw(st.sampled_from([1, 60, 600, 1200, 1801, 2400]))))
        steps.append(draw(st.one_of(take_st, take_st, redo_st, backstop_st, kick_st, cancel_st, recover)))
    return steps


@st.composite
def _drift_st(draw):
    """The vAMM left behind by the index: the index jumps 1-20 %, the TWAPs diverge over 10 min to 2 h,
    then the AMM controller repegs (maybe twice, maybe too soon) and syncs depth to the pool. In a third of
    the drifts the owner first concentrates the market's depth (a valid pair), and a depth sync follows the
    repegs: the amplified target."""
    mid = draw(markets_st)
    concentrate = draw(st.integers(0, 2)) == 2
    steps = [draw(_concentrate_st(market=mid, valid=True))] if concentrate else []
    rule = draw(st.integers(0, 2)) == 2  # the stale-peg rule on: the trades around the repeg are judged by it
    steps += [("pegtol", mid, 11)] if rule else []
    steps += [("oracle", mid, "jump", 0, draw(st.sampled_from([1, -1])) * draw(st.integers(100, 2000))),
              ("time", draw(st.sampled_from([600, 1800, 3600, 7200])))]
    steps += [draw(_open_st())] if rule else []
    steps += [("repeg", mid)] + ([draw(_open_st())] if rule else [])
    steps += draw(st.lists(st.sampled_from([("repeg", mid), ("syncdepth", mid), ("time", 3600)]), max_size=3))
    if concentrate and ("syncdepth", mid) not in steps:
        steps.append(("syncdepth", mid))
    return steps


def _flatten(chunks):
    return [step for chunk in chunks for step in chunk]


steps_st = st.lists(st.one_of(step_st.map(lambda x: [x]), step_st.map(lambda x: [x]), _crash_st(), _drift_st()),
                    min_size=max(1, STEPS // 2 - 2), max_size=STEPS // 2 + 2).map(_flatten)


# ---------------------------------------------------------------------------- the test


settings.register_profile(
    "vperp-differential",
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
    # VPERP_FUZZ_SHRINK=0 reports the first failing sequence as found (shrinking on chain is slow).
    phases=[p for p in Phase if p != Phase.shrink or os.environ.get("VPERP_FUZZ_SHRINK", "1") != "0"],
)


# Fixed shapes, run whatever the draws. The fast tier (tests/fast/test_fast_differential.py) replays every
# one of them with the exploit properties on top; this smoke layer on the real client keeps the first three.
SHAPES = [
    # Regression (found by this test): a short position while the funding index falls (negative rate;
    # the warm-up whale leaves BTC skewed short). The position owes ceil(size x dCf / 1e18) > 0, but
    # WadMath.sMulWadUp(int256,int256) floors when dCf < 0, so the chain reports 1 wei less.
    [("open", 0, 0, 2, -1, 1_234_567, "any", True), ("time", 3600), ("poke", 2)],
    # A liquidation: lever, a 20 % adverse jump, a kick under water (no reward, no penalty, the shortfall
    # recorded), a partial take refreshing it, an unpaid redo after expiry, the rest taken and the bad debt
    # resolved by that take, so the explicit resolveBadDebt finds none.
    [("lever", 0, 0, 1, 1, 100), ("oracle", 1, "jump", 0, -2000), ("kick", 1, 0, 0, 0), ("time", 600),
     ("take", 2, 0, 0, "half", "any"), ("time", 1801), ("redo", 1, 0), ("time", 600),
     ("take", 2, 0, 0, "all", "exact"), ("baddebt", 1, 0, 0)],
    # A drift: the index jumps 8 %, the TWAPs diverge, repeg twice (the second too soon), a depth sync
    # after an LP deposit.
    [("open", 1, 0, 1, 1, 2_000_000, "any", True), ("oracle", 1, "jump", 0, 800), ("time", 1800),
     ("repeg", 1), ("repeg", 1), ("time", 3600), ("syncdepth", 1), ("lpdeposit", 2, 10**10),
     ("syncdepth", 2), ("repeg", 2)],
    # The recovery paths: an account kicked under water after a 13 % move (no keeper reward, no penalty, its
    # shortfall recorded) deposits, and anyone cancels its auction; another one's index moves back and the
    # expired auction's redo cancels it, unpaid.
    [("lever", 1, 1, 1, 1, 100), ("oracle", 1, "jump", 0, -1300), ("kick", 0, 1, 1, 0), ("cancel", 2, 0),
     ("deposit", 1, 1, "normal", 5 * 10**10, 0), ("cancel", 2, 0), ("lever", 2, 1, 2, -1, 100),
     ("oracle", 2, "jump", 0, 700), ("kick", 0, 2, 1, 0), ("oracle", 2, "jump", 0, -900), ("time", 1801),
     ("redo", 0, 1)],
    # A backstop the auction's price cuts short: a large levered long (two levers, the index meeting the vAMM
    # between them), the index falls 20 %, three unpaid redos; another trader's sale brings the vAMM just above
    # the index (the owner still under water, so no recovery cancel), and the backstop sells only down to the
    # auction's price at its full discount; the next one is blocked until the index meets the vAMM again.
    [("lever", 0, 0, 1, 1, 100), ("oracle", 1, "spot", 0, 0),
     ("lever", 0, 0, 1, 1, 100), ("oracle", 1, "jump", 0, -2000), ("kick", 1, 0, 0, 0), ("time", 1801),
     ("redo", 1, 0), ("time", 1801), ("redo", 1, 0), ("time", 1801), ("redo", 1, 0), ("time", 1801),
     ("deposit", 1, 0, "any", 0, 10**12), ("open", 1, 0, 1, -1, 138_000_000, "any", True),
     ("backstop", 2, 0), ("backstop", 2, 0), ("oracle", 1, "spot", 0, 0),
     ("backstop", 2, 0), ("baddebt", 2, 0, 0)],
    # A backstop of a recovered account: after three redos at the crashed index, the index meets the vAMM
    # again; the backstop cancels the auction (AuctionCancelled, no Backstop) and closes nothing.
    [("lever", 0, 0, 1, 1, 100), ("oracle", 1, "jump", 0, -2000), ("kick", 1, 0, 0, 0), ("time", 1801),
     ("redo", 1, 0), ("time", 1801), ("redo", 1, 0), ("time", 1801), ("redo", 1, 0), ("time", 1801),
     ("oracle", 1, "spot", 0, 0), ("backstop", 2, 0), ("backstop", 2, 0)],
    # Collateral credited to an account in liquidation lowers its estimate one for one: kicked under water, the
    # owner deposits 1,000, moves 10,000 from its isolated sub-account in, then the rest is taken.
    [("lever", 0, 0, 1, 1, 100), ("oracle", 1, "jump", 0, -2000), ("kick", 1, 0, 0, 0),
     ("deposit", 0, 0, "any", 0, 10**9), ("transfer", 0, 1, 0, "raw", 0, 10**22), ("time", 600),
     ("take", 2, 0, 0, "all", "any"), ("baddebt", 1, 0, 0)],
    # The LP-flow wait after a dislocation: the index gaps 15 % below the vAMM (flows suspended by the band);
    # in the next block a large sale brings the vAMM back into the band, but the block began outside it, so
    # deposits and mints wait a TWAP window (900 s) from it; then both go through, priced on depositAssets.
    [("open", 0, 0, 1, 1, 2_000_000, "any", True), ("oracle", 1, "jump", 0, -1500),
     ("lpdeposit", 2, 10**10), ("deposit", 1, 0, "any", 0, 10**12),
     ("open", 1, 0, 1, -1, 103_950_784, "any", True), ("lpdeposit", 2, 10**10), ("time", 896),
     ("lpmint", 2, 10**15), ("lpdeposit", 2, 10**10), ("lpmint", 2, 10**15)],
    # A take while another feed the owner holds is stale: BTC's feed answers first, so the kick 86,004 s later
    # still finds it fresh and the take 600 s after that finds it past its 86,400 s heartbeat. The fill goes
    # through (LiquidationEngine._afterFill: a stale feed elsewhere leaves the last shortfall estimate standing
    # rather than stopping the fill), and the next one after the feed answers again. (Until 2026-12-05 the shape
    # began with the trade: with the feed as old as the warm-up left it, the kick itself reverted StaleOracle
    # and nothing was taken.)
    [("oracle", 2, "same", 0, 0), ("open", 0, 0, 2, 1, 10**6, "any", True), ("lever", 0, 0, 1, 1, 100), ("time", 86_000),
     ("oracle", 1, "jump", 0, -2000), ("kick", 1, 0, 0, 1), ("time", 600), ("take", 2, 0, 0, "half", "any"),
     ("oracle", 2, "same", 0, 0), ("take", 2, 0, 0, "half", "any")],
]

# Concentrated depth under the peg rule (run with its own checks by test_concentrated_depth_and_peg, here on the
# real client and in the fast tier; also the last of SHAPES): the owner concentrates ETH's depth on a 10 % range,
# amplified 10 times; the index jumps 3 % and the peg follows by one step (at most maxRepegStep, 1 %); a trade
# (which leaves the peg where it is); a repeg in the next block is too soon (repegInterval, an hour); an hour
# later the depth sync deepens toward the amplified target (depthRatio x 10 x NAV: by the deepening step's
# bound, keeping the peg, the net long whale's exit-value change charged back); a trade on the deeper curve;
# a repeg past its interval finds the peg, which neither the trades nor the sync moved, 1.94 % from the index,
# within the threshold (2 %): RepegNotNeeded, the divergence equal to the wei.
CONCENTRATED = [("concentrate", 1, 10**17, 10 * WAD), ("oracle", 1, "jump", 0, 300), ("repeg", 1),
                ("open", 0, 0, 1, 1, 2_000_000, "any", True), ("repeg", 1), ("time", 3600), ("syncdepth", 1),
                ("open", 1, 0, 1, -1, 2_000_000, "any", True), ("repeg", 1)]
CONCENTRATED_OUTCOMES = [None, None, None, None, "RepegTooSoon", None, None, None, "RepegNotNeeded"]  # None: ok
SHAPES.append(CONCENTRATED)

# The stale-peg rule (ClearingHouseTradeRules._checkPeg): on at 11 bps, the index jumps 3 % (the peg is now below it); a buy
# is refused PegStale, a sell trades (the stale price is against it); the repeg moves the peg by one 1 % step, still
# stale, so a buy is refused again, a reduce that buys (trader 1's short) too, while a reduce that sells (trader
# 0's long) trades; setting the tolerance past its bound and on an unknown market is refused; at the bound (5 %)
# the buy trades.
PEG_RULE = [("open", 0, 0, 1, 1, 500_000, "any", True), ("pegtol", 1, 11), ("oracle", 1, "jump", 0, 300),
            ("open", 1, 0, 1, 1, 500_000, "any", True), ("open", 1, 0, 1, -1, 500_000, "any", True), ("repeg", 1),
            ("open", 1, 0, 1, 1, 500_000, "any", True), ("reduce", 1, 0, 1, 50, "any"),
            ("reduce", 0, 0, 1, 50, "any"), ("pegtol", 1, 501), ("pegtol", 3, 11), ("pegtol", 1, 500),
            ("open", 1, 0, 1, 1, 500_000, "any", True)]
PEG_RULE_OUTCOMES = [None, None, None, "PegStale", None, None, "PegStale", "PegStale", None, "ParameterOutOfBounds",
                     "UnknownMarket", None, None]
SHAPES.append(PEG_RULE)


def run_concentrated(runner, step_fn) -> None:
    """CONCENTRATED through `step_fn` (the tier's step-and-compare: chain == model after every step), each step's
    outcome as CONCENTRATED_OUTCOMES says, and at the depth sync the amplification checked on the model (equal to
    the chain's marketState after it): the effective amplification is 10, the quote reserve deepens toward
    depthRatio x 10 x NAV without reaching it (the step's bound), and deeper than the same sync without the
    concentration would take it."""
    outcomes = []
    for step in CONCENTRATED:
        if step[0] != "syncdepth":
            step_fn(runner, step)
            outcomes.append(runner.last_error and runner.last_error[0])
            continue
        m, mid, T = runner.model, step[1], runner.next_timestamp()
        assert concentration_of(m, mid) == (10**17, 10 * WAD, 10 * WAD)
        y0 = m.markets[mid].y
        target = mul_wad_down(mul_wad_down(m.pool_nav(T), m.amm_params[mid].depth_ratio), 10 * WAD)
        plain = copy.deepcopy(m)
        del plain.concentration[mid]
        plain.sync_depth(mid, T)
        step_fn(runner, step)
        outcomes.append(runner.last_error and runner.last_error[0])
        y1 = m.markets[mid].y
        assert y0 < y1 < target and y1 > plain.markets[mid].y, (
            f"the amplified sync: y0 {y0} -> y1 {y1}, target {target}, unamplified {plain.markets[mid].y}\n"
            + runner.trace())
    assert outcomes == CONCENTRATED_OUTCOMES, f"{outcomes}\n" + runner.trace()
