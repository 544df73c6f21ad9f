"""Vault collateral edge cases: tokens of 18 and 0 decimals (and the range in between), decimals > 18,
fee-on-transfer collateral, and reentrancy through a hooked token.

Each test deploys its own Vault over its own token (`project.Vault.deploy(token, owner)`), so the
expected values are exact: a fresh vault has no pool seed and no insurance, and every token it holds
is somebody's collateral.

docs/design.md#units-and-rounding (token units at the edge, WAD inside: x 10^(18 - decimals); any 0..18 decimals;
rounding favours the protocol), docs/specification.md#9-safety-and-bad-input (reentrancy guarded, fee-on-transfer
rejected, named errors), docs/specification.md#10-external-surface.
"""
import pytest
import rlp
from ape import project
from eth_abi import decode as abi_decode
from eth_utils import keccak, to_canonical_address, to_checksum_address

from helpers.trading import expect_revert
from helpers.vault import ledger, mint_approve, only_event

from vperp.units import WAD
INT128_MAX = 2**127 - 1
UINT256_MAX = 2**256 - 1
ZERO = "0x0000000000000000000000000000000000000000"
# OpenZeppelin ReentrancyGuard(Transient): `error ReentrancyGuardReentrantCall();`
REENTRANT_SELECTOR = keccak(text="ReentrancyGuardReentrantCall()")[:4]


# ---------------------------------------------------------------------------- helpers


def scale_of(decimals: int) -> int:
    """docs/design.md#units-and-rounding: token units -> WAD multiplier."""
    return 10 ** (18 - decimals)


def fresh_vault(deployer, decimals: int):
    token = project.MockERC20.deploy(f"Token{decimals}", f"T{decimals}", decimals, sender=deployer)
    vault = project.Vault.deploy(token, deployer, sender=deployer)
    return token, vault


def assert_fully_backed(vault, token, accounts, scale):
    """Fresh vault, no trading: the tokens held are exactly the sum of all ledger claims."""
    claims = sum(vault.collateral(o, s) for o, s in accounts) + vault.poolBalance() + vault.insuranceFund()
    assert token.balanceOf(vault) * scale == claims


def create_address(sender, nonce: int) -> str:
    """Address of the contract `sender` creates with `nonce` (CREATE: keccak(rlp([sender, nonce])))."""
    return to_checksum_address(keccak(rlp.encode([to_canonical_address(sender.address), nonce]))[12:])


# ---------------------------------------------------------------------------- 18 decimals


def test_18_decimals_scale_is_one(deployer):
    _, vault = fresh_vault(deployer, 18)
    assert vault.tokenScale() == scale_of(18) == 1
    for amount in (1, 10**18 + 7, 123_456_789_012_345_678_901):
        assert vault.toWad(amount) == amount


def test_18_decimals_deposit_and_withdraw_to_the_wei(deployer, alice):
    token, vault = fresh_vault(deployer, 18)
    one_wei, big = 1, 123_456_789_012_345_678_901  # 1e-18 and ~123.46 tokens
    mint_approve(token, vault, alice, one_wei + big)

    tx = vault.deposit(0, one_wei, sender=alice)
    log = only_event(tx, vault.Deposit)
    assert (log.amount, log.amountWad) == (one_wei, one_wei * scale_of(18))
    assert vault.collateral(alice, 0) == 1

    vault.deposit(0, big, sender=alice)
    assert vault.collateral(alice, 0) == one_wei + big
    assert token.balanceOf(vault) == one_wei + big
    assert token.balanceOf(alice) == 0

    tx = vault.withdraw(0, big, sender=alice)
    log = only_event(tx, vault.Withdraw)
    assert (log.amount, log.amountWad) == (big, big)
    assert vault.collateral(alice, 0) == 1
    vault.withdraw(0, 1, sender=alice)
    assert vault.collateral(alice, 0) == 0
    assert token.balanceOf(alice) == one_wei + big
    assert token.balanceOf(vault) == 0


def test_18_decimals_withdraw_one_wei_more_than_collateral_reverts(deployer, alice):
    token, vault = fresh_vault(deployer, 18)
    amount = 5 * WAD + 3
    mint_approve(token, vault, alice, amount)
    vault.deposit(2, amount, sender=alice)
    before = ledger(vault, token, [alice], [(alice, 2)])
    with expect_revert(vault.InsufficientCollateral, owner=alice, subaccount=2, collateral=amount, amountWad=amount + 1):
        vault.withdraw(2, amount + 1, sender=alice)
    assert ledger(vault, token, [alice], [(alice, 2)]) == before


