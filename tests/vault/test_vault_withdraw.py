"""Vault.withdraw / withdrawFor: payouts go to the owner, margin checks with open positions,
unrealized profit is never withdrawable, withdrawals stay open at every pause level.

docs/design.md#accounts-and-margin (freeCollateral), docs/specification.md#9-safety-and-bad-input (pause:
withdrawals of free collateral stay open), invariants 1, 7, 9 and 22 (docs/specification.md).
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from helpers.vault import deposit, ledger, only_event, reverts_with

DECIMALS = 6
SCALE = 10 ** (18 - DECIMALS)
USDC = 10**DECIMALS
from vperp.units import WAD
UINT128_MAX = 2**128 - 1
ETH_IMR = WAD // 10  # default config: 10 % initial margin
ETH_MMR = WAD // 20  # 5 % maintenance


# ---------------------------------------------------------------------------- helpers


def ceil_div(a, b):
    return -((-a) // b)


def open_long(ch, chain, who, sub, market_id, base):
    ch.openPosition(sub, market_id, base, 10**30, chain.pending_timestamp + 3600, sender=who)


def health_at(vault, ch, owner, sub, market_id, block):
    """Vault and clearing-house views of one single-market account, all read at one block."""
    size, open_notional, pending = ch.position(owner, sub, market_id, block_id=block)
    return {
        "size": size,
        "open_notional": open_notional,
        "pending": pending,
        "collateral": vault.collateral(owner, sub, block_id=block),
        "value": vault.accountValue(owner, sub, block_id=block),
        "free": vault.freeCollateral(owner, sub, block_id=block),
        "req": tuple(vault.marginRequirements(owner, sub, block_id=block)),
    }


def expected_health(h, price_wad, imr=ETH_IMR, mmr=ETH_MMR):
    """The margin formulas (docs/design.md#accounts-and-margin) recomputed from the position's size/open notional
    and the oracle price we set."""
    size = h["size"]
    upnl = size * price_wad // WAD - h["open_notional"]  # size > 0 here: floor == round-down
    notional = ceil_div(abs(size) * price_wad, WAD)
    initial = ceil_div(notional * imr, WAD)
    maintenance = ceil_div(notional * mmr, WAD)
    value = h["collateral"] + upnl - h["pending"]
    free = min(h["collateral"] - h["pending"], value) - initial
    return upnl, value, free, initial, maintenance


# ---------------------------------------------------------------------------- withdraw, no positions


def test_withdraw_returns_tokens_to_owner(vault, usdc, alice):
    deposit(usdc, vault, alice, 1000 * USDC)
    vault_before = usdc.balanceOf(vault)

    tx = vault.withdraw(0, 400 * USDC, sender=alice)

    assert usdc.balanceOf(alice) == 400 * USDC
    assert usdc.balanceOf(vault) == vault_before - 400 * USDC
    assert vault.collateral(alice, 0) == 600 * WAD
    log = only_event(tx, vault.Withdraw)
    assert (log.caller, log.owner, log.subaccount, log.amount, log.amountWad) == (
        alice.address,
        alice.address,
        0,
        400 * USDC,
        400 * WAD,
    )


def test_withdraw_all_leaves_zero_collateral(vault, usdc, alice):
    amount = 123_456_789
    deposit(usdc, vault, alice, amount, sub=6)
    vault.withdraw(6, amount, sender=alice)
    assert vault.collateral(alice, 6) == 0
    assert usdc.balanceOf(alice) == amount


def test_withdraw_isolated_subaccount_only_debits_that_subaccount(vault, usdc, alice):
    deposit(usdc, vault, alice, 100 * USDC, sub=0)
    deposit(usdc, vault, alice, 50 * USDC, sub=11)
    vault.withdraw(11, 20 * USDC, sender=alice)
    assert vault.collateral(alice, 11) == 30 * WAD
    assert vault.collateral(alice, 0) == 100 * WAD
    assert usdc.balanceOf(alice) == 20 * USDC


def test_withdraw_more_than_collateral_reverts(vault, usdc, alice):
    deposit(usdc, vault, alice, 1000 * USDC)
    before = ledger(vault, usdc, [alice], [(alice, 0)])
    with reverts_with(
        vault.InsufficientCollateral, owner=alice, subaccount=0, collateral=1000 * WAD, amountWad=(1000 * USDC + 1) * SCALE
    ):
        vault.withdraw(0, 1000 * USDC + 1, sender=alice)
    assert ledger(vault, usdc, [alice], [(alice, 0)]) == before


def test_withdraw_from_empty_subaccount_reverts(vault, usdc, alice):
    deposit(usdc, vault, alice, 1000 * USDC, sub=0)
    before = ledger(vault, usdc, [alice], [(alice, 0), (alice, 1)])
    with reverts_with(vault.InsufficientCollateral, owner=alice, subaccount=1, collateral=0, amountWad=WAD):
        vault.withdraw(1, USDC, sender=alice)
    assert ledger(vault, usdc, [alice], [(alice, 0), (alice, 1)]) == before


def test_withdraw_zero_amount_reverts(vault, usdc, alice):
    deposit(usdc, vault, alice, 10 * USDC)
    before = ledger(vault, usdc, [alice], [(alice, 0)])
    with reverts_with(vault.ZeroAmount):
        vault.withdraw(0, 0, sender=alice)
    assert ledger(vault, usdc, [alice], [(alice, 0)]) == before


def test_withdraw_amount_too_large_reverts(vault, usdc, alice):
    deposit(usdc, vault, alice, 10 * USDC)
    amount = UINT128_MAX // SCALE + 1
    before = ledger(vault, usdc, [alice], [(alice, 0)])
    with reverts_with(vault.AmountTooLarge, amount=amount):
        vault.withdraw(0, amount, sender=alice)
    assert ledger(vault, usdc, [alice], [(alice, 0)]) == before


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_withdraw_allowed_at_every_pause_level(vault, usdc, deployer, alice, level):
    deposit(usdc, vault, alice, 100 * USDC)
    vault.setPauseLevel(level, sender=deployer)
    vault.withdraw(0, 60 * USDC, sender=alice)
    assert vault.collateral(alice, 0) == 40 * WAD
    assert usdc.balanceOf(alice) == 60 * USDC


@pytest.mark.parametrize("level", [0, 3])
def test_withdrawFor_operator_allowed_at_pause_levels(vault, usdc, deployer, alice, bob, level):
    deposit(usdc, vault, alice, 100 * USDC)
    vault.setOperator(bob, True, sender=alice)
    vault.setPauseLevel(level, sender=deployer)
    vault.withdrawFor(alice, 0, 100 * USDC, sender=bob)
    assert usdc.balanceOf(alice) == 100 * USDC
    assert usdc.balanceOf(bob) == 0


# ---------------------------------------------------------------------------- withdrawFor


def test_withdrawFor_operator_sends_tokens_to_owner(vault, usdc, alice, bob):
    deposit(usdc, vault, alice, 500 * USDC, sub=2)
    vault.setOperator(bob, True, sender=alice)
    vault_before = usdc.balanceOf(vault)

    tx = vault.withdrawFor(alice, 2, 200 * USDC, sender=bob)

    assert usdc.balanceOf(alice) == 200 * USDC
    assert usdc.balanceOf(bob) == 0
    assert usdc.balanceOf(vault) == vault_before - 200 * USDC
    assert vault.collateral(alice, 2) == 300 * WAD
    log = only_event(tx, vault.Withdraw)
    assert (log.caller, log.owner, log.subaccount, log.amount, log.amountWad) == (
        bob.address,
        alice.address,
        2,
        200 * USDC,
        200 * WAD,
    )


def test_withdrawFor_owner_for_self(vault, usdc, alice):
    deposit(usdc, vault, alice, 10 * USDC)
    vault.withdrawFor(alice, 0, 10 * USDC, sender=alice)
    assert usdc.balanceOf(alice) == 10 * USDC
    assert vault.collateral(alice, 0) == 0


def test_withdrawFor_stranger_reverts_not_owner_or_operator(vault, usdc, alice, carol):
    deposit(usdc, vault, alice, 100 * USDC)
    before = ledger(vault, usdc, [alice, carol], [(alice, 0)])
    with reverts_with(vault.NotOwnerOrOperator, caller=carol, owner=alice):
        vault.withdrawFor(alice, 0, 100 * USDC, sender=carol)
    assert ledger(vault, usdc, [alice, carol], [(alice, 0)]) == before


def test_withdrawFor_operator_of_someone_else_reverts(vault, usdc, alice, bob, carol):
    # bob is carol's operator, not alice's.
    deposit(usdc, vault, alice, 100 * USDC)
    vault.setOperator(bob, True, sender=carol)
    before = ledger(vault, usdc, [alice, bob], [(alice, 0)])
    with reverts_with(vault.NotOwnerOrOperator, caller=bob, owner=alice):
        vault.withdrawFor(alice, 0, USDC, sender=bob)
    assert ledger(vault, usdc, [alice, bob], [(alice, 0)]) == before


def test_withdrawFor_zero_amount_reverts(vault, usdc, alice, bob):
    deposit(usdc, vault, alice, 100 * USDC)
    vault.setOperator(bob, True, sender=alice)
    before = ledger(vault, usdc, [alice, bob], [(alice, 0)])
    with reverts_with(vault.ZeroAmount):
        vault.withdrawFor(alice, 0, 0, sender=bob)
    assert ledger(vault, usdc, [alice, bob], [(alice, 0)]) == before


def test_withdrawFor_operator_more_than_collateral_reverts(vault, usdc, alice, bob):
    deposit(usdc, vault, alice, 100 * USDC)
    vault.setOperator(bob, True, sender=alice)
    before = ledger(vault, usdc, [alice, bob], [(alice, 0)])
    with reverts_with(vault.InsufficientCollateral, owner=alice, collateral=100 * WAD):
        vault.withdrawFor(alice, 0, 101 * USDC, sender=bob)
    assert ledger(vault, usdc, [alice, bob], [(alice, 0)]) == before


def test_withdraw_by_operator_only_touches_operator_account(vault, usdc, alice, bob):
    # `withdraw` always debits msg.sender: an operator cannot use it to reach the owner's money.
    deposit(usdc, vault, alice, 100 * USDC)
    vault.setOperator(bob, True, sender=alice)
    before = ledger(vault, usdc, [alice, bob], [(alice, 0), (bob, 0)])
    with reverts_with(vault.InsufficientCollateral, owner=bob, collateral=0):
        vault.withdraw(0, USDC, sender=bob)
    assert ledger(vault, usdc, [alice, bob], [(alice, 0), (bob, 0)]) == before


# ---------------------------------------------------------------------------- with open positions


def test_withdraw_beyond_free_collateral_with_position_reverts(system, vault, ch, usdc, eth, alice, chain):
    deposit(usdc, vault, alice, 1000 * USDC)
    open_long(ch, chain, alice, 0, eth.id, WAD)  # 1 ETH at ~3000: initial requirement 300
    h = health_at(vault, ch, alice, 0, eth.id, chain.blocks.head.number)
    _, _, free, initial, _ = expected_health(h, 3000 * WAD)
    assert initial == 300 * WAD
    assert h["free"] == free
    # 697 USDC is within settled collateral (~997) but beyond free collateral (~696.7).
    amount = 697 * USDC
    assert h["collateral"] - amount * SCALE >= 0
    assert free - amount * SCALE < 0
    before = ledger(vault, usdc, [alice], [(alice, 0)])
    with reverts_with(
        vault.InsufficientFreeCollateral, owner=alice, subaccount=0, freeCollateral=free - amount * SCALE
    ):
        vault.withdraw(0, amount, sender=alice)
    assert ledger(vault, usdc, [alice], [(alice, 0)]) == before


def test_withdraw_exactly_free_collateral_with_position_succeeds(vault, ch, usdc, eth, alice, chain):
    deposit(usdc, vault, alice, 1000 * USDC)
    open_long(ch, chain, alice, 0, eth.id, WAD)
    h = health_at(vault, ch, alice, 0, eth.id, chain.blocks.head.number)
    _, _, free, _, _ = expected_health(h, 3000 * WAD)
    max_units = free // SCALE
    vault.withdraw(0, max_units, sender=alice)
    assert usdc.balanceOf(alice) == max_units
    remaining = vault.freeCollateral(alice, 0)
    assert 0 <= remaining < SCALE
    # One more unit is too much.
    with reverts_with(vault.InsufficientFreeCollateral, owner=alice):
        vault.withdraw(0, 1, sender=alice)


def test_withdraw_unrealized_profit_not_withdrawable(system, vault, ch, usdc, eth, alice, chain):
    deposit(usdc, vault, alice, 1000 * USDC)
    open_long(ch, chain, alice, 0, eth.id, WAD)
    system.set_price("ETH", 3200)  # +6.7 %: inside the price band
    h = health_at(vault, ch, alice, 0, eth.id, chain.blocks.head.number)
    upnl, value, free, initial, maintenance = expected_health(h, 3200 * WAD)

    assert upnl > 190 * WAD  # bought ~3000.3, index 3200
    assert h["value"] == value > h["collateral"]
    assert h["req"] == (initial, maintenance) == (320 * WAD, 160 * WAD)
    # Free collateral ignores the profit: settled collateral minus the (higher) initial requirement.
    assert h["free"] == free == h["collateral"] - h["pending"] - initial
    assert h["free"] < value - initial
    assert vault.isLiquidatable(alice, 0) is False

    # Withdrawing any of the profit on top of free collateral reverts.
    amount = free // SCALE + 1
    before = ledger(vault, usdc, [alice], [(alice, 0)])
    with reverts_with(vault.InsufficientFreeCollateral, owner=alice, subaccount=0):
        vault.withdraw(0, amount, sender=alice)
    assert ledger(vault, usdc, [alice], [(alice, 0)]) == before


def test_freeCollateral_does_not_grow_with_price_after_long(system, vault, ch, usdc, eth, alice, chain):
    deposit(usdc, vault, alice, 1000 * USDC)
    open_long(ch, chain, alice, 0, eth.id, WAD)
    coll = vault.collateral(alice, 0)
    frees = []
    for price in (3000, 3100, 3200, 3290):
        system.set_price("ETH", price)
        initial = ceil_div(WAD * price * ETH_IMR, WAD)  # |size| = 1: notional = price
        free = vault.freeCollateral(alice, 0)
        pending = ch.position(alice, 0, eth.id)[2]
        assert free <= coll - pending - initial
        frees.append(free)
    # Rising price raises the requirement and never the withdrawable amount.
    assert frees == sorted(frees, reverse=True)


def test_withdraw_unrealized_loss_reduces_free_collateral(system, vault, ch, usdc, eth, alice, chain):
    deposit(usdc, vault, alice, 1000 * USDC)
    open_long(ch, chain, alice, 0, eth.id, WAD)
    system.set_price("ETH", 2900)
    h = health_at(vault, ch, alice, 0, eth.id, chain.blocks.head.number)
    upnl, value, free, initial, maintenance = expected_health(h, 2900 * WAD)
    assert upnl < -100 * WAD
    assert h["value"] == value < h["collateral"]
    assert h["req"] == (initial, maintenance) == (290 * WAD, 145 * WAD)
    assert h["free"] == free == value - initial
    with reverts_with(vault.InsufficientFreeCollateral, owner=alice):
        vault.withdraw(0, free // SCALE + 1, sender=alice)
    vault.withdraw(0, free // SCALE, sender=alice)
    assert usdc.balanceOf(alice) == free // SCALE


def test_withdraw_with_position_at_pause_level_3_allows_free_collateral(vault, ch, usdc, eth, deployer, alice, chain):
    deposit(usdc, vault, alice, 1000 * USDC)
    open_long(ch, chain, alice, 0, eth.id, WAD)
    vault.setPauseLevel(3, sender=deployer)
    coll = vault.collateral(alice, 0)
    vault.withdraw(0, 100 * USDC, sender=alice)
    assert vault.collateral(alice, 0) == coll - 100 * WAD
    assert usdc.balanceOf(alice) == 100 * USDC
    with reverts_with(vault.InsufficientFreeCollateral, owner=alice):
        vault.withdraw(0, 600 * USDC, sender=alice)


def test_withdrawFor_operator_beyond_free_collateral_reverts(vault, ch, usdc, eth, alice, bob, chain):
    deposit(usdc, vault, alice, 1000 * USDC)
    open_long(ch, chain, alice, 0, eth.id, WAD)
    vault.setOperator(bob, True, sender=alice)
    before = ledger(vault, usdc, [alice, bob], [(alice, 0)])
    with reverts_with(vault.InsufficientFreeCollateral, owner=alice, subaccount=0):
        vault.withdrawFor(alice, 0, 800 * USDC, sender=bob)
    assert ledger(vault, usdc, [alice, bob], [(alice, 0)]) == before


def test_withdraw_cross_account_not_blocked_by_isolated_position(vault, ch, usdc, eth, alice, chain):
    deposit(usdc, vault, alice, 1000 * USDC, sub=7)
    deposit(usdc, vault, alice, 400 * USDC, sub=0)
    open_long(ch, chain, alice, 7, eth.id, WAD)
    assert vault.openMarkets(alice, 7) == 1 << (eth.id - 1)
    assert vault.openMarkets(alice, 0) == 0
    vault.withdraw(0, 400 * USDC, sender=alice)
    assert vault.collateral(alice, 0) == 0
    assert usdc.balanceOf(alice) == 400 * USDC


def test_withdraw_all_after_closing_position(vault, ch, usdc, eth, alice, chain):
    deposit(usdc, vault, alice, 1000 * USDC)
    open_long(ch, chain, alice, 0, eth.id, WAD)
    ch.closePosition(0, eth.id, 0, chain.pending_timestamp + 3600, sender=alice)
    assert vault.openMarkets(alice, 0) == 0
    coll = vault.collateral(alice, 0)
    assert 0 < coll < 1000 * WAD  # fees and slippage paid
    assert vault.freeCollateral(alice, 0) == coll
    vault.withdraw(0, coll // SCALE, sender=alice)
    assert usdc.balanceOf(alice) == coll // SCALE
    assert vault.collateral(alice, 0) == coll % SCALE


# ---------------------------------------------------------------------------- property


OPS = st.lists(
    st.tuples(
        st.sampled_from(["deposit", "withdraw", "withdraw_all"]),
        st.sampled_from([0, 1]),
        st.integers(min_value=1, max_value=5_000 * USDC),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_withdraw_random_sequences_keep_vault_solvent(vault, usdc, alice, chain, ops):
    with chain.isolate():
        subs = (0, 1)
        expected = {s: vault.collateral(alice, s) for s in subs}
        start_balance = usdc.balanceOf(vault)
        net_in = 0
        for op, sub, amount in ops:
            if op == "deposit":
                deposit(usdc, vault, alice, amount, sub)
                expected[sub] += amount * SCALE
                net_in += amount
            elif op == "withdraw_all":
                units = expected[sub] // SCALE
                if units == 0:
                    continue
                vault.withdraw(sub, units, sender=alice)
                expected[sub] -= units * SCALE
                net_in -= units
            else:
                if amount * SCALE > expected[sub]:
                    with reverts_with(vault.InsufficientCollateral, owner=alice, subaccount=sub):
                        vault.withdraw(sub, amount, sender=alice)
                else:
                    vault.withdraw(sub, amount, sender=alice)
                    expected[sub] -= amount * SCALE
                    net_in -= amount
            for s in subs:
                assert vault.collateral(alice, s) == expected[s]
            balance = usdc.balanceOf(vault)
            assert balance == start_balance + net_in  # tokens moved exactly as asked
            claims = sum(vault.collateral(alice, s) for s in subs) + vault.poolBalance() + vault.insuranceFund()
            assert balance * SCALE >= claims
