"""vperp.units (and the model's mirrored constants) against the deployed contracts' own public constants:
a default or limit changed on one side only fails here."""
from vperp import model, units


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