def test_18_decimals_transferred_margin_withdraws_as_same_token_amount(deployer, alice):
    token, vault = fresh_vault(deployer, 18)
    amount, moved = 10 * WAD, 3 * WAD + 11  # moved is a WAD amount == token units at 18 decimals
    mint_approve(token, vault, alice, amount)
    vault.deposit(0, amount, sender=alice)
    vault.transferMargin(0, 4, moved, sender=alice)
    vault.withdraw(4, moved, sender=alice)
    assert vault.collateral(alice, 4) == 0
    assert vault.collateral(alice, 0) == amount - moved
    assert token.balanceOf(alice) == moved
    assert_fully_backed(vault, token, [(alice, 0), (alice, 4)], 1)


def test_18_decimals_largest_amount_fits_and_one_more_is_too_large(deployer, alice):
    token, vault = fresh_vault(deployer, 18)
    largest = INT128_MAX // scale_of(18)  # == int128.max: the ledger slot's capacity
    mint_approve(token, vault, alice, largest + 1)
    before = ledger(vault, token, [alice], [(alice, 0)])
    with expect_revert(vault.AmountTooLarge, amount=largest + 1):
        vault.deposit(0, largest + 1, sender=alice)
    assert ledger(vault, token, [alice], [(alice, 0)]) == before

    vault.deposit(0, largest, sender=alice)
    assert vault.collateral(alice, 0) == INT128_MAX
    assert token.balanceOf(alice) == 1


def test_18_decimals_deposit_overflowing_the_slot_reverts_amount_too_large(deployer, alice):
    """Each amount fits int128 on its own but the sum does not fit the account's int128 slot: the
    deposit is bad input (IVault.AmountTooLarge: "an amount does not fit the ledger's 128-bit slots"),
    so it must revert with that named error and change nothing (not a bare arithmetic Panic)."""
    token, vault = fresh_vault(deployer, 18)
    first, second = INT128_MAX, 1
    mint_approve(token, vault, alice, first + second)
    vault.deposit(0, first, sender=alice)
    before = ledger(vault, token, [alice], [(alice, 0)])
    with expect_revert(vault.AmountTooLarge, amount=second):
        vault.deposit(0, second, sender=alice)
    assert ledger(vault, token, [alice], [(alice, 0)]) == before


# ---------------------------------------------------------------------------- 0 decimals


def test_0_decimals_scale_is_wad(deployer):
    _, vault = fresh_vault(deployer, 0)
    assert vault.tokenScale() == scale_of(0) == WAD
    assert vault.toWad(1) == WAD
    assert vault.toWad(12_345) == 12_345 * WAD


def test_0_decimals_deposit_and_withdraw_scale_whole_tokens(deployer, alice, bob):
    token, vault = fresh_vault(deployer, 0)
    mint_approve(token, vault, alice, 7)

    tx = vault.deposit(0, 7, sender=alice)
    log = only_event(tx, vault.Deposit)
    assert (log.amount, log.amountWad) == (7, 7 * scale_of(0))
    assert vault.collateral(alice, 0) == 7 * WAD

    mint_approve(token, vault, bob, 1)
    vault.depositFor(alice, 9, 1, sender=bob)
    assert vault.collateral(alice, 9) == WAD

    tx = vault.withdraw(0, 3, sender=alice)
    log = only_event(tx, vault.Withdraw)
    assert (log.amount, log.amountWad) == (3, 3 * WAD)
    assert vault.collateral(alice, 0) == 4 * WAD
    assert token.balanceOf(alice) == 3
    assert token.balanceOf(vault) == 4 + 1
    assert_fully_backed(vault, token, [(alice, 0), (alice, 9)], WAD)


