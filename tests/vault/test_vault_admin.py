"""Vault margin movement and administration: transferMargin (cross <-> isolated, margin checks with a
position, the isolated one-market rule), operators, two-step ownership, guardian and pause levels,
one-time clearing-house wiring, pool/insurance funding and the clearing-house-only ledger entry.

docs/design.md#accounts-and-margin (accounts, operators, isolated sub-accounts, initial margin on moving margin
out), docs/specification.md#9-safety-and-bad-input (pause levels, two-step ownership, named errors),
docs/specification.md#10-external-surface (surface). Expected values are recomputed from the formulas in
tests/helpers/trading.py (vAMM swap, fee, requirement, unrealized PnL), never read back.
"""

import pytest
from ape import project

from helpers.trading import (
    expect_revert,
    BTC_ID,
    ETH_ID,
    ETH_INDEX,
    ETH_X0,
    ETH_Y0,
    IMR,
    MAX_UINT,
    WAD,
    deadline,
    fee_of,
    requirement,
    swap,
    trade,
    upnl,
)
from helpers.vault import deposit, ledger, mint_approve, only_event

DECIMALS = 6
SCALE = 10 ** (18 - DECIMALS)
USDC = 10**DECIMALS
ZERO = "0x0000000000000000000000000000000000000000"
INT128_MAX = 2**127 - 1
UINT32_MAX = 2**32 - 1
CLEARING_HOUSE_MODULE = b"clearingHouse".ljust(32, b"\0")  # bytes32 name in ModuleSet


# ---------------------------------------------------------------------------- helpers


def state(vault, ch, token, holders=(), accounts=(), positions=False, admin=False):
    """Everything a failed call must leave untouched: token balances, the ledger, open-market bitmaps;
    with `positions` the accounts' ETH/BTC positions and both markets' reserves and open interest,
    with `admin` the owner/guardian/pause level/wiring."""
    snap = [
        tuple(token.balanceOf(h) for h in (*holders, vault)),
        tuple((vault.collateral(o, s), vault.openMarkets(o, s)) for o, s in accounts),
        vault.poolBalance(),
        vault.insuranceFund(),
    ]
    if positions:
        snap.append(tuple(tuple(ch.position(o, s, m))[:2] for o, s in accounts for m in (ETH_ID, BTC_ID)))
        for m in (ETH_ID, BTC_ID):
            ms = ch.marketState(m)
            snap.append((ms.baseReserve, ms.quoteReserve, ms.longOpenInterest, ms.shortOpenInterest))
    if admin:
        snap.append((vault.pauseLevel(), vault.guardian(), vault.owner(), vault.pendingOwner(),
                     vault.clearingHouse()))
    return tuple(snap)


def one_eth_long_from_flat(deposit_wad):
    """The margin numbers (docs/design.md#accounts-and-margin) of an account holding `deposit_wad` that bought 1
    ETH on the untouched market at index 3000: (collateral, open notional, free collateral). Pending funding is 0
    (rate 0)."""
    q, _, _ = swap(ETH_X0, ETH_Y0, WAD)  # q < 0: quote paid
    coll = deposit_wad - fee_of(q)
    open_notional = -q
    pnl = upnl(WAD, open_notional, ETH_INDEX)
    initial = requirement(WAD, ETH_INDEX, IMR)
    free = min(coll, coll + pnl) - initial
    return coll, open_notional, free


# ---------------------------------------------------------------------------- transferMargin


def test_transferMargin_cross_to_isolated_and_back(vault, ch, usdc, alice):
    deposit(usdc, vault, alice, 1000 * USDC)
    tokens = (usdc.balanceOf(alice), usdc.balanceOf(vault))
    pool, insurance = vault.poolBalance(), vault.insuranceFund()
    out = 300 * WAD + 7

    tx = vault.transferMargin(0, 5, out, sender=alice)

    log = only_event(tx, vault.MarginTransferred)
    assert (log.caller, log.owner, log.fromSubaccount, log.toSubaccount, log.amountWad) == (
        alice.address, alice.address, 0, 5, out)
    assert vault.collateral(alice, 0) == 1000 * WAD - out
    assert vault.collateral(alice, 5) == out

    back = 100 * WAD + 1
    tx = vault.transferMargin(5, 0, back, sender=alice)
    log = only_event(tx, vault.MarginTransferred)
    assert (log.fromSubaccount, log.toSubaccount, log.amountWad) == (5, 0, back)
    assert vault.collateral(alice, 0) == 1000 * WAD - out + back
    assert vault.collateral(alice, 5) == out - back
    # Margin moves inside the ledger only: no token moves, pool and insurance untouched.
    assert (usdc.balanceOf(alice), usdc.balanceOf(vault)) == tokens
    assert (vault.poolBalance(), vault.insuranceFund()) == (pool, insurance)


def test_transferMargin_between_isolated_subaccounts(vault, usdc, alice):
    deposit(usdc, vault, alice, 50 * USDC, sub=3)
    vault.transferMargin(3, UINT32_MAX, 20 * WAD, sender=alice)
    vault.transferMargin(UINT32_MAX, 4, 5 * WAD, sender=alice)
    assert vault.collateral(alice, 3) == 30 * WAD
    assert vault.collateral(alice, UINT32_MAX) == 15 * WAD
    assert vault.collateral(alice, 4) == 5 * WAD
    assert vault.collateral(alice, 0) == 0
    # Margin moved to another sub-account is withdrawable from there, in token units.
    vault.withdraw(4, 5 * USDC, sender=alice)
    assert usdc.balanceOf(alice) == 5 * USDC


def test_transferMargin_whole_balance(vault, usdc, alice):
    amount = 123_456_789
    deposit(usdc, vault, alice, amount)
    vault.transferMargin(0, 1, amount * SCALE, sender=alice)
    assert vault.collateral(alice, 0) == 0
    assert vault.collateral(alice, 1) == amount * SCALE


