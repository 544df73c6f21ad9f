"""Hundred Finance / Sonne Finance (2023, 2024), Lendf.Me (April 2020), Balancer STA pools (June 2020).

What happened:
- Hundred and Sonne (Compound forks): in a market with (almost) no supply, the attacker minted a few wei of
  shares, then *donated* underlying straight to the market contract. The exchange rate was computed from the
  contract's token balance, so one share became worth the whole donation, and rounding in redemptions and
  borrows let the attacker take other users' assets (~$7M and ~$20M).
- Lendf.Me: imBTC is an ERC-777 token; its transfer hook called back into Lendf.Me in the middle of
  `supply`, after the balance had been read and before it was written, so each nested supply was credited
  on top of the stale balance (~$25M).
- Balancer: STA burned 1 % on every transfer (fee-on-transfer); the pools credited the amount requested, not
  the amount received, and were drained by repeated swaps (~$500K).

The shapes: (1) accounting read from `balanceOf`, so a donation or rounding moves share prices; (2) a
token callback re-entering a half-updated state; (3) crediting the requested, not the received, amount.

What stops it in vPerp (docs/specification.md#9-safety-and-bad-input; docs/design.md "Safety", docs/pool.md):
- Internal accounting: the Vault's ledger (collateral, `poolBalance`, `insuranceFund`) and the pool's NAV
  never read `balanceOf`; tokens sent to the Vault or the pool without a call change no figure, and no one
  can withdraw them. The only way to add to the pool's value is an explicit grant, and the pool's virtual
  shares (offset 6) make a first-depositor inflation cost the attacker; a deposit worth zero shares reverts
  (`ZeroShares`) instead of rounding a victim to nothing.
- `ReentrancyGuardTransient` on every state-changing entry point of the Vault, the ClearingHouse, the
  engine and the pool; a token that calls back mid-transfer gets `ReentrancyGuardReentrantCall`, while the
  same call outside a transfer would succeed.
- Deposits credit, pull, then compare the balance delta: `TransferAmountMismatch(expected, received)` for
  a fee-on-transfer token, on every way in.

Expected figures: ERC-4626 virtual-share formulas (OpenZeppelin, offset 6), the token's documented fee
(floor(value x feeBps / 1e4)), and the ledgers before the call.
"""
from __future__ import annotations

import dataclasses

import pytest
from eth_utils import keccak

from helpers.incidents import ETH, SCALE, WAD, assert_backed, expect_revert, funding_off, read, trade
from vperp import deploy
from vperp.config import lagging_peg_config

REENTRANT = keccak(text="ReentrancyGuardReentrantCall()")[:4]
OFFSET = 10**6


def ledger(system, owners):
    vault, pool, ch = system.vault, system.pool, system.clearing_house
    calls = dict(pool=(vault, "poolBalance"), ins=(vault, "insuranceFund"), assets=(pool, "totalAssets"),
                 supply=(pool, "totalSupply"), nav=(pool, "navWad"), price=(pool, "convertToAssets", 10**12),
                 traders=(ch, "tradersPnl"))
    for i, o in enumerate(owners):
        calls[f"c{i}"] = (vault, "collateral", o.address, 0)
        calls[f"v{i}"] = (vault, "accountValue", o.address, 0)
        calls[f"f{i}"] = (vault, "freeCollateral", o.address, 0)
        calls[f"s{i}"] = (pool, "balanceOf", o.address)
    return read(system, **calls)


def test_tokens_sent_without_a_call_change_no_figure_and_belong_to_no_one(system, vault, pool, usdc, ch, deployer,
                                                                          alice, bob, carol):
    funding_off(system)
    system.fund(alice, 50_000)
    trade(ch, alice, ETH, 30 * WAD)
    usdc.mint(bob, 1_000_000 * 10**6, sender=bob)
    usdc.approve(pool, 1_000_000 * 10**6, sender=bob)
    pool.deposit(1_000_000 * 10**6, bob, sender=bob)
    owners = [alice, bob, deployer]
    before = ledger(system, owners)
    assert_backed(system, owners)

    gift = 5_000_000 * 10**6
    usdc.mint(carol, 2 * gift, sender=carol)
    usdc.transfer(vault, gift, sender=carol)  # the Hundred/Sonne donation, to the Vault ...
    usdc.transfer(pool, gift, sender=carol)  # ... and to the pool contract
    assert ledger(system, owners) == before  # not one figure moved: no balanceOf in the accounting
    assert_backed(system, owners, surplus=gift * SCALE)  # the Vault holds the gift outside the ledger

    # Nobody can take it: alice closes and withdraws exactly her ledger balance, not a unit more.
    ch.closePosition(0, ETH, 0, 2**64, sender=alice)
    coll = vault.collateral(alice, 0)
    units = coll // SCALE
    with expect_revert(vault.InsufficientCollateral, owner=alice, subaccount=0, collateral=coll,
                       amountWad=(units + 1) * SCALE):
        vault.withdraw(0, units + 1, sender=alice)
    vault.withdraw(0, units, sender=alice)
    assert usdc.balanceOf(alice) == units
    assert usdc.balanceOf(pool) == gift  # stranded in the pool contract, which never reads it
    assert_backed(system, owners, surplus=gift * SCALE)


