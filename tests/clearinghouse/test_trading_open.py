"""Opening and increasing positions: execution price, fee, ledger, event, views
(docs/design.md#units-and-rounding, docs/design.md#accounts-and-margin, docs/design.md#trading)."""
import pytest

from helpers.trading import (
    BTC_ID,
    BTC_INDEX,
    ETH_ID,
    ETH_INDEX,
    ETH_X0,
    ETH_Y0,
    MAX_UINT,
    POOL_SEED,
    INSURANCE_SEED,
    WAD,
    btc_amm,
    ceil_div,
    deadline,
    eth_amm,
    fee_of,
    insurance_part,
    position_changed,
    price,
    trade,
)


def _open_and_check(system, ch, vault, who, market_id, amm, base, sub=0):
    """Open `base` from flat and check return values, event, ledger and reserves to the wei."""
    coll0 = vault.collateral(who, sub)
    pool0 = vault.poolBalance()
    ins0 = vault.insuranceFund()

    exp_quote, exp_price_after = amm.peek(base)
    # quote() view agrees with the formula before the trade.
    assert ch.quote(market_id, base) == (exp_quote, exp_price_after)

    limit = MAX_UINT if base > 0 else 0
    dl = deadline()
    # The return values (eth_call on the same state as the transaction that follows).
    returned = ch.openPosition.call(sub, market_id, base, limit, dl, sender=who)
    exp_fee = fee_of(exp_quote)
    assert tuple(returned) == (base, exp_quote, exp_fee)

    tx = ch.openPosition(sub, market_id, base, limit, dl, sender=who)
    amm.trade(base)
    ev = position_changed(ch, tx)
    assert ev.owner == who.address
    assert ev.subaccount == sub
    assert ev.marketId == market_id
    assert ev.baseDelta == base
    assert ev.quoteDelta == exp_quote
    assert ev.fee == exp_fee
    assert ev.realizedPnl == 0
    assert ev.fundingPaid == 0
    assert ev.newSize == base
    assert ev.newOpenNotional == -exp_quote
    assert ev.priceAfter == exp_price_after

    assert ch.position(who, sub, market_id) == (base, -exp_quote, 0)
    # Collateral drops by exactly the fee; the fee splits 20 % (rounded down) insurance, rest pool.
    ins = insurance_part(exp_fee)
    assert vault.collateral(who, sub) == coll0 - exp_fee
    assert vault.insuranceFund() == ins0 + ins
    assert vault.poolBalance() == pool0 + exp_fee - ins
    s = ch.marketState(market_id)
    assert (s.baseReserve, s.quoteReserve) == (amm.x, amm.y)
    assert s.spotPrice == exp_price_after == ch.spotPrice(market_id)
    return exp_quote, exp_fee


def test_openPosition_new_long(system, ch, vault, alice):
    system.fund(alice, 10_000)
    amm = eth_amm()
    base = WAD
    q, fee = _open_and_check(system, ch, vault, alice, ETH_ID, amm, base)
    # Hand values: buying 1 ETH from (10_000, 30_000_000): ceil(30e6 / 9999) and its fee.
    assert q == -ceil_div(ETH_Y0 * WAD, ETH_X0 - WAD)
    assert q == -3000300030003000300031
    assert fee == 3000300030003000301
    assert ch.marketState(ETH_ID).longOpenInterest == base
    assert ch.marketState(ETH_ID).shortOpenInterest == 0
    assert vault.openMarkets(alice, 0) == 1


def test_openPosition_new_short(system, ch, vault, alice):
    system.fund(alice, 10_000)
    amm = eth_amm()
    base = -2 * WAD
    q, fee = _open_and_check(system, ch, vault, alice, ETH_ID, amm, base)
    assert q == (ETH_Y0 * 2 * WAD) // (ETH_X0 + 2 * WAD)
    assert q > 0
    size, on, _ = ch.position(alice, 0, ETH_ID)
    assert size == base and on == -q < 0  # a short's open notional is the (negative) quote received
    s = ch.marketState(ETH_ID)
    assert (s.longOpenInterest, s.shortOpenInterest) == (0, 2 * WAD)
    assert s.spotPrice < ETH_INDEX


def test_openPosition_new_long_btc_odd_size(system, ch, vault, alice):
    system.fund(alice, 10_000)
    amm = btc_amm()
    base = 123_456_789_012_345_679  # 0.123456789012345679 BTC: exercises every rounding
    _open_and_check(system, ch, vault, alice, BTC_ID, amm, base)
    assert ch.marketState(BTC_ID).longOpenInterest == base
    assert vault.openMarkets(alice, 0) == 0b10