def test_transferMargin_zero_amount_reverts(vault, ch, usdc, alice):
    deposit(usdc, vault, alice, 10 * USDC)
    accts = [(alice, 0), (alice, 1)]
    before = state(vault, ch, usdc, [alice], accts)
    with expect_revert(vault.ZeroAmount):
        vault.transferMargin(0, 1, 0, sender=alice)
    assert state(vault, ch, usdc, [alice], accts) == before


def test_transferMargin_same_subaccount_reverts(vault, ch, usdc, alice):
    deposit(usdc, vault, alice, 10 * USDC, sub=0)
    deposit(usdc, vault, alice, 10 * USDC, sub=9)
    accts = [(alice, 0), (alice, 9)]
    before = state(vault, ch, usdc, [alice], accts)
    for sub in (0, 9):
        with expect_revert(vault.SameSubaccount, subaccount=sub):
            vault.transferMargin(sub, sub, WAD, sender=alice)
    assert state(vault, ch, usdc, [alice], accts) == before


def test_transferMargin_more_than_collateral_reverts(vault, ch, usdc, alice):
    deposit(usdc, vault, alice, 10 * USDC, sub=2)
    accts = [(alice, 2), (alice, 0)]
    before = state(vault, ch, usdc, [alice], accts)
    with expect_revert(vault.InsufficientCollateral, owner=alice, subaccount=2, collateral=10 * WAD,
                       amountWad=10 * WAD + 1):
        vault.transferMargin(2, 0, 10 * WAD + 1, sender=alice)
    with expect_revert(vault.InsufficientCollateral, owner=alice, subaccount=1, collateral=0, amountWad=1):
        vault.transferMargin(1, 0, 1, sender=alice)  # empty sub-account
    assert state(vault, ch, usdc, [alice], accts) == before


def test_transferMargin_amount_beyond_ledger_slot_reverts_amount_too_large(vault, ch, usdc, alice):
    """An amountWad that cannot fit the int128 ledger slot is bad input: IVault.AmountTooLarge ("an
    amount does not fit the ledger's 128-bit slots"), as deposit/withdraw do, not a SafeCast error."""
    deposit(usdc, vault, alice, 10 * USDC)
    accts = [(alice, 0), (alice, 1)]
    before = state(vault, ch, usdc, [alice], accts)
    for amount in (INT128_MAX + 1, 2**256 - 1):
        with expect_revert(vault.AmountTooLarge, amount=amount):
            vault.transferMargin(0, 1, amount, sender=alice)
    assert state(vault, ch, usdc, [alice], accts) == before


def test_transferMargin_by_operator_moves_only_operator_own_margin(vault, ch, usdc, alice, bob):
    deposit(usdc, vault, alice, 100 * USDC)
    vault.setOperator(bob, True, sender=alice)
    accts = [(alice, 0), (alice, 1), (bob, 0), (bob, 1)]
    before = state(vault, ch, usdc, [alice, bob], accts)
    with expect_revert(vault.InsufficientCollateral, owner=bob, subaccount=0, collateral=0, amountWad=WAD):
        vault.transferMargin(0, 1, WAD, sender=bob)
    assert state(vault, ch, usdc, [alice, bob], accts) == before


def test_operator_can_move_margin_between_owner_subaccounts(vault, ch, usdc, alice, bob, carol):
    """IVault.setOperator: an operator is approved "to trade and move margin for all of the caller's accounts"
    (docs/design.md#accounts-and-margin: an approved operator may act for the account). transferMargin always
    moves msg.sender's own margin, so the Vault needs the operator form of it, named like
    depositFor/withdrawFor/openPositionFor; MarginTransferred already carries caller and owner."""
    deposit(usdc, vault, alice, 100 * USDC)
    vault.setOperator(bob, True, sender=alice)
    assert hasattr(vault, "transferMarginFor"), "no way for an approved operator to move the owner's margin"

    tx = vault.transferMarginFor(alice, 0, 3, 40 * WAD, sender=bob)
    log = only_event(tx, vault.MarginTransferred)
    assert (log.caller, log.owner, log.fromSubaccount, log.toSubaccount, log.amountWad) == (
        bob.address, alice.address, 0, 3, 40 * WAD)
    assert vault.collateral(alice, 0) == 60 * WAD
    assert vault.collateral(alice, 3) == 40 * WAD
    accts = [(alice, 0), (alice, 3)]
    before = state(vault, ch, usdc, [alice, carol], accts)
    with expect_revert(vault.NotOwnerOrOperator, caller=carol, owner=alice):
        vault.transferMarginFor(alice, 0, 3, WAD, sender=carol)
    assert state(vault, ch, usdc, [alice, carol], accts) == before


# ---------------------------------------------------------------------------- with positions


def test_transferMargin_out_of_account_with_position_limited_by_free_collateral(vault, ch, usdc, alice):
    deposit(usdc, vault, alice, 1000 * USDC)
    trade(ch, alice, ETH_ID, WAD)
    coll, open_notional, free = one_eth_long_from_flat(1000 * WAD)
    assert ch.position(alice, 0, ETH_ID) == (WAD, open_notional, 0)
    assert vault.collateral(alice, 0) == coll
    assert vault.freeCollateral(alice, 0) == free
    assert 0 < free < coll  # settled collateral covers more than free collateral allows

    accts = [(alice, 0), (alice, 1)]
    before = state(vault, ch, usdc, [alice], accts)
    with expect_revert(vault.InsufficientFreeCollateral, owner=alice, subaccount=0, freeCollateral=-1):
        vault.transferMargin(0, 1, free + 1, sender=alice)
    assert state(vault, ch, usdc, [alice], accts) == before

    vault.transferMargin(0, 1, free, sender=alice)
    assert vault.collateral(alice, 0) == coll - free
    assert vault.collateral(alice, 1) == free
    assert vault.freeCollateral(alice, 0) == 0
    with expect_revert(vault.InsufficientFreeCollateral, owner=alice, subaccount=0, freeCollateral=-1):
        vault.transferMargin(0, 1, 1, sender=alice)


