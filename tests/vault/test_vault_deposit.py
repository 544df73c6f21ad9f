"""Vault.deposit / depositFor and the account views of an account without positions.

docs/design.md#units-and-rounding (token units at the edge, WAD inside), docs/design.md#accounts-and-margin
(accounts), docs/specification.md#9-safety-and-bad-input (named errors, pause),
docs/specification.md#10-external-surface (surface); invariant 22 of docs/specification.md (every bad input
reverts with its named error and nothing is lost).
"""

import ape
import pytest
from helpers.vault import ledger, mint_approve, only_event, reverts_with

DECIMALS = 6  # default deployment: a 6-decimal USDC-like mock
SCALE = 10 ** (18 - DECIMALS)  # token units -> WAD
USDC = 10**DECIMALS
ZERO = "0x0000000000000000000000000000000000000000"
UINT128_MAX = 2**128 - 1
INT128_MAX = 2**127 - 1
UINT32_MAX = 2**32 - 1


# ---------------------------------------------------------------------------- helpers


# ---------------------------------------------------------------------------- deposit


def test_deposit_credits_wad_to_cross_account(vault, usdc, alice):
    amount = 1_234_567_891  # 1234.567891 USDC
    mint_approve(usdc, vault, alice, amount)
    vault_before = usdc.balanceOf(vault)
    pool, insurance = vault.poolBalance(), vault.insuranceFund()

    vault.deposit(0, amount, sender=alice)

    assert vault.collateral(alice, 0) == amount * SCALE == 1_234_567_891_000_000_000_000
    assert vault.collateral(alice, 1) == 0
    assert usdc.balanceOf(alice) == 0
    assert usdc.balanceOf(vault) == vault_before + amount
    assert vault.poolBalance() == pool and vault.insuranceFund() == insurance


def test_deposit_emits_deposit_event(vault, usdc, alice):
    amount = 500 * USDC
    mint_approve(usdc, vault, alice, amount)
    tx = vault.deposit(4, amount, sender=alice)
    log = only_event(tx, vault.Deposit)
    assert log.caller == alice.address
    assert log.owner == alice.address
    assert log.subaccount == 4
    assert log.amount == amount
    assert log.amountWad == 500 * 10**18


@pytest.mark.parametrize("sub", [1, 7, UINT32_MAX])
def test_deposit_isolated_subaccount_credits_only_that_subaccount(vault, usdc, alice, sub):
    amount = 42 * USDC
    mint_approve(usdc, vault, alice, amount)
    vault.deposit(sub, amount, sender=alice)
    assert vault.collateral(alice, sub) == 42 * 10**18
    assert vault.collateral(alice, 0) == 0
    assert vault.collateral(alice, (sub + 1) % 2**32) == 0


def test_deposit_smallest_unit_is_scaled(vault, usdc, alice):
    mint_approve(usdc, vault, alice, 1)
    vault.deposit(0, 1, sender=alice)
    assert vault.collateral(alice, 0) == 10**12


def test_deposit_twice_accumulates(vault, usdc, alice):
    a, b = 300 * USDC, 12_345
    mint_approve(usdc, vault, alice, a + b)
    vault.deposit(2, a, sender=alice)
    vault.deposit(2, b, sender=alice)
    assert vault.collateral(alice, 2) == (a + b) * SCALE
    assert usdc.balanceOf(alice) == 0


def test_deposit_largest_amount_that_fits_is_credited(vault, usdc, alice):
    # The largest amount whose WAD value fits the int128 collateral slot.
    amount = INT128_MAX // SCALE
    mint_approve(usdc, vault, alice, amount)
    vault.deposit(0, amount, sender=alice)
    assert vault.collateral(alice, 0) == amount * SCALE
    assert usdc.balanceOf(alice) == 0


def test_depositFor_credits_owner_not_caller(vault, usdc, alice, bob):
    amount = 250 * USDC
    mint_approve(usdc, vault, bob, amount)
    vault_before = usdc.balanceOf(vault)

    tx = vault.depositFor(alice, 5, amount, sender=bob)

    assert vault.collateral(alice, 5) == 250 * 10**18
    assert vault.collateral(bob, 5) == 0 and vault.collateral(bob, 0) == 0
    assert usdc.balanceOf(bob) == 0
    assert usdc.balanceOf(vault) == vault_before + amount
    log = only_event(tx, vault.Deposit)
    assert (log.caller, log.owner, log.subaccount, log.amount, log.amountWad) == (
        bob.address,
        alice.address,
        5,
        amount,
        250 * 10**18,
    )


