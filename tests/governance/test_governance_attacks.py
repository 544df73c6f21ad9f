"""Governance under attack (review of the first RiskGovernor, 2026-12-05): a compromised guardian's instant
powers and vetoes, and stale proposals. Each attack as the review ran it, asserting what the fix guarantees:
the guardian cannot veto its own removal or an unpause and the admin removes it at once; imr and the band wait
for the timelock; a proposal that an instant change has overtaken cannot execute; the deployer wires the
breaker, so an admin that is only an address (a multisig) need not sign at deployment."""
from __future__ import annotations

import pytest

from helpers.governance import (INSTANT, PENDING, TIMELOCK, deploy_governance, deposit, encode, fund_actors,
                                mp_tuple, propose, refresh_oracles)
from helpers.governance import admin, guardian  # noqa: F401 - shared module fixtures
from helpers.trading import ETH_ID, MAX_UINT, WAD, deadline, expect_revert, trade  # noqa: F401

ETH = ETH_ID


@pytest.fixture(scope="module", autouse=True)
def g(system, deployer, admin, guardian, accounts, alice, bob, carol, dave, erin):
    fund_actors(system, accounts)
    return deploy_governance(system, deployer, admin, guardian)


def test_a_compromised_guardian_cannot_freeze_the_protocol(chain, system, g, alice, bob):
    """The review's attack: the guardian pauses at NO_TRADING and cancels the admin's unpause and its own
    rotation, round after round, so positions can never be closed. Now it cannot cancel those
    (GuardianCannotCancel), the admin removes it from the governor and the Vault at once, and the unpause
    executes after the delay: bob closes."""
    ch, vault, gov = system.clearing_house, system.vault, g.governor
    deposit(system, bob, 50_000)
    trade(ch, bob, ETH, 5 * WAD)
    gov.act(vault, encode(vault, "setPauseLevel", 2), sender=g.guardian)
    with expect_revert(ch.Paused):
        ch.closePosition(0, ETH, 0, deadline(), sender=bob)
    unpause, eta, _ = propose(g, vault, encode(vault, "setPauseLevel", 0))
    rotate, _, _ = propose(g, gov, encode(gov, "setGuardian", alice.address))
    rotate_vault, _, _ = propose(g, vault, encode(vault, "setGuardian", alice.address))
    for pid in (unpause, rotate, rotate_vault):
        with expect_revert(gov.GuardianCannotCancel, proposalId=pid):
            gov.cancel(pid, sender=g.guardian)
        assert gov.proposal(pid).state == PENDING
    # Removing a guardian only takes a key's power away: the admin does it at once, on both contracts.
    for target, contract in ((gov, gov), (vault, vault)):
        data = encode(contract, "setGuardian", "0x" + "00" * 20)
        assert gov.classify(target, data) == INSTANT
        gov.act(target, data, sender=g.admin)
    assert gov.guardian() == vault.guardian() == "0x" + "00" * 20
    with expect_revert(gov.NotGuardianOrAdmin, caller=g.guardian.address):
        gov.act(vault, encode(vault, "setPauseLevel", 3), sender=g.guardian)
    chain.pending_timestamp = eta
    refresh_oracles(system)
    gov.execute(unpause, sender=bob)
    assert vault.pauseLevel() == 0
    ch.closePosition(0, ETH, 0, deadline(), sender=bob)
    assert ch.position(bob, 0, ETH)[0] == 0


def test_imr_and_the_band_are_not_instant(chain, system, g, bob):
    """The review locked every trader's collateral with an instant imr of 100 % and froze LP redemptions and
    backstops with an instant 0.5 % band. Both now wait for the timelock (NotRiskReducing at once, nothing
    changes) and bob's free collateral stays withdrawable."""
    ch, vault, gov = system.clearing_house, system.vault, g.governor
    deposit(system, bob, 10_000)
    trade(ch, bob, ETH, 10 * WAD)
    p, share = ch.marketParams(ETH), ch.insuranceFeeShare(ETH)
    for change in (dict(imr=WAD), dict(maxSpread=5 * 10**15)):
        data = encode(ch, "setMarketParams", ETH, mp_tuple(p, **change), share)
        assert gov.classify(ch, data) == TIMELOCK
        with expect_revert(gov.NotRiskReducing):
            gov.act(ch, data, sender=g.guardian)
        assert ch.marketParams(ETH) == p
    vault.withdraw(0, system.units(1), sender=bob)


