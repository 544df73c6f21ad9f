"""Position lifecycle (docs/design.md#accounts-and-margin, docs/design.md#trading): reduce, close, flip, ledger
settlement against the pool, cross and isolated margin, reduce-only below initial margin, price band toward the
index, TWAP per block, and the PositionChanged event. Expected values come from helpers.trading' formulas applied
to an independent Python model of the reserves, positions and ledger, never from contract output.
"""
from dataclasses import dataclass, field, replace
from decimal import Decimal

import pytest
from eth_abi import decode as abi_decode

from helpers.clock import HOUR, next_hour
from helpers.liquidation import ORACLE_UNIT, deposit, one_event, reverts_unchanged
from helpers.markets import list_market, listed_amm
from helpers.trading import (
    BTC_ID,
    BTC_INDEX,
    ETH_ID,
    ETH_INDEX,
    IMR,
    INSURANCE_SHARE,
    MAX_SPREAD,
    MAX_UINT,
    MMR,
    POOL_SEED,
    INSURANCE_SEED,
    QUARTER,
    WAD,
    Amm,
    apply_trade,
    btc_amm,
    ceil_div,
    deadline,
    eth_amm,
    expect_revert,
    fee_of,
    funding_off,
    insurance_part,
    position_changed,
    price,
    requirement,
    swap,
    trade,
    upnl,
)
from vperp.config import wad
from vperp.units import FUNDING_WINDOW_HOURS

ETH = ETH_ID
MIN_ETH = 10**16



