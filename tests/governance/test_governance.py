"""RiskGovernor (issue 17, item 1): asymmetric governance over the five modules.

Every classified setter is walked through both paths: `act` (guardian or admin, at once) refuses it with
NotRiskReducing unless it reduces risk against the current configuration, and changes nothing when it
refuses; `propose` dry-runs it against the module's bounds, schedules it on the timelock, `execute` is
refused one second before the delay ends (OpenZeppelin's TimelockUnexpectedOperationState) and succeeds
at it. Bad input: out-of-bounds proposals refused at proposal with the module's own ParameterOutOfBounds
and nothing scheduled, unknown setters, every entry point called by the wrong account, cancelled and
executed proposals. Expected classifications come from the table in RiskGovernor's NatSpec (issue 17).
"""
from __future__ import annotations

import pytest

from vperp.units import cap_fee_hours

from helpers.governance import admin, guardian  # noqa: F401 - shared module fixtures
from helpers.governance import (
    CANCELLED,
    DELAY,
    EXECUTED,
    INSTANT,
    MIN_DELAY,
    PENDING,
    TIMELOCK,
    UNKNOWN,
    ZERO,
    Gov,
    bp_tuple,
    deploy_governance,
    encode,
    modules,
    mp_tuple,
    propose,
    refresh_oracles,
    struct_tuple,
)
from helpers.trading import b32, ETH_ID, WAD, expect_revert


@pytest.fixture(scope="module", autouse=True)
def g(system, deployer, admin, guardian, alice, bob, carol) -> Gov:
    # The actor fixtures are requested here so they exist before the module's snapshot.
    return deploy_governance(system, deployer, admin, guardian)


@pytest.fixture(scope="module")
def gov(g):
    return g.governor




def norm(values) -> tuple:
    """Addresses compared case-insensitively (events decode them lower-case)."""
    return tuple(v.lower() if isinstance(v, str) else v for v in values)


def sel(data: bytes) -> bytes:
    return bytes(data[:4])


def governor_state(system, g):
    """What a refused governance call must leave untouched."""
    ch = system.clearing_house
    listed = ch.marketCount() >= ETH_ID
    market = (struct_tuple(ch.marketParams(ETH_ID)), ch.insuranceFeeShare(ETH_ID), struct_tuple(ch.fundingParams(ETH_ID)),
              struct_tuple(system.amm.ammParams(ETH_ID)), struct_tuple(g.governor.configuredMarketParams(ETH_ID)[0])
              ) if listed else ()
    return market + (
        system.vault.pauseLevel(), system.vault.guardian(), tuple(m.owner() for m in modules(system)),
        tuple(m.pendingOwner() for m in modules(system)), struct_tuple(system.liquidation.liquidationParams()),
        struct_tuple(system.pool.poolParams()), g.governor.admin(), g.governor.guardian(), g.governor.breaker(), g.governor.proposalCount(),
        tuple(g.governor.pendingProposals()), struct_tuple(g.breaker.params()),
        tuple(struct_tuple(g.breaker.thresholdOverrides(i)) for i in (1, 2)),
    )


def walk_timelock(chain, system, g: Gov, target, data, read, expected, executor, module_event=None):
    """The timelock path of one change: act refused by both roles (nothing changes), propose (event, stored
    proposal, pending), execute refused at eta - 1, executed at eta (events, state). Returns the receipt."""
    gov = g.governor
    before = read()
    assert gov.classify(target, data) == TIMELOCK
    snap = governor_state(system, g)
    for who in (g.guardian, g.admin):
        with expect_revert(gov.NotRiskReducing, target=target.address, selector=sel(data)):
            gov.act(target, data, sender=who)
    assert governor_state(system, g) == snap

    count = gov.proposalCount()
    tx = gov.propose(target, data, sender=g.admin)
    pid, eta = count + 1, tx.timestamp + DELAY
    (log,) = gov.Proposed.from_receipt(tx)
    assert (log.proposalId, log.target, bytes(log.selector), bytes(log.data), log.eta) == (
        pid, target.address, sel(data), data, eta)
    p = gov.proposal(pid)
    assert (p.target, p.eta, p.state, p.path, bytes(p.data)) == (target.address, eta, PENDING, TIMELOCK, data)
    assert pid in list(gov.pendingProposals())
    assert g.timelock.isOperationPending(gov.operationId(pid))
    assert read() == before  # nothing changes at proposal (the dry run is undone)

    chain.pending_timestamp = eta - 1
    with expect_revert(g.timelock.TimelockUnexpectedOperationState):
        gov.execute(pid, sender=executor)
    assert read() == before
    chain.pending_timestamp = eta
    refresh_oracles(system)  # 48 h is past the mock feeds' heartbeat
    tx = gov.execute(pid, sender=executor)
    (ex,) = gov.Executed.from_receipt(tx)
    assert (ex.proposalId, ex.target, bytes(ex.selector)) == (pid, target.address, sel(data))
    assert gov.proposal(pid).state == EXECUTED and pid not in list(gov.pendingProposals())
    assert g.timelock.isOperationDone(gov.operationId(pid))
    assert read() == expected
    if module_event is not None:
        assert len(list(module_event.from_receipt(tx))) == 1
    return tx


# ---------------------------------------------------------------------------- deployment