def test_0_decimals_fractional_margin_is_not_withdrawable(deployer, alice):
    """WAD margin that is not a whole token unit stays in the ledger: a withdrawal pays whole units
    only, so the user receives floor(collateral / 10^18) at most (rounding favours the protocol)."""
    token, vault = fresh_vault(deployer, 0)
    mint_approve(token, vault, alice, 2)
    vault.deposit(0, 2, sender=alice)
    moved = WAD // 2 + 1  # 0.5 token + 1 wei
    vault.transferMargin(0, 1, moved, sender=alice)
    sub0, sub1 = 2 * WAD - moved, moved
    assert vault.collateral(alice, 0) == sub0
    assert vault.collateral(alice, 1) == sub1

    # Sub-account 1 holds 0.5 token + 1 wei: not a single whole token.
    before = ledger(vault, token, [alice], [(alice, 0), (alice, 1)])
    with expect_revert(vault.InsufficientCollateral, owner=alice, subaccount=1, collateral=sub1, amountWad=WAD):
        vault.withdraw(1, 1, sender=alice)
    assert ledger(vault, token, [alice], [(alice, 0), (alice, 1)]) == before

    # Sub-account 0 holds 1.5 tokens - 1 wei: exactly floor(...) = 1 token can leave.
    withdrawable = sub0 // scale_of(0)
    assert withdrawable == 1
    vault.withdraw(0, withdrawable, sender=alice)
    assert token.balanceOf(alice) == 1
    assert vault.collateral(alice, 0) == sub0 - WAD
    before = ledger(vault, token, [alice], [(alice, 0), (alice, 1)])
    with expect_revert(vault.InsufficientCollateral, owner=alice, subaccount=0, collateral=sub0 - WAD, amountWad=WAD):
        vault.withdraw(0, 1, sender=alice)
    assert ledger(vault, token, [alice], [(alice, 0), (alice, 1)]) == before

    # Together the two fractions make one whole token again, which can then be withdrawn.
    vault.transferMargin(1, 0, sub1, sender=alice)
    assert vault.collateral(alice, 0) == WAD
    vault.withdraw(0, 1, sender=alice)
    assert vault.collateral(alice, 0) == 0 and vault.collateral(alice, 1) == 0
    assert token.balanceOf(alice) == 2 and token.balanceOf(vault) == 0


def test_0_decimals_largest_amount_fits_and_one_more_is_too_large(deployer, alice):
    token, vault = fresh_vault(deployer, 0)
    largest = INT128_MAX // scale_of(0)
    mint_approve(token, vault, alice, largest + 1)
    before = ledger(vault, token, [alice], [(alice, 0)])
    with expect_revert(vault.AmountTooLarge, amount=largest + 1):
        vault.deposit(0, largest + 1, sender=alice)
    with expect_revert(vault.AmountTooLarge, amount=largest + 1):
        vault.withdraw(0, largest + 1, sender=alice)
    assert ledger(vault, token, [alice], [(alice, 0)]) == before

    vault.deposit(0, largest, sender=alice)
    assert vault.collateral(alice, 0) == largest * WAD
    vault.withdraw(0, largest, sender=alice)
    assert vault.collateral(alice, 0) == 0
    assert token.balanceOf(alice) == largest + 1


@pytest.mark.parametrize("decimals", [1, 8, 17])
def test_any_decimals_round_trip_is_exact(deployer, alice, decimals):
    token, vault = fresh_vault(deployer, decimals)
    scale = scale_of(decimals)
    assert vault.tokenScale() == scale
    amount = 3 * 10**decimals + 1  # 3 tokens and the smallest unit
    mint_approve(token, vault, alice, amount)
    vault.deposit(0, amount, sender=alice)
    assert vault.collateral(alice, 0) == amount * scale
    vault.transferMargin(0, 1, scale, sender=alice)  # exactly one token unit, in WAD
    vault.withdraw(1, 1, sender=alice)
    vault.withdraw(0, amount - 1, sender=alice)
    assert vault.collateral(alice, 0) == 0 and vault.collateral(alice, 1) == 0
    assert token.balanceOf(alice) == amount
    assert token.balanceOf(vault) == 0


# ---------------------------------------------------------------------------- constructor


@pytest.mark.parametrize("decimals", [19, 255])
def test_decimals_above_18_rejected(deployer, chain, decimals):
    token = project.MockERC20.deploy("Too precise", "TP", decimals, sender=deployer)
    would_be = create_address(deployer, deployer.nonce)
    with expect_revert(project.Vault.UnsupportedDecimals, decimals=decimals):
        project.Vault.deploy(token, deployer, sender=deployer)
    assert len(chain.provider.get_code(would_be)) == 0


def test_zero_collateral_address_rejected(deployer, chain):
    would_be = create_address(deployer, deployer.nonce)
    with expect_revert(project.Vault.ZeroAddress):
        project.Vault.deploy(ZERO, deployer, sender=deployer)
    assert len(chain.provider.get_code(would_be)) == 0


def test_fresh_vault_initial_state(deployer):
    token, vault = fresh_vault(deployer, 0)
    assert vault.collateralToken() == token.address
    assert vault.owner() == deployer.address
    assert vault.guardian() == deployer.address
    assert vault.clearingHouse() == ZERO
    assert vault.pauseLevel() == 0
    assert vault.poolBalance() == 0 and vault.insuranceFund() == 0


# ---------------------------------------------------------------------------- fee-on-transfer


def fee_vault(deployer, fee_bps: int):
    token = project.MockFeeOnTransferToken.deploy(fee_bps, sender=deployer)
    vault = project.Vault.deploy(token, deployer, sender=deployer)
    return token, vault


