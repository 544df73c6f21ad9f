"""vPerp's governance over a deployed system: an OpenZeppelin TimelockController (GovernanceTimelock) whose only
proposer and canceller is the RiskGovernor, with an open executor role and no admin left; the RiskGovernor owning
the five modules (risk-reducing changes at once by the guardian or the admin, everything else proposed by the
admin, checked against the modules' bounds at proposal and executed after the delay); the CircuitBreaker wired
into it once by the admin. See docs/governance.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DELAY = 48 * 3600  # [s] the shipped timelock delay (RiskGovernor.MIN_DELAY is 24 h)
ZERO = "0x" + "00" * 20


@dataclass
class Governance:
    timelock: Any
    governor: Any
    breaker: Any
    admin: Any
    guardian: Any


def modules(system) -> list:
    """The five modules the governor owns, in the order it takes them."""
    return [system.vault, system.clearing_house, system.liquidation, system.pool, system.amm]


def check_breaker_markets(system, breaker_markets) -> list[tuple[int, tuple[int, int, int]]]:
    """(market id, ICircuitBreaker.MarketThresholds) per entry of `breaker_markets` (symbol -> BreakerThresholds,
    a mapping or (symbol, thresholds) pairs), each checked against the deployed markets and the breaker's bounds;
    raises ValueError naming the market and field before anything is sent."""
    items = breaker_markets.items() if isinstance(breaker_markets, dict) else breaker_markets
    out = []
    for sym, t in items:
        if sym not in system.markets:
            raise ValueError(f"breaker thresholds for {sym}: not a deployed market ({', '.join(system.markets)})")
        t.check(f"breaker.markets.{sym}")
        out.append((system.markets[sym].id, t.to_tuple()))
    return out


def deploy_governance(system, deployer, admin, guardian, delay: int = DELAY, admin_sender=None,
                      breaker_markets=None) -> Governance:
    """Timelock, governor and breaker over `system`, which the governor then owns. The Vault's guardian becomes
    `guardian` too (it may only raise the pause level). `breaker_markets` (symbol -> `vperp.config.BreakerThresholds`):
    markets' own breaker thresholds, checked first, then set by the deployer on the new breaker before it is
    wired (its deployment window; afterwards only through the timelock). The breaker is wired once by
    `admin_sender` (default: the deployer, whom the governor allows that one call, so an admin that is only an
    address, e.g. a multisig, need not sign anything here). Markets configured with `peg_guard` get the breaker
    as their peg guard before the AmmController passes to the governor."""
    from ape import project

    overrides = check_breaker_markets(system, breaker_markets or ())

    tl = project.GovernanceTimelock.deploy(delay, [], [ZERO], deployer, sender=deployer)
    gov = project.RiskGovernor.deploy(system.vault, system.clearing_house, system.liquidation, system.pool,
                                      system.amm, tl, admin, guardian, sender=deployer)
    tl.grantRole(tl.PROPOSER_ROLE(), gov, sender=deployer)
    tl.grantRole(tl.CANCELLER_ROLE(), gov, sender=deployer)
    tl.renounceRole(tl.DEFAULT_ADMIN_ROLE(), deployer, sender=deployer)
    breaker = project.CircuitBreaker.deploy(gov, sender=deployer)  # the shipped breaker parameters
    for market_id, thresholds in overrides:
        breaker.setMarketThresholds(market_id, thresholds, sender=deployer)
    gov.setBreaker(breaker, sender=admin_sender or deployer)
    # Wired: the deployer's window is closed. Read back what the breaker now holds, so thresholds changed
    # between setting and wiring (another signer wires) cannot pass unnoticed.
    for market_id, thresholds in overrides:
        held = tuple(breaker.thresholdOverrides(market_id))
        if held != tuple(thresholds):
            raise RuntimeError(f"breaker thresholds of market {market_id} are {held} after wiring, "
                               f"not the configured {tuple(thresholds)}")
    system.vault.setGuardian(guardian, sender=deployer)
    # The peg guard of the markets configured with one (MarketConfig.peg_guard): the breaker just wired. Set while
    # the deployer still owns the AmmController; afterwards through the timelock.
    for m in system.markets.values():
        if m.config.peg_guard:
            system.amm.setPegGuard(m.id, breaker, sender=deployer)
    for m in modules(system):
        m.transferOwnership(gov, sender=deployer)
        gov.acceptOwnership(m, sender=deployer)
    return Governance(tl, gov, breaker, admin, guardian)
