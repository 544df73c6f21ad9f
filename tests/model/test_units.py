"""vperp.units (and the model's mirrored constants) against the deployed contracts' own public constants:
a default or limit changed on one side only fails here. The pause levels are internal Solidity constants, read
from contracts/interfaces/IErrors.sol's text and checked against the Vault's bound."""
import re
from pathlib import Path

from vperp import model, units
from vperp.config import MarketConfig

ROOT = Path(__file__).resolve().parents[2]


def test_funding_defaults_are_the_clearing_houses(system):
    ch = system.clearing_house
    assert ch.DEFAULT_MAX_FUNDING_RATE() == units.DEFAULT_MAX_FUNDING_RATE
    assert ch.DEFAULT_MAX_RATE_VELOCITY() == units.DEFAULT_MAX_RATE_VELOCITY
    assert ch.DEFAULT_SMOOTHING_TAU() == units.DEFAULT_SMOOTHING_TAU
    assert ch.DEFAULT_FUNDING_PERIOD_HOURS() == units.DEFAULT_FUNDING_PERIOD_HOURS
    assert ch.DEFAULT_SKEW_FUNDING_PPM() == units.DEFAULT_SKEW_FUNDING_PPM
    # a newly listed market starts on them (the deployment lists ETH and BTC without funding parameters), its cap
    # the one its taker fee allows at the listing's time constant (the fee / 9), at most DEFAULT_MAX_FUNDING_RATE
    mid = system.markets["ETH"].id
    fp = ch.fundingParams(mid)
    assert (fp.maxFundingRate, fp.maxRateVelocity, fp.smoothingTau, fp.fundingPeriodHours) == (
        units.listing_funding_cap(ch.marketParams(mid).takerFee), units.DEFAULT_MAX_RATE_VELOCITY,
        units.DEFAULT_SMOOTHING_TAU, units.DEFAULT_FUNDING_PERIOD_HOURS)
    assert fp.maxFundingRate == ch.marketParams(mid).takerFee // 9 < units.DEFAULT_MAX_FUNDING_RATE


def test_the_models_limits_are_the_contracts(system):
    assert system.vault.MAX_OPEN_MARKETS() == model.MAX_OPEN_MARKETS
    assert system.pool.SUSPENSION_TOLERANCE() == model.SUSPENSION_TOLERANCE
    assert model.WAD == units.WAD == 10**18 and model.INT96_MAX == units.INT96_MAX == 2**95 - 1


def test_the_funding_caps_bound_is_the_configurators(system, deployer):
    """units.max_funding_cap (the config file's bound for `max_funding_rate`, with the taker fee and the time
    constant) is the highest cap setFundingParams takes: one wei more is refused ParameterOutOfBounds("maxFundingRate",
    value), at both time constants and at the largest fee (1 %), where the cap reaches its highest, below the hard
    bound units.MAX_FUNDING_RATE (which the fee's rule therefore always undercuts)."""
    from helpers.governance import mp_tuple
    from helpers.trading import expect_revert

    ch = system.clearing_house
    mid = system.markets["ETH"].id
    ch.setMarketParams(mid, mp_tuple(ch.marketParams(mid), takerFee=10**16), ch.insuranceFeeShare(mid), sender=deployer)
    f = ch.fundingParams(mid)
    for tau in (units.SLOW_SMOOTHING_TAU - 1, units.SLOW_SMOOTHING_TAU):
        cap = units.max_funding_cap(10**16, tau)
        assert cap == 10**16 // units.cap_fee_hours(tau) < units.MAX_FUNDING_RATE
        with expect_revert(ch.ParameterOutOfBounds, name=b"maxFundingRate".ljust(32, b"\0"), value=cap + 1):
            ch.setFundingParams(mid, (cap + 1, f.maxRateVelocity, 0, tau, f.fundingPeriodHours), sender=deployer)
        ch.setFundingParams(mid, (cap, f.maxRateVelocity, 0, tau, f.fundingPeriodHours), sender=deployer)
        assert ch.fundingParams(mid).maxFundingRate == cap


def test_pool_defaults_are_the_pools(system):
    """The LiquidityPool's constructor parameters (the deployment leaves them) are units.DEFAULT_POOL_*, and the
    model starts on the same."""
    p = system.pool.poolParams()
    assert (p.withdrawCooldown, p.withdrawWindow, p.reserveFactor) == (
        units.DEFAULT_POOL_WITHDRAW_COOLDOWN, units.DEFAULT_POOL_WITHDRAW_WINDOW, units.DEFAULT_POOL_RESERVE_FACTOR)
    m = model.Model()
    assert (m.pool_cooldown, m.pool_window, m.pool_reserve_factor) == tuple(p)


