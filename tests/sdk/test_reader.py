"""PerpReader (contracts/periphery) and Vault.withdraw(sub, type(uint256).max): the views bots expect.

- withdraw max: pays floor(min(free, collateral) / scale) token units, the Withdraw event carries that
  amount, less than one unit is left, the model mirrors it; the named errors when nothing is free.
- liquidationPrice: the oracle moved to the reported price and one feed unit either side flips
  Vault.isLiquidatable exactly there (long, short, cross margin, isolated); 0 when no price applies. Small
  positions walk the feed's grid past a safe first price; dust stops after 8 safe prices; a root past
  MAX_PRICE is 0.
- maxTradeSize: trading exactly the reported base succeeds, one wei more reverts with the binding
  check's named error (band, absolute OI cap, pool-ratio cap with the trade's own fee, a vAMM outside
  its band); 0 at and past the absolute OI cap; a first guess past the band is searched down from.
- marketSummary: equals the modules' own views; answers on a stale feed.
- the SDK helpers, `Client.subaccounts` over the Vault's events, and old deployment records.

Funding stays off in these tests (each starts at a fresh quarter of the TWAP window, so the only sample
sees mark == index), so "everything else held" holds exactly between the view and the check.
"""
from __future__ import annotations

import dataclasses

import pytest
from ape.exceptions import ContractLogicError
from helpers.trading import MAX_UINT, QUARTER, WAD, ceil_div, expect_revert, price, trade
from helpers.vault import deposit, ledger

from vperp.client import Client, ClientError, build_record, write_record
from vperp.config import lagging_peg_config, wad
from vperp.model import Model, ModelRevert

USDC = 10**6
SCALE = 10**12
UNIT = 10**10  # one unit of an 8-decimal feed, in WAD
EIP170 = 24_576


@pytest.fixture(scope="module")
def reader(system):
    return system.reader