FEE_ENTRIES = {
    "deposit": lambda vault, alice, bob, amount: vault.deposit(0, amount, sender=alice),
    "depositFor": lambda vault, alice, bob, amount: vault.depositFor(bob, 3, amount, sender=alice),
    "fundPool": lambda vault, alice, bob, amount: vault.fundPool(amount, sender=alice),
    "fundInsurance": lambda vault, alice, bob, amount: vault.fundInsurance(amount, sender=alice),
}


@pytest.mark.parametrize(
    "entry,fee_bps,amount",
    [
        ("deposit", 100, 1_000 * 10**6),  # 1 %
        ("deposit", 1, 10_000),  # smallest fee: 1 unit short
        ("deposit", 5_000, 3),  # half of 3 units, rounded down
        ("depositFor", 100, 1_000 * 10**6),
        ("fundPool", 100, 1_000 * 10**6),
        ("fundInsurance", 1, 10_000),
    ],
)
def test_fee_on_transfer_rejected(deployer, alice, bob, entry, fee_bps, amount):
    token, vault = fee_vault(deployer, fee_bps)
    mint_approve(token, vault, alice, amount)
    fee = amount * fee_bps // 10_000  # MockFeeOnTransferToken burns floor(value * feeBps / 1e4)
    assert fee > 0
    accounts = [(alice, 0), (bob, 3)]
    before = ledger(vault, token, [alice, bob], accounts)
    with expect_revert(vault.TransferAmountMismatch, expected=amount, received=amount - fee):
        FEE_ENTRIES[entry](vault, alice, bob, amount)
    assert ledger(vault, token, [alice, bob], accounts) == before
    assert token.balanceOf(alice) == amount
    assert token.totalSupply() == amount  # nothing burnt either


def test_fee_token_credits_balance_delta_when_fee_rounds_to_zero(deployer, alice):
    # 1 % of 99 units rounds down to 0: the vault receives exactly what was asked and credits it.
    token, vault = fee_vault(deployer, 100)
    amount = 99
    assert amount * 100 // 10_000 == 0
    mint_approve(token, vault, alice, amount)
    vault.deposit(0, amount, sender=alice)
    assert token.balanceOf(vault) == amount
    assert vault.collateral(alice, 0) == amount * scale_of(6)
    assert_fully_backed(vault, token, [(alice, 0)], scale_of(6))


def test_zero_fee_token_behaves_like_plain_collateral(deployer, alice):
    token, vault = fee_vault(deployer, 0)
    amount = 250 * 10**6
    mint_approve(token, vault, alice, amount)
    vault.deposit(0, amount, sender=alice)
    assert vault.collateral(alice, 0) == amount * scale_of(6)
    vault.withdraw(0, amount, sender=alice)
    assert token.balanceOf(alice) == amount
    assert vault.collateral(alice, 0) == 0


# ---------------------------------------------------------------------------- reentrancy


R_SCALE = scale_of(6)  # MockReentrantToken has 6 decimals
R_UNIT = 10**6


@pytest.fixture
def reentrant(deployer, alice):
    """(token, vault) over MockReentrantToken. The token contract itself owns 100 tokens of collateral
    in its sub-account 0, so every reentrant call below would be valid on its own (only the guard
    stops it)."""
    token = project.MockReentrantToken.deploy(sender=deployer)
    vault = project.Vault.deploy(token, deployer, sender=deployer)
    mint_approve(token, vault, alice, 10_000 * R_UNIT)
    vault.depositFor(token, 0, 100 * R_UNIT, sender=alice)
    assert vault.collateral(token, 0) == 100 * R_UNIT * R_SCALE
    return token, vault


def inner_call(vault, token, name):
    """Calldata of a call the token makes back into the vault (msg.sender = the token)."""
    calls = {
        "deposit": (vault.deposit, (0, R_UNIT)),
        "depositFor": (vault.depositFor, (token.address, 0, R_UNIT)),
        "withdraw": (vault.withdraw, (0, R_UNIT)),
        "withdrawFor": (vault.withdrawFor, (token.address, 0, R_UNIT)),
        "transferMargin": (vault.transferMargin, (0, 1, R_UNIT * R_SCALE)),
        "fundPool": (vault.fundPool, (R_UNIT,)),
        "fundInsurance": (vault.fundInsurance, (R_UNIT,)),
    }
    method, args = calls[name]
    return method.encode_input(*args)


def assert_inner_call_blocked(token):
    assert token.armed() is False  # the hook fired
    assert token.lastCallSucceeded() is False
    assert bytes(token.lastRevertData()) == REENTRANT_SELECTOR