def test_auction_defaults_are_the_engines(system):
    """LiquidationEngine.defaultAuctionParams (what auctionParams answers for a market governance never set) is
    units.DEFAULT_AUCTION_*; the model's AuctionParams() and a MarketConfig's auction fields default to the same, so
    a deployed market's auctionParams (set from its config) are the engine's defaults; and AUCTION_CURVES is
    ILiquidationEngine.Curve in enum order."""
    engine = system.liquidation
    expected = (units.DEFAULT_AUCTION_CURVE, units.DEFAULT_AUCTION_DURATION, units.DEFAULT_AUCTION_STEP,
                units.DEFAULT_AUCTION_MAX_DISCOUNT, units.DEFAULT_AUCTION_RESET_DROP)
    assert tuple(engine.defaultAuctionParams()) == expected
    assert tuple(engine.auctionParams(2**32 - 1)) == expected  # no market: the defaults
    assert tuple(engine.auctionParams(system.markets["ETH"].id)) == expected
    a = model.AuctionParams()
    assert (a.curve, a.duration, a.step, a.max_discount, a.reset_drop) == expected
    assert MarketConfig("X", 1.0).to_auction_params() == expected
    source = (ROOT / "contracts" / "interfaces" / "ILiquidationEngine.sol").read_text()
    body = re.search(r"\benum\s+Curve\s*\{([^}]*)\}", source).group(1)
    names = tuple(re.sub(r"//[^\n]*", "", body).replace(",", " ").lower().split())
    assert names == units.AUCTION_CURVES
    assert (model.CURVE_LINEAR, model.CURVE_EXPONENTIAL, model.CURVE_STAIRSTEP) == (0, 1, 2)
    assert units.AUCTION_CURVES[units.DEFAULT_AUCTION_CURVE] == "exponential" == MarketConfig("X", 1.0).auction_curve


def test_liquidation_defaults_are_the_engines(system):
    """LiquidationEngine's constructor LiquidationParams (liquidationParams(); the deployment leaves them) are
    units.DEFAULT_LIQUIDATION_*, and the model's LiquidationParams() starts on the same."""
    p = system.liquidation.liquidationParams()
    expected = (units.DEFAULT_LIQUIDATION_TARGET_HEALTH, units.DEFAULT_LIQUIDATION_CHIP,
                units.DEFAULT_LIQUIDATION_PENALTY, units.DEFAULT_LIQUIDATION_MAX_REDOS, units.DEFAULT_LIQUIDATION_TIP,
                units.DEFAULT_LIQUIDATION_MAX_KEEPER_REWARD, units.DEFAULT_LIQUIDATION_MAX_AUCTION_NOTIONAL)
    assert (p.targetHealth, p.chip, p.penalty, p.maxRedos, p.tip, p.maxKeeperReward, p.maxAuctionNotional) == expected
    lp = model.LiquidationParams()
    assert (lp.target_health, lp.chip, lp.penalty, lp.max_redos, lp.tip, lp.max_keeper_reward,
            lp.max_auction_notional) == expected


def test_pause_levels_are_the_vaults(system, deployer):
    """units.PAUSE_* are IErrors.sol's file-level constants of the same names (internal: read from the source),
    the dashboard labels exactly those levels and 0, and the Vault takes the highest and refuses one more."""
    from helpers.trading import expect_revert
    from vperp.dashboard import PAUSE_LEVELS

    source = (ROOT / "contracts" / "interfaces" / "IErrors.sol").read_text()
    declared = {name: int(v) for name, v in re.findall(r"^uint8\s+constant\s+(PAUSE_\w+)\s*=\s*(\d+)\s*;", source,
                                                         re.MULTILINE)}
    ours = {name: getattr(units, name) for name in dir(units) if name.startswith("PAUSE_")}
    assert declared and declared == ours
    assert set(PAUSE_LEVELS) == {0, *ours.values()}
    vault = system.vault
    top = max(ours.values())
    assert top == units.PAUSE_WITHDRAW_ONLY
    with expect_revert(vault.InvalidPauseLevel, level=top + 1):
        vault.setPauseLevel(top + 1, sender=deployer)
    vault.setPauseLevel(top, sender=deployer)
    assert vault.pauseLevel() == top
    vault.setPauseLevel(0, sender=deployer)