def test_openPosition_increase_long(system, ch, vault, alice):
    system.fund(alice, 10_000)
    amm = eth_amm()
    q1, fee1 = _open_and_check(system, ch, vault, alice, ETH_ID, amm, WAD)
    coll = vault.collateral(alice, 0)
    q2, p2 = amm.peek(WAD // 2)
    assert ch.quote(ETH_ID, WAD // 2) == (q2, p2)
    tx = trade(ch, alice, ETH_ID, WAD // 2)
    amm.trade(WAD // 2)
    fee2 = fee_of(q2)
    ev = position_changed(ch, tx)
    assert (ev.quoteDelta, ev.fee, ev.realizedPnl) == (q2, fee2, 0)
    assert (ev.newSize, ev.newOpenNotional, ev.priceAfter) == (3 * WAD // 2, -q1 - q2, p2)
    # The whole cost of the increase joins the basis; the second unit costs more (price moved up).
    assert ch.position(alice, 0, ETH_ID) == (3 * WAD // 2, -q1 - q2, 0)
    assert -q2 * 2 > -q1
    assert vault.collateral(alice, 0) == coll - fee2
    s = ch.marketState(ETH_ID)
    assert (s.baseReserve, s.quoteReserve, s.longOpenInterest) == (amm.x, amm.y, 3 * WAD // 2)


def test_openPosition_increase_short(system, ch, vault, alice):
    system.fund(alice, 10_000)
    amm = eth_amm()
    q1, _ = _open_and_check(system, ch, vault, alice, ETH_ID, amm, -WAD)
    q2 = amm.trade(-WAD)
    tx = trade(ch, alice, ETH_ID, -WAD)
    ev = position_changed(ch, tx)
    assert ev.quoteDelta == q2 and q2 < q1  # selling more receives less per unit
    assert ch.position(alice, 0, ETH_ID) == (-2 * WAD, -(q1 + q2), 0)
    assert ch.marketState(ETH_ID).shortOpenInterest == 2 * WAD


def test_openPosition_several_traders_open_interest(system, ch, vault, alice, bob, carol):
    for who in (alice, bob, carol):
        system.fund(who, 50_000)
    amm = eth_amm()
    for who, base in ((alice, 3 * WAD), (bob, -5 * WAD), (carol, 7 * WAD), (alice, WAD)):
        q = amm.trade(base)
        ev = position_changed(ch, trade(ch, who, ETH_ID, base))
        assert ev.quoteDelta == q
    s = ch.marketState(ETH_ID)
    assert (s.longOpenInterest, s.shortOpenInterest) == (11 * WAD, 5 * WAD)
    # Net trader position == -(vAMM net base change).
    assert ETH_X0 - s.baseReserve == 11 * WAD - 5 * WAD
    assert (s.baseReserve, s.quoteReserve) == (amm.x, amm.y)
    # k never decreases (every rounding favours the vAMM).
    assert s.baseReserve * s.quoteReserve >= ETH_X0 * ETH_Y0


def test_openPosition_pool_and_insurance_sum_fees(system, ch, vault, alice, bob):
    system.fund(alice, 50_000)
    system.fund(bob, 50_000)
    amm = eth_amm()
    fees = []
    for who, base in ((alice, 2 * WAD), (bob, -3 * WAD), (alice, WAD)):
        q = amm.trade(base)
        trade(ch, who, ETH_ID, base)
        fees.append(fee_of(q))
    ins = sum(insurance_part(f) for f in fees)
    assert vault.insuranceFund() == INSURANCE_SEED + ins
    assert vault.poolBalance() == POOL_SEED + sum(fees) - ins
    assert vault.collateral(alice, 0) + vault.collateral(bob, 0) == 100_000 * WAD - sum(fees)


@pytest.mark.parametrize("base", [10**16, 10**18 + 1, 37 * 10**18 + 123456789, -(10**16), -(10**18 + 1), -37 * 10**18 - 987])
def test_quote_matches_execution_to_the_wei(system, ch, alice, base):
    system.fund(alice, 100_000)
    amm = eth_amm()
    # move the pool off its initial state first so the reserves are not round numbers
    amm.trade(3 * WAD + 7)
    trade(ch, alice, ETH_ID, 3 * WAD + 7)
    q_view, p_view = ch.quote(ETH_ID, base)
    assert (q_view, p_view) == amm.peek(base)
    ev = position_changed(ch, trade(ch, alice, ETH_ID, base))
    assert (ev.quoteDelta, ev.priceAfter) == (q_view, p_view)
    assert ch.spotPrice(ETH_ID) == p_view == price(*_reserves(ch, ETH_ID))


def _reserves(ch, mid):
    s = ch.marketState(mid)
    return s.baseReserve, s.quoteReserve


def test_openPosition_subaccount_fields(system, ch, vault, alice):
    system.fund(alice, 5_000, subaccount=7)
    amm = eth_amm()
    _open_and_check(system, ch, vault, alice, ETH_ID, amm, -WAD, sub=7)
    assert ch.position(alice, 0, ETH_ID) == (0, 0, 0)
    assert vault.openMarkets(alice, 7) == 1 and vault.openMarkets(alice, 0) == 0


def test_marketState_views_after_open(system, ch, alice):
    system.fund(alice, 10_000)
    trade(ch, alice, BTC_ID, -WAD // 10)
    s = ch.marketState(BTC_ID)
    assert s.shortOpenInterest == WAD // 10 and s.longOpenInterest == 0
    assert s.lastIndexPrice == BTC_INDEX
    assert s.fundingRate == 0 and s.cumulativeFunding == 0
    assert ch.indexPrice(BTC_ID) == BTC_INDEX