def reentrant_accounts(token, alice):
    return [(alice, 0), (alice, 1), (token, 0), (token, 1)]


@pytest.mark.parametrize("inner", ["deposit", "withdraw", "withdrawFor", "transferMargin", "fundPool"])
def test_reentrant_call_during_deposit_is_blocked(reentrant, alice, inner):
    token, vault = reentrant
    token.arm(vault, inner_call(vault, token, inner), sender=alice)
    alice_tokens = token.balanceOf(alice)
    vault_tokens = token.balanceOf(vault)

    vault.deposit(0, 500 * R_UNIT, sender=alice)

    assert_inner_call_blocked(token)
    # The outer deposit went through exactly; the reentrant call left no trace.
    assert vault.collateral(alice, 0) == 500 * R_UNIT * R_SCALE
    assert vault.collateral(token, 0) == 100 * R_UNIT * R_SCALE
    assert vault.collateral(token, 1) == 0
    assert vault.poolBalance() == 0 and vault.insuranceFund() == 0
    assert token.balanceOf(alice) == alice_tokens - 500 * R_UNIT
    assert token.balanceOf(vault) == vault_tokens + 500 * R_UNIT
    assert token.balanceOf(token) == 0
    assert_fully_backed(vault, token, reentrant_accounts(token, alice), R_SCALE)


@pytest.mark.parametrize("inner", ["withdraw", "deposit", "transferMargin"])
def test_reentrant_call_during_withdraw_is_blocked(reentrant, alice, inner):
    token, vault = reentrant
    vault.deposit(0, 500 * R_UNIT, sender=alice)
    token.arm(vault, inner_call(vault, token, inner), sender=alice)
    alice_tokens = token.balanceOf(alice)
    vault_tokens = token.balanceOf(vault)

    vault.withdraw(0, 200 * R_UNIT, sender=alice)

    assert_inner_call_blocked(token)
    assert vault.collateral(alice, 0) == 300 * R_UNIT * R_SCALE
    assert vault.collateral(token, 0) == 100 * R_UNIT * R_SCALE
    assert vault.collateral(token, 1) == 0
    assert vault.poolBalance() == 0 and vault.insuranceFund() == 0
    assert token.balanceOf(alice) == alice_tokens + 200 * R_UNIT
    assert token.balanceOf(vault) == vault_tokens - 200 * R_UNIT
    assert token.balanceOf(token) == 0
    assert_fully_backed(vault, token, reentrant_accounts(token, alice), R_SCALE)


def test_reentrant_calls_during_fundPool_and_fundInsurance_are_blocked(reentrant, alice):
    token, vault = reentrant
    token.arm(vault, inner_call(vault, token, "withdraw"), sender=alice)
    vault.fundPool(40 * R_UNIT, sender=alice)
    assert_inner_call_blocked(token)
    token.arm(vault, inner_call(vault, token, "depositFor"), sender=alice)
    vault.fundInsurance(7 * R_UNIT, sender=alice)
    assert_inner_call_blocked(token)
    assert vault.poolBalance() == 40 * R_UNIT * R_SCALE
    assert vault.insuranceFund() == 7 * R_UNIT * R_SCALE
    assert vault.collateral(token, 0) == 100 * R_UNIT * R_SCALE
    assert token.balanceOf(token) == 0
    assert_fully_backed(vault, token, reentrant_accounts(token, alice), R_SCALE)


def test_reentrant_hook_reaches_the_vault_control(reentrant, alice):
    """Control for the tests above: an unguarded view called from the same hook succeeds, so the
    failures above come from the reentrancy guard and not from the hook plumbing."""
    token, vault = reentrant
    token.arm(vault, vault.collateral.encode_input(token.address, 0), sender=alice)
    vault.deposit(0, R_UNIT, sender=alice)
    assert token.armed() is False
    assert token.lastCallSucceeded() is True
    (returned,) = abi_decode(["int256"], bytes(token.lastRevertData()))
    assert returned == 100 * R_UNIT * R_SCALE


def test_reentrant_setOperator_during_deposit_is_blocked(reentrant, alice, bob):
    """docs/specification.md#9-safety-and-bad-input: state-changing entry points are guarded. setOperator changes
    state, so a call into it from inside a guarded deposit must hit the guard like every other entry point."""
    token, vault = reentrant
    token.arm(vault, vault.setOperator.encode_input(bob.address, True), sender=alice)
    vault.deposit(0, R_UNIT, sender=alice)
    assert_inner_call_blocked(token)
    assert vault.isOperator(token, bob) is False
    assert vault.collateral(alice, 0) == R_UNIT * R_SCALE
