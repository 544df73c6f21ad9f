"""The modules' administrative and read-only surface: two-step ownership (transfer, accept, renounce) of
the Vault, the ClearingHouse, the LiquidationEngine, the LiquidityPool and the AmmController,
their wiring getters and published constants, and the pool's ERC-20 side (name, symbol, allowance
transfers, withdrawableAssets).

Expected values come from the specification and the docs, not from the contracts: docs/funding.md's funding
defaults (a cap of the taker fee / 9 up to 0.1 %/h, 0.05 %/h per hour velocity, 2 h smoothing, 24 h period), the 128-market limit
of the open-market bitmap (design.md), and pool.md's withdrawable formula; the default auction (exponential, 30 min,
60 s steps, 2 % max discount, 5 % reset drop) is vperp.units' DEFAULT_AUCTION_* (one copy, which
tests/model/test_units.py also checks against the engine's auctionParams).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from ape import project

from helpers.trading import b32, ceil_div, deadline, exit_value, expect_revert
from helpers.vault import only_event
from helpers.wired import assert_constructor_reverts, ch_state, wired  # noqa: F401 - wired is a fixture

from vperp.units import (
    DEFAULT_AUCTION_CURVE, DEFAULT_AUCTION_DURATION, DEFAULT_AUCTION_MAX_DISCOUNT, DEFAULT_AUCTION_RESET_DROP,
    DEFAULT_AUCTION_STEP, WAD,
)

ZERO = "0x0000000000000000000000000000000000000000"


def modules(system):
    return {"Vault": system.vault, "ClearingHouse": system.clearing_house, "LiquidationEngine": system.liquidation,
            "LiquidityPool": system.pool, "AmmController": system.amm}


@pytest.mark.parametrize("name", ["Vault", "ClearingHouse", "LiquidationEngine", "LiquidityPool", "AmmController"])
def test_two_step_ownership(system, deployer, alice, bob, name):
    c = modules(system)[name]
    assert c.owner() == deployer and c.pendingOwner() == ZERO

    with expect_revert(c.OwnableUnauthorizedAccount, account=alice):
        c.transferOwnership(alice, sender=alice)
    c.transferOwnership(alice, sender=deployer)
    assert c.pendingOwner() == alice and c.owner() == deployer  # nothing moves until accepted

    with expect_revert(c.OwnableUnauthorizedAccount, account=bob):
        c.acceptOwnership(sender=bob)
    c.acceptOwnership(sender=alice)
    assert c.owner() == alice and c.pendingOwner() == ZERO

    # The old owner lost its rights; renouncing is the new owner's alone, and final.
    with expect_revert(c.OwnableUnauthorizedAccount, account=deployer):
        c.renounceOwnership(sender=deployer)
    c.renounceOwnership(sender=alice)
    assert c.owner() == ZERO
    with expect_revert(c.OwnableUnauthorizedAccount, account=alice):
        c.transferOwnership(alice, sender=alice)


def test_wiring_getters(system):
    ch, engine, pool, amm, vault = system.clearing_house, system.liquidation, system.pool, system.amm, system.vault
    assert ch.vault() == vault and ch.liquidationEngine() == engine and ch.ammController() == amm
    assert engine.vault() == vault and engine.clearingHouse() == ch
    assert pool.vault() == vault and pool.clearingHouse() == ch and pool.asset() == system.collateral
    assert amm.clearingHouse() == ch and amm.pool() == pool


def test_published_constants(system):
    ch = system.clearing_house
    assert ch.MAX_MARKETS() == 128
    assert ch.DEFAULT_MAX_FUNDING_RATE() == WAD // 1000  # 0.1 % per hour
    assert ch.DEFAULT_MAX_RATE_VELOCITY() == WAD // 2000  # 0.05 % per hour, per hour
    assert ch.DEFAULT_SMOOTHING_TAU() == 2 * 3600
    assert ch.DEFAULT_FUNDING_PERIOD_HOURS() == 24
    d = system.liquidation.defaultAuctionParams()
    assert (d.curve, d.duration, d.step, d.maxDiscount, d.resetDrop) == (
        DEFAULT_AUCTION_CURVE, DEFAULT_AUCTION_DURATION, DEFAULT_AUCTION_STEP, DEFAULT_AUCTION_MAX_DISCOUNT,
        DEFAULT_AUCTION_RESET_DROP)


def test_pool_erc20_side(system, pool, usdc, chain, alice, bob, carol):
    assert pool.name() == "vPerp Liquidity" and pool.symbol() == "vLP"
    assert pool.tokenScale() == 10 ** (18 - usdc.decimals())
    amount = 1_000 * 10**6
    usdc.mint(alice, amount, sender=alice)
    usdc.approve(pool, amount, sender=alice)
    pool.deposit(amount, alice, sender=alice)
    shares = pool.balanceOf(alice)
    pool.requestWithdraw(shares, sender=alice)

    # transferFrom needs an allowance, spends it exactly, and shrinks the sender's request.
    with expect_revert(pool.ERC20InsufficientAllowance, spender=bob, allowance=0, needed=shares // 4):
        pool.transferFrom(alice, carol, shares // 4, sender=bob)
    pool.approve(bob, shares // 2, sender=alice)
    pool.transferFrom(alice, carol, shares // 4, sender=bob)
    assert pool.allowance(alice, bob) == shares // 2 - shares // 4
    assert pool.balanceOf(carol) == shares // 4
    assert pool.withdrawRequest(alice).shares == shares - shares // 4


def test_withdrawable_assets_follows_cash_reserve_and_traders(system, pool, vault, ch, eth, alice):
    """withdrawableAssets = min(cash - traders' exit PnL - uncovered bad debt - ceil(reserveFactor x
    netExposure), cash) / scale, floored; the traders' side is their vAMM exit (VAmmMath.exitValue) less the
    open notional, and the exposure |net| x vAMM price."""
    system.fund(alice, 200_000)
    ch.openPosition(0, eth.id, 50 * WAD, 2**256 - 1, deadline(), sender=alice)
    cash = vault.poolBalance()
    st = ch.marketState(eth.id)
    size, on, pf = ch.position(alice, 0, eth.id)
    assert pf == 0  # funding starts from zero in the listing block's market
    pnl = exit_value(st.baseReserve, st.quoteReserve, size) - on
    exposure = ceil_div(size * st.spotPrice, WAD)
    assert tuple(ch.tradersExitPnl()) == (pnl, exposure, 0, 0)
    assert pool.uncoveredBadDebt() == 0
    factor = pool.poolParams().reserveFactor
    free = cash - pnl - ceil_div(exposure * factor, WAD)
    expected = max(min(free, cash), 0) // 10**12
    assert exposure > 0 and pool.withdrawableAssets() == expected
    assert pool.reserveRequired() == ceil_div(exposure * factor, WAD)


def test_last_repeg_starts_at_zero_and_is_per_market(system, eth, btc):
    assert system.amm.lastRepeg(eth.id) == 0 and system.amm.lastRepeg(btc.id) == 0


def test_clearing_house_wiring_emits_module_set_once(project, system, deployer):
    """Who may call the privileged hooks is visible to indexers: each wiring emits ModuleSet, once."""
    ch = project.ClearingHouse.deploy(system.vault, deployer, sender=deployer)
    for setter, name, module in ((ch.setLiquidationEngine, b"liquidationEngine", system.liquidation),
                                 (ch.setAmmController, b"ammController", system.amm)):
        logs = setter(module, sender=deployer).decode_logs(ch.ModuleSet)
        assert len(logs) == 1
        assert bytes(logs[0].name) == name.ljust(32, b"\0") and logs[0].module == module
        with expect_revert(ch.ModuleAlreadySet, module=module):
            setter(deployer, sender=deployer)


# ---------------------------------------------------------------------------- ClearingHouse guards


# Hard bounds of the ClearingHouse's virtual reserves.
MIN_BASE_RESERVE = 10**18
MAX_RESERVE = 10**36


def test_clearing_house_constructor_rejects_zero_vault(chain, deployer):
    """A ClearingHouse without a Vault is refused at deployment: ZeroAddress(), nothing deployed."""
    assert_constructor_reverts(chain, deployer, project.ClearingHouse, project.ClearingHouse.ZeroAddress, ZERO, deployer)


@pytest.mark.parametrize("setter,getter", [("setAmmController", "ammController"),
                                           ("setLiquidationEngine", "liquidationEngine")])
def test_clearing_house_module_setter_rejects_zero_and_stays_unwired(system, deployer, carol, setter, getter):
    """A fresh ClearingHouse's once-only module setters refuse the zero address (ZeroAddress()); the slot
    stays empty and can still be wired to a real module afterwards."""
    ch = project.ClearingHouse.deploy(system.vault, deployer, sender=deployer)
    with expect_revert(ch.ZeroAddress):
        getattr(ch, setter)(ZERO, sender=deployer)
    assert getattr(ch, getter)() == ZERO
    getattr(ch, setter)(carol, sender=deployer)
    assert getattr(ch, getter)() == carol.address


@pytest.mark.parametrize("hook", ["markForAuction", "settleAuctionFill", "backstopClose", "releaseFromAuction",
                                  "setReserves"])
@pytest.mark.parametrize("caller_name", ["owner_of_position", "deployer"])
def test_module_hooks_refuse_other_callers(wired, deployer, hook, caller_name):
    """The liquidation hooks answer only the liquidation engine, setReserves only the AMM controller:
    from the position's owner or from the contract owner they revert UnauthorizedModule(caller) and
    change nothing (ledger, market, positions, auctioned sizes)."""
    w = wired
    caller = w.long if caller_name == "owner_of_position" else deployer
    calls = {
        "markForAuction": lambda: w.ch.markForAuction(w.long, 0, w.market, WAD, sender=caller),
        "settleAuctionFill": lambda: w.ch.settleAuctionFill(w.long, 0, w.market, WAD, 3000 * WAD, w.taker, 0,
                                                            sender=caller),
        "backstopClose": lambda: w.ch.backstopClose(w.long, 0, w.market, WAD, 2900 * WAD, sender=caller),
        "releaseFromAuction": lambda: w.ch.releaseFromAuction(w.long, 0, w.market, WAD, sender=caller),
        "setReserves": lambda: w.ch.setReserves(w.market, 20_000 * WAD, 60_000_000 * WAD, 0, sender=caller),
    }
    owners = (w.long, w.short, w.taker)
    before = ch_state(w, owners)
    with expect_revert(w.ch.UnauthorizedModule, caller=caller):
        calls[hook]()
    assert ch_state(w, owners) == before


@pytest.mark.parametrize("base,quote,name,value", [
    (MIN_BASE_RESERVE - 1, 30_000_000 * WAD, "baseReserve", MIN_BASE_RESERVE - 1),
    (0, 30_000_000 * WAD, "baseReserve", 0),
    (MAX_RESERVE + 1, 30_000_000 * WAD, "baseReserve", MAX_RESERVE + 1),
    (10_000 * WAD, 0, "quoteReserve", 0),
    (10_000 * WAD, MAX_RESERVE + 1, "quoteReserve", MAX_RESERVE + 1),
    (0, 0, "baseReserve", 0),  # both out of bounds: the base reserve is checked first
])
def test_set_reserves_out_of_bounds(wired, base, quote, name, value):
    """setReserves from the AMM controller refuses reserves outside the hard bounds with
    ParameterOutOfBounds(name, value); the market (reserves, open interest) and every position stay."""
    w = wired
    owners = (w.long, w.short)
    before = ch_state(w, owners)
    with expect_revert(w.ch.ParameterOutOfBounds, name=b32(name), value=value):
        w.ch.setReserves(w.market, base, quote, 0, sender=w.amm)
    assert ch_state(w, owners) == before


@pytest.mark.parametrize("base,quote", [(MIN_BASE_RESERVE, 1), (MAX_RESERVE, MAX_RESERVE)])
def test_set_reserves_bounds_are_inclusive(wired, base, quote):
    """Control for the bounds: the bound values themselves are accepted and written as given."""
    w = wired
    tx = w.ch.setReserves(w.market, base, quote, 0, sender=w.amm)
    log = only_event(tx, w.ch.ReservesSet)
    assert (log.marketId, log.baseReserve, log.quoteReserve) == (w.market, base, quote)
    s = w.ch.marketState(w.market)
    assert (s.baseReserve, s.quoteReserve) == (base, quote)


ABI_DIR = Path(__file__).resolve().parents[1] / "abi"
OWNABLE2STEP = {"owner", "pendingOwner", "transferOwnership", "acceptOwnership", "renounceOwnership"}
# What a module's interface may leave out: OpenZeppelin's ownership functions and the owner's own setters (the
# governance surface is the RiskGovernor's, which declares what it calls).
OWNER_ONLY = {
    "Vault": {"setClearingHouse", "setLiquidationEngine", "setLiquidityPool", "setGuardian", "setPauseLevel"},
    "ClearingHouse": {"listMarket", "setMarketParams", "setFundingParams", "setAmmController", "setLiquidationEngine"},
    "LiquidationEngine": {"setAuctionParams", "setLiquidationParams"},
    "LiquidityPool": {"setPoolParams"},
    "AmmController": {"setAmmParams", "setConcentration"},
    "CircuitBreaker": set(),
    "RiskGovernor": set(),
    "PerpReader": set(),
    "OrderRouter": set(),
}


def _functions(name):
    return {e["name"] for e in json.loads((ABI_DIR / f"{name}.json").read_text()) if e["type"] == "function"}


@pytest.mark.parametrize("name", sorted(OWNER_ONLY))
def test_every_public_getter_is_declared_in_the_interface(name):
    """An integrator compiling against contracts/interfaces/ reaches every view of the module (abi/ is written
    by `ape run export_abi` from the compiled contracts)."""
    missing = _functions(name) - _functions(f"I{name}")
    assert missing <= OWNABLE2STEP | OWNER_ONLY[name], sorted(missing - OWNABLE2STEP - OWNER_ONLY[name])
