"""The reduce floor's edges (ClearingHouse._trade / ClearingHouseMargin._checkReduce, settleAuctionFill's taker floor,
`ReduceBelowMaintenance`), from the attacker review of the fix; docs/security.md "Fixed: the reduce into a pushed
vAMM". End to end on the session deployment (`lagging_peg_config`, funding off) and the shipped one, block times set
explicitly, each test restoring the chain it found.

- R1 (a documented cost). A reduce filled worse than the index takes the margin summary, which reads every feed the
  account holds. Any reduce while the vAMM sits at the index (a balanced market) and any reduce on the smaller side of
  a skew fills worse than the index by its own price impact, so a stale feed in another market the account holds
  refuses it (`StaleOracle`); the same book on the larger side (a fill better than the index) still goes through.
  Through the OrderRouter the refusal uses the order up (the keeper is paid), like an increase's margin refusal.
- R2. An account under water at the index may not close its last position even at a fill better than the index: it
  would be left flat with negative collateral, a debt no estimate shows the pool's NAV (`ReduceBelowMaintenance`);
  it leaves through its liquidation.
- R3. The trigger `quote x 1e18 + base x index < 0` is exact: no fill worse than the index, by a wei or a fraction of
  one, takes the unchecked path; signs right for buys and sells.
- R4. The same floor holds for a taker: an account under water that would close its last position by taking an
  auction slice (a fill at or better than the index) is refused `ReduceBelowMaintenance(taker, sub, collateral)`.
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import pytest
from eth_utils import keccak

from helpers.trading import apply_trade, fee_of, funding_off
from helpers.value_safety import (  # noqa: F401 - crew is a fixture
    BTC,
    ETH,
    at,
    crew,
    fund,
    refresh_oracles,
    set_index,
    start,
    trade,
    close,
    usd,
)
from vperp import deploy
from vperp.config import default_config
from vperp.units import DAY, WAD

pytestmark = pytest.mark.usefixtures("no_funding")  # tests/conftest.py: funding off for the module


@contextmanager
def _isolated(chain):
    snap = chain.snapshot()
    try:
        yield
    finally:
        chain.restore(snap)


def _error_name(fn) -> str | None:
    """Run a transaction; None if it went through, else the name of the custom error it reverted with."""
    try:
        fn()
        return None
    except Exception as e:  # noqa: BLE001 - Ape raises the decoded custom error's class
        name = type(e).__name__
        if name == "ContractLogicError":  # an error the called contract's ABI does not declare: match its selector
            data = getattr(e, "revert_data", None) or str(e).strip()
            if isinstance(data, str) and not data.startswith("0x"):
                data = "0x"
            data = bytes.fromhex(data[2:]) if isinstance(data, str) else bytes(data)
            if data[:4] == keccak(text="StaleOracle(address,uint256,uint256)")[:4]:
                return "StaleOracle"
            return f"ContractLogicError({data[:4].hex()}, {e})"
        return name


def _fill_vs_index(s, mid: int, base: int) -> int:
    """quote + floor(base x index) of a trade of `base` now (the rule's trigger: < 0 is worse than the index)."""
    ch = s.clearing_house
    return ch.quote(mid, base)[0] + base * ch.indexPrice(mid) // WAD


def _minority_reduce_with_a_stale_feed_elsewhere(s, chain, crew) -> tuple[str | None, dict]:
    """Honest A: 100k USD, long 10 ETH and 0.1 BTC (about 0.4x). B: short 100 ETH (the market is net short, an
    ordinary skew, far inside the band). A day later the ETH feed is updated, the BTC feed is not (stale: heartbeat
    24 h). A reduces its ETH long by 1 ETH. Returns (error name or None, figures)."""
    ch = s.clearing_house
    a, b = crew.atk[0], crew.atk[1]
    t = start(chain)
    refresh_oracles(s)
    fund(s, a, 100_000)
    fund(s, b, 100_000)
    d = crew.atk[4]
    fund(s, d, 100_000)
    trade(s, a, ETH, 10 * WAD)
    trade(s, a, BTC, WAD // 10)
    trade(s, d, ETH, -10 * WAD)  # the control: same book on the majority (short) side
    trade(s, d, BTC, WAD // 10)
    at(chain, t + 100)
    trade(s, b, ETH, -100 * WAD)
    at(chain, t + DAY + 200)
    eth_answer = s.markets["ETH"].oracle.latestRoundData()[1]
    set_index(s, "ETH", eth_answer)  # ETH fresh; BTC last updated at t: stale from t + DAY + 1
    at(chain, t + DAY + 300)
    fill = _fill_vs_index(s, ETH, -WAD)
    figures = {"fill_vs_index": fill, "eth_index": ch.indexPrice(ETH), "eth_spot": ch.spotPrice(ETH)}
    err = _error_name(lambda: trade(s, a, ETH, -WAD))
    figures["size_after"] = ch.position(a, 0, ETH)[0]
    figures["control_fill_vs_index"] = _fill_vs_index(s, ETH, WAD)
    figures["control"] = _error_name(lambda: trade(s, d, ETH, WAD))  # D buys back 1 ETH below the index
    figures["control_size_after"] = ch.position(d, 0, ETH)[0]
    figures["kick"] = _error_name(lambda: s.liquidation.kick(a, 0, ETH, crew.keeper, sender=crew.keeper))
    return err, figures


def test_r1_a_minority_side_reduce_fills_worse_than_the_index_and_a_stale_feed_elsewhere_blocks_it(
        system, chain, crew):
    """R1 as it behaves now (passes): the healthy 1-ETH reduce fills worse than the index by its own impact only
    (the market is net short, so the vAMM sits below the index), takes the margin summary, meets the stale BTC feed
    and reverts StaleOracle. The kick path is unavailable too (NotLiquidatable is not even reached: the health read
    meets the same feed; pre-existing)."""
    with _isolated(chain):
        err, f = _minority_reduce_with_a_stale_feed_elsewhere(system, chain, crew)
        print(f"\nR1 ETH index {usd(f['eth_index'])}, spot {usd(f['eth_spot'])}; the 1-ETH reduce fills "
              f"{usd(f['fill_vs_index'])} USD worse than the index; reduce: {err}; kick: {f['kick']}")
        assert f["fill_vs_index"] < 0  # worse by its price impact: the checked path
        assert f["eth_spot"] < f["eth_index"]
        assert err == "StaleOracle"
        assert f["size_after"] == 10 * WAD
        assert f["kick"] == "StaleOracle"
        # The control: the same book on the majority side reduces at a fill better than the index (no summary):
        # the stale BTC feed does not matter to it. Only the side of the skew decides.
        assert f["control_fill_vs_index"] >= 0 and f["control"] is None and f["control_size_after"] == -9 * WAD


def test_r2_an_under_water_close_filled_better_than_the_index_is_refused(system, chain, crew):
    """R2 (pinned: the rule's second half overrides the docs' 'a fill at or better than the index is never held'):
    A (10x long 100 ETH on 34,000 USD) is under water after the index falls 13 % (the lagging peg does not follow);
    B sells the vAMM down to 2 % above the new index, so A's close still fills better than the index but realizes
    more than A holds. The close is refused ReduceBelowMaintenance with excess = the collateral it would leave (< 0)."""
    s = system
    ch, vault = s.clearing_house, s.vault
    a, b = crew.atk[2], crew.atk[3]
    with _isolated(chain):
        t = start(chain)
        refresh_oracles(s)
        fund(s, a, 34_000)
        fund(s, b, 400_000)
        trade(s, a, ETH, 100 * WAD)
        at(chain, t + 100)
        set_index(s, "ETH", 2_610 * 10**8)  # -13 %: A under water at the index
        at(chain, t + 200)
        # B sells the vAMM (toward the index: the band lets it) to 2 % above the new index, so A's sale still fills
        # above the index but low enough to realize more than A holds.
        st, idx = ch.marketState(ETH), ch.indexPrice(ETH)
        target = idx * 102 // 100
        x1 = math.isqrt(st.baseReserve * st.quoteReserve * WAD // target)
        trade(s, b, ETH, -((x1 - st.baseReserve) // 10**16 * 10**16))
        at(chain, t + 300)
        assert vault.accountValue(a, 0) < 0  # under water at the index
        size, on, _ = ch.position(a, 0, ETH)
        fill = _fill_vs_index(s, ETH, -size)
        q = ch.quote(ETH, -size)[0]
        _, _, realized = apply_trade(size, on, -size, q)
        left = vault.collateral(a, 0) + realized - fee_of(q, ch.marketParams(ETH).takerFee)
        print(f"\nR2 A value at the index {usd(vault.accountValue(a, 0))}; close fills {usd(fill)} USD better than "
              f"the index; it would leave collateral {usd(left)}")
        assert fill >= 0 and left < 0
        err = _error_name(lambda: close(s, a, ETH))
        assert err == "ReduceBelowMaintenance"
        assert ch.position(a, 0, ETH)[0] == size


def test_r3_the_trigger_never_admits_a_fill_worse_than_the_index():
    """R3 (holds): the committed trigger `quote + floor(base x index / 1e18) < 0` (floor toward -inf, as
    WadMath.sMulDivDown) flags every fill the exact comparison `quote x 1e18 + base x index < 0` flags (the working
    tree's form at the time of this review): floor(P) <= P, so no fill worse than the index, by a wei or a fraction
    of one, takes the fast path under either. The committed form also flags a fill exactly at the index rounded
    against the trader (both signs), and fills better by less than a wei: harmless. Signs: a buy's quote is
    -ceil(cost) (negative), a sell's +floor(proceeds) (positive); base has the trade's sign: both agree."""
    import random

    rng = random.Random(7)
    for _ in range(20_000):
        index = rng.randrange(1, 10**24)
        base = rng.choice([-1, 1]) * rng.randrange(1, 10**22)
        exact = base * index  # [wad^2]: the trade's value at the index, times 1e18
        # Quotes around the index: the swap's rounding of exactly the index (a buy pays -ceil, a sell gets floor),
        # and a few wei either side.
        mid = -((exact + WAD - 1) // WAD) if base > 0 else (-exact) // WAD
        for q in (mid - 2, mid - 1, mid, mid + 1, mid + 2):
            committed = q + (base * index) // WAD < 0  # Python // is floor toward -inf
            exact_worse = q * WAD + base * index < 0
            assert committed or not exact_worse, (base, index, q)
    # Both signs, a fill exactly at the index rounded as the swap rounds (against the trader): flagged by both.
    index, base = 3_000 * WAD + 7, 10**18 + 3
    assert (base * index) % WAD != 0
    buy_q = -((base * index + WAD - 1) // WAD)  # -ceil(cost)
    sell_q = (base * index) // WAD  # floor(proceeds)
    assert buy_q + (base * index) // WAD < 0 and buy_q * WAD + base * index < 0
    assert sell_q + (-base * index) // WAD < 0 and sell_q * WAD - base * index < 0


def _under_water_taker_takes_to_flat(s, chain, crew) -> dict:
    """V: long 20 ETH and short 2 BTC on 20k USD. T: short 1 ETH at 10x on 310 USD, its only position. ETH's index
    rises 11 % and BTC's 15 %: V is below maintenance (kicked in ETH: an auction of a long ETH slice), T is under
    water at the index (value < 0). T takes 1 ETH of V's slice at the auction's start price (the index, no
    discount), which closes T's short: a reduce by a take, filled at the index. Returns the figures."""
    vault, engine = s.vault, s.liquidation
    v, taker, keeper = crew.atk[5], crew.atk[6], crew.keeper
    t = start(chain)
    refresh_oracles(s)
    fund(s, v, 20_000)
    fund(s, taker, 310)
    trade(s, v, ETH, 20 * WAD)
    trade(s, v, BTC, -2 * WAD)
    trade(s, taker, ETH, -WAD)
    at(chain, t + 100)
    set_index(s, "ETH", 3_330 * 10**8)
    set_index(s, "BTC", 69_000 * 10**8)
    at(chain, t + 200)
    f = {"taker_value_before": vault.accountValue(taker, 0), "v_liquidatable": vault.isLiquidatable(v, 0)}
    engine.kick(v, 0, ETH, keeper, sender=keeper)
    auction_id = engine.auctionCount()
    f["slice"] = engine.auction(auction_id).size
    f["pending_bad_debt_before"] = vault.pendingBadDebt()
    at(chain, t + 201)
    f["take"] = _error_name(lambda: engine.take(auction_id, WAD, 2**256 - 1, 0, sender=taker))
    f["taker_open_markets"] = vault.openMarkets(taker, 0)
    f["taker_collateral"] = vault.collateral(taker, 0)
    f["pending_bad_debt_after"] = vault.pendingBadDebt()
    f["taker_close_refused"] = None
    return f


def test_r4_an_under_water_taker_may_not_close_its_last_position_by_a_take(system, chain, crew):
    """An account under water at the index (whose own close R2 refuses) tries to close its last position by taking an
    auction slice at the index: refused `ReduceBelowMaintenance`, so it keeps its position and no account is left
    flat with negative collateral outside an estimate (`pendingBadDebt` unchanged)."""
    with _isolated(chain):
        f = _under_water_taker_takes_to_flat(system, chain, crew)
        print(f"\nR4 taker value before {usd(f['taker_value_before'])}; V's slice {f['slice'] / WAD:,.4f} ETH; take: "
              f"{f['take']}; taker left with openMarkets {f['taker_open_markets']}, collateral "
              f"{usd(f['taker_collateral'])}; pendingBadDebt {usd(f['pending_bad_debt_before'])} -> "
              f"{usd(f['pending_bad_debt_after'])}")
        assert f["v_liquidatable"] and f["taker_value_before"] < 0 and f["slice"] > WAD
        # The ClearingHouse's error bubbles up through the engine, whose ABI does not declare it: matched by selector
        # and arguments (the taker, its sub-account, the negative collateral the fill would have left).
        refused = f["take"] or ""
        assert keccak(text="ReduceBelowMaintenance(address,uint32,int256)")[:4].hex() in refused, refused
        assert crew.atk[6].address[2:].lower() in refused.lower()
        assert f["taker_open_markets"] != 0 and f["pending_bad_debt_after"] == f["pending_bad_debt_before"]


@pytest.fixture(scope="module")
def shipped(deployer):
    """The shipped deployment (`default_config()`: concentrated curve, delayed orders on in both markets), funding
    off."""
    d = deploy(deployer, default_config())
    funding_off(d)
    return d


def _commit(s, chain, who, mid: int, base: int, when: int) -> int:
    at(chain, when)
    oid = s.router.nextOrderId()
    s.router.commitOrder(0, mid, base, 2**256 - 1 if base > 0 else 0, when + 3_000, value=s.router.minKeeperFee(),
                         sender=who)
    return oid


def _execute(s, chain, keeper, oid: int, when: int):
    at(chain, when)
    return s.router.executeOrder(oid, sender=keeper)


def test_r1_router_a_reduce_order_filled_worse_than_the_index_fails_on_a_stale_feed_elsewhere(shipped, chain, crew):
    """The trader (100k USD) is long 10 ETH (an honest hedge short 10: no net position, the vAMM at the index) and
    long 0.1 BTC, all through the router. A day later ETH's feed has new rounds, BTC's has none (stale). The trader
    commits a reduce of 5 ETH; ETH's next round makes it executable; the keeper executes. The sale fills worse than
    the index by its own impact, so the account's health is checked, which needs BTC's feed: the order fails
    (`OrderFailed` with `StaleOracle`), is used up and the keeper is paid; the position is unchanged."""
    s, vault, ch = shipped, shipped.vault, shipped.clearing_house
    a, hedge, keeper = crew.victim, crew.honest_lp, crew.keeper
    with _isolated(chain):
        t = start(chain)
        refresh_oracles(s)
        for who in (a, hedge):
            fund(s, who, 100_000)
            vault.setOperator(s.router, True, sender=who)
        o1 = _commit(s, chain, a, ETH, 10 * WAD, t + 20)
        o2 = _commit(s, chain, hedge, ETH, -10 * WAD, t + 21)
        o3 = _commit(s, chain, a, BTC, WAD // 10, t + 22)
        at(chain, t + 30)
        refresh_oracles(s)  # a new round in both markets
        for i, oid in enumerate((o1, o2, o3)):
            tx = _execute(s, chain, keeper, oid, t + 40 + 10 * i)
            assert not tx.decode_logs(s.router.OrderFailed), f"setup order {oid} failed"
        assert ch.position(a, 0, ETH)[0] == 10 * WAD and ch.position(a, 0, BTC)[0] == WAD // 10
        eth = s.markets["ETH"].oracle.latestRoundData()[1]
        at(chain, t + DAY + 100)
        set_index(s, "ETH", eth)  # ETH fresh; BTC's last round at t + 30: stale from t + 30 + DAY + 1
        oid = _commit(s, chain, a, ETH, -5 * WAD, t + DAY + 110)
        at(chain, t + DAY + 120)
        set_index(s, "ETH", eth)  # the round that makes the order executable
        at(chain, t + DAY + 121)
        fill = _fill_vs_index(s, ETH, -5 * WAD)
        assert fill < 0  # a balanced market: the sale fills worse than the index by its impact alone
        kb = keeper.balance
        tx = _execute(s, chain, keeper, oid, t + DAY + 121)
        failed = tx.decode_logs(s.router.OrderFailed)
        reason = bytes(failed[0].reason)[:4].hex() if failed else None
        print(f"\nR1 router: 5-ETH reduce fills {usd(fill)} USD vs the index; OrderFailed reason selector {reason} "
              f"(StaleOracle {keccak(text='StaleOracle(address,uint256,uint256)')[:4].hex()}); keeper got "
              f"{(keeper.balance - kb + tx.gas_used * tx.gas_price) / 1e18} ETH")
        assert failed and reason == keccak(text="StaleOracle(address,uint256,uint256)")[:4].hex()
        assert ch.position(a, 0, ETH)[0] == 10 * WAD