def test_transferMargin_into_account_with_position_adds_free_collateral(vault, ch, usdc, alice):
    deposit(usdc, vault, alice, 1000 * USDC, sub=0)
    deposit(usdc, vault, alice, 250 * USDC, sub=2)
    trade(ch, alice, ETH_ID, WAD)
    coll, _, free = one_eth_long_from_flat(1000 * WAD)
    vault.transferMargin(2, 0, 250 * WAD, sender=alice)
    assert vault.collateral(alice, 0) == coll + 250 * WAD
    assert vault.freeCollateral(alice, 0) == free + 250 * WAD
    assert vault.collateral(alice, 2) == 0


def test_isolated_subaccount_margin_backs_only_its_market(vault, ch, usdc, eth, alice):
    deposit(usdc, vault, alice, 1000 * USDC)
    vault.transferMargin(0, 7, 400 * WAD, sender=alice)
    trade(ch, alice, ETH_ID, WAD, sub=7)
    coll7, open_notional, free7 = one_eth_long_from_flat(400 * WAD)
    assert ch.position(alice, 7, ETH_ID) == (WAD, open_notional, 0)
    assert vault.openMarkets(alice, 7) == 1 << (eth.id - 1)
    assert vault.freeCollateral(alice, 7) == free7
    # The cross account holds no position and is unaffected by the isolated one.
    assert vault.openMarkets(alice, 0) == 0
    assert vault.freeCollateral(alice, 0) == 600 * WAD

    accts = [(alice, 0), (alice, 7)]
    before = state(vault, ch, usdc, [alice], accts, positions=True)
    with expect_revert(vault.InsufficientFreeCollateral, owner=alice, subaccount=7, freeCollateral=-1):
        vault.transferMargin(7, 0, free7 + 1, sender=alice)
    assert state(vault, ch, usdc, [alice], accts, positions=True) == before

    vault.transferMargin(7, 0, free7, sender=alice)
    vault.transferMargin(0, 1, 600 * WAD + free7, sender=alice)  # all of the cross margin may leave
    assert vault.collateral(alice, 0) == 0
    assert vault.collateral(alice, 7) == coll7 - free7
    assert vault.collateral(alice, 1) == 600 * WAD + free7


def test_isolated_subaccount_holds_one_market_at_a_time(vault, ch, usdc, alice):
    deposit(usdc, vault, alice, 2000 * USDC, sub=7)
    trade(ch, alice, ETH_ID, WAD, sub=7)
    btc_base = WAD // 100  # 0.01 BTC, ~600 notional

    accts = [(alice, 7)]
    before = state(vault, ch, usdc, [alice], accts, positions=True)
    with expect_revert(vault.IsolatedSubaccountInUse, owner=alice, subaccount=7, heldMarketId=ETH_ID,
                       marketId=BTC_ID):
        trade(ch, alice, BTC_ID, btc_base, sub=7)
    assert state(vault, ch, usdc, [alice], accts, positions=True) == before

    # Once the ETH position is closed, the isolated sub-account may switch to BTC.
    ch.closePosition(7, ETH_ID, 0, deadline(), sender=alice)
    assert vault.openMarkets(alice, 7) == 0
    trade(ch, alice, BTC_ID, btc_base, sub=7)
    assert vault.openMarkets(alice, 7) == 1 << (BTC_ID - 1)
    assert ch.position(alice, 7, BTC_ID)[0] == btc_base