@pytest.fixture(autouse=True)
def fresh_quarter(chain, reader, alice, bob, carol):
    """Start each test at the first second of a new quarter window, well after the last block."""
    t = chain.pending_timestamp
    chain.pending_timestamp = (t // QUARTER + 2) * QUARTER
    yield


def set_index(system, symbol, price_wad):
    m = system.markets[symbol]
    assert price_wad % UNIT == 0
    m.oracle.updateAnswer(price_wad // UNIT, sender=system.deployer)


def fund(system, who, units, sub=0):
    deposit(system.collateral, system.vault, who, units, sub)


def set_params(system, symbol, **changes):
    m = system.markets[symbol]
    mc = dataclasses.replace(m.config, **changes)
    system.clearing_house.setMarketParams(m.id, mc.to_params(m.oracle.address), wad(mc.insurance_fee_share),
                                          sender=system.deployer)


# ============================================================================ deployment


def test_reader_is_wired_to_the_modules_and_recorded(system, reader, chain, project):
    assert reader.vault() == system.vault.address
    assert reader.clearingHouse() == system.clearing_house.address
    assert reader.liquidationEngine() == system.liquidation.address
    record = build_record(system, system.config, chain, 1)
    assert record["contracts"]["PerpReader"] == reader.address
    assert record["abi"]["PerpReader"] == "abi/PerpReader.json"
    size = (len(project.PerpReader.contract_type.runtime_bytecode.bytecode) - 2) // 2
    print(f"\nPerpReader: {size:,} bytes of runtime code, {EIP170 - size:,} below the limit")
    assert size <= EIP170


def test_reader_constructor_rejects_zero_addresses(project, system, deployer):
    zero = "0x" + "00" * 20
    with expect_revert(system.reader.ZeroAddress):
        project.PerpReader.deploy(zero, system.clearing_house, system.liquidation, sender=deployer)


# ============================================================================ withdraw everything free


def test_withdraw_max_without_positions_takes_every_token_unit(system, reader, alice, chain):
    vault, usdc = system.vault, system.collateral
    fund(system, alice, 1_234 * USDC + 7, sub=2)
    before = usdc.balanceOf(alice)
    assert tuple(reader.withdrawable(alice, 2)) == (1_234 * USDC + 7, (1_234 * USDC + 7) * SCALE)
    tx = vault.withdraw(2, MAX_UINT, sender=alice)
    (log,) = tx.events.filter(vault.Withdraw)
    assert (log.owner, log.subaccount, log.amount, log.amountWad) == (alice, 2, 1_234 * USDC + 7, (1_234 * USDC + 7) * SCALE)
    assert usdc.balanceOf(alice) - before == 1_234 * USDC + 7
    assert vault.collateral(alice, 2) == 0
    assert tuple(reader.withdrawable(alice, 2)) == (0, 0)


def test_withdraw_max_with_a_position_leaves_less_than_one_unit_free(system, reader, alice, bob, chain):
    vault, ch, eth = system.vault, system.clearing_house, system.markets["ETH"]
    fund(system, alice, 10_000 * USDC)
    trade(ch, alice, eth.id, 10 * WAD)
    set_index(system, "ETH", 3_100 * WAD)  # unrealized profit: never withdrawable
    coll = vault.collateral(alice, 0)
    free = vault.freeCollateral(alice, 0)
    expected = min(free, coll) // SCALE
    assert reader.withdrawable(alice, 0)[0] == expected > 0
    tx = vault.withdraw(0, MAX_UINT, sender=alice)
    (log,) = tx.events.filter(vault.Withdraw)
    assert (log.amount, log.amountWad) == (expected, expected * SCALE)
    left = vault.freeCollateral(alice, 0)
    assert 0 <= left < SCALE  # no withdrawable dust
    with expect_revert(vault.InsufficientFreeCollateral):
        vault.withdraw(0, 1, sender=alice)
    # an operator's withdrawFor(max) pays the owner
    fund(system, alice, 500 * USDC)
    vault.setOperator(bob, True, sender=alice)
    before = system.collateral.balanceOf(alice)
    (log,) = vault.withdrawFor(alice, 0, MAX_UINT, sender=bob).events.filter(vault.Withdraw)
    assert log.caller == bob and system.collateral.balanceOf(alice) - before == log.amount == (left + 500 * USDC * SCALE) // SCALE


def test_withdraw_max_reverts_with_named_errors_and_changes_nothing(system, reader, alice, carol, chain):
    vault, ch, usdc, eth = system.vault, system.clearing_house, system.collateral, system.markets["ETH"]
    # nothing at all: ZeroAmount
    with expect_revert(vault.ZeroAmount):
        vault.withdraw(9, MAX_UINT, sender=carol)
    # under one token unit free: ZeroAmount
    fund(system, alice, 10_000 * USDC)
    trade(ch, alice, eth.id, 25 * WAD)  # 75k notional: initial 7.5k
    set_index(system, "ETH", 2_980 * WAD)
    free = vault.freeCollateral(alice, 0)
    assert free > 0
    # move all but 0.5 unit out so less than one unit is free
    vault.transferMargin(0, 1, free - SCALE // 2, sender=alice)
    assert 0 < vault.freeCollateral(alice, 0) < SCALE
    state = ledger(vault, usdc, (alice,), ((alice, 0),))
    with expect_revert(vault.ZeroAmount):
        vault.withdraw(0, MAX_UINT, sender=alice)
    assert reader.withdrawable(alice, 0)[0] == 0
    # free collateral negative: InsufficientFreeCollateral(min(free, collateral))
    set_index(system, "ETH", 2_850 * WAD)
    free = vault.freeCollateral(alice, 0)
    assert free < 0
    with expect_revert(vault.InsufficientFreeCollateral, owner=alice.address, subaccount=0, freeCollateral=free):
        vault.withdraw(0, MAX_UINT, sender=alice)
    assert ledger(vault, usdc, (alice,), ((alice, 0),)) == state
    assert tuple(reader.withdrawable(alice, 0)) == (0, 0)


def _model_withdraw_all_scenario(m: Model, t0: int):
    m.deposit("alice", 0, 10_000 * USDC, t0)
    m.open_position("alice", 0, 1, 10 * WAD, MAX_UINT, t0 + 1, t0 + 1)
    m.set_index(1, 3_100 * WAD, t0 + 2)
    return m.withdraw("alice", 0, MAX_UINT, t0 + 3)


def test_model_withdraw_max_mirrors_the_vault(system, reader, alice, chain):
    # the same steps on the chain and in the model (funding off in both): the same amount, to the wei
    vault, ch, eth = system.vault, system.clearing_house, system.markets["ETH"]
    fund(system, alice, 10_000 * USDC)
    trade(ch, alice, eth.id, 10 * WAD)
    set_index(system, "ETH", 3_100 * WAD)
    (log,) = vault.withdraw(0, MAX_UINT, sender=alice).events.filter(vault.Withdraw)
    t0 = 1_800_000_000 // QUARTER * QUARTER
    m = Model.from_config(lagging_peg_config(), t0 - 10)
    assert _model_withdraw_all_scenario(m, t0) == log.amountWad
    assert m.collateral("alice", 0) == vault.collateral(alice, 0)
    # the model's errors for the max case
    m2 = Model.from_config(lagging_peg_config(), t0 - 10)
    with pytest.raises(ModelRevert) as e:
        m2.withdraw("nobody", 0, MAX_UINT, t0)
    assert e.value.name == "ZeroAmount"
    m2.deposit("bob", 0, 10_000 * USDC, t0)
    m2.open_position("bob", 0, 1, 30 * WAD, MAX_UINT, t0 + 1, t0 + 1)
    m2.set_index(1, 2_900 * WAD, t0 + 2)
    free = m2.free_collateral("bob", 0, t0 + 3)
    with pytest.raises(ModelRevert) as e:
        m2.withdraw("bob", 0, MAX_UINT, t0 + 3)
    assert e.value.name == "InsufficientFreeCollateral" and e.value.args[-1] == min(free, m2.collateral("bob", 0))


# ============================================================================ liquidation price


def _flips_at(system, owner, sub, symbol, liq, is_long):
    """isLiquidatable at the reported price and one feed unit beyond it (liquidatable side), not one unit on the
    safe side."""
    vault = system.vault
    safe, deeper = (liq + UNIT, liq - UNIT) if is_long else (liq - UNIT, liq + UNIT)
    seen = {}
    for p in (safe, liq, deeper):
        set_index(system, symbol, p)
        seen[p] = vault.isLiquidatable(owner, sub)
    assert seen == {safe: False, liq: True, deeper: True}, seen


def test_liquidation_price_long_flips_exactly_at_the_reported_feed_price(system, reader, alice, chain):
    ch, eth = system.clearing_house, system.markets["ETH"]
    fund(system, alice, 10_000 * USDC)
    trade(ch, alice, eth.id, 20 * WAD)  # ~60k notional on 10k: 6x
    liq = reader.liquidationPrice(alice, 0, eth.id)
    assert 2_500 * WAD < liq < 3_000 * WAD and liq % UNIT == 0
    # the line: value(P) = maintenance(P), everything else held
    size, notional, _ = ch.position(alice, 0, eth.id)
    coll = system.vault.collateral(alice, 0)
    root = (notional - coll) * WAD * WAD / (size * WAD - size * wad(0.05))
    assert abs(liq - root) <= UNIT
    _flips_at(system, alice, 0, "ETH", liq, True)


def test_liquidation_price_short_isolated_flips_exactly(system, reader, bob, chain):
    ch, btc = system.clearing_house, system.markets["BTC"]
    fund(system, bob, 20_000 * USDC, sub=4)
    trade(ch, bob, btc.id, -2 * WAD, sub=4)  # ~120k notional on 20k
    liq = reader.liquidationPrice(bob, 4, btc.id)
    assert 60_000 * WAD < liq < 75_000 * WAD and liq % UNIT == 0
    _flips_at(system, bob, 4, "BTC", liq, False)


def test_liquidation_price_cross_margin_holds_the_other_market(system, reader, carol, chain):
    ch, eth, btc = system.clearing_house, system.markets["ETH"], system.markets["BTC"]
    fund(system, carol, 30_000 * USDC)
    trade(ch, carol, eth.id, 40 * WAD)
    trade(ch, carol, btc.id, -1 * WAD)
    set_index(system, "BTC", 62_000 * WAD)  # the short loses 2k: the ETH long's price rises
    liq_eth = reader.liquidationPrice(carol, 0, eth.id)
    liq_btc = reader.liquidationPrice(carol, 0, btc.id)
    _flips_at(system, carol, 0, "ETH", liq_eth, True)
    set_index(system, "ETH", 3_000 * WAD)
    assert reader.liquidationPrice(carol, 0, btc.id) == liq_btc
    _flips_at(system, carol, 0, "BTC", liq_btc, False)


def test_liquidation_price_is_zero_when_no_price_applies(system, reader, alice, bob, carol, chain):
    ch, eth, btc = system.clearing_house, system.markets["ETH"], system.markets["BTC"]
    assert reader.NO_LIQUIDATION_PRICE() == 0
    assert reader.liquidationPrice(alice, 0, eth.id) == 0  # no position
    fund(system, alice, 100_000 * USDC)
    trade(ch, alice, eth.id, 1 * WAD)  # 3k long on 100k: not even a zero price liquidates it
    assert reader.liquidationPrice(alice, 0, eth.id) == 0
    set_index(system, "ETH", UNIT)  # the lowest price the feed can give
    assert not system.vault.isLiquidatable(alice, 0)
    set_index(system, "ETH", 3_000 * WAD)
    # a short whose other market already sinks it: liquidatable at every ETH price, so the lowest one
    fund(system, bob, 7_000 * USDC)
    trade(ch, bob, btc.id, 1 * WAD)
    trade(ch, bob, eth.id, -(WAD // 10))
    set_index(system, "BTC", 52_000 * WAD)  # -8k on BTC: the collateral is gone
    assert reader.liquidationPrice(bob, 0, eth.id) == UNIT
    assert system.vault.isLiquidatable(bob, 0)


def test_liquidation_price_rejects_bad_input(system, reader, alice):
    with expect_revert(reader.UnknownMarket, marketId=0):
        reader.liquidationPrice(alice, 0, 0)
    with expect_revert(reader.UnknownMarket, marketId=3):
        reader.liquidationPrice(alice, 0, 3)
    with expect_revert(reader.ZeroAddress):
        reader.liquidationPrice("0x" + "00" * 20, 0, 1)
    with expect_revert(reader.ZeroAddress):
        reader.withdrawable("0x" + "00" * 20, 0)


MAX_PRICE = 2**128 - 1  # PerpReader.MAX_PRICE


def _line(system, owner, sub, mid):
    """The reader's line h(x) = rest + size x - free x mmr of `mid` (IPerpReader NatSpec), read as it reads it."""
    ch, vault = system.clearing_house, system.vault
    size, notional, _ = ch.position(owner, sub, mid)
    value, maintenance, _, _ = vault.liquidationState(owner, sub)
    own = ch.marginSummary(owner, sub, 1 << (mid - 1))
    rest = value - own.unrealizedPnl - notional - (maintenance - own.maintenance)
    return rest, size, abs(size - ch.auctionedSize(owner, sub, mid)), ch.marketParams(mid).mmr


def _first_grid_price(rest, size, free, mmr):
    """Where the reader's walk starts: a long's first feed price below hi = ceil((3 - rest) WAD^2 / k), a short's
    first above lo = floor((rest - 3) WAD^2 / k) (None: lo >= MAX_PRICE)."""
    if size > 0:
        hi = ceil_div((3 - rest) * WAD * WAD, size * WAD - free * mmr)
        g = min(hi - 1, MAX_PRICE)
        return g - g % UNIT
    lo = (rest - 3) * WAD * WAD // (-size * WAD + free * mmr)
    return None if lo >= MAX_PRICE else (lo // UNIT + 1) * UNIT


def _health_at(system, owner, sub, symbol, price_wad):
    """Vault's value - maintenance of the account with `symbol`'s feed at `price_wad` (isLiquidatable: < 0)."""
    set_index(system, symbol, price_wad)
    value, maintenance, _, _ = system.vault.liquidationState(owner, sub)
    return value - maintenance


def test_liquidation_price_small_long_walks_down_past_a_safe_first_price(system, reader, alice, chain):
    """A long so small that one feed unit moves its health by ~4 wei (the rounding band is 3): the first grid price
    under the line's root is still safe, so the walk steps down one unit (`g -= unit`) to the first liquidatable
    price, and Vault.isLiquidatable flips exactly there."""
    ch = system.clearing_house
    set_params(system, "ETH", min_position_size="0.000000000000000001")
    fund(system, alice, 1, sub=7)  # one token unit (1e-6 USDC) on 4e-10 ETH (~1.2e-6 USDC): 1.2x
    trade(ch, alice, 1, 400_000_000, sub=7)
    first = _first_grid_price(*_line(system, alice, 7, 1))
    liq = reader.liquidationPrice(alice, 7, 1)
    assert liq == first - UNIT and 500 * WAD < liq < 3_000 * WAD
    _flips_at(system, alice, 7, "ETH", liq, True)


def test_liquidation_price_small_short_walks_up_past_a_safe_first_price(system, reader, alice, chain):
    """The short's mirror: the first grid price above the line's root is safe, the walk steps up one unit
    (`g += unit`) to the first liquidatable one, where Vault.isLiquidatable flips."""
    ch = system.clearing_house
    set_params(system, "ETH", min_position_size="0.000000000000000001")
    fund(system, alice, 1, sub=7)
    trade(ch, alice, 1, -2_380_000_000, sub=7)
    first = _first_grid_price(*_line(system, alice, 7, 1))
    liq = reader.liquidationPrice(alice, 7, 1)
    assert liq == first + UNIT and 3_000 * WAD < liq < 3_500 * WAD
    _flips_at(system, alice, 7, "ETH", liq, False)


def test_liquidation_price_dust_positions_stop_after_eight_safe_feed_prices(system, reader, alice, bob, chain):
    """Positions too small for 8 feed units to span the rounding band: the walk checks 8 grid prices, all safe
    (Vault value >= maintenance at each), and returns the next one unverified. A 1e-12 ETH short on 1,000 USDC
    walks up from the first price above its root; a 1e-12 ETH long in an account its BTC long already sank walks
    down from the first price below its root (the ETH price that would save it)."""
    ch = system.clearing_house
    set_params(system, "ETH", min_position_size="0.000000000000000001")
    fund(system, alice, 1_000 * USDC, sub=1)
    trade(ch, alice, 1, -10**6, sub=1)
    fund(system, bob, 7_000 * USDC)
    trade(ch, bob, 2, WAD)
    trade(ch, bob, 1, 10**6)
    set_index(system, "BTC", 52_000 * WAD)  # -8k on BTC: the collateral is gone
    assert system.vault.isLiquidatable(bob, 0)
    for who, sub, sign in ((alice, 1, 1), (bob, 0, -1)):  # a short walks up, a long down
        first = _first_grid_price(*_line(system, who, sub, 1))
        liq = reader.liquidationPrice(who, sub, 1)
        assert first < MAX_PRICE and liq == first + sign * 8 * UNIT
        for i in range(8):
            assert _health_at(system, who, sub, "ETH", first + sign * i * UNIT) >= 0
        set_index(system, "ETH", 3_000 * WAD)


def test_liquidation_price_is_zero_when_the_root_is_past_max_price(system, reader, alice, chain):
    """A 1-wei short on 1,000 USDC: its line stays >= 3 up to lo = floor((rest - 3) WAD^2 / k) >= MAX_PRICE, so no
    price liquidates it: NO_LIQUIDATION_PRICE (0), and the Vault agrees at the highest price a feed can report."""
    ch = system.clearing_house
    set_params(system, "ETH", min_position_size="0.000000000000000001")
    fund(system, alice, 1_000 * USDC, sub=2)
    trade(ch, alice, 1, -1, sub=2)
    assert _first_grid_price(*_line(system, alice, 2, 1)) is None
    assert reader.liquidationPrice(alice, 2, 1) == reader.NO_LIQUIDATION_PRICE() == 0
    top = MAX_PRICE // UNIT * UNIT  # OracleLib: answer <= type(uint128).max / scale
    assert _health_at(system, alice, 2, "ETH", top) > 0
    assert not system.vault.isLiquidatable(alice, 2)


# ============================================================================ max trade size


def _exact_max(system, reader, who, symbol, is_long, error):
    ch, m = system.clearing_house, system.markets[symbol]
    b = reader.maxTradeSize(m.id, is_long)
    assert b > 0
    sign = 1 if is_long else -1
    with expect_revert(error):
        trade(ch, who, m.id, sign * (b + 1))
    trade(ch, who, m.id, sign * b)
    return b


def test_max_trade_size_band_binds_both_sides(system, reader, carol, chain):
    ch = system.clearing_house
    fund(system, carol, 1_000_000 * USDC)
    b = _exact_max(system, reader, carol, "ETH", True, ch.PriceBandExceeded)
    assert 460 * WAD < b < 470 * WAD  # 10_000 x (1 - sqrt(3000 / 3300))
    assert reader.maxTradeSize(1, True) <= 1  # at the band's edge now
    # the other side of the same vAMM: back through the index and down to the lower edge
    b = _exact_max(system, reader, carol, "ETH", False, ch.PriceBandExceeded)
    assert b > 900 * WAD


def test_max_trade_size_when_the_vamm_is_outside_its_band(system, reader, carol, chain):
    ch = system.clearing_house
    fund(system, carol, 1_000_000 * USDC)
    set_index(system, "ETH", 3_500 * WAD)  # the vAMM (3000) is 14 % below: buys may go to the mirror price
    b = _exact_max(system, reader, carol, "ETH", True, ch.PriceBandExceeded)
    x, y = system.clearing_house.marketState(1).baseReserve, system.clearing_house.marketState(1).quoteReserve
    assert price(x, y) > 3_850 * WAD  # above index + band (3850): the mirror of the starting distance
    assert reader.maxTradeSize(1, False) > 0


def test_max_trade_size_absolute_oi_cap(system, reader, alice, carol, chain):
    ch = system.clearing_house
    set_params(system, "ETH", max_open_interest=50)
    fund(system, alice, 100_000 * USDC)
    trade(ch, alice, 1, 12 * WAD)
    fund(system, carol, 1_000_000 * USDC)
    b = _exact_max(system, reader, carol, "ETH", True, ch.OpenInterestCapExceeded)
    assert b == 38 * WAD


def test_max_trade_size_pool_ratio_cap_counts_the_trades_own_fee(system, reader, carol, chain):
    ch, vault = system.clearing_house, system.vault
    set_params(system, "BTC", max_oi_pool_ratio=0.05)  # 10M pool: 500k notional a side
    fund(system, carol, 1_000_000 * USDC)
    pool = vault.poolBalance()
    before_fee = (pool * wad(0.05) // WAD) * WAD // (60_000 * WAD)
    b = _exact_max(system, reader, carol, "BTC", False, ch.OpenInterestCapExceeded)
    assert b > before_fee  # the fee the trade pays into the pool raises its own cap
    assert ceil_div(b * 60_000 * WAD, WAD) <= vault.poolBalance() * wad(0.05) // WAD


def test_max_trade_size_is_zero_at_and_past_the_open_interest_cap(system, reader, alice, carol, chain):
    """A side at its absolute OI cap has no room (hi = 0): maxTradeSize is 0 and the smallest trade reverts
    OpenInterestCapExceeded; after the cap is lowered under the open interest it stays 0 (no underflow), while
    the other side keeps its room."""
    ch = system.clearing_house
    set_params(system, "ETH", max_open_interest=50)
    fund(system, alice, 100_000 * USDC)
    trade(ch, alice, 1, 50 * WAD)
    fund(system, carol, 1_000_000 * USDC)
    assert reader.maxTradeSize(1, True) == 0
    min_size = ch.marketParams(1).minPositionSize
    with expect_revert(ch.OpenInterestCapExceeded, marketId=1, openInterest=50 * WAD + min_size, cap=50 * WAD):
        trade(ch, carol, 1, min_size)
    set_params(system, "ETH", max_open_interest=40)
    assert ch.marketState(1).longOpenInterest == 50 * WAD
    assert reader.maxTradeSize(1, True) == 0
    with expect_revert(ch.OpenInterestCapExceeded):
        trade(ch, carol, 1, min_size)
    assert reader.maxTradeSize(1, False) > 0


def test_max_trade_size_searches_down_when_the_band_solve_overshoots(system, reader, project, carol, chain):
    """On a market listed at the least base reserve (1 unit, price ~1), the band's solve x1 = ceil(sqrt(x y / limit))
    is coarse enough that its rounding puts the first guess one wei past the band (price after > index + band):
    the search steps down from it, and the answer is exact: buying it succeeds, one wei more reverts
    PriceBandExceeded."""
    import math

    from helpers.markets import list_market

    ch = system.clearing_house
    mid, oracle, _, _ = list_market(system, project, 1, base_reserve=WAD, min_position_size="0.000000000000000001",
                                    max_open_interest=1)
    oracle.updateAnswer(10**8 + 74, sender=system.deployer)  # index 1.00000074
    st, p, index = ch.marketState(mid), ch.marketParams(mid), ch.indexPrice(mid)
    limit = index + index * p.maxSpread // WAD
    q = st.baseReserve * st.quoteReserve * WAD // limit
    x1 = math.isqrt(q)
    x1 += x1 * x1 < q
    guess = st.baseReserve - x1  # PerpReader._bandGuess for a buy
    b = reader.maxTradeSize(mid, True)
    assert b == guess - 1
    fund(system, carol, 1_000 * USDC)
    with expect_revert(ch.PriceBandExceeded, marketId=mid, indexPrice=index, maxSpread=p.maxSpread):
        trade(ch, carol, mid, b + 1)
    trade(ch, carol, mid, b)
    assert ch.position(carol, 0, mid)[0] == b


def test_max_trade_size_rejects_unknown_markets(reader):
    for bad in (0, 3, 2**32 - 1):
        with expect_revert(reader.UnknownMarket, marketId=bad):
            reader.maxTradeSize(bad, True)
        with expect_revert(reader.UnknownMarket, marketId=bad):
            reader.marketSummary(bad)


# ============================================================================ market summary


def test_market_summary_equals_the_module_views(system, reader, alice, chain):
    ch, vault, eth = system.clearing_house, system.vault, system.markets["ETH"]
    fund(system, alice, 50_000 * USDC)
    trade(ch, alice, eth.id, 25 * WAD)
    chain.mine(timestamp=chain.pending_timestamp + 60)  # the lifted vAMM has held for a minute: a premium
    s = reader.marketSummary(eth.id)
    assert s.marketId == eth.id and s.symbol.rstrip(b"\0") == b"ETH"
    assert s.indexValid and s.indexPrice == ch.indexPrice(eth.id)
    assert s.spotPrice == ch.spotPrice(eth.id)
    # markTwap / indexTwap are fundingState's: the funding window's TWAPs (vperp.units.FUNDING_WINDOW_HOURS), of
    # which the premium is made; `twaps` / `markPrice` (the 15-minute ring) are not in the summary
    assert (s.appliedRate, s.targetRate, s.premium, s.markTwap, s.indexTwap, s.projected1h, s.projected8h) == \
        tuple(ch.fundingState(eth.id))
    assert s.premium == (s.markTwap - s.indexTwap) * WAD // s.indexTwap > 0  # the long lifted the vAMM
    assert tuple(s.state) == tuple(ch.marketState(eth.id)) and s.state.longOpenInterest == 25 * WAD
    assert tuple(s.params) == tuple(ch.marketParams(eth.id))
    assert tuple(s.fundingParams) == tuple(ch.fundingParams(eth.id))
    assert tuple(s.auctionParams) == tuple(system.liquidation.auctionParams(eth.id))
    assert s.poolBalance == vault.poolBalance() and s.pauseLevel == 0
    assert s.oiNotionalCap == vault.poolBalance() * s.params.maxOiPoolRatio // WAD
    assert (s.maxLong, s.maxShort) == (reader.maxTradeSize(eth.id, True), reader.maxTradeSize(eth.id, False))
    assert s.insuranceFeeShare == ch.insuranceFeeShare(eth.id)


def test_market_summary_answers_on_a_stale_feed(system, reader, chain):
    chain.pending_timestamp += 86_400 + 10
    chain.mine()
    with pytest.raises(ContractLogicError):
        system.clearing_house.indexPrice(1)
    s = reader.marketSummary(1)
    assert not s.indexValid and (s.indexPrice, s.maxLong, s.maxShort) == (0, 0, 0)
    assert s.spotPrice == 3_000 * WAD


# ============================================================================ gas


def test_view_gas(system, reader, alice, chain):
    ch, eth = system.clearing_house, system.markets["ETH"]
    fund(system, alice, 50_000 * USDC)
    trade(ch, alice, eth.id, 25 * WAD)
    trade(ch, alice, system.markets["BTC"].id, -WAD)
    gas = {
        "withdrawable": reader.withdrawable.estimate_gas_cost(alice, 0),
        "liquidationPrice (2 markets)": reader.liquidationPrice.estimate_gas_cost(alice, 0, eth.id),
        "maxTradeSize": reader.maxTradeSize.estimate_gas_cost(eth.id, True),
        "marketSummary": reader.marketSummary.estimate_gas_cost(eth.id),
    }
    print("\n" + "\n".join(f"{k}: {v:,} gas" for k, v in gas.items()))
    assert all(v < 1_000_000 for v in gas.values())


# ============================================================================ SDK


@pytest.fixture
def client(system, chain, alice, tmp_path):
    path = tmp_path / "local.json"
    write_record(path, build_record(system, system.config, chain, 1))
    return Client.from_deployment(path, account=alice)


def test_sdk_reader_helpers(system, client, alice, chain):
    system.collateral.mint(alice, 20_000 * USDC, sender=alice)
    client.deposit(20_000)
    client.open("ETH", 30)
    liq = client.liquidation_price("ETH")
    assert liq is not None and liq * WAD == system.reader.liquidationPrice(alice, 0, 1)
    assert client.liquidation_price("BTC") is None
    assert client.max_trade_size("ETH", True) * WAD == system.reader.maxTradeSize(1, True)
    s = client.market_summary("ETH")
    assert s.index_price == 3_000 and s.long_open_interest == 30 and s.max_open_interest == 10_000
    free = client.withdrawable()
    assert free > 0 and free * USDC == system.reader.withdrawable(alice, 0)[0]
    before = system.collateral.balanceOf(alice)
    client.withdraw_all()
    assert system.collateral.balanceOf(alice) - before == free * USDC
    assert client.withdrawable() == 0


def test_sdk_subaccounts_from_vault_events_with_a_cursor(system, client, alice, bob, chain):
    vault = system.vault
    assert client.subaccounts() == []
    fund(system, alice, 1_000 * USDC, sub=0)
    fund(system, alice, 1_000 * USDC, sub=3)
    vault.transferMargin(3, 7, 100 * WAD, sender=alice)
    system.collateral.mint(bob, 10 * USDC, sender=bob)
    system.collateral.approve(vault, 10 * USDC, sender=bob)
    vault.depositFor(alice, 5, 10 * USDC, sender=bob)
    fund(system, bob, 10 * USDC, sub=11)  # bob's own: not alice's
    assert client.subaccounts() == [0, 3, 5, 7]
    assert client.subaccounts(owner=bob) == [11]
    cursor, _ = client._subaccount_scan[alice.address]
    assert cursor == chain.blocks.head.number + 1
    fund(system, alice, 1 * USDC, sub=9)
    assert client.subaccounts(chunk=2) == [0, 3, 5, 7, 9]  # scans only the blocks since the cursor


def test_sdk_loads_a_record_written_before_the_reader(system, chain, alice, tmp_path):
    record = build_record(system, system.config, chain, 1)
    del record["contracts"]["PerpReader"], record["abi"]["PerpReader"]
    path = tmp_path / "old.json"
    write_record(path, record)
    c = Client.from_deployment(path, account=alice)
    assert c.reader is None and c.health().collateral == 0
    with pytest.raises(ClientError, match="no PerpReader"):
        c.liquidation_price("ETH")