def test_depositFor_cross_subaccount(vault, usdc, alice, bob):
    mint_approve(usdc, vault, bob, 7)
    vault.depositFor(alice, 0, 7, sender=bob)
    assert vault.collateral(alice, 0) == 7 * SCALE


# ---------------------------------------------------------------------------- bad input


def test_deposit_zero_amount_reverts(vault, usdc, alice):
    mint_approve(usdc, vault, alice, 100 * USDC)
    before = ledger(vault, usdc, [alice], [(alice, 0)])
    with reverts_with(vault.ZeroAmount):
        vault.deposit(0, 0, sender=alice)
    assert ledger(vault, usdc, [alice], [(alice, 0)]) == before


def test_depositFor_zero_amount_reverts(vault, usdc, alice, bob):
    mint_approve(usdc, vault, bob, 100 * USDC)
    before = ledger(vault, usdc, [alice, bob], [(alice, 3), (bob, 3)])
    with reverts_with(vault.ZeroAmount):
        vault.depositFor(alice, 3, 0, sender=bob)
    assert ledger(vault, usdc, [alice, bob], [(alice, 3), (bob, 3)]) == before


def test_depositFor_zero_address_reverts(vault, usdc, bob):
    mint_approve(usdc, vault, bob, 100 * USDC)
    before = ledger(vault, usdc, [bob], [(ZERO, 0), (bob, 0)])
    with reverts_with(vault.ZeroAddress):
        vault.depositFor(ZERO, 0, 100 * USDC, sender=bob)
    assert ledger(vault, usdc, [bob], [(ZERO, 0), (bob, 0)]) == before
    assert usdc.balanceOf(bob) == 100 * USDC


def test_deposit_paused_level_3_reverts(vault, usdc, deployer, alice):
    mint_approve(usdc, vault, alice, 100 * USDC)
    vault.setPauseLevel(3, sender=deployer)
    before = ledger(vault, usdc, [alice], [(alice, 0)])
    with reverts_with(vault.Paused, level=3):
        vault.deposit(0, 100 * USDC, sender=alice)
    assert ledger(vault, usdc, [alice], [(alice, 0)]) == before


def test_depositFor_paused_level_3_reverts(vault, usdc, deployer, alice, bob):
    mint_approve(usdc, vault, bob, 100 * USDC)
    vault.setPauseLevel(3, sender=deployer)
    before = ledger(vault, usdc, [alice, bob], [(alice, 1)])
    with reverts_with(vault.Paused, level=3):
        vault.depositFor(alice, 1, 100 * USDC, sender=bob)
    assert ledger(vault, usdc, [alice, bob], [(alice, 1)]) == before


@pytest.mark.parametrize("level", [1, 2])
def test_deposit_allowed_at_pause_levels_1_and_2(vault, usdc, deployer, alice, bob, level):
    mint_approve(usdc, vault, alice, 100 * USDC)
    mint_approve(usdc, vault, bob, 50 * USDC)
    vault.setPauseLevel(level, sender=deployer)
    assert vault.pauseLevel() == level
    vault.deposit(0, 100 * USDC, sender=alice)
    vault.depositFor(alice, 9, 50 * USDC, sender=bob)
    assert vault.collateral(alice, 0) == 100 * 10**18
    assert vault.collateral(alice, 9) == 50 * 10**18


def test_deposit_amount_too_large_reverts(vault, usdc, alice):
    # First amount whose WAD value exceeds uint128.
    amount = UINT128_MAX // SCALE + 1
    mint_approve(usdc, vault, alice, amount)
    before = ledger(vault, usdc, [alice], [(alice, 0)])
    with reverts_with(vault.AmountTooLarge, amount=amount):
        vault.deposit(0, amount, sender=alice)
    assert ledger(vault, usdc, [alice], [(alice, 0)]) == before


def test_depositFor_amount_too_large_reverts(vault, usdc, alice, bob):
    amount = 2**255
    mint_approve(usdc, vault, bob, amount)
    before = ledger(vault, usdc, [bob], [(alice, 0)])
    with reverts_with(vault.AmountTooLarge, amount=amount):
        vault.depositFor(alice, 0, amount, sender=bob)
    assert ledger(vault, usdc, [bob], [(alice, 0)]) == before