def test_governor_owns_every_module_and_is_wired(system, g, gov, admin, guardian):
    for m in modules(system):
        assert m.owner() == gov.address and m.pendingOwner() == ZERO
    assert (gov.vault(), gov.clearingHouse(), gov.liquidationEngine(), gov.liquidityPool(), gov.ammController()) == (
        system.vault.address, system.clearing_house.address, system.liquidation.address, system.pool.address,
        system.amm.address)
    assert (gov.timelock(), gov.admin(), gov.guardian(), gov.breaker()) == (
        g.timelock.address, admin.address, guardian.address, g.breaker.address)
    assert gov.MIN_DELAY() == MIN_DELAY and g.timelock.getMinDelay() == DELAY
    tl = g.timelock
    assert tl.hasRole(tl.PROPOSER_ROLE(), gov) and tl.hasRole(tl.CANCELLER_ROLE(), gov)
    assert tl.hasRole(tl.EXECUTOR_ROLE(), ZERO)  # open executor role
    assert not tl.hasRole(tl.DEFAULT_ADMIN_ROLE(), system.deployer)  # no admin left
    assert tl.hasRole(tl.DEFAULT_ADMIN_ROLE(), tl)  # only the timelock administers itself
    assert g.breaker.governor() == gov.address
    assert gov.proposalCount() == 0 and list(gov.pendingProposals()) == []


def test_constructor_refuses_a_short_delay_and_zero_addresses(project, system, deployer, admin, guardian):
    tl = project.GovernanceTimelock.deploy(MIN_DELAY - 1, [], [ZERO], deployer, sender=deployer)
    args = [system.vault, system.clearing_house, system.liquidation, system.pool, system.amm, tl, admin, guardian]
    with expect_revert(project.RiskGovernor.DelayTooShort, delay=MIN_DELAY - 1, minDelay=MIN_DELAY):
        project.RiskGovernor.deploy(*args, sender=deployer)
    ok = project.GovernanceTimelock.deploy(MIN_DELAY, [], [ZERO], deployer, sender=deployer)
    for i in range(7):  # every address but the guardian (none is allowed)
        bad = list(args)
        bad[5] = ok
        bad[i] = ZERO
        with expect_revert(project.RiskGovernor.ZeroAddress):
            project.RiskGovernor.deploy(*bad, sender=deployer)
    no_guardian = list(args)
    no_guardian[5], no_guardian[7] = ok, ZERO
    assert project.RiskGovernor.deploy(*no_guardian, sender=deployer).guardian() == ZERO
    with expect_revert(project.CircuitBreaker.ZeroAddress):
        project.CircuitBreaker.deploy(ZERO, sender=deployer)


def test_states_the_deploy_never_leaves_are_still_refused_by_name(project, system, chain, deployer, admin, guardian,
                                                                  carol):
    """Two states the deploy never leaves a governor in, refused by name all the same, with nothing recorded:
    - no breaker wired yet: `setBreaker(0)` is `ZeroAddress`, and a proposal to set breaker parameters fails its dry
      run with `ZeroAddress` (there is no breaker to set them on);
    - a timelock whose delay fell below `MIN_DELAY` after the governor was built (here through a proposer the deploy
      would not have left on the timelock): every proposal is then `DelayTooShort`, checked at each proposal as well
      as at construction."""
    tl = project.GovernanceTimelock.deploy(MIN_DELAY, [deployer], [ZERO], deployer, sender=deployer)
    gov = project.RiskGovernor.deploy(system.vault, system.clearing_house, system.liquidation, system.pool, system.amm,
                                      tl, admin, guardian, sender=deployer)
    with expect_revert(gov.ZeroAddress):
        gov.setBreaker(ZERO, sender=admin)
    assert gov.breaker() == ZERO
    with expect_revert(gov.ZeroAddress):
        gov.propose(gov, encode(gov, "setBreakerParams", bp_tuple()), sender=admin)
    assert gov.proposalCount() == 0 and list(gov.pendingProposals()) == []
    lower = encode(tl, "updateDelay", MIN_DELAY - 1)
    none, salt = bytes(32), b32("lower the delay")
    tl.schedule(tl, 0, lower, none, salt, MIN_DELAY, sender=deployer)
    chain.pending_timestamp = chain.blocks.head.timestamp + MIN_DELAY
    tl.execute(tl, 0, lower, none, salt, sender=deployer)
    assert tl.getMinDelay() == MIN_DELAY - 1
    with expect_revert(gov.DelayTooShort, delay=MIN_DELAY - 1, minDelay=MIN_DELAY):
        gov.propose(gov, encode(gov, "setBreaker", carol), sender=admin)
    assert gov.proposalCount() == 0 and list(gov.pendingProposals()) == [] and gov.breaker() == ZERO


def test_the_old_owner_has_no_rights(system, deployer):
    ch = system.clearing_house
    p = ch.marketParams(ETH_ID)
    for call in (lambda: system.vault.setGuardian(deployer, sender=deployer),
                 lambda: ch.setMarketParams(ETH_ID, mp_tuple(p), ch.insuranceFeeShare(ETH_ID), sender=deployer),
                 lambda: system.liquidation.transferOwnership(deployer, sender=deployer),
                 lambda: system.pool.transferOwnership(deployer, sender=deployer),
                 lambda: system.amm.transferOwnership(deployer, sender=deployer)):
        with expect_revert(system.vault.OwnableUnauthorizedAccount, account=deployer):
            call()


# ---------------------------------------------------------------------------- the timelock-only setters


