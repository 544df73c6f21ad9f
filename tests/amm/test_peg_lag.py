"""Why the peg follows every block (docs/pool.md "Why the peg follows every block"), on the reference model.

A steady rally of the ETH index, 0.2 % every 5 minutes for 5 hours (+12.7 %), with a whale long 300 ETH from the
start and an arbitrageur that keeps the vAMM's spot within 0.4 % of the index (to 0.2 %, as the simulator's
`Arbitrageur`); the keeper repegs whenever `repeg_due` says the contract would act, right after each oracle round.
At the end the index stops, the keeper catches the peg up and both traders close.

- With the earlier, lagging peg (`LAGGING_PEG`: 2 % threshold, 1 % steps, 0.1 % of NAV, once an hour, no stale-peg
  rule), the peg sits below the index and the whale's long only lifts the spot from the stale peg to about the
  index: the arbitrageur sees nothing to sell, and even buys the rest of the gap. The pool carries the whole net
  long (the whale's 300 ETH and the arbitrageur's inventory) and each repeg pays it the move.
- With the shipped peg (every block, 0.1 % threshold, the 11 bps stale-peg rule), the same long shows as a premium
  over the index; the arbitrageur sells it away and holds the other side itself, so the pool carries only the
  skew left inside the arbitrageur's band and its repeg cost is a fraction of the lagging peg's.
(The arbitrageur's hedge elsewhere is outside the model; its own PnL here is that of a naked short in a rally.)
"""
from __future__ import annotations

import math

from vperp.config import DeployConfig, lagging_peg_config, plain_config
from vperp.keeper import repeg_due
from vperp.model import Model, ModelRevert
from vperp.units import WAD

T0 = 1_800_000_000
ETH = 1
MAX_UINT = 2**256 - 1
STEP = 300
BAND_BPS, GOAL_BPS = 40, 20  # the simulator's arbitrageur: trades past 0.4 %, to within 0.2 %


def _eth_only(cfg: DeployConfig) -> DeployConfig:
    return cfg.with_markets(cfg.markets[0])


def _repeg_is_due(m: Model, t: int) -> bool:
    """The keeper's rule (`repeg_due`) on the model's state."""
    p = m.amm_params[ETH]
    return repeg_due(m.peg_price(ETH), m.index_price(ETH, t), m.last_repeg.get(ETH, 0), t, p.repeg_threshold,
                     p.repeg_interval)


def _arbitrage(m: Model, t: int) -> None:
    """Trade the spot back to within GOAL_BPS of the index once it is more than BAND_BPS away: on x y = k the base
    reserve at price p is sqrt(k / p)."""
    mk = m.markets[ETH]
    index, spot = m.index_price(ETH, t), m.spot_price(ETH)
    if abs(spot - index) * 10_000 <= BAND_BPS * index:
        return
    goal = index * (10_000 + (GOAL_BPS if spot > index else -GOAL_BPS)) // 10_000
    x_goal = math.isqrt(mk.x * mk.y // goal * WAD)
    base = (mk.x - x_goal) // 10**16 * 10**16  # > 0: buy (the spot is below the index)
    if base:
        m.open_position("arb", 0, ETH, base, MAX_UINT if base > 0 else 0, t, t)


def run_rally(cfg: DeployConfig) -> dict:
    m = Model.from_config(_eth_only(cfg), T0)
    t = T0 + 1
    for who, amount in (("arb", 5_000_000), ("whale", 1_000_000)):
        m.deposit(who, 0, amount * 10**6, t)
    value0 = {who: m.account_value(who, 0, t) for who in ("arb", "whale")}
    nav0 = m.pool_nav(t)
    t += 1
    m.open_position("whale", 0, ETH, 300 * WAD, MAX_UINT, t, t)
    price = m.index_price(ETH, t)
    refused = 0
    for _ in range(60):
        t += STEP
        price = price * 1002 // 1000 // 10**10 * 10**10  # the feed's 8 decimals
        m.set_index(ETH, price, t)
        if _repeg_is_due(m, t):
            m.repeg(ETH, t)
        try:
            _arbitrage(m, t + 1)
        except ModelRevert as e:  # the stale-peg rule: the arbitrageur waits for the next repeg
            assert e.args[0] == "PegStale", e
            refused += 1
    net_in_rally = m.markets[ETH].long_open_interest - m.markets[ETH].short_open_interest
    arb_in_rally = m.position("arb", 0, ETH, t)[0]
    # The index stops; the keeper catches the peg up (within its threshold), then both close.
    for _ in range(200):
        t += STEP
        if not _repeg_is_due(m, t):
            break
        m.repeg(ETH, t)
    t += 1
    for who in ("whale", "arb"):
        size = m.position(who, 0, ETH, t)[0]
        if size:
            m.close_position(who, 0, ETH, MAX_UINT if size < 0 else 0, t, t)
    return {"arb": m.account_value("arb", 0, t) - value0["arb"],
            "whale": m.account_value("whale", 0, t) - value0["whale"],
            "pool": m.pool_nav(t) - nav0, "repeg_cost": m.repeg_cost.get(ETH, 0), "refused": refused,
            "move": price, "net": net_in_rally, "arb_size": arb_in_rally}


def test_a_lagging_peg_leaves_the_pool_the_skew_and_one_that_follows_every_block_lets_arbitrage_take_it():
    lag, follow = run_rally(lagging_peg_config()), run_rally(plain_config())
    usd = lambda w: f"{w / WAD:+,.0f}"  # noqa: E731
    print(f"\nlagging peg: arbitrageur {usd(lag['arb'])}, whale {usd(lag['whale'])}, pool NAV {usd(lag['pool'])}, "
          f"repeg cost {usd(lag['repeg_cost'])}")
    print(f"every block: arbitrageur {usd(follow['arb'])}, whale {usd(follow['whale'])}, pool NAV "
          f"{usd(follow['pool'])}, repeg cost {usd(follow['repeg_cost'])}; arbitrage trades held by the stale-peg "
          f"rule: {follow['refused']}")
    print(f"net position in the rally: lagging {lag['net'] / WAD:+,.2f} ETH (arbitrageur {lag['arb_size'] / WAD:+,.2f}), "
          f"every block {follow['net'] / WAD:+,.2f} ETH (arbitrageur {follow['arb_size'] / WAD:+,.2f})")
    assert lag["move"] == follow["move"]  # the same path
    whale = 300 * WAD
    # Lagging: the pool carries the whale's whole long and the arbitrageur's inventory in the gap; the repegs pay it.
    assert lag["net"] >= whale and lag["arb_size"] > 0
    assert lag["repeg_cost"] > 0 and lag["pool"] < 0
    # Every block: the arbitrageur holds the other side of the whale's skew, the pool at most a tenth of it; its
    # repeg cost is under a quarter of the lagging peg's and its NAV ends higher.
    assert abs(follow["net"]) <= whale // 10 and follow["arb_size"] <= -(whale - whale // 10)
    assert 4 * follow["repeg_cost"] < lag["repeg_cost"]
    assert follow["pool"] > lag["pool"]