@pytest.fixture(scope="module")
def empty_pool(deployer):
    """A deployment whose pool was never seeded: the setting of a first-depositor attack."""
    return deploy(deployer, dataclasses.replace(lagging_peg_config(), pool_seed=0, insurance_seed=0))


def test_first_depositor_cannot_inflate_the_share_price_by_donation(empty_pool, accounts):
    system = empty_pool
    pool, vault, usdc = system.pool, system.vault, system.collateral
    attacker, victim = accounts[6], accounts[7]
    assert pool.totalSupply() == 0 and pool.totalAssets() == 0
    usdc.mint(attacker, 10**13, sender=attacker)
    usdc.approve(pool, 1, sender=attacker)
    pool.deposit(1, attacker, sender=attacker)  # one token unit
    assert pool.balanceOf(attacker) == 1 * (0 + OFFSET) // (0 + 1)

    # Hundred/Sonne's step 2, a raw transfer: nothing happens to the share price.
    usdc.transfer(vault, 10**12, sender=attacker)
    usdc.transfer(pool, 10**12, sender=attacker)
    assert pool.totalAssets() == 1
    v = 100_000 * 10**6
    usdc.mint(victim, v, sender=victim)
    usdc.approve(pool, v, sender=victim)
    pool.deposit(v, victim, sender=victim)
    assert pool.balanceOf(victim) == v * (OFFSET + OFFSET) // (1 + 1)  # the fair price: 1e6 shares per unit
    assert pool.previewRedeem(pool.balanceOf(victim)) == v

    assert pool.previewRedeem(pool.balanceOf(attacker)) == 1


def test_a_first_depositor_grant_costs_the_attacker_and_cannot_round_a_deposit_to_nothing(empty_pool, accounts):
    """The one way to raise the NAV is an explicit grant (`Vault.fundPool`): with virtual shares it is
    shared with the 1e6 virtual shares, and a deposit that would round to zero shares is refused."""
    system = empty_pool
    pool, vault, usdc = system.pool, system.vault, system.collateral
    attacker, victim = accounts[6], accounts[7]
    usdc.mint(attacker, 10**13, sender=attacker)
    usdc.approve(pool, 1, sender=attacker)
    pool.deposit(1, attacker, sender=attacker)
    grant = 10**12  # a million tokens
    usdc.approve(vault, grant, sender=attacker)
    vault.fundPool(grant, sender=attacker)
    supply, total = pool.totalSupply(), pool.totalAssets()
    assert (supply, total) == (OFFSET, 1 + grant)
    usdc.mint(victim, 10**12, sender=victim)
    usdc.approve(pool, 10**12, sender=victim)
    assert 1 * (supply + OFFSET) // (total + 1) == 0
    bal = usdc.balanceOf(vault)
    with expect_revert(pool.ZeroShares):
        pool.deposit(1, victim, sender=victim)
    assert (pool.totalSupply(), pool.totalAssets(), usdc.balanceOf(vault), pool.balanceOf(victim)) == (
        supply, total, bal, 0)
    v = 100_000 * 10**6
    pool.deposit(v, victim, sender=victim)
    shares = v * (supply + OFFSET) // (total + 1)
    assert pool.balanceOf(victim) == shares > 0
    supply, total = supply + shares, total + v
    value = pool.previewRedeem(shares)
    assert value == shares * (total + 1) // (supply + OFFSET)
    assert v - value <= (total + 1) // (supply + OFFSET) + 1  # at most about one share's worth: ~0.5 USDC
    att = pool.previewRedeem(OFFSET)
    assert att == OFFSET * (total + 1) // (supply + OFFSET)
    assert 1 + grant - att > grant * 4 // 10  # the attacker gave over 40 % of its grant to the virtual shares


@pytest.fixture(scope="module")
def reentrant_system(project, deployer, accounts, batcher):
    """A whole vPerp deployment whose collateral is MockReentrantToken (an ERC-777-like hook on transfer),
    with the pool funded so trades are possible, and the token contract itself holding margin so every
    call it makes would be valid on its own."""
    token = project.MockReentrantToken.deploy(sender=deployer)
    system = deploy(deployer, dataclasses.replace(lagging_peg_config(), collateral=token.address, pool_seed=0, insurance_seed=0))
    system.extra["batcher"] = batcher  # a plain multicall: it reads any deployment
    alice = accounts[1]
    token.mint(alice, 10**15, sender=alice)
    token.approve(system.vault, 2**255, sender=alice)
    token.approve(system.pool, 2**255, sender=alice)
    system.vault.fundPool(10_000_000 * 10**6, sender=alice)
    system.vault.depositFor(token, 0, 100_000 * 10**6, sender=alice)
    return system, token