def test_a_stale_unpause_cannot_undo_a_later_emergency_pause(chain, system, g, bob):
    """The review: the admin proposes an unpause (1 -> 0); a new incident makes the guardian pause at 3; at the
    old eta anyone executed the stale proposal and the protocol was unpaused mid-incident. Now the execution
    is refused (StaleProposal) and the pause holds; a fresh proposal against level 3 can execute."""
    vault, gov = system.vault, g.governor
    gov.act(vault, encode(vault, "setPauseLevel", 1), sender=g.guardian)
    pid, eta, _ = propose(g, vault, encode(vault, "setPauseLevel", 0))
    chain.pending_timestamp = eta - 3600
    gov.act(vault, encode(vault, "setPauseLevel", 3), sender=g.guardian)  # emergency
    chain.pending_timestamp = eta
    with expect_revert(gov.StaleProposal, proposalId=pid):
        gov.execute(pid, sender=bob)
    assert vault.pauseLevel() == 3 and gov.proposal(pid).state == PENDING
    gov.cancel(pid, sender=g.admin)
    fresh, eta2, _ = propose(g, vault, encode(vault, "setPauseLevel", 0))
    chain.pending_timestamp = eta2
    gov.execute(fresh, sender=bob)
    assert vault.pauseLevel() == 0


def test_a_stale_market_proposal_cannot_undo_a_later_instant_tightening(chain, system, g, bob):
    """The review: a full-struct setMarketParams proposal (only the taker fee changes) carried every field as
    at proposal, and executing it silently undid the guardian's later cap cut. Now it is refused."""
    ch, gov = system.clearing_house, g.governor
    p, share = ch.marketParams(ETH), ch.insuranceFeeShare(ETH)
    pid, eta, _ = propose(g, ch, encode(ch, "setMarketParams", ETH, mp_tuple(p, takerFee=p.takerFee + 1), share))
    tight = mp_tuple(p, maxOpenInterest=p.maxOpenInterest // 10)
    gov.act(ch, encode(ch, "setMarketParams", ETH, tight, share), sender=g.guardian)
    chain.pending_timestamp = eta
    refresh_oracles(system)
    with expect_revert(gov.StaleProposal, proposalId=pid):
        gov.execute(pid, sender=bob)
    assert ch.marketParams(ETH).maxOpenInterest == p.maxOpenInterest // 10


def test_an_admin_that_is_only_an_address_needs_no_signature_at_deployment(system, deployer, alice, guardian):
    """The review: deploying with an admin that cannot sign failed half way (setBreaker by the deployer reverted
    NotAdmin). The deployer may now wire the breaker once; the admin is alice's address and never signs."""
    from vperp import deploy
    from vperp.config import lagging_peg_config
    from vperp.governance import deploy_governance as dg
    fresh = deploy(deployer, lagging_peg_config())
    gov = dg(fresh, deployer, alice.address, guardian)
    assert gov.governor.breaker() == gov.breaker.address and fresh.vault.owner() == gov.governor.address
    with expect_revert(gov.governor.BreakerAlreadySet, breaker=gov.breaker.address):
        gov.governor.setBreaker(deployer, sender=deployer)  # once only


def test_a_withdraw_only_pause_still_ends_in_a_liquidation_race(chain, system, g, alice, carol):
    """Left as a property (documented in docs/governance.md): level 3 blocks deposits, closes and liquidations;
    a trader whose margin eroded meanwhile can be kicked in the block the unpause executes (permissionless, at
    a known time), before a top-up lands. The runbook unpauses to level 1 first (deposits and reduces allowed)."""
    ch, vault, engine, gov = system.clearing_house, system.vault, system.liquidation, g.governor
    deposit(system, alice, 3100)
    trade(ch, alice, ETH, 10 * WAD)
    gov.act(vault, encode(vault, "setPauseLevel", 3), sender=g.guardian)
    system.markets["ETH"].oracle.updateAnswer(2800 * 10**8, sender=system.deployer)
    with expect_revert(vault.Paused):
        vault.deposit(0, system.units(5000), sender=alice)  # cannot top up
    with expect_revert(ch.Paused):
        ch.closePosition(0, ETH, 0, deadline(), sender=alice)  # cannot close
    pid, eta, _ = propose(g, vault, encode(vault, "setPauseLevel", 0))
    chain.pending_timestamp = eta
    refresh_oracles(system)
    gov.execute(pid, sender=carol)  # carol's bundle: execute + kick
    engine.kick(alice, 0, ETH, carol, sender=carol)
    assert ch.auctionedSize(alice, 0, ETH) != 0