def _timelock_cases(system, g, project, carol):
    """(name, target, data, read, expected after, module event) for every setter that always waits."""
    ch, vault, engine, pool, amm, gov = (system.clearing_house, system.vault, system.liquidation, system.pool,
                                         system.amm, g.governor)
    fp = ch.fundingParams(ETH_ID)
    new_fp = (fp.maxFundingRate // 2, fp.maxRateVelocity, 0, fp.smoothingTau, fp.fundingPeriodHours)
    lp = engine.liquidationParams()
    new_lp = (lp.targetHealth, lp.chip, lp.penalty + 1, lp.maxRedos, lp.tip, lp.maxKeeperReward, lp.maxAuctionNotional)
    ap = engine.auctionParams(ETH_ID)
    new_ap = (ap.curve, ap.duration + 60, ap.step, ap.maxDiscount, ap.resetDrop)
    pp = pool.poolParams()
    new_pp = (pp.withdrawCooldown + 1, pp.withdrawWindow, pp.reserveFactor)
    am = amm.ammParams(ETH_ID)
    new_am = struct_tuple(am)[:6] + (am.depthInterval + 1, am.maxDepthCost)
    new_bp = bp_tuple(moveThreshold=WAD // 10)
    new_mt = (WAD // 5, WAD // 10, 3600, WAD)  # ETH's own: move 20 %, divergence 10 % for 1 h, skew 100 % of NAV
    return [
        ("Vault.setGuardian", vault, encode(vault, "setGuardian", carol), vault.guardian, carol.address,
         vault.GuardianSet),
        ("Vault.transferOwnership", vault, encode(vault, "transferOwnership", carol), vault.pendingOwner,
         carol.address, vault.OwnershipTransferStarted),
        ("ClearingHouse.setFundingParams", ch, encode(ch, "setFundingParams", ETH_ID, new_fp),
         lambda: struct_tuple(ch.fundingParams(ETH_ID)), new_fp, ch.FundingParamsSet),
        ("ClearingHouse.setSkewFunding", ch, encode(ch, "setSkewFunding", ETH_ID, 5_000),
         lambda: ch.skewFunding(ETH_ID).ratePpm, 5_000, ch.SkewFundingSet),
        ("ClearingHouse.setPegTolerance", ch, encode(ch, "setPegTolerance", ETH_ID, 11),
         lambda: ch.pegTolerance(ETH_ID), 11, ch.PegToleranceSet),
        ("ClearingHouse.setOrderRouter", ch, encode(ch, "setOrderRouter", carol), ch.orderRouter, carol.address,
         ch.OrderRouterSet),
        ("ClearingHouse.setDelayedOrders", ch, encode(ch, "setDelayedOrders", ETH_ID, True),
         lambda: ch.delayedOrders(ETH_ID), True, ch.DelayedOrdersSet),
        ("ClearingHouse.transferOwnership", ch, encode(ch, "transferOwnership", carol), ch.pendingOwner,
         carol.address, ch.OwnershipTransferStarted),
        ("LiquidationEngine.setLiquidationParams", engine, encode(engine, "setLiquidationParams", new_lp),
         lambda: struct_tuple(engine.liquidationParams()), new_lp, engine.LiquidationParamsSet),
        ("LiquidationEngine.setAuctionParams", engine, encode(engine, "setAuctionParams", ETH_ID, new_ap),
         lambda: struct_tuple(engine.auctionParams(ETH_ID)), new_ap, engine.AuctionParamsSet),
        ("LiquidationEngine.transferOwnership", engine, encode(engine, "transferOwnership", carol),
         engine.pendingOwner, carol.address, engine.OwnershipTransferStarted),
        ("LiquidityPool.setPoolParams", pool, encode(pool, "setPoolParams", new_pp),
         lambda: struct_tuple(pool.poolParams()), new_pp, pool.PoolParamsSet),
        ("LiquidityPool.transferOwnership", pool, encode(pool, "transferOwnership", carol), pool.pendingOwner,
         carol.address, pool.OwnershipTransferStarted),
        ("AmmController.setAmmParams", amm, encode(amm, "setAmmParams", ETH_ID, new_am),
         lambda: struct_tuple(amm.ammParams(ETH_ID)), new_am, amm.AmmParamsSet),
        ("AmmController.setConcentration", amm, encode(amm, "setConcentration", ETH_ID, WAD // 10, 10 * WAD),
         lambda: tuple(amm.concentration(ETH_ID))[:2], (WAD // 10, 10 * WAD), amm.ConcentrationSet),
        ("AmmController.transferOwnership", amm, encode(amm, "transferOwnership", carol), amm.pendingOwner,
         carol.address, amm.OwnershipTransferStarted),
        ("RiskGovernor.setAdmin", gov, encode(gov, "setAdmin", carol), gov.admin, carol.address, gov.RiskAdminSet),
        ("RiskGovernor.setGuardian", gov, encode(gov, "setGuardian", carol), gov.guardian, carol.address,
         gov.RiskGuardianSet),
        ("RiskGovernor.setBreakerParams", gov, encode(gov, "setBreakerParams", new_bp),
         lambda: struct_tuple(g.breaker.params()), new_bp, g.breaker.BreakerParamsSet),
        ("RiskGovernor.setBreakerMarketThresholds", gov, encode(gov, "setBreakerMarketThresholds", ETH_ID, new_mt),
         lambda: struct_tuple(g.breaker.thresholdOverrides(ETH_ID)), new_mt, g.breaker.MarketThresholdsSet),
    ]


TIMELOCK_SETTERS = ["Vault.setGuardian", "Vault.transferOwnership", "ClearingHouse.setFundingParams",
                    "ClearingHouse.setSkewFunding", "ClearingHouse.setPegTolerance", "ClearingHouse.setOrderRouter",
                    "ClearingHouse.setDelayedOrders",
                    "ClearingHouse.transferOwnership", "LiquidationEngine.setLiquidationParams",
                    "LiquidationEngine.setAuctionParams", "LiquidationEngine.transferOwnership",
                    "LiquidityPool.setPoolParams", "LiquidityPool.transferOwnership", "AmmController.setAmmParams",
                    "AmmController.setConcentration", "AmmController.transferOwnership", "RiskGovernor.setAdmin", "RiskGovernor.setGuardian",
                    "RiskGovernor.setBreakerParams", "RiskGovernor.setBreakerMarketThresholds"]


@pytest.mark.parametrize("name", TIMELOCK_SETTERS)
def test_timelock_only_setter_walks_the_timelock(chain, project, system, g, carol, bob, name):
    cases = {c[0]: c[1:] for c in _timelock_cases(system, g, project, carol)}
    assert set(cases) == set(TIMELOCK_SETTERS)
    target, data, read, expected, event = cases[name]
    if name == "ClearingHouse.setDelayedOrders":
        # Delayed orders need a stale-peg tolerance (PegToleranceRequired): the timelock sets one first.
        ch = system.clearing_house
        walk_timelock(chain, system, g, ch, ch.setPegTolerance.encode_input(ETH_ID, 300),
                      lambda: ch.pegTolerance(ETH_ID), 300, executor=bob, module_event=ch.PegToleranceSet)
    assert read() != expected
    walk_timelock(chain, system, g, target, data, read, expected, executor=bob, module_event=event)


def test_listMarket_walks_the_timelock(chain, project, system, g, bob, deployer):
    ch = system.clearing_house
    oracle = project.MockAggregator.deploy(8, 150 * 10**8, "SOL / USD", sender=deployer)
    params = mp_tuple(ch.marketParams(ETH_ID), oracle=oracle.address)
    data = encode(ch, "listMarket", b32("SOL"), params, 2 * WAD // 10, 100_000 * WAD)

    def read():
        return ch.marketCount()

    def refresh_new():
        oracle.updateAnswer(150 * 10**8, sender=deployer)

    gov = g.governor
    assert gov.classify(ch, data) == TIMELOCK
    with expect_revert(gov.NotRiskReducing, target=ch.address, selector=sel(data)):
        gov.act(ch, data, sender=g.guardian)
    pid, eta, _ = propose(g, ch, data)
    chain.pending_timestamp = eta - 1
    with expect_revert(g.timelock.TimelockUnexpectedOperationState):
        gov.execute(pid, sender=bob)
    chain.pending_timestamp = eta
    refresh_new()
    tx = gov.execute(pid, sender=bob)
    assert read() == 3 and len(list(ch.MarketListed.from_receipt(tx))) == 1
    # A new market's configured parameters are the ClearingHouse's until the governor writes them.
    assert struct_tuple(gov.configuredMarketParams(3)[0]) == params


def test_setBreaker_walks_the_timelock_and_the_admin_wires_only_once(chain, project, system, g, bob, carol):
    gov = g.governor
    other = project.CircuitBreaker.deploy(gov, sender=carol)
    with expect_revert(gov.BreakerAlreadySet, breaker=g.breaker):
        gov.setBreaker(other, sender=g.admin)
    with expect_revert(gov.NotAdmin, caller=g.guardian):
        gov.setBreaker(other, sender=g.guardian)
    walk_timelock(chain, system, g, gov, encode(gov, "setBreaker", other), gov.breaker, other.address, bob,
                  gov.BreakerSet)
    assert other.governor() == gov.address


def test_module_wiring_walks_the_timelock_on_fresh_modules(chain, project, system, deployer, admin, guardian, bob):
    """The one-time wirings (Vault.setClearingHouse/setLiquidationEngine/setLiquidityPool,
    ClearingHouse.setLiquidationEngine/setAmmController) on modules the governor owns from their start; on the
    wired system each is refused at proposal by the module's ModuleAlreadySet."""
    token = system.collateral
    vault = project.Vault.deploy(token, deployer, sender=deployer)
    ch = project.ClearingHouse.deploy(vault, deployer, sender=deployer)
    engine = project.LiquidationEngine.deploy(vault, ch, deployer, sender=deployer)
    pool = project.LiquidityPool.deploy(token, vault, ch, deployer, sender=deployer)
    amm = project.AmmController.deploy(ch, pool, deployer, sender=deployer)

    class Fresh:
        pass

    fresh = Fresh()
    fresh.vault, fresh.clearing_house, fresh.liquidation, fresh.pool, fresh.amm = vault, ch, engine, pool, amm
    fresh.markets = system.markets
    fresh.deployer = deployer
    g2 = deploy_governance(fresh, deployer, admin, guardian)
    wirings = [(vault, "setClearingHouse", ch, vault.clearingHouse), (vault, "setLiquidationEngine", engine,
               vault.liquidationEngine), (vault, "setLiquidityPool", pool, vault.liquidityPool),
               (ch, "setLiquidationEngine", engine, ch.liquidationEngine), (ch, "setAmmController", amm, ch.ammController)]
    for target, fn, module, read in wirings:
        walk_timelock(chain, fresh, g2, target, encode(target, fn, module), read, module.address, bob)
    # Once wired, a second wiring is refused at proposal with the module's own error; nothing is scheduled.
    count = g2.governor.proposalCount()
    for target, fn, module, _ in wirings:
        with expect_revert(target.ModuleAlreadySet, module=module):
            g2.governor.propose(target, encode(target, fn, bob), sender=admin)
    assert g2.governor.proposalCount() == count


# ---------------------------------------------------------------------------- pause level


def test_setPauseLevel_raise_is_instant_lower_waits(chain, system, g, bob):
    vault, gov = system.vault, g.governor
    up = encode(vault, "setPauseLevel", 1)
    assert gov.classify(vault, up) == INSTANT
    tx = gov.act(vault, up, sender=g.guardian)
    (log,) = gov.ActedAtOnce.from_receipt(tx)
    assert (log.by, log.target, bytes(log.selector), bytes(log.data)) == (g.guardian.address, vault.address, sel(up), up)
    assert vault.pauseLevel() == 1
    same = encode(vault, "setPauseLevel", 1)
    assert gov.classify(vault, same) == INSTANT  # level >= current
    gov.act(vault, encode(vault, "setPauseLevel", 3), sender=g.admin)
    assert vault.pauseLevel() == 3
    with expect_revert(vault.InvalidPauseLevel, level=4):
        gov.act(vault, encode(vault, "setPauseLevel", 4), sender=g.guardian)
    down = encode(vault, "setPauseLevel", 0)
    walk_timelock(chain, system, g, vault, down, vault.pauseLevel, 0, bob, vault.PauseLevelSet)


# ---------------------------------------------------------------------------- market parameters


def _eth(system):
    ch = system.clearing_house
    return ch.marketParams(ETH_ID), ch.insuranceFeeShare(ETH_ID)


RISK_REDUCING = {
    "maxOiPoolRatio down": lambda p: dict(maxOiPoolRatio=p.maxOiPoolRatio - 1),
    "maxOpenInterest down": lambda p: dict(maxOpenInterest=p.maxOpenInterest - 1),
    "both caps": lambda p: dict(maxOiPoolRatio=1, maxOpenInterest=p.minPositionSize),
    "unchanged": lambda p: dict(),
}


@pytest.mark.parametrize("case", list(RISK_REDUCING))
def test_setMarketParams_risk_reducing_is_instant(system, g, case):
    ch, gov = system.clearing_house, g.governor
    p, share = _eth(system)
    new = mp_tuple(p, **RISK_REDUCING[case](p))
    data = encode(ch, "setMarketParams", ETH_ID, new, share)
    assert gov.classify(ch, data) == INSTANT
    tx = gov.act(ch, data, sender=g.guardian)
    assert struct_tuple(ch.marketParams(ETH_ID)) == new and ch.insuranceFeeShare(ETH_ID) == share
    assert struct_tuple(gov.configuredMarketParams(ETH_ID)[0]) == new
    (conf,) = gov.MarketConfigured.from_receipt(tx)
    assert conf.marketId == ETH_ID and norm(struct_tuple(conf.params)) == norm(new)
    # Only a real change is written to the ClearingHouse.
    assert len(list(ch.MarketParamsSet.from_receipt(tx))) == (0 if case == "unchanged" else 1)


RISK_INCREASING = {
    "imr down": lambda p, s: (dict(imr=p.imr - 1), s),
    # imr up and a tighter band wait too (review): an imr of 100 % locks every trader's free collateral, and a
    # tighter band suspends LP flows and blocks backstops.
    "imr up": lambda p, s: (dict(imr=p.imr + 1), s),
    "maxSpread down": lambda p, s: (dict(maxSpread=p.maxSpread - 1), s),
    "maxSpread up": lambda p, s: (dict(maxSpread=p.maxSpread + 1), s),
    "maxOiPoolRatio up": lambda p, s: (dict(maxOiPoolRatio=p.maxOiPoolRatio + 1), s),
    "maxOpenInterest up": lambda p, s: (dict(maxOpenInterest=p.maxOpenInterest + 1), s),
    "mmr up": lambda p, s: (dict(mmr=p.mmr + 1), s),  # waits: it would make accounts liquidatable at once
    "mmr down": lambda p, s: (dict(mmr=p.mmr - 1), s),
    "takerFee up": lambda p, s: (dict(takerFee=p.takerFee + 1), s),
    "takerFee down": lambda p, s: (dict(takerFee=p.takerFee - 1), s),
    "minPositionSize up": lambda p, s: (dict(minPositionSize=p.minPositionSize + 1), s),
    "minPositionSize down": lambda p, s: (dict(minPositionSize=p.minPositionSize - 1), s),
    "heartbeat down": lambda p, s: (dict(heartbeat=p.heartbeat - 1), s),
    "twapWindow up": lambda p, s: (dict(twapWindow=p.twapWindow + 60), s),
    "insuranceFeeShare up": lambda p, s: (dict(), s + 1),
    "tighter caps but a new oracle": None,  # built in the test (needs a feed)
}


@pytest.mark.parametrize("case", list(RISK_INCREASING))
def test_setMarketParams_other_changes_wait_for_the_timelock(chain, project, system, g, deployer, bob, case):
    ch = system.clearing_house
    p, share = _eth(system)
    if RISK_INCREASING[case] is None:
        feed = project.MockAggregator.deploy(8, 3000 * 10**8, "ETH / USD 2", sender=deployer)
        changes, new_share = dict(oracle=feed.address, maxOpenInterest=p.maxOpenInterest - 1), share
    else:
        feed = None
        changes, new_share = RISK_INCREASING[case](p, share)
    new = mp_tuple(p, **changes)
    data = encode(ch, "setMarketParams", ETH_ID, new, new_share)
    f = ch.fundingParams(ETH_ID)
    if changes.get("takerFee", p.takerFee) < f.maxFundingRate * cap_fee_hours(f.smoothingTau):
        # The market's funding cap is at the bound the fee allows: a lower fee needs a lower cap first, itself a
        # timelocked change (the fee's proposal would be refused at once otherwise).
        lower = (changes["takerFee"] // cap_fee_hours(f.smoothingTau), *tuple(f)[1:])
        walk_timelock(chain, system, g, ch, encode(ch, "setFundingParams", ETH_ID, lower),
                      lambda: struct_tuple(ch.fundingParams(ETH_ID)), lower, bob, ch.FundingParamsSet)

    def read():
        return struct_tuple(ch.marketParams(ETH_ID)), ch.insuranceFeeShare(ETH_ID)

    walk_timelock(chain, system, g, ch, data, read, (new, new_share), bob, ch.MarketParamsSet)
    assert struct_tuple(g.governor.configuredMarketParams(ETH_ID)[0]) == new


def test_setMarketParams_through_the_timelock_with_a_stale_feed(chain, project, system, g, deployer, bob):
    """Replacing a stale feed does not depend on it: the governor's pre-write poke fails, the ClearingHouse
    accrues at the last recorded index as it does on its own."""
    ch = system.clearing_house
    p, share = _eth(system)
    feed = project.MockAggregator.deploy(8, 3000 * 10**8, "ETH / USD 2", sender=deployer)
    new = mp_tuple(p, oracle=feed.address)
    pid, eta, _ = propose(g, ch, encode(ch, "setMarketParams", ETH_ID, new, share))
    chain.pending_timestamp = eta
    feed.updateAnswer(3000 * 10**8, sender=deployer)  # the new feed is fresh, the old one is stale
    with expect_revert(ch.StaleOracle):
        ch.pokeFunding(ETH_ID, sender=bob)
    g.governor.execute(pid, sender=bob)
    assert ch.marketParams(ETH_ID).oracle == feed.address
    assert ch.indexPrice(ETH_ID) == 3000 * WAD


# ---------------------------------------------------------------------------- bad input


def _fee_floor(s) -> int:
    """The least taker fee ETH's funding cap allows (ClearingHouseConfigurator._capFeeHours)."""
    from vperp.units import cap_fee_hours

    f = s.clearing_house.fundingParams(ETH_ID)
    return f.maxFundingRate * cap_fee_hours(f.smoothingTau)


OUT_OF_BOUNDS = {
    "ClearingHouse mmr 0": lambda s, g: (s.clearing_house, encode(s.clearing_house, "setMarketParams", ETH_ID,
                                          mp_tuple(s.clearing_house.marketParams(ETH_ID), mmr=0),
                                          s.clearing_house.insuranceFeeShare(ETH_ID)), "mmr", 0),
    "ClearingHouse maxOpenInterest above int96": lambda s, g: (s.clearing_house, encode(
        s.clearing_house, "setMarketParams", ETH_ID, mp_tuple(s.clearing_house.marketParams(ETH_ID),
                                                              maxOpenInterest=2**95), 0), "maxOpenInterest", 2**95),
    "ClearingHouse funding rate": lambda s, g: (s.clearing_house, encode(
        s.clearing_house, "setFundingParams", ETH_ID, (10**16 + 1, 10**15, 0, 3600, 24)), "maxFundingRate", 10**16 + 1),
    # The funding oscillation's bound (ClearingHouseConfigurator._capFeeHours): a cap one wei above the fee / 6 at a
    # 12-hour time constant, and a fee one wei below the hours of the market's cap it must cover.
    "ClearingHouse funding cap above the fee's bound": lambda s, g: (s.clearing_house, encode(
        s.clearing_house, "setFundingParams", ETH_ID,
        (s.clearing_house.marketParams(ETH_ID).takerFee // 6 + 1, 10**15, 0, 43_200, 24)), "maxFundingRate",
        s.clearing_house.marketParams(ETH_ID).takerFee // 6 + 1),
    "ClearingHouse taker fee below the cap's bound": lambda s, g: (s.clearing_house, encode(
        s.clearing_house, "setMarketParams", ETH_ID, mp_tuple(s.clearing_house.marketParams(ETH_ID), takerFee=_fee_floor(
            s) - 1), s.clearing_house.insuranceFeeShare(ETH_ID)), "takerFee", _fee_floor(s) - 1),
    "LiquidationEngine chip": lambda s, g: (s.liquidation, encode(
        s.liquidation, "setLiquidationParams", (WAD, WAD // 100 + 1, 0, 3, 0, 0, 1)), "chip", WAD // 100 + 1),
    "LiquidityPool reserveFactor": lambda s, g: (s.pool, encode(s.pool, "setPoolParams", (0, 3600, WAD + 1)),
                                                 "reserveFactor", WAD + 1),
    "AmmController depthRatio": lambda s, g: (s.amm, encode(s.amm, "setAmmParams", ETH_ID,
                                                            (0, 1, 10**15, 1, 0, 0, 60, 0)), "depthRatio", 0),
    "CircuitBreaker moveThreshold": lambda s, g: (g.governor, encode(g.governor, "setBreakerParams",
                                                                     bp_tuple(moveThreshold=WAD // 100 - 1)),
                                                  "moveThreshold", WAD // 100 - 1),
    "CircuitBreaker coolOff": lambda s, g: (g.governor, encode(g.governor, "setBreakerParams",
                                                               bp_tuple(coolOff=86_401)), "coolOff", 86_401),
    # A market's own thresholds: the same bounds as the global ones (0 is not out of bounds: the global value).
    "CircuitBreaker market moveThreshold": lambda s, g: (g.governor, encode(
        g.governor, "setBreakerMarketThresholds", ETH_ID, (WAD // 100 - 1, 0, 0, 0)), "moveThreshold", WAD // 100 - 1),
    "CircuitBreaker market divergenceThreshold": lambda s, g: (g.governor, encode(
        g.governor, "setBreakerMarketThresholds", ETH_ID, (WAD // 5, WAD // 2 + 1, 0, 0)), "divergenceThreshold",
        WAD // 2 + 1),
    "CircuitBreaker market divergenceDuration": lambda s, g: (g.governor, encode(
        g.governor, "setBreakerMarketThresholds", ETH_ID, (0, 0, 59, 0)), "divergenceDuration", 59),
    "CircuitBreaker market maxSkewShare": lambda s, g: (g.governor, encode(
        g.governor, "setBreakerMarketThresholds", ETH_ID, (0, 0, 0, 10 * WAD + 1)), "maxSkewShare", 10 * WAD + 1),
}


@pytest.mark.parametrize("market", [0, 3])
def test_breaker_market_thresholds_for_an_unknown_market_refused_at_proposal(system, g, market):
    gov = g.governor
    snap = governor_state(system, g)
    with expect_revert(g.breaker.UnknownMarket, marketId=market):
        gov.propose(gov, encode(gov, "setBreakerMarketThresholds", market, (WAD // 5, 0, 0, 0)), sender=g.admin)
    assert governor_state(system, g) == snap
    assert not g.timelock.isOperation(gov.operationId(gov.proposalCount() + 1))


@pytest.mark.parametrize("case", list(OUT_OF_BOUNDS))
def test_out_of_bounds_proposal_refused_at_proposal(system, g, case):
    target, data, name, value = OUT_OF_BOUNDS[case](system, g)
    gov = g.governor
    snap = governor_state(system, g)
    error = (g.breaker if target == gov else target).ParameterOutOfBounds
    with expect_revert(error, name=b32(name), value=value):
        gov.propose(target, data, sender=g.admin)
    assert governor_state(system, g) == snap  # proposalCount and the pending list unchanged
    assert not g.timelock.isOperation(gov.operationId(gov.proposalCount() + 1))  # nothing scheduled


def test_out_of_bounds_instant_change_refused_by_the_module(system, g):
    ch = system.clearing_house
    p, share = _eth(system)
    snap = governor_state(system, g)
    with expect_revert(ch.ParameterOutOfBounds, name=b32("maxOpenInterest"), value=0):
        g.governor.act(ch, encode(ch, "setMarketParams", ETH_ID, mp_tuple(p, maxOpenInterest=0), share),
                       sender=g.guardian)
    assert governor_state(system, g) == snap


def test_unknown_setters_refused_on_both_paths(system, g, bob):
    gov, vault, ch = g.governor, system.vault, system.clearing_house
    cases = [
        (vault, encode(vault, "renounceOwnership")),  # no path may leave a module ownerless
        (ch, encode(ch, "pokeFunding", ETH_ID)),
        (system.liquidation, encode(system.liquidation, "acceptOwnership")),
        (gov, encode(gov, "dryRun", vault.address, encode(vault, "setPauseLevel", 1))),
        (gov, encode(gov, "executeProposal", 1)),
        (gov, encode(gov, "applyRestriction", ETH_ID, 0, True)),
        (g.timelock, encode(g.timelock, "updateDelay", 0)),
        (g.breaker, encode(g.breaker, "setParams", bp_tuple())),
        (system.collateral, encode(system.collateral, "transfer", bob, 1)),
        (vault, b"\x01\x02\x03"),
        (vault, b""),
    ]
    snap = governor_state(system, g)
    for target, data in cases:
        selector = sel(data).ljust(4, b"\0") if len(data) >= 4 else b"\0" * 4
        assert gov.classify(target, data) == UNKNOWN
        with expect_revert(gov.UnknownSetter, target=target.address, selector=selector):
            gov.propose(target, data, sender=g.admin)
        for who in (g.guardian, g.admin):
            with expect_revert(gov.UnknownSetter, target=target.address, selector=selector):
                gov.act(target, data, sender=who)
    assert governor_state(system, g) == snap


def test_every_entry_point_refuses_the_wrong_caller(system, g, bob):
    gov, vault, ch = g.governor, system.vault, system.clearing_house
    up = encode(vault, "setPauseLevel", 1)
    pid, _, _ = propose(g, vault, up)
    snap = governor_state(system, g)
    for who in (g.guardian, bob):
        with expect_revert(gov.NotAdmin, caller=who):
            gov.propose(vault, up, sender=who)
    with expect_revert(gov.NotGuardianOrAdmin, caller=bob):
        gov.act(vault, up, sender=bob)
    with expect_revert(gov.NotGuardianOrAdmin, caller=bob):
        gov.cancel(pid, sender=bob)
    for who in (g.admin, bob):
        with expect_revert(gov.NotTimelock, caller=who):
            gov.executeProposal(pid, sender=who)
        with expect_revert(gov.NotSelf, caller=who):
            gov.dryRun(vault, up, sender=who)
        with expect_revert(gov.NotSelf, caller=who):
            gov.dryRunConfigured(ETH_ID, mp_tuple(ch.marketParams(ETH_ID)), 0, sender=who)
        with expect_revert(gov.NotSelf, caller=who):
            gov.setAdmin(bob, sender=who)
        with expect_revert(gov.NotSelf, caller=who):
            gov.setGuardian(bob, sender=who)
        with expect_revert(gov.NotSelf, caller=who):
            gov.setBreakerParams(bp_tuple(), sender=who)
        with expect_revert(gov.NotBreaker, caller=who):
            gov.applyRestriction(ETH_ID, 0, True, sender=who)
        with expect_revert(g.breaker.NotGovernor, caller=who):
            g.breaker.setParams(bp_tuple(), sender=who)
        with expect_revert(gov.NotSelf, caller=who):
            gov.setBreakerMarketThresholds(ETH_ID, (WAD // 5, 0, 0, 0), sender=who)
        with expect_revert(g.breaker.NotGovernor, caller=who):
            g.breaker.setMarketThresholds(ETH_ID, (WAD // 5, 0, 0, 0), sender=who)
    # The breaker's deployer set market thresholds only until the governor wired a breaker.
    with expect_revert(g.breaker.NotGovernor, caller=system.deployer):
        g.breaker.setMarketThresholds(ETH_ID, (WAD // 5, 0, 0, 0), sender=system.deployer)
    with expect_revert(gov.NotAdmin, caller=bob):
        gov.setBreaker(bob, sender=bob)
    with expect_revert(gov.UnknownModule, module=bob):
        gov.acceptOwnership(bob, sender=bob)
    with expect_revert(gov.UnknownModule, module=g.breaker):
        gov.acceptOwnership(g.breaker, sender=bob)
    # The timelock itself: only the governor proposes or cancels.
    tl = g.timelock
    for who in (g.admin, g.guardian):
        with expect_revert(tl.AccessControlUnauthorizedAccount, account=who):
            tl.schedule(vault, 0, up, b"\0" * 32, b"\0" * 32, DELAY, sender=who)
        with expect_revert(tl.AccessControlUnauthorizedAccount, account=who):
            tl.cancel(gov.operationId(pid), sender=who)
    assert governor_state(system, g) == snap


def test_unknown_proposal_ids(g, bob):
    gov = g.governor
    for pid in (0, gov.proposalCount() + 1):
        with expect_revert(gov.UnknownProposal, proposalId=pid):
            gov.execute(pid, sender=bob)
        with expect_revert(gov.UnknownProposal, proposalId=pid):
            gov.cancel(pid, sender=g.admin)
        with expect_revert(gov.UnknownProposal, proposalId=pid):
            gov.proposal(pid)


@pytest.mark.parametrize("canceller", ["guardian", "admin"])
def test_cancelled_proposal_cannot_execute(chain, system, g, bob, canceller):
    gov, vault, ch = g.governor, system.vault, system.clearing_house
    skew_before = ch.skewFunding(ETH_ID).ratePpm
    data = encode(ch, "setSkewFunding", ETH_ID, 5_000)
    pid, eta, _ = propose(g, ch, data)
    other, _, _ = propose(g, vault, encode(vault, "setPauseLevel", 0))
    op = gov.operationId(pid)
    who = getattr(g, canceller)
    tx = gov.cancel(pid, sender=who)
    (log,) = gov.Cancelled.from_receipt(tx)
    assert (log.proposalId, log.by) == (pid, who.address)
    assert gov.proposal(pid).state == CANCELLED and list(gov.pendingProposals()) == [other]
    assert not g.timelock.isOperation(op)
    chain.pending_timestamp = eta + 1
    with expect_revert(gov.ProposalNotPending, proposalId=pid, state=CANCELLED):
        gov.execute(pid, sender=bob)
    with expect_revert(gov.ProposalNotPending, proposalId=pid, state=CANCELLED):
        gov.cancel(pid, sender=g.admin)
    # Nor straight through the timelock (its operation is gone).
    with expect_revert(g.timelock.TimelockUnexpectedOperationState):
        g.timelock.execute(gov, 0, encode(gov, "executeProposal", pid), b"\0" * 32, b"\0" * 32, sender=bob)
    assert ch.skewFunding(ETH_ID).ratePpm == skew_before


def test_executed_proposal_cannot_run_twice_and_the_timelock_may_execute_directly(chain, system, g, bob):
    gov, vault = g.governor, system.vault
    pid, eta, _ = propose(g, vault, encode(vault, "setGuardian", bob))
    chain.pending_timestamp = eta
    # Anyone may execute on the timelock itself (open executor role): the governor's record follows.
    tx = g.timelock.execute(gov, 0, encode(gov, "executeProposal", pid), b"\0" * 32, b"\0" * 32, sender=bob)
    assert len(list(gov.Executed.from_receipt(tx))) == 1
    assert vault.guardian() == bob.address and gov.proposal(pid).state == EXECUTED
    with expect_revert(gov.ProposalNotPending, proposalId=pid, state=EXECUTED):
        gov.execute(pid, sender=bob)
    with expect_revert(gov.ProposalNotPending, proposalId=pid, state=EXECUTED):
        gov.cancel(pid, sender=g.guardian)


def test_a_proposal_whose_call_fails_at_execution_stays_pending(chain, project, system, g, deployer, bob):
    """Proposed while valid, failing when it runs (the new market's feed went stale over the delay): the
    execution reverts with the module's error, the proposal stays pending and runs once the feed is fresh."""
    gov, ch = g.governor, system.clearing_house
    oracle = project.MockAggregator.deploy(8, 150 * 10**8, "SOL / USD", sender=deployer)
    data = encode(ch, "listMarket", b32("SOL"), mp_tuple(ch.marketParams(ETH_ID), oracle=oracle.address), 0, WAD)
    pid, eta, _ = propose(g, ch, data)
    chain.pending_timestamp = eta
    with expect_revert(ch.StaleOracle, feed=oracle):
        gov.execute(pid, sender=bob)
    assert gov.proposal(pid).state == PENDING and ch.marketCount() == 2
    oracle.updateAnswer(150 * 10**8, sender=deployer)
    gov.execute(pid, sender=bob)
    assert gov.proposal(pid).state == EXECUTED and ch.marketCount() == 3


def test_governor_setters_take_effect(chain, system, g, carol, bob):
    """A new admin proposes, the old one no longer may; a zero admin is refused at proposal."""
    gov = g.governor
    with expect_revert(gov.ZeroAddress):
        gov.propose(gov, encode(gov, "setAdmin", ZERO), sender=g.admin)
    pid, eta, _ = propose(g, gov, encode(gov, "setAdmin", carol))
    chain.pending_timestamp = eta
    gov.execute(pid, sender=bob)
    with expect_revert(gov.NotAdmin, caller=g.admin):
        gov.propose(gov, encode(gov, "setGuardian", ZERO), sender=g.admin)
    gov.propose(gov, encode(gov, "setGuardian", ZERO), sender=carol)


@pytest.mark.parametrize("name", ["RiskGovernor", "CircuitBreaker", "GovernanceTimelock"])
def test_governance_contracts_fit_eip170(project, name):
    """As tests/test_contract_size.py does for the modules: the embedded chain does not enforce EIP-170."""
    import json
    from pathlib import Path

    build = json.loads((Path(project.path) / ".build" / "__local__.json").read_text())
    size = (len(build["contractTypes"][name]["runtimeBytecode"]["bytecode"]) - 2) // 2
    print(f"\n{name}: {size:,} bytes of runtime code, {24_576 - size:,} below the limit")
    assert size <= 24_576