def test_cross_account_holds_several_markets(vault, ch, usdc, alice):
    deposit(usdc, vault, alice, 2000 * USDC)
    trade(ch, alice, ETH_ID, WAD)
    trade(ch, alice, BTC_ID, -(WAD // 100))
    assert vault.openMarkets(alice, 0) == (1 << (ETH_ID - 1)) | (1 << (BTC_ID - 1))


# ---------------------------------------------------------------------------- operators


def test_setOperator_approve_and_revoke_emit_events(vault, alice, bob):
    assert vault.isOperator(alice, bob) is False
    tx = vault.setOperator(bob, True, sender=alice)
    log = only_event(tx, vault.OperatorSet)
    assert (log.owner, log.operator, log.approved) == (alice.address, bob.address, True)
    assert vault.isOperator(alice, bob) is True
    assert vault.isOperator(bob, alice) is False  # approval is directed

    tx = vault.setOperator(bob, False, sender=alice)
    log = only_event(tx, vault.OperatorSet)
    assert (log.owner, log.operator, log.approved) == (alice.address, bob.address, False)
    assert vault.isOperator(alice, bob) is False


def test_setOperator_zero_address_reverts(vault, alice):
    with expect_revert(vault.ZeroAddress):
        vault.setOperator(ZERO, True, sender=alice)
    assert vault.isOperator(alice, ZERO) is False


def test_operator_opens_and_reduces_position_for_owner(vault, ch, usdc, alice, bob):
    deposit(usdc, vault, alice, 1000 * USDC)
    vault.setOperator(bob, True, sender=alice)
    bob_before = (usdc.balanceOf(bob), vault.collateral(bob, 0))

    tx = ch.openPositionFor(alice, 0, ETH_ID, WAD, MAX_UINT, deadline(), sender=bob)

    coll, open_notional, _ = one_eth_long_from_flat(1000 * WAD)
    ev = ch.PositionChanged.from_receipt(tx)
    assert len(ev) == 1 and ev[0].owner == alice.address
    assert ch.position(alice, 0, ETH_ID) == (WAD, open_notional, 0)
    assert vault.collateral(alice, 0) == coll  # the fee is the owner's
    assert tuple(ch.position(bob, 0, ETH_ID))[:2] == (0, 0)
    assert (usdc.balanceOf(bob), vault.collateral(bob, 0)) == bob_before
    # ... and may reduce it again.
    ch.openPositionFor(alice, 0, ETH_ID, -(WAD // 2), 0, deadline(), sender=bob)
    assert ch.position(alice, 0, ETH_ID)[0] == WAD // 2


def test_revoked_operator_can_no_longer_act(vault, ch, usdc, alice, bob):
    deposit(usdc, vault, alice, 1000 * USDC)
    vault.setOperator(bob, True, sender=alice)
    vault.setOperator(bob, False, sender=alice)
    accts = [(alice, 0)]
    before = state(vault, ch, usdc, [alice, bob], accts, positions=True)
    with expect_revert(ch.NotOwnerOrOperator, caller=bob, owner=alice):
        ch.openPositionFor(alice, 0, ETH_ID, WAD, MAX_UINT, deadline(), sender=bob)
    with expect_revert(vault.NotOwnerOrOperator, caller=bob, owner=alice):
        vault.withdrawFor(alice, 0, USDC, sender=bob)
    assert state(vault, ch, usdc, [alice, bob], accts, positions=True) == before


def test_operator_approval_is_per_owner(vault, ch, usdc, alice, bob, carol):
    deposit(usdc, vault, carol, 1000 * USDC)
    vault.setOperator(bob, True, sender=alice)  # bob is alice's operator, not carol's
    accts = [(carol, 0)]
    before = state(vault, ch, usdc, [carol, bob], accts, positions=True)
    with expect_revert(ch.NotOwnerOrOperator, caller=bob, owner=carol):
        ch.openPositionFor(carol, 0, ETH_ID, WAD, MAX_UINT, deadline(), sender=bob)
    assert state(vault, ch, usdc, [carol, bob], accts, positions=True) == before


# ---------------------------------------------------------------------------- ownership (two-step)


def test_ownership_transfer_needs_acceptance(vault, ch, usdc, deployer, alice, bob):
    assert vault.owner() == deployer.address
    tx = vault.transferOwnership(alice, sender=deployer)
    log = only_event(tx, vault.OwnershipTransferStarted)
    assert (log.previousOwner, log.newOwner) == (deployer.address, alice.address)
    # Nothing changes hands until the pending owner accepts.
    assert vault.owner() == deployer.address
    assert vault.pendingOwner() == alice.address
    vault.setGuardian(bob, sender=deployer)  # the current owner keeps its rights meanwhile
    assert vault.guardian() == bob.address

    before = state(vault, ch, usdc, admin=True)
    with expect_revert(vault.OwnableUnauthorizedAccount, account=bob):
        vault.acceptOwnership(sender=bob)
    assert state(vault, ch, usdc, admin=True) == before

    tx = vault.acceptOwnership(sender=alice)
    log = only_event(tx, vault.OwnershipTransferred)
    assert (log.previousOwner, log.newOwner) == (deployer.address, alice.address)
    assert vault.owner() == alice.address
    assert vault.pendingOwner() == ZERO


def test_old_owner_loses_owner_rights(vault, ch, usdc, deployer, alice, bob):
    vault.transferOwnership(alice, sender=deployer)
    vault.acceptOwnership(sender=alice)
    before = state(vault, ch, usdc, admin=True)
    with expect_revert(vault.OwnableUnauthorizedAccount, account=deployer):
        vault.setGuardian(bob, sender=deployer)
    with expect_revert(vault.OwnableUnauthorizedAccount, account=deployer):
        vault.transferOwnership(deployer, sender=deployer)
    with expect_revert(vault.OwnableUnauthorizedAccount, account=deployer):
        vault.setClearingHouse(bob, sender=deployer)
    assert state(vault, ch, usdc, admin=True) == before

    # The guardian is a separate role: the old owner still guards (may raise) but may not lower.
    assert vault.guardian() == deployer.address
    vault.setPauseLevel(2, sender=deployer)
    with expect_revert(vault.NotGuardian, caller=deployer):
        vault.setPauseLevel(0, sender=deployer)
    assert vault.pauseLevel() == 2
    # The new owner has every owner right: lower the level, replace the guardian.
    vault.setPauseLevel(0, sender=alice)
    vault.setGuardian(bob, sender=alice)
    assert vault.guardian() == bob.address
    with expect_revert(vault.NotGuardian, caller=deployer):
        vault.setPauseLevel(1, sender=deployer)
    assert vault.pauseLevel() == 0


def test_non_owner_cannot_start_ownership_transfer(vault, ch, usdc, deployer, alice):
    before = state(vault, ch, usdc, admin=True)
    with expect_revert(vault.OwnableUnauthorizedAccount, account=alice):
        vault.transferOwnership(alice, sender=alice)
    assert state(vault, ch, usdc, admin=True) == before
    assert vault.owner() == deployer.address and vault.pendingOwner() == ZERO


def test_pending_owner_can_be_replaced_before_acceptance(vault, ch, usdc, deployer, alice, bob):
    vault.transferOwnership(alice, sender=deployer)
    vault.transferOwnership(bob, sender=deployer)
    assert vault.pendingOwner() == bob.address
    before = state(vault, ch, usdc, admin=True)
    with expect_revert(vault.OwnableUnauthorizedAccount, account=alice):
        vault.acceptOwnership(sender=alice)
    assert state(vault, ch, usdc, admin=True) == before
    vault.acceptOwnership(sender=bob)
    assert vault.owner() == bob.address


# ---------------------------------------------------------------------------- guardian


def test_setGuardian_owner_only_with_event(vault, ch, usdc, deployer, alice, bob):
    assert vault.guardian() == deployer.address  # deploy(): the deployer is owner and guardian
    tx = vault.setGuardian(bob, sender=deployer)
    log = only_event(tx, vault.GuardianSet)
    assert log.guardian == bob.address
    assert vault.guardian() == bob.address

    before = state(vault, ch, usdc, admin=True)
    with expect_revert(vault.OwnableUnauthorizedAccount, account=alice):
        vault.setGuardian(alice, sender=alice)
    with expect_revert(vault.OwnableUnauthorizedAccount, account=bob):
        vault.setGuardian(alice, sender=bob)  # the guardian is not the owner
    assert state(vault, ch, usdc, admin=True) == before


def test_replaced_guardian_loses_pause_right(vault, ch, usdc, deployer, bob, carol):
    vault.setGuardian(bob, sender=deployer)
    tx = vault.setPauseLevel(1, sender=bob)
    log = only_event(tx, vault.PauseLevelSet)
    assert (log.by, log.level) == (bob.address, 1)
    vault.setGuardian(carol, sender=deployer)
    before = state(vault, ch, usdc, admin=True)
    with expect_revert(vault.NotGuardian, caller=bob):
        vault.setPauseLevel(2, sender=bob)
    assert state(vault, ch, usdc, admin=True) == before
    vault.setPauseLevel(2, sender=carol)
    assert vault.pauseLevel() == 2


def test_zero_guardian_leaves_only_the_owner(vault, ch, usdc, deployer, alice):
    tx = vault.setGuardian(ZERO, sender=deployer)
    assert only_event(tx, vault.GuardianSet).guardian == ZERO
    before = state(vault, ch, usdc, admin=True)
    with expect_revert(vault.NotGuardian, caller=alice):
        vault.setPauseLevel(1, sender=alice)
    assert state(vault, ch, usdc, admin=True) == before
    vault.setPauseLevel(3, sender=deployer)
    assert vault.pauseLevel() == 3


# ---------------------------------------------------------------------------- pause levels


def test_guardian_may_only_raise_pause_level(vault, ch, usdc, deployer, bob):
    vault.setGuardian(bob, sender=deployer)
    for level in (1, 3):
        tx = vault.setPauseLevel(level, sender=bob)
        assert (only_event(tx, vault.PauseLevelSet).by, vault.pauseLevel()) == (bob.address, level)
    before = state(vault, ch, usdc, admin=True)
    for lower in (2, 0):
        with expect_revert(vault.NotGuardian, caller=bob):
            vault.setPauseLevel(lower, sender=bob)
    assert state(vault, ch, usdc, admin=True) == before


def test_owner_may_set_any_pause_level(vault, deployer):
    for level in (3, 0, 2, 1, 0):
        tx = vault.setPauseLevel(level, sender=deployer)
        log = only_event(tx, vault.PauseLevelSet)
        assert (log.by, log.level) == (deployer.address, level)
        assert vault.pauseLevel() == level


def test_pause_level_out_of_bounds_reverts(vault, ch, usdc, deployer, bob):
    vault.setGuardian(bob, sender=deployer)
    vault.setPauseLevel(1, sender=deployer)
    before = state(vault, ch, usdc, admin=True)
    for level in (4, 255):
        for who in (deployer, bob):
            with expect_revert(vault.InvalidPauseLevel, level=level):
                vault.setPauseLevel(level, sender=who)
    assert state(vault, ch, usdc, admin=True) == before


def test_stranger_cannot_set_pause_level(vault, ch, usdc, alice):
    before = state(vault, ch, usdc, admin=True)
    for level in (0, 1, 3):
        with expect_revert(vault.NotGuardian, caller=alice):
            vault.setPauseLevel(level, sender=alice)
    assert state(vault, ch, usdc, admin=True) == before


def test_pause_level_3_blocks_everything_but_withdrawals(vault, ch, usdc, deployer, alice):
    deposit(usdc, vault, alice, 1000 * USDC)
    trade(ch, alice, ETH_ID, WAD)
    mint_approve(usdc, vault, alice, 30 * USDC)
    vault.setPauseLevel(3, sender=deployer)
    accts = [(alice, 0), (alice, 1)]
    before = state(vault, ch, usdc, [alice], accts, positions=True)
    with expect_revert(vault.Paused, level=3):
        vault.deposit(0, 10 * USDC, sender=alice)
    with expect_revert(vault.Paused, level=3):
        vault.transferMargin(0, 1, WAD, sender=alice)
    with expect_revert(vault.Paused, level=3):
        vault.fundPool(10 * USDC, sender=alice)
    with expect_revert(vault.Paused, level=3):
        vault.fundInsurance(10 * USDC, sender=alice)
    with expect_revert(ch.Paused, level=3):
        trade(ch, alice, ETH_ID, WAD // 10)  # new risk
    with expect_revert(ch.Paused, level=3):
        trade(ch, alice, ETH_ID, -(WAD // 10))  # reducing
    assert state(vault, ch, usdc, [alice], accts, positions=True) == before
    # Withdrawing free collateral stays open.
    coll, _, free = one_eth_long_from_flat(1000 * WAD)
    vault.withdraw(0, free // SCALE, sender=alice)
    assert vault.collateral(alice, 0) == coll - free // SCALE * SCALE


def test_pause_level_1_blocks_new_risk_only(vault, ch, usdc, deployer, alice):
    deposit(usdc, vault, alice, 1000 * USDC)
    trade(ch, alice, ETH_ID, WAD)
    vault.setPauseLevel(1, sender=deployer)
    accts = [(alice, 0)]
    before = state(vault, ch, usdc, [alice], accts, positions=True)
    with expect_revert(ch.Paused, level=1):
        trade(ch, alice, ETH_ID, WAD // 10)  # increase
    with expect_revert(ch.Paused, level=1):
        trade(ch, alice, ETH_ID, -2 * WAD)  # flip long -> short: new risk on the other side
    assert state(vault, ch, usdc, [alice], accts, positions=True) == before
    trade(ch, alice, ETH_ID, -(WAD // 2))  # reducing stays open
    assert ch.position(alice, 0, ETH_ID)[0] == WAD // 2
    # Vault-side margin actions are not blocked at level 1.
    vault.transferMargin(0, 1, WAD, sender=alice)
    mint_approve(usdc, vault, alice, 2 * USDC)
    vault.fundPool(USDC, sender=alice)
    vault.fundInsurance(USDC, sender=alice)
    assert vault.collateral(alice, 1) == WAD


def test_pause_level_2_blocks_all_trading(vault, ch, usdc, deployer, alice):
    deposit(usdc, vault, alice, 1000 * USDC)
    trade(ch, alice, ETH_ID, WAD)
    vault.setPauseLevel(2, sender=deployer)
    accts = [(alice, 0)]
    before = state(vault, ch, usdc, [alice], accts, positions=True)
    with expect_revert(ch.Paused, level=2):
        trade(ch, alice, ETH_ID, -(WAD // 2))
    with expect_revert(ch.Paused, level=2):
        ch.closePosition(0, ETH_ID, 0, deadline(), sender=alice)
    assert state(vault, ch, usdc, [alice], accts, positions=True) == before
    vault.transferMargin(0, 1, WAD, sender=alice)
    mint_approve(usdc, vault, alice, 2 * USDC)
    vault.fundPool(USDC, sender=alice)
    vault.fundInsurance(USDC, sender=alice)
    assert vault.collateral(alice, 1) == WAD


# ---------------------------------------------------------------------------- setClearingHouse


def test_setClearingHouse_already_wired_in_deployment(vault, ch, usdc, deployer, bob):
    assert vault.clearingHouse() == ch.address
    before = state(vault, ch, usdc, admin=True)
    with expect_revert(vault.ModuleAlreadySet, module=ch):
        vault.setClearingHouse(bob, sender=deployer)
    assert state(vault, ch, usdc, admin=True) == before


def test_setClearingHouse_once_only_owner_nonzero(usdc, deployer, alice, bob, carol):
    fresh = project.Vault.deploy(usdc, deployer, sender=deployer)
    assert fresh.clearingHouse() == ZERO
    with expect_revert(fresh.OwnableUnauthorizedAccount, account=alice):
        fresh.setClearingHouse(alice, sender=alice)
    with expect_revert(fresh.ZeroAddress):
        fresh.setClearingHouse(ZERO, sender=deployer)
    assert fresh.clearingHouse() == ZERO

    tx = fresh.setClearingHouse(carol, sender=deployer)
    log = only_event(tx, fresh.ModuleSet)
    assert bytes(log.name) == CLEARING_HOUSE_MODULE
    assert log.module == carol.address
    assert fresh.clearingHouse() == carol.address

    for other in (bob, carol):
        with expect_revert(fresh.ModuleAlreadySet, module=carol):
            fresh.setClearingHouse(other, sender=deployer)
    assert fresh.clearingHouse() == carol.address


# ---------------------------------------------------------------------------- fundPool / fundInsurance


def test_fundPool_credits_pool_and_moves_tokens(vault, usdc, alice):
    amount = 1_234_567_891
    mint_approve(usdc, vault, alice, amount)
    pool, insurance, vault_tokens = vault.poolBalance(), vault.insuranceFund(), usdc.balanceOf(vault)

    tx = vault.fundPool(amount, sender=alice)

    log = only_event(tx, vault.PoolFunded)
    assert (log["from"], log.amount, log.amountWad) == (alice.address, amount, amount * SCALE)
    assert vault.poolBalance() == pool + amount * SCALE
    assert vault.insuranceFund() == insurance
    assert usdc.balanceOf(vault) == vault_tokens + amount
    assert usdc.balanceOf(alice) == 0
    assert vault.collateral(alice, 0) == 0  # a donation, not margin


def test_fundInsurance_credits_insurance_and_moves_tokens(vault, usdc, alice):
    amount = 987_654_321
    mint_approve(usdc, vault, alice, amount)
    pool, insurance, vault_tokens = vault.poolBalance(), vault.insuranceFund(), usdc.balanceOf(vault)

    tx = vault.fundInsurance(amount, sender=alice)

    log = only_event(tx, vault.InsuranceFunded)
    assert (log["from"], log.amount, log.amountWad) == (alice.address, amount, amount * SCALE)
    assert vault.insuranceFund() == insurance + amount * SCALE
    assert vault.poolBalance() == pool
    assert usdc.balanceOf(vault) == vault_tokens + amount
    assert usdc.balanceOf(alice) == 0
    assert vault.collateral(alice, 0) == 0


def test_fund_zero_amount_reverts(vault, ch, usdc, alice):
    mint_approve(usdc, vault, alice, 10 * USDC)
    before = state(vault, ch, usdc, [alice])
    for fn in (vault.fundPool, vault.fundInsurance):
        with expect_revert(vault.ZeroAmount):
            fn(0, sender=alice)
    assert state(vault, ch, usdc, [alice]) == before


def test_fund_amount_too_large_reverts(vault, ch, usdc, alice):
    amount = INT128_MAX // SCALE + 1  # first amount whose WAD value exceeds the int128 slot
    mint_approve(usdc, vault, alice, amount)
    before = state(vault, ch, usdc, [alice])
    for fn in (vault.fundPool, vault.fundInsurance):
        with expect_revert(vault.AmountTooLarge, amount=amount):
            fn(amount, sender=alice)
    assert state(vault, ch, usdc, [alice]) == before


def test_fund_without_allowance_reverts(vault, ch, usdc, alice):
    usdc.mint(alice, 10 * USDC, sender=alice)
    usdc.approve(vault, 10 * USDC - 1, sender=alice)
    before = state(vault, ch, usdc, [alice])
    for fn in (vault.fundPool, vault.fundInsurance):
        with expect_revert(usdc.ERC20InsufficientAllowance, spender=vault, allowance=10 * USDC - 1,
                           needed=10 * USDC):
            fn(10 * USDC, sender=alice)
    assert state(vault, ch, usdc, [alice]) == before


# ---------------------------------------------------------------------------- settleTrade


def test_settleTrade_only_callable_by_clearing_house(vault, ch, usdc, deployer, alice):
    deposit(usdc, vault, alice, 10 * USDC)
    accts = [(alice, 0)]
    before = state(vault, ch, usdc, [alice], accts)
    for who in (alice, deployer):  # not even the owner
        # A balanced movement (collateral + pool + insurance = 0): only the caller is wrong.
        with expect_revert(vault.UnauthorizedModule, caller=who):
            vault.settleTrade(alice, 0, ETH_ID, True, 5 * WAD, -5 * WAD, 0, sender=who)
    assert state(vault, ch, usdc, [alice], accts) == before


# ---------------------------------------------------------------------------- module-only entries


INT128_MAX = 2**127 - 1


def new_vault(deployer, decimals: int):
    token = project.MockERC20.deploy(f"Token{decimals}", f"T{decimals}", decimals, sender=deployer)
    return token, project.Vault.deploy(token, deployer, sender=deployer)


@pytest.mark.parametrize("decimals", [6, 18])
def test_fund_insurance_beyond_int128_reverts_amount_too_large(deployer, alice, decimals):
    """fundInsurance refuses a top-up that would take the insurance fund past int128.max (its ledger slot)
    with AmountTooLarge(amount in token units), even when the amount alone is in range; the largest
    top-up that fits is accepted, after which a single token unit more is refused."""
    token, vault = new_vault(deployer, decimals)
    scale = 10 ** (18 - decimals)
    first = INT128_MAX // scale // 2
    fits = (INT128_MAX - first * scale) // scale  # largest further amount that keeps the fund <= int128.max
    over = fits + 1
    assert over <= INT128_MAX // scale  # the amount alone passes the token-to-WAD range check
    mint_approve(token, vault, alice, first + fits + 1)
    vault.fundInsurance(first, sender=alice)
    assert vault.insuranceFund() == first * scale

    before = ledger(vault, token, holders=(alice,)), token.allowance(alice, vault)
    with expect_revert(vault.AmountTooLarge, amount=over):
        vault.fundInsurance(over, sender=alice)
    assert (ledger(vault, token, holders=(alice,)), token.allowance(alice, vault)) == before

    vault.fundInsurance(fits, sender=alice)
    assert vault.insuranceFund() == (first + fits) * scale
    assert INT128_MAX - scale < vault.insuranceFund() <= INT128_MAX
    before = ledger(vault, token, holders=(alice,))
    with expect_revert(vault.AmountTooLarge, amount=1):
        vault.fundInsurance(1, sender=alice)
    assert ledger(vault, token, holders=(alice,)) == before


@pytest.mark.parametrize("setter,getter", [("setClearingHouse", "clearingHouse"),
                                           ("setLiquidationEngine", "liquidationEngine"),
                                           ("setLiquidityPool", "liquidityPool")])
def test_vault_module_setter_rejects_zero_and_stays_unwired(deployer, carol, setter, getter):
    """A fresh Vault's once-only module setters refuse the zero address (ZeroAddress()); the refused call
    does not use up the one wiring: the slot stays empty and a real module can still be set."""
    _, vault = new_vault(deployer, 6)
    assert getattr(vault, getter)() == ZERO
    with expect_revert(vault.ZeroAddress):
        getattr(vault, setter)(ZERO, sender=deployer)
    assert getattr(vault, getter)() == ZERO
    getattr(vault, setter)(carol, sender=deployer)
    assert getattr(vault, getter)() == carol.address


@pytest.fixture
def ch_vault(deployer, alice, bob):
    """A fresh 18-decimal Vault whose clearing house is bob; alice holds 100 of collateral."""
    token, vault = new_vault(deployer, 18)
    vault.setClearingHouse(bob, sender=deployer)
    mint_approve(token, vault, alice, 100 * WAD)
    vault.deposit(0, 100 * WAD, sender=alice)
    return token, vault


@pytest.mark.parametrize("collateral_delta,pool_delta,insurance_delta", [
    (1, 0, 0),
    (0, -1, 0),
    (0, 0, 1),
    (-10 * WAD, 6 * WAD, 4 * WAD - 1),  # a fee split that loses one wei
    (-5 * WAD, -5 * WAD, 0),  # both sides debited
    (WAD, -WAD, 1),
])
def test_settle_trade_rejects_unbalanced_deltas(ch_vault, alice, bob, collateral_delta, pool_delta, insurance_delta):
    """settleTrade from the clearing house refuses deltas that do not sum to zero with
    UnbalancedSettlement(collateralDelta, poolDelta, insuranceDelta): money is never created or destroyed;
    the account, its open-market bitmap, the pool and the insurance fund stay as they were."""
    assert collateral_delta + pool_delta + insurance_delta != 0
    token, vault = ch_vault
    before = ledger(vault, token, holders=(alice,), accounts=((alice, 0),)), vault.openMarkets(alice, 0)
    with expect_revert(vault.UnbalancedSettlement, collateralDelta=collateral_delta, poolDelta=pool_delta,
                       insuranceDelta=insurance_delta):
        vault.settleTrade(alice, 0, 1, True, collateral_delta, pool_delta, insurance_delta, sender=bob)
    assert (ledger(vault, token, holders=(alice,), accounts=((alice, 0),)), vault.openMarkets(alice, 0)) == before


def test_settle_trade_balanced_deltas_move_the_ledger(ch_vault, alice, bob):
    """Control for the unbalanced cases: a balanced settlement (a 10 loss split 6 pool / 4 insurance) is
    applied exactly and marks the market open in the account's bitmap."""
    token, vault = ch_vault
    vault.settleTrade(alice, 0, 3, True, -10 * WAD, 6 * WAD, 4 * WAD, sender=bob)
    assert vault.collateral(alice, 0) == 90 * WAD
    assert vault.poolBalance() == 6 * WAD and vault.insuranceFund() == 4 * WAD
    assert vault.openMarkets(alice, 0) == 1 << 2  # bit (marketId - 1)
    assert token.balanceOf(vault) == 100 * WAD  # a ledger move, no tokens


@pytest.fixture
def pool_vault(deployer, alice, carol):
    """A fresh 6-decimal Vault whose liquidity pool is carol, with 1,000 tokens of pool cash (funded by alice)."""
    token, vault = new_vault(deployer, 6)
    vault.setLiquidityPool(carol, sender=deployer)
    mint_approve(token, vault, alice, 1_000 * 10**6)
    vault.fundPool(1_000 * 10**6, sender=alice)
    return token, vault


def test_withdraw_pool_guards(pool_vault, deployer, alice, bob, carol):
    """withdrawPool: only the liquidity pool may call it (UnauthorizedModule(caller), not even the owner),
    never to the zero address (ZeroAddress()), never more than the pool's cash
    (InsufficientPoolCash(poolBalance, amountWad)); none of these moves a token or the ledger. The whole
    cash, exactly, is paid out."""
    token, vault = pool_vault
    cash_units = 1_000 * 10**6
    scale = 10**12
    holders = (alice, bob, carol)
    before = ledger(vault, token, holders=holders)
    assert before[2] == cash_units * scale  # poolBalance in WAD

    for caller in (alice, deployer):
        with expect_revert(vault.UnauthorizedModule, caller=caller):
            vault.withdrawPool(1, bob, sender=caller)
    with expect_revert(vault.ZeroAddress):
        vault.withdrawPool(1, ZERO, sender=carol)
    with expect_revert(vault.InsufficientPoolCash, poolBalance=cash_units * scale, amountWad=(cash_units + 1) * scale):
        vault.withdrawPool(cash_units + 1, bob, sender=carol)
    assert ledger(vault, token, holders=holders) == before

    vault.withdrawPool(cash_units, bob, sender=carol)
    assert token.balanceOf(bob) == cash_units and vault.poolBalance() == 0 and token.balanceOf(vault) == 0
    with expect_revert(vault.InsufficientPoolCash, poolBalance=0, amountWad=scale):
        vault.withdrawPool(1, bob, sender=carol)


@pytest.mark.parametrize("who", ["alice", "deployer", "unwired"])
def test_charge_liquidation_only_from_the_engine(system, deployer, alice, bob, who):
    """chargeLiquidation (a kick's costs: reward, penalty, bounty and shortfall in one call) from anyone but the
    liquidation engine (a trader, the owner, or anyone on a Vault with no engine wired yet) reverts
    UnauthorizedModule(caller): no collateral moves to a keeper, nothing reaches or leaves the insurance fund, no
    estimate is recorded."""
    if who == "unwired":
        token, vault = new_vault(deployer, 6)
        caller = alice
    else:
        token, vault = system.collateral, system.vault
        caller = alice if who == "alice" else deployer
    mint_approve(token, vault, alice, 1_000 * 10**6)
    vault.deposit(0, 1_000 * 10**6, sender=alice)
    accts = ((alice, 0), (bob, 0))
    before = ledger(vault, token, holders=(alice, bob), accounts=accts), vault.pendingBadDebt(), vault.insuranceFund()
    with expect_revert(vault.UnauthorizedModule, caller=caller):
        vault.chargeLiquidation(alice, 0, bob, 5 * WAD, 10 * WAD, WAD, 7 * WAD, sender=caller)
    assert (ledger(vault, token, holders=(alice, bob), accounts=accts), vault.pendingBadDebt(),
            vault.insuranceFund()) == before


def test_charge_liquidation_never_pays_a_bounty_the_insurance_fund_cannot(deployer, alice, bob, carol):
    """The engine caps an under-water kick's bounty at the insurance fund; the Vault checks it again, after the
    penalty has gone in: a bounty above fund + penalty reverts InsufficientInsurance(fund + penalty, bounty) and
    nothing moves, and exactly fund + penalty is paid. (carol stands in for the engine on a fresh Vault.)"""
    token, vault = new_vault(deployer, 6)
    vault.setLiquidationEngine(carol, sender=deployer)
    mint_approve(token, vault, alice, 1_000 * 10**6)
    vault.deposit(0, 1_000 * 10**6, sender=alice)
    mint_approve(token, vault, deployer, 50 * 10**6)
    vault.fundInsurance(50 * 10**6, sender=deployer)
    fund, penalty = 50 * WAD, 2 * WAD
    assert vault.insuranceFund() == fund
    accts = ((alice, 0), (bob, 0))
    before = ledger(vault, token, holders=(alice, bob), accounts=accts), vault.pendingBadDebt(), vault.insuranceFund()
    with expect_revert(vault.InsufficientInsurance, insuranceFund=fund + penalty, amount=fund + penalty + 1):
        vault.chargeLiquidation(alice, 0, bob, 0, penalty, fund + penalty + 1, 0, sender=carol)
    assert (ledger(vault, token, holders=(alice, bob), accounts=accts), vault.pendingBadDebt(),
            vault.insuranceFund()) == before
    vault.chargeLiquidation(alice, 0, bob, 0, penalty, fund + penalty, 0, sender=carol)
    assert vault.insuranceFund() == 0 and vault.collateral(bob, 0) == fund + penalty
    assert vault.collateral(alice, 0) == 1_000 * WAD - penalty


@pytest.mark.parametrize("who", ["alice", "deployer", "unwired"])
def test_record_shortfall_only_from_the_engine(system, deployer, alice, who):
    """recordShortfall (the bad-debt estimate the pool's NAV sets aside) from anyone but the liquidation
    engine reverts UnauthorizedModule(caller) and records nothing: a trader cannot depress the share
    price, nor clear an estimate."""
    vault = new_vault(deployer, 6)[1] if who == "unwired" else system.vault
    caller = alice if who != "deployer" else deployer
    before = (vault.pendingBadDebt(), vault.shortfallOf(alice, 0))
    with expect_revert(vault.UnauthorizedModule, caller=caller):
        vault.recordShortfall(alice, 0, 10**6 * WAD, sender=caller)
    assert (vault.pendingBadDebt(), vault.shortfallOf(alice, 0)) == before == (0, 0)