@pytest.fixture(autouse=True)
def _quiet_funding_window(chain):
    """Start each test just after a quarter-window boundary, so every trade of the test falls in one
    funding sample window: the price history before the test is flat (spot == index), the sampled
    premium is zero and no funding accrues; expected values need no funding term."""
    chain.pending_timestamp = (chain.pending_timestamp // QUARTER + 1) * QUARTER + 1


# ---------------------------------------------------------------------------- independent model


@dataclass
class Model:
    """Reserves, positions, open interest and the ledger as the formulas say they must be."""

    amms: dict = field(default_factory=lambda: {ETH_ID: eth_amm(), BTC_ID: btc_amm()})
    pos: dict = field(default_factory=dict)  # (owner, sub, market) -> (size, openNotional)
    coll: dict = field(default_factory=dict)  # (owner, sub) -> collateral WAD
    oi: dict = field(default_factory=lambda: {ETH_ID: [0, 0], BTC_ID: [0, 0]})  # [long, short]
    pool: int = POOL_SEED
    ins: int = INSURANCE_SEED
    realized_total: int = 0
    fees_total: int = 0

    def fund(self, system, who, amount, sub=0):
        system.fund(who, amount, subaccount=sub)
        key = (who.address, sub)
        self.coll[key] = self.coll.get(key, 0) + amount * WAD

    def size(self, who, mid, sub=0):
        return self.pos.get((who.address, sub, mid), (0, 0))[0]

    def open_markets(self, who, sub=0):
        bits = 0
        for (owner, s, mid), (size, _) in self.pos.items():
            if owner == who.address and s == sub and size != 0:
                bits |= 1 << (mid - 1)
        return bits

    def total(self):
        return sum(self.coll.values()) + self.pool + self.ins


def new_model(vault):
    # a fresh deployment's ledger (Ape isolation reverts every other test's changes)
    assert vault.poolBalance() == POOL_SEED and vault.insuranceFund() == INSURANCE_SEED
    return Model()


def execute(system, model, who, mid, base=None, sub=0, close=False, limit=None, sender=None):
    """Run one trade (openPosition, or closePosition when `close`) and check, to the wei, the return
    values, the PositionChanged event, the position, the ledger (trader, pool, insurance), the
    reserves, the open interest and the account's market bitmap against the model."""
    ch, vault = system.clearing_house, system.vault
    key = (who.address, sub, mid)
    size, on = model.pos.get(key, (0, 0))
    if close:
        base = -size
    amm = model.amms[mid]
    q, p_after = amm.peek(base)
    new_size, new_on, realized = apply_trade(size, on, base, q)
    fee = fee_of(q)
    ins = insurance_part(fee, INSURANCE_SHARE)
    if limit is None:
        limit = MAX_UINT if base > 0 else 0
    dl = deadline()
    if close:
        returned = ch.closePosition.call(sub, mid, limit, dl, sender=who)
        tx = ch.closePosition(sub, mid, limit, dl, sender=who)
    else:
        returned = ch.openPosition.call(sub, mid, base, limit, dl, sender=who)
        tx = ch.openPosition(sub, mid, base, limit, dl, sender=who)
    assert tuple(returned) == (base, q, fee)

    ev = position_changed(ch, tx)
    assert ev.owner == who.address
    assert (ev.subaccount, ev.marketId) == (sub, mid)
    assert (ev.baseDelta, ev.quoteDelta, ev.fee) == (base, q, fee)
    assert (ev.realizedPnl, ev.fundingPaid) == (realized, 0)
    assert (ev.newSize, ev.newOpenNotional, ev.priceAfter) == (new_size, new_on, p_after)

    # model update
    amm.trade(base)
    model.pos[key] = (new_size, new_on)
    long_oi, short_oi = model.oi[mid]
    long_oi += max(new_size, 0) - max(size, 0)
    short_oi += max(-new_size, 0) - max(-size, 0)
    model.oi[mid] = [long_oi, short_oi]
    ckey = (who.address, sub)
    model.coll[ckey] = model.coll.get(ckey, 0) + realized - fee
    model.pool += fee - ins - realized
    model.ins += ins
    model.realized_total += realized
    model.fees_total += fee

    # chain == model
    assert ch.position(who, sub, mid) == (new_size, new_on, 0)
    assert vault.collateral(who, sub) == model.coll[ckey]
    assert vault.poolBalance() == model.pool
    assert vault.insuranceFund() == model.ins
    s = ch.marketState(mid)
    assert (s.baseReserve, s.quoteReserve, s.spotPrice) == (amm.x, amm.y, p_after)
    assert [s.longOpenInterest, s.shortOpenInterest] == model.oi[mid]
    assert vault.openMarkets(who, sub) == model.open_markets(who, sub)
    return q, fee, realized


def summary(model, who, sub, indices, markets=(ETH_ID, BTC_ID)):
    """(unrealizedPnl, initial, maintenance) over `markets` at `indices` from the model."""
    u = init = maint = 0
    for mid in markets:
        size, on = model.pos.get((who.address, sub, mid), (0, 0))
        if size == 0:
            continue
        u += upnl(size, on, indices[mid])
        init += requirement(size, indices[mid], IMR)
        maint += requirement(size, indices[mid], MMR)
    return u, init, maint


# ---------------------------------------------------------------------------- reduce


@pytest.mark.parametrize(
    "open_size, reduce_by",
    [(10 * WAD, 4 * WAD), (3 * WAD + 7, WAD + 3), (7 * WAD + 123_456_789, 7 * WAD + 123_456_789 - MIN_ETH)],
    ids=["round", "odd", "down-to-min"],
)
def test_reduce_long_realizes_profit_to_the_wei(system, vault, alice, bob, open_size, reduce_by):
    model = new_model(vault)
    model.fund(system, alice, 100_000)
    model.fund(system, bob, 200_000)
    execute(system, model, alice, ETH_ID, open_size)
    execute(system, model, bob, ETH_ID, 20 * WAD)  # price up
    q, fee, realized = execute(system, model, alice, ETH_ID, -reduce_by)
    assert realized > 0
    # the basis removed is pro rata, rounded up: realized = quote - ceil(on * r / size)
    on0 = -eth_amm().peek(open_size)[0]
    assert realized == q - ceil_div(on0 * reduce_by, open_size)
    assert model.size(alice, ETH_ID) == open_size - reduce_by


def test_reduce_short_realizes_loss(system, vault, alice, bob):
    model = new_model(vault)
    model.fund(system, alice, 100_000)
    model.fund(system, bob, 300_000)
    execute(system, model, alice, ETH_ID, -6 * WAD)
    execute(system, model, bob, ETH_ID, 40 * WAD)  # price up: the short loses
    coll0, pool0 = vault.collateral(alice, 0), vault.poolBalance()
    q, fee, realized = execute(system, model, alice, ETH_ID, 5 * WAD // 2)
    assert realized < 0
    # the trader's loss and the fee are the pool's gain (less the insurance part of the fee)
    assert vault.collateral(alice, 0) - coll0 == realized - fee
    assert vault.poolBalance() - pool0 == -realized + fee - insurance_part(fee)
    assert model.size(alice, ETH_ID) == -7 * WAD // 2


def test_reduce_btc_long_at_a_loss_keeps_market_bit(system, vault, alice, bob):
    model = new_model(vault)
    model.fund(system, alice, 100_000)
    model.fund(system, bob, 100_000)
    execute(system, model, alice, BTC_ID, WAD // 2 + 12345)
    execute(system, model, bob, BTC_ID, -WAD)  # price down
    _, _, realized = execute(system, model, alice, BTC_ID, -(WAD // 4))
    assert realized < 0
    assert vault.openMarkets(alice, 0) == 0b10


# ---------------------------------------------------------------------------- close


def test_close_long_returns_everything_and_clears_the_market(system, ch, vault, alice, bob):
    model = new_model(vault)
    model.fund(system, alice, 50_000)
    model.fund(system, bob, 100_000)
    q_open, fee_open, _ = execute(system, model, alice, ETH_ID, 15 * WAD // 2)
    execute(system, model, bob, ETH_ID, -30 * WAD)  # price down
    # closing at exactly the quote received passes the limit
    q_close, _ = model.amms[ETH_ID].peek(-15 * WAD // 2)
    _, fee_close, realized = execute(system, model, alice, ETH_ID, close=True, limit=q_close)
    # everything: the whole open notional is realized against the closing quote
    assert realized == q_close + q_open
    assert ch.position(alice, 0, ETH_ID) == (0, 0, 0)
    assert vault.openMarkets(alice, 0) == 0
    assert vault.collateral(alice, 0) == 50_000 * WAD - fee_open - fee_close + realized
    # a flat account's free collateral is its collateral
    assert vault.freeCollateral(alice, 0) == vault.collateral(alice, 0) == vault.accountValue(alice, 0)
    assert vault.marginRequirements(alice, 0) == (0, 0)


def test_close_short_pays_and_clears(system, ch, vault, alice, bob):
    model = new_model(vault)
    model.fund(system, alice, 50_000)
    model.fund(system, bob, 100_000)
    execute(system, model, alice, ETH_ID, -4 * WAD - 1)
    execute(system, model, bob, ETH_ID, 10 * WAD)
    q, _ = model.amms[ETH_ID].peek(4 * WAD + 1)
    assert q < 0
    _, _, realized = execute(system, model, alice, ETH_ID, close=True, limit=-q)
    assert realized < 0
    assert ch.position(alice, 0, ETH_ID) == (0, 0, 0)
    assert vault.openMarkets(alice, 0) == 0
    assert ch.marketState(ETH_ID).shortOpenInterest == 0


def test_close_one_market_of_a_cross_account_keeps_the_other(system, ch, vault, alice):
    model = new_model(vault)
    model.fund(system, alice, 50_000)
    execute(system, model, alice, ETH_ID, 2 * WAD)
    execute(system, model, alice, BTC_ID, -WAD // 10)
    assert vault.openMarkets(alice, 0) == 0b11
    execute(system, model, alice, ETH_ID, close=True)
    assert vault.openMarkets(alice, 0) == 0b10
    assert ch.position(alice, 0, BTC_ID)[0] == -WAD // 10
    execute(system, model, alice, BTC_ID, close=True)
    assert vault.openMarkets(alice, 0) == 0
    assert vault.collateral(alice, 0) == model.coll[(alice.address, 0)]


def test_operator_close_via_openPositionFor_lands_in_owner_account(system, ch, vault, alice, bob):
    model = new_model(vault)
    model.fund(system, alice, 50_000)
    execute(system, model, alice, ETH_ID, 3 * WAD)
    vault.setOperator(bob, True, sender=alice)
    q, p_after = model.amms[ETH_ID].peek(-3 * WAD)
    size, on = model.pos[(alice.address, 0, ETH_ID)]
    _, _, realized = apply_trade(size, on, -3 * WAD, q)
    ev = position_changed(ch, ch.openPositionFor(alice, 0, ETH_ID, -3 * WAD, q, deadline(), sender=bob))
    assert (ev.owner, ev.newSize, ev.realizedPnl, ev.priceAfter) == (alice.address, 0, realized, p_after)
    assert vault.openMarkets(alice, 0) == 0
    assert vault.collateral(bob, 0) == 0


# ---------------------------------------------------------------------------- flip


def test_flip_long_to_short_and_back_in_one_call(system, ch, vault, alice, bob):
    model = new_model(vault)
    model.fund(system, alice, 100_000)
    model.fund(system, bob, 100_000)
    execute(system, model, alice, ETH_ID, 2 * WAD)
    execute(system, model, bob, ETH_ID, 5 * WAD)
    size0, on0 = model.pos[(alice.address, 0, ETH_ID)]
    q, _ = model.amms[ETH_ID].peek(-5 * WAD)
    _, _, realized = execute(system, model, alice, ETH_ID, -5 * WAD)
    # flip: the closing part of the quote is pro rata (floor), realized against the whole basis;
    # the rest is the new short's basis
    closing = q * 2 // 5
    assert realized == closing - on0
    assert ch.position(alice, 0, ETH_ID) == (-3 * WAD, -(q - closing), 0)
    s = ch.marketState(ETH_ID)
    assert (s.longOpenInterest, s.shortOpenInterest) == (5 * WAD, 3 * WAD)
    # and back: short 3 -> long 1 (odd ratio exercises the rounding)
    _, on1 = model.pos[(alice.address, 0, ETH_ID)]
    q2, _ = model.amms[ETH_ID].peek(4 * WAD)
    _, _, realized2 = execute(system, model, alice, ETH_ID, 4 * WAD)
    closing2 = q2 * 3 // 4  # floor toward -inf for a negative quote: the trader pays the extra wei
    assert realized2 == closing2 - on1
    assert ch.position(alice, 0, ETH_ID) == (WAD, -(q2 - closing2), 0)
    assert vault.openMarkets(alice, 0) == 1


def test_flip_needs_initial_margin_for_the_new_side(system, ch, vault, alice):
    """A flip opens new risk, so unlike a reduce it is margin-checked on the resulting position."""
    model = new_model(vault)
    model.fund(system, alice, 400)
    execute(system, model, alice, ETH_ID, WAD)
    base = -3 * WAD
    q, _ = model.amms[ETH_ID].peek(base)
    size, on = model.pos[(alice.address, 0, ETH_ID)]
    new_size, new_on, realized = apply_trade(size, on, base, q)
    coll = model.coll[(alice.address, 0)] + realized - fee_of(q)
    u = upnl(new_size, new_on, ETH_INDEX)
    free = min(coll, coll + u) - requirement(new_size, ETH_INDEX, IMR)
    assert free < 0
    with expect_revert(ch.InsufficientMargin, owner=alice, subaccount=0, freeCollateral=free):
        ch.openPosition(0, ETH_ID, base, 0, deadline(), sender=alice)
    assert ch.position(alice, 0, ETH_ID)[:2] == (size, on)


# ---------------------------------------------------------------------------- conservation


def test_pnl_and_fees_settle_against_the_pool_conserving_money(system, ch, vault, usdc, alice, bob, carol):
    """Every trade only moves money between the trader, the pool and the insurance fund: after each
    trade the sum is unchanged to the wei and equals the vault's token balance (scaled to WAD)."""
    model = new_model(vault)
    model.fund(system, alice, 200_000)
    model.fund(system, bob, 200_000)
    model.fund(system, carol, 200_000, sub=3)
    total = model.total()
    assert usdc.balanceOf(vault) * system.token_scale == total
    steps = [
        (alice, ETH_ID, 12 * WAD + 5, 0),
        (bob, ETH_ID, -7 * WAD, 0),
        (carol, BTC_ID, WAD // 3, 3),
        (alice, BTC_ID, -WAD // 7, 0),
        ("price", "ETH", 3150),
        (bob, ETH_ID, 20 * WAD + 11, 0),  # flip short -> long
        (alice, ETH_ID, -5 * WAD, 0),  # reduce
        ("price", "BTC", 57_000),
        (carol, BTC_ID, -WAD // 2, 3),  # flip long -> short
        (alice, ETH_ID, "close", 0),
        (bob, ETH_ID, -3 * WAD - 1, 0),
        (alice, BTC_ID, "close", 0),
        (carol, BTC_ID, "close", 3),
        (bob, ETH_ID, "close", 0),
    ]
    for step in steps:
        if step[0] == "price":
            system.set_price(step[1], step[2])
            continue
        who, mid, base, sub = step
        if base == "close":
            execute(system, model, who, mid, sub=sub, close=True)
        else:
            execute(system, model, who, mid, base, sub=sub)
        assert model.total() == total
        assert (
            vault.collateral(alice, 0) + vault.collateral(bob, 0) + vault.collateral(carol, 3)
            + vault.poolBalance() + vault.insuranceFund()
            == total
        )
    assert usdc.balanceOf(vault) * system.token_scale == total
    # everyone is flat: the pool gained exactly the traders' net realized loss plus its fee share
    assert vault.poolBalance() - POOL_SEED == -model.realized_total + model.fees_total - (vault.insuranceFund() - INSURANCE_SEED)
    for mid in (ETH_ID, BTC_ID):
        s = ch.marketState(mid)
        assert (s.longOpenInterest, s.shortOpenInterest) == (0, 0)


# ---------------------------------------------------------------------------- cross margin


def test_cross_margin_views_across_eth_and_btc(system, ch, vault, alice):
    model = new_model(vault)
    model.fund(system, alice, 1_500)
    execute(system, model, alice, ETH_ID, 2 * WAD)
    execute(system, model, alice, BTC_ID, -WAD // 20)
    coll = model.coll[(alice.address, 0)]

    def check(indices, liquidatable):
        u, init, maint = summary(model, alice, 0, indices)
        assert tuple(ch.marginSummary(alice, 0, 0b11)) == (u, 0, init, maint, 0, 0)
        value = coll + u
        assert vault.accountValue(alice, 0) == value
        # unrealized profit never counts as free collateral
        assert vault.freeCollateral(alice, 0) == min(coll, value) - init
        assert vault.marginRequirements(alice, 0) == (init, maint)
        assert vault.isLiquidatable(alice, 0) == (value < maint) == liquidatable
        # one market at a time, via the bitmap argument
        ue, ie, me = summary(model, alice, 0, indices, markets=(ETH_ID,))
        assert tuple(ch.marginSummary(alice, 0, 0b01)) == (ue, 0, ie, me, 0, 0)
        ub, ib, mb = summary(model, alice, 0, indices, markets=(BTC_ID,))
        assert tuple(ch.marginSummary(alice, 0, 0b10)) == (ub, 0, ib, mb, 0, 0)
        assert (ue + ub, ie + ib, me + mb) == (u, init, maint)
        return u, init, value

    check({ETH_ID: ETH_INDEX, BTC_ID: BTC_INDEX}, False)
    # ETH up, BTC down: both legs profit; free collateral is capped by the settled collateral
    system.set_price("ETH", 3100)
    system.set_price("BTC", 58_000)
    u, init, value = check({ETH_ID: 3100 * WAD, BTC_ID: 58_000 * WAD}, False)
    assert u > 0 and vault.freeCollateral(alice, 0) == coll - init
    # ETH down: the account is still above maintenance ...
    system.set_price("ETH", 2500)
    system.set_price("BTC", 60_000)
    u, init, value = check({ETH_ID: 2500 * WAD, BTC_ID: BTC_INDEX}, False)
    assert vault.freeCollateral(alice, 0) == value - init < 0
    # ... and further down the ETH loss makes the cross account liquidatable as a whole
    system.set_price("ETH", 2400)
    check({ETH_ID: 2400 * WAD, BTC_ID: BTC_INDEX}, True)


def test_cross_margin_loss_in_one_market_reduces_room_in_another(system, ch, vault, alice):
    """Opening ETH in a cross account whose BTC leg is at a loss: the ETH trade alone would fit the
    collateral, but the check sums both markets (BTC loss and BTC requirement included)."""
    model = new_model(vault)
    model.fund(system, alice, 2_000)
    execute(system, model, alice, BTC_ID, WAD // 10)
    system.set_price("BTC", 54_000)
    base = 3 * WAD
    q, _ = model.amms[ETH_ID].peek(base)
    indices = {ETH_ID: ETH_INDEX, BTC_ID: 54_000 * WAD}
    coll = model.coll[(alice.address, 0)] - fee_of(q)
    u_btc, i_btc, _ = summary(model, alice, 0, indices, markets=(BTC_ID,))
    u_eth = upnl(base, -q, ETH_INDEX)
    free = min(coll, coll + u_btc + u_eth) - i_btc - requirement(base, ETH_INDEX, IMR)
    assert free < 0 <= coll + u_eth - requirement(base, ETH_INDEX, IMR)
    with expect_revert(ch.InsufficientMargin, owner=alice, subaccount=0, freeCollateral=free):
        ch.openPosition(0, ETH_ID, base, MAX_UINT, deadline(), sender=alice)
    assert ch.position(alice, 0, ETH_ID)[0] == 0 and vault.openMarkets(alice, 0) == 0b10


# ---------------------------------------------------------------------------- isolated sub-accounts


def test_isolated_subaccounts_one_market_each(system, ch, vault, alice):
    model = new_model(vault)
    model.fund(system, alice, 20_000, sub=5)
    model.fund(system, alice, 20_000, sub=6)
    model.fund(system, alice, 20_000, sub=0)
    execute(system, model, alice, ETH_ID, WAD, sub=5)
    execute(system, model, alice, BTC_ID, -WAD // 50, sub=6)
    # increasing and reducing the held market is fine
    execute(system, model, alice, ETH_ID, WAD, sub=5)
    execute(system, model, alice, ETH_ID, -WAD // 2, sub=5)
    # the cross account holds both at once
    execute(system, model, alice, ETH_ID, -WAD, sub=0)
    execute(system, model, alice, BTC_ID, WAD // 50, sub=0)
    assert [vault.openMarkets(alice, s) for s in (0, 5, 6)] == [0b11, 0b01, 0b10]
    # once sub-account 5 is flat it may move to another market
    execute(system, model, alice, ETH_ID, sub=5, close=True)
    assert vault.openMarkets(alice, 5) == 0
    execute(system, model, alice, BTC_ID, WAD // 50, sub=5)
    assert vault.openMarkets(alice, 5) == 0b10


def test_isolated_margin_is_judged_on_its_own_collateral(system, ch, vault, alice):
    """Sub-account 5 cannot lean on the cross account's collateral, and its loss does not touch it."""
    model = new_model(vault)
    model.fund(system, alice, 1_000_000, sub=0)
    model.fund(system, alice, 200, sub=5)
    base = WAD
    q, _ = model.amms[ETH_ID].peek(base)
    coll = 200 * WAD - fee_of(q)
    free = min(coll, coll + upnl(base, -q, ETH_INDEX)) - requirement(base, ETH_INDEX, IMR)
    with expect_revert(ch.InsufficientMargin, owner=alice, subaccount=5, freeCollateral=free):
        ch.openPosition(5, ETH_ID, base, MAX_UINT, deadline(), sender=alice)
    execute(system, model, alice, ETH_ID, base // 2, sub=5)
    system.set_price("ETH", 2700)
    # sub 5 is underwater, sub 0 is untouched
    u, init, maint = summary(model, alice, 5, {ETH_ID: 2700 * WAD, BTC_ID: BTC_INDEX})
    assert vault.accountValue(alice, 5) == model.coll[(alice.address, 5)] + u
    assert vault.accountValue(alice, 0) == vault.freeCollateral(alice, 0) == 1_000_000 * WAD


# ---------------------------------------------------------------------------- reduce below initial margin


def test_reduce_and_close_allowed_below_initial_margin(system, ch, vault, alice):
    model = new_model(vault)
    model.fund(system, alice, 400)
    execute(system, model, alice, ETH_ID, WAD)
    system.set_price("ETH", 2800)
    coll = model.coll[(alice.address, 0)]
    u, init, maint = summary(model, alice, 0, {ETH_ID: 2800 * WAD, BTC_ID: BTC_INDEX})
    assert vault.freeCollateral(alice, 0) == coll + u - init < 0  # below initial ...
    assert not vault.isLiquidatable(alice, 0)  # ... but above maintenance
    # an increase is refused ...
    q, _ = model.amms[ETH_ID].peek(MIN_ETH)
    size, on = model.pos[(alice.address, 0, ETH_ID)]
    c2 = coll - fee_of(q)
    u2 = upnl(size + MIN_ETH, on - q, 2800 * WAD)
    free2 = min(c2, c2 + u2) - requirement(size + MIN_ETH, 2800 * WAD, IMR)
    with expect_revert(ch.InsufficientMargin, owner=alice, subaccount=0, freeCollateral=free2):
        ch.openPosition(0, ETH_ID, MIN_ETH, MAX_UINT, deadline(), sender=alice)
    # ... a reduce is not, even one that leaves the account below its initial requirement
    execute(system, model, alice, ETH_ID, -(WAD // 10))
    u, init, _ = summary(model, alice, 0, {ETH_ID: 2800 * WAD, BTC_ID: BTC_INDEX})
    assert vault.freeCollateral(alice, 0) == model.coll[(alice.address, 0)] + u - init < 0
    # even once liquidatable (account value below maintenance), reduce and close stay open
    system.set_price("ETH", 2300)
    u, _, maint = summary(model, alice, 0, {ETH_ID: 2300 * WAD, BTC_ID: BTC_INDEX})
    assert model.coll[(alice.address, 0)] + u < maint
    assert vault.isLiquidatable(alice, 0)
    execute(system, model, alice, ETH_ID, -(WAD // 4))
    execute(system, model, alice, ETH_ID, close=True)
    assert vault.openMarkets(alice, 0) == 0


# ---------------------------------------------------------------------------- price band


def test_price_band_allows_a_trade_moving_back_toward_the_index(system, ch, vault, alice, bob, carol):
    model = new_model(vault)
    model.fund(system, alice, 500_000)
    model.fund(system, bob, 500_000)
    model.fund(system, carol, 1_000_000)
    execute(system, model, alice, ETH_ID, 300 * WAD)
    system.set_price("ETH", 2800)
    index = 2800 * WAD
    band = index * MAX_SPREAD // WAD
    amm = model.amms[ETH_ID]
    assert amm.price - index > band  # the index moved: the vAMM is now outside the band
    # a new short that moves the price toward the index passes even though it stays outside
    _, p_after = amm.peek(-50 * WAD)
    assert band < p_after - index < amm.price - index
    execute(system, model, bob, ETH_ID, -50 * WAD)
    # any move away from the index is refused, however small
    _, p_up = amm.peek(MIN_ETH)
    with expect_revert(ch.PriceBandExceeded, marketId=ETH_ID, priceAfter=p_up, indexPrice=index, maxSpread=MAX_SPREAD):
        ch.openPosition(0, ETH_ID, MIN_ETH, MAX_UINT, deadline(), sender=carol)
    # overshooting through the index to a larger distance on the other side is refused
    dist_before = amm.price - index
    s = 100
    while index - amm.peek(-s * WAD)[1] <= max(band, dist_before):
        s += 10
    _, p_over = amm.peek(-s * WAD)
    with expect_revert(ch.PriceBandExceeded, marketId=ETH_ID, priceAfter=p_over, indexPrice=index, maxSpread=MAX_SPREAD):
        ch.openPosition(0, ETH_ID, -s * WAD, 0, deadline(), sender=carol)
    # alice's reduce also moves toward the index
    execute(system, model, alice, ETH_ID, -100 * WAD)


# ---------------------------------------------------------------------------- TWAP per block


def _fund_batch(system, project, deployer, amount):
    batch = project.BatchCaller.deploy(sender=deployer)
    units = system.units(amount)
    system.collateral.mint(deployer, units, sender=deployer)
    system.collateral.approve(system.vault, units, sender=deployer)
    system.vault.depositFor(batch, 0, units, sender=deployer)
    return batch


def test_mark_twap_moves_at_most_once_per_block_from_the_pre_trade_spot(system, ch, vault, chain, project, deployer, alice):
    """The TWAP accumulator is extended once per block, with the vAMM price that held before the
    block's first trade; trades later in the same block cannot move mark or TWAPs in that block."""
    tl = ch.marketState(ETH_ID).lastUpdate  # listing: sums are zero there, price 3000 since
    model = new_model(vault)
    model.fund(system, alice, 100_000)
    batch = _fund_batch(system, project, deployer, 1_000_000)
    amm = model.amms[ETH_ID]
    tx0 = ch.openPosition(0, ETH_ID, 50 * WAD, MAX_UINT, deadline(), sender=alice)
    t0 = tx0.timestamp
    amm.trade(50 * WAD)
    s0 = amm.price

    dl = deadline()
    mp, tw, sp = ch.markPrice.encode_input(ETH_ID), ch.twaps.encode_input(ETH_ID), ch.spotPrice.encode_input(ETH_ID)
    buy1 = ch.openPosition.encode_input(0, ETH_ID, 200 * WAD, MAX_UINT, dl)
    buy2 = ch.openPosition.encode_input(0, ETH_ID, 100 * WAD, MAX_UINT, dl)
    targets = [ch.address] * 10
    data = [mp, tw, buy1, mp, tw, sp, buy2, mp, tw, sp]

    _, x1, y1 = swap(amm.x, amm.y, 200 * WAD)
    s1 = price(x1, y1)
    a2 = Amm(amm.x, amm.y)
    a2.trade(200 * WAD)
    a2.trade(100 * WAD)
    s2 = a2.price

    # Simulated in one block: mark and TWAPs read before, between and after the trades are identical.
    res = batch.batch.call(targets, data, sender=deployer)
    marks = [abi_decode(["uint256"], bytes(res[i]))[0] for i in (0, 3, 7)]
    twaps = [abi_decode(["uint256", "uint256"], bytes(res[i])) for i in (1, 4, 8)]
    spots = [abi_decode(["uint256"], bytes(res[i]))[0] for i in (5, 9)]
    assert spots == [s1, s2]
    assert marks[0] == marks[1] == marks[2]
    assert twaps[0] == twaps[1] == twaps[2] and twaps[0][0] == marks[0]

    # Now for real, 40 s after the first trade.
    chain.pending_timestamp = t0 + 40
    tx = batch.batch(targets, data, sender=deployer)
    t1 = tx.timestamp
    assert t1 == t0 + 40
    evs = tx.events.filter(ch.PositionChanged)
    assert [e.priceAfter for e in evs] == [s1, s2]
    assert ch.marketState(ETH_ID).lastUpdate == t1
    # [tl, t0] at the listing price, [t0, t1] at s0 (the pre-trade spot of t1's block): the new
    # spot has held for no time yet
    exp_mark = (3000 * WAD * (t0 - tl) + s0 * (t1 - t0)) // (t1 - tl)
    assert ch.markPrice(ETH_ID) == exp_mark
    assert tuple(ch.twaps(ETH_ID)) == (exp_mark, ETH_INDEX)

    # One block later (another market's poke), the post-batch spot s2 has held for 25 s.
    chain.pending_timestamp = t1 + 25
    ch.pokeFunding(BTC_ID, sender=alice)
    exp_mark = (3000 * WAD * (t0 - tl) + s0 * (t1 - t0) + s2 * 25) // (t1 + 25 - tl)
    assert ch.markPrice(ETH_ID) == exp_mark
    assert tuple(ch.twaps(ETH_ID)) == (exp_mark, ETH_INDEX)
    # fundingState's TWAPs (the funding window, FUNDING_WINDOW_HOURS) are made of the same sums. Past the listing's
    # hour they run from the listing (a market younger than the window); inside it no earlier hour of the window saw
    # a block, so they run from the accumulator the last update left (the batch's, at t1), where s2 has held since.
    # Either span is shorter than the window: padded to it at premium 0, mark and index at the last recorded index.
    window = FUNDING_WINDOW_HOURS * HOUR
    assert ch.marketState(ETH_ID).lastIndexPrice == ETH_INDEX

    def padded(mark_sum, span):
        """(mark TWAP, index TWAP) of a mark sum over `span` s, padded to the window at the index."""
        assert span < window
        pad = (window - span) * ETH_INDEX
        assert (ETH_INDEX * span + pad) // window == ETH_INDEX  # the index held throughout: its TWAP exactly
        return (mark_sum + pad) // window, ETH_INDEX

    if (t1 + 25) // HOUR == tl // HOUR:
        expected = padded(s2 * 25, 25)
    else:
        expected = padded(3000 * WAD * (t0 - tl) + s0 * (t1 - t0) + s2 * 25, t1 + 25 - tl)
    assert ch.fundingState(ETH_ID)[3:5] == expected
    assert ETH_INDEX < expected[0] < exp_mark  # the trades' premium, diluted over the day
    # In the next hour (another market's poke again), from the listing in either case.
    t2 = next_hour(t1 + 25) + 30
    assert t2 - tl < window  # the window reaches back to the listing
    chain.pending_timestamp = t2
    ch.pokeFunding(BTC_ID, sender=alice)
    exp_window = padded(3000 * WAD * (t0 - tl) + s0 * (t1 - t0) + s2 * (t2 - t1), t2 - tl)
    assert ch.fundingState(ETH_ID)[3:5] == exp_window


def test_index_sample_recorded_once_per_block(system, ch, vault, chain, project, deployer, eth):
    """An oracle update between two trades of one block is used live by the second trade, but the
    index recorded is the block's first observation; the next block records the new one. In the TWAP the new round
    counts from its own time, the block's (ClearingHouseAccrual._indexArea), in the view and in the accrual."""
    tl = ch.marketState(ETH_ID).lastUpdate
    batch = _fund_batch(system, project, deployer, 1_000_000)
    amm = eth_amm()
    dl = deadline()
    targets = [ch.address, eth.oracle.address, ch.address]
    data = [
        ch.openPosition.encode_input(0, ETH_ID, 10 * WAD, MAX_UINT, dl),
        eth.oracle.updateAnswer.encode_input(3100 * 10**8),
        ch.openPosition.encode_input(0, ETH_ID, 10 * WAD, MAX_UINT, dl),
    ]
    tx = batch.batch(targets, data, sender=deployer)
    t1 = tx.timestamp
    amm.trade(10 * WAD)
    amm.trade(10 * WAD)
    s = ch.marketState(ETH_ID)
    assert s.lastIndexPrice == ETH_INDEX and s.lastUpdate == t1
    assert ch.indexPrice(ETH_ID) == 3100 * WAD  # the live index
    assert tuple(ch.twaps(ETH_ID)) == (ETH_INDEX, ETH_INDEX)  # flat history, nothing new has held yet

    chain.pending_timestamp = t1 + 30
    ch.pokeFunding(ETH_ID, sender=deployer)
    assert ch.marketState(ETH_ID).lastIndexPrice == 3100 * WAD
    exp_mark = (3000 * WAD * (t1 - tl) + amm.price * 30) // (t1 + 30 - tl)
    exp_index = (3000 * WAD * (t1 - tl) + 3100 * WAD * 30) // (t1 + 30 - tl)
    assert tuple(ch.twaps(ETH_ID)) == (exp_mark, exp_index)

    chain.pending_timestamp = t1 + 70
    ch.pokeFunding(BTC_ID, sender=deployer)
    exp_index = (3000 * WAD * (t1 - tl) + 3100 * WAD * 70) // (t1 + 70 - tl)
    exp_mark = (3000 * WAD * (t1 - tl) + amm.price * 70) // (t1 + 70 - tl)
    assert tuple(ch.twaps(ETH_ID)) == (exp_mark, exp_index)


# ---------------------------------------------------------------------------- many listed markets


def expected_margin(coll: int, held: dict) -> dict:
    """The margin formulas (docs/design.md#accounts-and-margin) over the held markets, no funding: held = {id:
    (size, openNotional, index, imr, mmr)}."""
    upnl = sum(size * index // WAD - on for size, on, index, _, _ in held.values())
    initial = sum(requirement(size, index, imr) for size, _, index, imr, _ in held.values())
    maint = sum(requirement(size, index, mmr) for size, _, index, _, mmr in held.values())
    return {"upnl": upnl, "initial": initial, "maint": maint, "value": coll + upnl,
            "free": min(coll, coll + upnl) - initial,
            "bitmap": sum(1 << (mid - 1) for mid in held),
            "exposure": sum(ceil_div(abs(size) * index, WAD) for size, _, index, _, _ in held.values())}


def check_cross_margin_views(system, who, coll: int, held: dict):
    """Every view that walks the account's market bitmap equals the per-market sum computed here; so does
    the ClearingHouse's marginSummary over a part of the bitmap, and (the account being the only trader)
    tradersPnl's loop over every listed market."""
    ch, vault = system.clearing_house, system.vault
    e = expected_margin(coll, held)
    assert vault.collateral(who, 0) == coll
    assert vault.openMarkets(who, 0) == e["bitmap"]
    assert tuple(ch.marginSummary(who, 0, e["bitmap"])) == (e["upnl"], 0, e["initial"], e["maint"], 0, 0)
    assert tuple(vault.health(who, 0)) == (e["value"], e["free"], e["initial"], e["maint"])
    assert vault.accountValue(who, 0) == e["value"]
    assert vault.freeCollateral(who, 0) == e["free"]
    assert tuple(vault.marginRequirements(who, 0)) == (e["initial"], e["maint"])
    assert vault.isLiquidatable(who, 0) == (e["value"] < e["maint"])
    assert tuple(ch.tradersPnl()) == (e["upnl"], e["exposure"])
    top = sorted(held)[-2:]  # the two highest ids alone
    part = expected_margin(coll, {mid: held[mid] for mid in top})
    assert tuple(ch.marginSummary(who, 0, part["bitmap"])) == (part["upnl"], 0, part["initial"], part["maint"], 0, 0)


def open_and_check_then_close(system, chain, who, positions: dict, amms: dict, params: dict, oracles: dict,
                              new_answers: dict):
    """Open `positions` ({id: base}) for `who` (one trade each, quotes from the vAMM formulas), move the feeds
    to `new_answers` ({oracle: 8-decimal answer}), check the cross-margin views, close every position and
    check that the bitmap and the margin views clear, with the collateral moved by exactly the realized
    PnL and fees."""
    ch, vault = system.clearing_house, system.vault
    coll = vault.collateral(who, 0)
    held = {}
    for mid, base in positions.items():
        q = amms[mid].trade(base)
        tx = trade(ch, who, mid, base)
        ev = one_event(ch, "PositionChanged", tx)
        fee = ceil_div(abs(q) * params[mid]["takerFee"], WAD)
        assert (ev.quoteDelta, ev.fee, ev.newSize, ev.newOpenNotional) == (q, fee, base, -q)
        coll -= fee
        held[mid] = [base, -q]
    for oracle, answer in new_answers.items():
        oracle.updateAnswer(answer, sender=system.deployer)
    full = {mid: (size, on, oracles[mid].latestAnswer() * ORACLE_UNIT, params[mid]["imr"], params[mid]["mmr"])
            for mid, (size, on) in held.items()}
    check_cross_margin_views(system, who, coll, full)
    bitmap = vault.openMarkets(who, 0)
    for mid, (size, on) in held.items():
        q = amms[mid].trade(-size)
        _, _, realized = apply_trade(size, on, -size, q)
        coll += realized - ceil_div(abs(q) * params[mid]["takerFee"], WAD)
        ch.closePosition(0, mid, 0 if size > 0 else MAX_UINT, deadline(), sender=who)
        assert ch.position(who, 0, mid)[:2] == (0, 0)
    assert vault.openMarkets(who, 0) == 0
    assert vault.collateral(who, 0) == coll
    assert tuple(vault.health(who, 0)) == (coll, coll, 0, 0)
    assert tuple(ch.marginSummary(who, 0, bitmap)) == (0, 0, 0, 0, 0, 0)
    assert tuple(ch.tradersPnl()) == (0, 0)


def market_params_of(ch, mid: int) -> dict:
    p = ch.marketParams(mid)
    return {"imr": p.imr, "mmr": p.mmr, "takerFee": p.takerFee}


@pytest.mark.usefixtures("batcher", "actors_no_funding")  # funding off (no time term), actors funded
def test_cross_margin_views_over_high_market_ids(system, ch, vault, project, chain, alice):
    """Reached by no other test: accounts holding markets above id 2 (ClearingHouseMargin._bitToMarket past its
    first branches). Markets 3..12 are listed, each with its own feed, price and margin ratios; alice holds
    ETH (1) and markets 3, 5, 9 and 12, long and short. marginSummary, the Vault's health views and
    tradersPnl equal the per-market sums; closing every position clears the bitmap and the views."""
    oracles = {ETH: system.markets["ETH"].oracle}
    amms = {ETH: Amm(ch.marketState(ETH).baseReserve, ch.marketState(ETH).quoteReserve)}
    for k in range(3, 13):
        mmr = Decimal("0.03") + Decimal(k) / 500
        mid, oracle, mc, _ = list_market(system, project, 50 * k + 13, mmr=mmr, imr=2 * mmr)
        assert mid == k
        oracles[mid] = oracle
        amms[mid] = listed_amm(ch, mid, 10_000 * WAD, (50 * k + 13) * WAD)
    positions = {ETH: 2 * WAD, 3: -30 * WAD, 5: 40 * WAD, 9: -7 * WAD, 12: 5 * WAD}
    for mid in positions:
        if mid != ETH:
            funding_off(system, mid)
    params = {mid: market_params_of(ch, mid) for mid in positions}
    assert len({p["mmr"] for p in params.values()}) == len(params)  # a wrong market id would show
    deposit(system, alice, 100_000)
    # Every feed moves differently (up and down), so each market's PnL differs from its neighbours'.
    moves = {ETH: 3100 * 10**8, 3: 150 * 10**8, 5: 280 * 10**8, 9: 500 * 10**8, 12: 560 * 10**8}
    open_and_check_then_close(system, chain, alice, positions, amms, params, oracles,
                              {oracles[mid]: answer for mid, answer in moves.items()})


@pytest.mark.usefixtures("batcher", "actors_no_funding")  # funding off (no time term), actors funded
def test_listing_stops_at_max_markets_and_the_top_ids_still_margin(system, ch, vault, project, chain, deployer,
                                                                   alice, batcher):
    """Reached by no other test: listMarket past MAX_MARKETS (128, one bit per market in the Vault's bitmap)
    reverts TooManyMarkets(128) and lists nothing; an account holding markets 17, 33, 65 and 128 (the upper
    branches of _bitToMarket: bits at or above 2^16, 2^32 and 2^64, and the very last bit) is margined on the
    per-market sums, and closing clears the bitmap."""
    assert ch.MAX_MARKETS() == 128
    oracle = system.markets["ETH"].oracle  # one feed for all new markets (3000)
    base = system.config.markets[0]
    for k in range(3, 129):
        mmr = Decimal("0.01") + Decimal(k) / 1000
        mc = replace(base, mmr=mmr, imr=2 * mmr)
        ch.listMarket(f"M{k}".encode().ljust(32, b"\0"), mc.to_params(oracle.address), wad(mc.insurance_fee_share),
                      wad(mc.base_reserve), sender=deployer)
    assert ch.marketCount() == 128
    mc = replace(base, symbol="M129")
    before = (ch.marketCount(), ch.symbolOf(129))
    with reverts_unchanged(system, batcher, ch.TooManyMarkets, maxMarkets=128):
        ch.listMarket(b"M129".ljust(32, b"\0"), mc.to_params(oracle.address), wad(mc.insurance_fee_share),
                      wad(mc.base_reserve), sender=deployer)
    assert (ch.marketCount(), ch.symbolOf(129)) == before == (128, b"\0" * 32)

    positions = {ETH: WAD, 17: -2 * WAD, 33: 3 * WAD, 65: -4 * WAD, 128: 5 * WAD}
    amms = {ETH: Amm(ch.marketState(ETH).baseReserve, ch.marketState(ETH).quoteReserve)}
    for mid in positions:
        if mid != ETH:
            funding_off(system, mid)
            amms[mid] = listed_amm(ch, mid, 10_000 * WAD, 3000 * WAD)
    params = {mid: market_params_of(ch, mid) for mid in positions}
    assert len({p["mmr"] for p in params.values()}) == len(params)
    deposit(system, alice, 100_000)
    open_and_check_then_close(system, chain, alice, positions, amms, params, {mid: oracle for mid in positions},
                              {oracle: 2950 * 10**8})


@pytest.mark.usefixtures("batcher", "actors_no_funding")  # funding off (no time term), actors funded
def test_twaps_in_the_listing_block_are_the_spot_and_the_index(system, ch, project, chain, deployer):
    """Reached by no other test: in the block a market is listed every TWAP observation is at `now`, so the
    TWAP span is zero and the views return the current vAMM price and the last index price instead of
    dividing by zero (_twapsFrom, span == 0); the funding window's is padded to a day at premium 0
    (_fundingTwaps). The reserves are chosen so that the spot price (quote / base,
    rounded down) is not the index, which tells the two apart. The feed is made exactly `heartbeat` old at
    the listing block, so indexPrice answering proves the views ran in that block (it is stale one block on)."""
    answer = 3000_12345678  # 3000.12345678 (8 decimals)
    index = answer * ORACLE_UNIT
    x = 7 * WAD + 1
    spot = (x * index // WAD) * WAD // x  # listMarket: quote = floor(x * index); spot = floor(quote / x)
    assert spot == index - 1
    oracle = project.MockAggregator.deploy(8, answer, "T / USD", sender=deployer)
    heartbeat = 60
    when = chain.pending_timestamp + 5
    oracle.updateRoundData(2, answer, when - heartbeat, when - heartbeat, sender=deployer)
    chain.pending_timestamp = when
    mid, _, _, tx = list_market(system, project, "3000.12345678", oracle=oracle, base_reserve=x, heartbeat=heartbeat)
    assert tx.timestamp == when and chain.blocks.head.timestamp == when
    assert ch.indexPrice(mid) == index  # the views see block.timestamp == when
    assert ch.spotPrice(mid) == spot
    assert tuple(ch.twaps(mid)) == (spot, index)
    assert ch.markPrice(mid) == spot
    # The funding window has no span yet either: padded to the whole day at premium 0 (mark and index at the last
    # index), not this block's spot, so no trade in the listing block can set the first funding sample.
    fs = ch.fundingState(mid)
    assert (fs.markTwap, fs.indexTwap, fs.premium, fs.targetRate) == (index, index, 0, 0)
    chain.mine()
    with expect_revert(ch.StaleOracle, feed=oracle.address, updatedAt=when - heartbeat, heartbeat=heartbeat):
        ch.indexPrice(mid)
