"""Shared helpers for the governance tests (tests/governance/: test_governance.py, test_breakers.py and the files
beside them).

`deploy_governance` hands a deployed system to a RiskGovernor the way a real deployment would: an
OpenZeppelin TimelockController (GovernanceTimelock) with the shipped 48 h delay whose only proposer and
canceller is the governor, an open executor role and no admin left; the CircuitBreaker wired once by the
admin; every module's ownership transferred (transferOwnership by the deployer, acceptOwnership through
the governor, which anyone may trigger). Chain time moves only by setting it (tests/helpers/clock.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from helpers.trading import MAX_UINT, WAD, funding_off
from vperp.governance import Governance as Gov  # noqa: F401
from vperp.governance import deploy_governance as _deploy
from vperp.governance import modules as _modules

DELAY = 48 * 3600  # [s] the shipped timelock delay
MIN_DELAY = 24 * 3600  # [s] RiskGovernor.MIN_DELAY
ZERO = "0x" + "00" * 20
NO_CAP = 2**96 - 1

# IRiskGovernor.Path and ProposalState
UNKNOWN, TIMELOCK, INSTANT = 0, 1, 2
NONE, PENDING, EXECUTED, CANCELLED = 0, 1, 2, 3
# ICircuitBreaker.Kind
MOVE, DIVERGENCE, INSURANCE, AUCTIONS, SKEW = range(5)

MARKET_FIELDS = ("oracle", "heartbeat", "twapWindow", "imr", "mmr", "takerFee", "maxSpread", "maxOiPoolRatio",
                 "maxOpenInterest", "minPositionSize")
BREAKER_FIELDS = ("moveThreshold", "coolOff", "divergenceThreshold", "divergenceDuration", "insuranceTarget",
                  "auctionSoftShare", "maxSkewShare")
DEFAULT_BREAKER = dict(moveThreshold=WAD // 20, coolOff=1800, divergenceThreshold=3 * WAD // 100,
                       divergenceDuration=1800, insuranceTarget=WAD // 100, auctionSoftShare=WAD // 2,
                       maxSkewShare=WAD // 5)


def modules(system) -> list:
    return _modules(system)


def deploy_governance(system, deployer, admin, guardian, delay: int = DELAY) -> Gov:
    """Timelock, governor and breaker over `system`, which the governor then owns (vperp.governance)."""
    return _deploy(system, deployer, admin, guardian, delay)


def mp_tuple(p, **changes) -> tuple:
    """A MarketParams struct (Ape struct or tuple) as a tuple, with fields replaced."""
    d = {k: (getattr(p, k) if hasattr(p, k) else p[i]) for i, k in enumerate(MARKET_FIELDS)}
    d.update(changes)
    return tuple(d[k] for k in MARKET_FIELDS)


def bp_tuple(p=None, **changes) -> tuple:
    d = dict(DEFAULT_BREAKER) if p is None else {k: getattr(p, k) for k in BREAKER_FIELDS}
    d.update(changes)
    return tuple(d[k] for k in BREAKER_FIELDS)


def struct_tuple(s) -> tuple:
    return tuple(s.values()) if isinstance(s, dict) else tuple(s)


def refresh_oracles(system, sender=None) -> None:
    """Re-stamp every mock feed with its answer at the pending block (keeps them fresh after a warp)."""
    for m in system.markets.values():
        m.oracle.updateAnswer(m.oracle.latestAnswer(), sender=sender or system.deployer)


def propose(g: Gov, target, data, sender=None):
    """(proposal id, eta, receipt) of a proposal by the admin."""
    tx = g.governor.propose(target, data, sender=sender or g.admin)
    (log,) = g.governor.Proposed.from_receipt(tx)
    return log.proposalId, log.eta, tx


def run_proposal(chain, system, g: Gov, target, data, executor):
    """Propose, wait out the delay (feeds re-stamped), execute. Returns the execute receipt."""
    pid, eta, _ = propose(g, target, data)
    chain.pending_timestamp = eta
    refresh_oracles(system)
    return g.governor.execute(pid, sender=executor)


def encode(contract, method: str, *args) -> bytes:
    return bytes(getattr(contract, method).encode_input(*args))


# ---------------------------------------------------------------------------- shared fixtures and actors
# Imported by the governance test modules (a fixture imported into a module is that module's fixture).


@pytest.fixture(scope="module")
def admin(accounts):
    return accounts[7]


@pytest.fixture(scope="module")
def guardian(accounts):
    return accounts[8]


def fund_actors(system, accounts) -> None:
    """Collateral for accounts 1-6, approved to the Vault."""
    for a in list(accounts)[1:7]:
        system.collateral.mint(a, 10**9 * 10**6, sender=a)
        system.collateral.approve(system.vault, MAX_UINT, sender=a)


def deposit(system, who, amount) -> None:
    """`amount` human units into `who`'s cross account."""
    system.vault.deposit(0, system.units(amount), sender=who)


# ---------------------------------------------------------------------------- breakers' system
# The governed system of tests/governance/test_breakers.py and test_breaker_proposals.py.


@pytest.fixture(scope="module")
def keeper(accounts):
    return accounts[9]


@pytest.fixture(scope="module", autouse=True)
def g(system, deployer, admin, guardian, accounts, alice, bob, carol, dave, erin, keeper) -> Gov:
    """Funding off and no taker fee (set by the deployer before the hand-over), collateral for the actors,
    then the governor takes over. (Every actor fixture is requested here, before the module's snapshot.)"""
    ch = system.clearing_house
    funding_off(system)
    for m in system.markets.values():
        ch.setMarketParams(m.id, mp_tuple(ch.marketParams(m.id), takerFee=0), ch.insuranceFeeShare(m.id),
                           sender=deployer)
    for a in list(accounts)[1:7] + [accounts[9]]:
        system.collateral.mint(a, 10**9 * 10**6, sender=a)
        system.collateral.approve(system.vault, MAX_UINT, sender=a)
    return deploy_governance(system, deployer, admin, guardian)


def wait_out(chain, system, g, pids):
    """Past the eta of every proposal in `pids`, feeds re-stamped; executes them in order."""
    eta = max(g.governor.proposal(p).eta for p in pids)
    chain.pending_timestamp = eta
    refresh_oracles(system)
    for p in pids:
        g.governor.execute(p, sender=system.deployer)