def test_a_reentering_token_cannot_act_in_the_middle_of_a_call(reentrant_system, accounts):
    system, token = reentrant_system
    vault, ch, pool = system.vault, system.clearing_house, system.pool
    alice, bob = accounts[1], accounts[2]
    inner = ch.openPosition.encode_input(0, ETH, WAD, 2**255, 2**64)
    # Control: outside any vPerp call (a plain transfer) the token's call succeeds: it is a valid trade.
    token.arm(ch, inner, sender=alice)
    token.transfer(bob, 1, sender=alice)
    assert token.lastCallSucceeded() is True and ch.position(token, 0, ETH)[0] == WAD
    size_after_control = ch.position(token, 0, ETH)[0]

    def blocked(outer, inner_target, inner_data):
        token.arm(inner_target, inner_data, sender=alice)
        before = (vault.collateral(token, 0), ch.position(token, 0, ETH)[0], vault.poolBalance(),
                  pool.totalSupply())
        outer()
        assert token.armed() is False and token.lastCallSucceeded() is False
        assert bytes(token.lastRevertData())[:4] == REENTRANT
        return before

    # Lendf.Me's shape: a call back in during the Vault's token pull (deposit) and push (withdraw).
    b = blocked(lambda: vault.deposit(0, 1_000 * 10**6, sender=alice), vault,
                vault.withdraw.encode_input(0, 10 * 10**6))
    assert vault.collateral(token, 0) == b[0]  # the nested withdraw left no trace
    assert vault.collateral(alice, 0) == 1_000 * 10**6 * SCALE
    b = blocked(lambda: vault.withdraw(0, 500 * 10**6, sender=alice), vault,
                vault.deposit.encode_input(0, 10**6))  # a nested deposit mid-withdraw
    assert vault.collateral(alice, 0) == 500 * 10**6 * SCALE and vault.collateral(token, 0) == b[0]
    # A trade through the ClearingHouse in the middle of a Vault withdrawal: the ClearingHouse's own guard
    # is not held, but the trade settles through the Vault's module hook `settleTrade`, which is behind
    # the Vault's guard: the nested trade is refused and nothing of it remains.
    coll_token = vault.collateral(token, 0)
    token.arm(ch, inner, sender=alice)
    vault.withdraw(0, 100 * 10**6, sender=alice)
    assert token.armed() is False and token.lastCallSucceeded() is False
    assert bytes(token.lastRevertData())[:4] == REENTRANT
    assert vault.collateral(alice, 0) == 400 * 10**6 * SCALE
    assert ch.position(token, 0, ETH)[0] == size_after_control and vault.collateral(token, 0) == coll_token
    assert_backed(system, [alice, token])
    # The pool: a nested deposit during an LP deposit's token pull.
    b = blocked(lambda: pool.deposit(1_000 * 10**6, alice, sender=alice), pool,
                pool.deposit.encode_input(10**6, token.address))
    assert pool.balanceOf(token) == 0


@pytest.fixture(scope="module")
def fee_system(project, deployer):
    token = project.MockFeeOnTransferToken.deploy(100, sender=deployer)  # 1 % burnt on every transfer
    return deploy(deployer, dataclasses.replace(lagging_peg_config(), collateral=token.address, pool_seed=0, insurance_seed=0)), token


def test_fee_on_transfer_collateral_is_rejected_on_every_way_in(fee_system, accounts):
    system, token = fee_system
    vault, pool = system.vault, system.pool
    alice, bob = accounts[1], accounts[2]
    amount = 10_000 * 10**6
    fee = amount * 100 // 10_000
    token.mint(alice, 10 * amount, sender=alice)
    token.approve(vault, 2**255, sender=alice)
    token.approve(pool, 2**255, sender=alice)

    def state():
        return (token.balanceOf(alice), token.balanceOf(vault), token.balanceOf(pool), vault.collateral(alice, 0),
                vault.collateral(bob, 0), vault.poolBalance(), vault.insuranceFund(), pool.totalSupply())

    before = state()
    for call in (lambda: vault.deposit(0, amount, sender=alice),
                 lambda: vault.depositFor(bob, 0, amount, sender=alice),
                 lambda: vault.fundPool(amount, sender=alice),
                 lambda: vault.fundInsurance(amount, sender=alice)):
        with expect_revert(vault.TransferAmountMismatch, expected=amount, received=amount - fee):
            call()
        assert state() == before
    # Through the pool: the LP's tokens go straight to the Vault and arrive short by the fee; the pool checks
    # what arrived and the whole deposit reverts, nothing credited or minted.
    with expect_revert(pool.TransferAmountMismatch, expected=amount, received=amount - fee):
        pool.deposit(amount, alice, sender=alice)
    assert state() == before
