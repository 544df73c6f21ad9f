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
    # a newly listed market starts on them (the deployment lists ETH and BTC without funding parameters)
    fp = ch.fundingParams(system.markets["ETH"].id)
    assert (fp.maxFundingRate, fp.maxRateVelocity, fp.smoothingTau, fp.fundingPeriodHours) == (
        units.DEFAULT_MAX_FUNDING_RATE, units.DEFAULT_MAX_RATE_VELOCITY, units.DEFAULT_SMOOTHING_TAU,
        units.DEFAULT_FUNDING_PERIOD_HOURS)


def test_the_models_limits_are_the_contracts(system):
    assert system.vault.MAX_OPEN_MARKETS() == model.MAX_OPEN_MARKETS
    assert system.pool.SUSPENSION_TOLERANCE() == model.SUSPENSION_TOLERANCE
    assert model.WAD == units.WAD == 10**18 and model.INT96_MAX == units.INT96_MAX == 2**95 - 1


def test_the_funding_caps_bound_is_the_configurators(system, deployer):
    """units.MAX_FUNDING_RATE (the config file's bound for `max_funding_rate`) is the highest cap setFundingParams
    takes: one wei more is refused ParameterOutOfBounds("maxFundingRate", value)."""
    from helpers.trading import expect_revert

    ch = system.clearing_house
    mid = system.markets["ETH"].id
    f = ch.fundingParams(mid)
    rest = (f.maxRateVelocity, f.baselineRate, f.smoothingTau, f.fundingPeriodHours)
    with expect_revert(ch.ParameterOutOfBounds, name=b"maxFundingRate".ljust(32, b"\0"), value=units.MAX_FUNDING_RATE + 1):
        ch.setFundingParams(mid, (units.MAX_FUNDING_RATE + 1, *rest), sender=deployer)
    ch.setFundingParams(mid, (units.MAX_FUNDING_RATE, *rest), sender=deployer)
    assert ch.fundingParams(mid).maxFundingRate == units.MAX_FUNDING_RATE