def test_deposit_amount_above_int128_slot_reverts_and_changes_nothing(vault, usdc, alice):
    # WAD value in (int128.max, uint128.max]: passes the AmountTooLarge bound but cannot be stored.
    amount = INT128_MAX // SCALE + 1
    assert INT128_MAX < amount * SCALE <= UINT128_MAX
    mint_approve(usdc, vault, alice, amount)
    before = ledger(vault, usdc, [alice], [(alice, 0)])
    with ape.reverts():
        vault.deposit(0, amount, sender=alice)
    assert ledger(vault, usdc, [alice], [(alice, 0)]) == before


def test_deposit_amount_above_int128_slot_reverts_amount_too_large(vault, usdc, alice):
    amount = INT128_MAX // SCALE + 1
    mint_approve(usdc, vault, alice, amount)
    with reverts_with(vault.AmountTooLarge, amount=amount):
        vault.deposit(0, amount, sender=alice)


def test_deposit_without_allowance_reverts_and_credits_nothing(vault, usdc, alice):
    # The ledger is credited before the pull; a failing pull must roll the credit back.
    usdc.mint(alice, 100 * USDC, sender=alice)
    usdc.approve(vault, 100 * USDC - 1, sender=alice)
    before = ledger(vault, usdc, [alice], [(alice, 0)])
    with ape.reverts():
        vault.deposit(0, 100 * USDC, sender=alice)
    assert ledger(vault, usdc, [alice], [(alice, 0)]) == before


def test_deposit_more_than_balance_reverts_and_credits_nothing(vault, usdc, alice):
    mint_approve(usdc, vault, alice, 100 * USDC)
    usdc.approve(vault, 1000 * USDC, sender=alice)
    before = ledger(vault, usdc, [alice], [(alice, 0)])
    with ape.reverts():
        vault.deposit(0, 100 * USDC + 1, sender=alice)
    assert ledger(vault, usdc, [alice], [(alice, 0)]) == before


# ---------------------------------------------------------------------------- views, no positions


def test_accountValue_equals_collateral_without_positions(vault, usdc, alice):
    amount = 777 * USDC + 1
    mint_approve(usdc, vault, alice, amount)
    vault.deposit(3, amount, sender=alice)
    expected = amount * SCALE
    assert vault.collateral(alice, 3) == expected
    assert vault.accountValue(alice, 3) == expected
    assert vault.freeCollateral(alice, 3) == expected


def test_freeCollateral_of_empty_account_is_zero(vault, carol):
    assert vault.collateral(carol, 0) == 0
    assert vault.accountValue(carol, 0) == 0
    assert vault.freeCollateral(carol, 0) == 0
    assert vault.openMarkets(carol, 0) == 0


def test_marginRequirements_zero_without_positions(vault, usdc, alice):
    mint_approve(usdc, vault, alice, 10 * USDC)
    vault.deposit(0, 10 * USDC, sender=alice)
    initial, maintenance = vault.marginRequirements(alice, 0)
    assert (initial, maintenance) == (0, 0)


def test_isLiquidatable_false_without_positions(vault, usdc, alice, carol):
    mint_approve(usdc, vault, alice, 10 * USDC)
    vault.deposit(0, 10 * USDC, sender=alice)
    assert vault.isLiquidatable(alice, 0) is False
    assert vault.isLiquidatable(carol, 0) is False  # empty account: 0 < 0 is false


def test_poolBalance_seeded_at_deploy(vault, usdc):
    seeded = 10_000_000 * 10**18
    assert vault.poolBalance() == seeded
    # The seed is real tokens held by the vault.
    assert usdc.balanceOf(vault) * SCALE >= seeded


def test_insuranceFund_seeded_at_deploy(vault, usdc):
    # DeployConfig.insurance_seed: the fund, not the LPs, takes the first bad debt.
    assert vault.insuranceFund() == 100_000 * 10**18
    assert usdc.balanceOf(vault) * SCALE >= 10_000_000 * 10**18 + vault.insuranceFund()


def test_toWad_scales_token_units(vault):
    assert vault.tokenScale() == SCALE
    assert vault.toWad(1) == 10**12
    assert vault.toWad(123 * USDC) == 123 * 10**18

