"""The deployment config's hard bounds (vperp/config_file.py MARKET_RULES) against the contracts' own.

config_file.py retypes the bounds the setters enforce (`ParameterOutOfBounds`) so that a YAML mistake is
named before anything is deployed. This test holds the two copies together: for every bounded market field
the chain's setter accepts the bound when the rule says it is inclusive, refuses it when exclusive, and
refuses one unit (1 wei of a WAD ratio, 1 second) beyond it, with `ParameterOutOfBounds` and nothing changed.
A bound changed in a contract and not in config_file.py (or the reverse) fails here.
"""
from __future__ import annotations

from decimal import Decimal, localcontext

import pytest
from ape.exceptions import ContractLogicError

from vperp.config_file import MARKET_RULES

from vperp.units import SLOW_SMOOTHING_TAU, WAD, funding_off_params
# ParameterOutOfBounds(bytes32,uint256)'s selector, as it shows in an undecoded revert (bytes repr).
OUT_OF_BOUNDS = r"\\x81\\x7f\\xc7\\xda"

# field -> (setter, index in the setter's tuple, unit): "wad" fields are WAD-scaled, "int" plain integers.
# MarketParams: (oracle, heartbeat, twapWindow, imr, mmr, takerFee, maxSpread, maxOiPoolRatio, maxOpenInterest,
# minPositionSize); AuctionParams: (curve, duration, step, maxDiscount, resetDrop); AmmParams: (depthRatio,
# maxDepthChange, repegThreshold, maxRepegStep, maxRepegCost, repegInterval, depthInterval, maxDepthCost);
# FundingParams: (maxFundingRate, maxRateVelocity, baselineRate, smoothingTau, fundingPeriodHours).
FIELDS = {
    "heartbeat": ("market", 1, "int"),
    "twap_window": ("market", 2, "int"),
    "imr": ("market", 3, "wad"),
    "mmr": ("market", 4, "wad"),
    "taker_fee": ("market", 5, "wad"),
    "max_spread": ("market", 6, "wad"),
    "max_oi_pool_ratio": ("market", 7, "wad"),
    "max_open_interest": ("market", 8, "wad"),
    "min_position_size": ("market", 9, "wad"),
    "insurance_fee_share": ("fee_share", None, "wad"),
    "auction_duration": ("auction", 1, "int"),
    "auction_max_discount": ("auction", 3, "wad"),
    "auction_reset_drop": ("auction", 4, "wad"),
    "depth_ratio": ("amm", 0, "wad"),
    "max_depth_change": ("amm", 1, "wad"),
    "repeg_threshold": ("amm", 2, "wad"),
    "max_repeg_step": ("amm", 3, "wad"),
    "max_repeg_cost": ("amm", 4, "wad"),
    "repeg_interval": ("amm", 5, "int"),
    "depth_interval": ("amm", 6, "int"),
    "max_depth_cost": ("amm", 7, "wad"),
    "depth_range": ("concentration", 0, "wad"),  # setConcentration(marketId, range, amplification)
    "depth_amplification": ("concentration", 1, "wad"),  # probed at the smallest range, where its bound is widest
    "skew_funding": ("skew", None, "ppm"),  # setSkewFunding(marketId, ratePpm): millionths per hour
    "peg_tolerance_bps": ("peg", None, "int"),  # setPegTolerance(marketId, bps)
    "funding_period_hours": ("funding", 4, "int"),  # setFundingParams: FundingParams.fundingPeriodHours
    "funding_smoothing_tau": ("funding", 3, "int"),  # FundingParams.smoothingTau
    "max_funding_rate": ("funding", 0, "wad"),  # FundingParams.maxFundingRate
}
# Not set through a bounded setter: the feed's decimals and the first price (read from the feed), the listing's
# base reserve (listMarket), the stairstep width (bounded by the duration: its own test in test_liquidation.py).
UNCHECKED = {"oracle_decimals", "price", "base_reserve", "auction_step"}


def test_every_bounded_field_is_checked_here():
    assert set(MARKET_RULES) == set(FIELDS) | UNCHECKED


# Fields whose config bound is their Solidity type's maximum (a value above it cannot even be encoded):
# AmmParams.depthRatio is a uint64, so the contract's MAX_DEPTH_RATIO (100) is out of reach at 18.45.
TYPE_MAX = {"depth_ratio": 2**64 - 1}


def _raw(value, unit: str) -> int:
    with localcontext() as ctx:
        ctx.prec = 100
        return int(Decimal(value) * {"wad": WAD, "ppm": 10**6}.get(unit, 1))


def test_bounds_at_a_type_maximum_are_that_maximum():
    for field, top in TYPE_MAX.items():
        _, _, hi, _, hi_in = MARKET_RULES[field]
        assert hi_in and _raw(hi, FIELDS[field][2]) == top


def _probes(field: str):
    """(raw value, accepted?) at and one unit beyond each finite bound."""
    kind, lo, hi, lo_in, hi_in = MARKET_RULES[field]
    unit = FIELDS[field][2]
    out = []
    if lo is not None and not (field == "imr"):  # imr's lower bound is "above mmr", checked with mmr below
        out += [(_raw(lo, unit), lo_in), (_raw(lo, unit) - 1, False)] if _raw(lo, unit) > 0 else [(0, lo_in)]
    if hi is not None:
        out += [(_raw(hi, unit), hi_in), (_raw(hi, unit) + 1, False)]
    return out


def _send(system, field: str, raw: int):
    eth = system.markets["ETH"]
    ch, engine, amm, owner = system.clearing_house, system.liquidation, system.amm, system.deployer
    setter, index, _ = FIELDS[field]
    if setter in ("market", "fee_share"):
        params = list(eth.config.to_params(eth.oracle.address))
        share = int(Decimal(str(eth.config.insurance_fee_share)) * WAD)
        if setter == "market":
            params[index] = raw
            if field == "mmr":
                params[3] = WAD  # imr > mmr whatever mmr is probed
            if field == "min_position_size":
                params[8] = max(params[8], raw)  # a minimum no larger than the cap
            if field == "taker_fee":  # funding off first: a fee below six hours of the cap is refused on its own
                ch.setFundingParams(eth.id, funding_off_params(ch.fundingParams(eth.id)), sender=owner)
        else:
            share = raw
        return ch.setMarketParams(eth.id, tuple(params), share, sender=owner)
    if setter == "skew":
        return ch.setSkewFunding(eth.id, raw, sender=owner)
    if setter == "peg":
        return ch.setPegTolerance(eth.id, raw, sender=owner)
    if setter == "funding":
        params = list(ch.fundingParams(eth.id))
        params[index] = raw
        if field == "max_funding_rate":  # probed where the cap's bound is widest: the largest fee, a slow tau
            market = list(eth.config.to_params(eth.oracle.address))
            market[5] = 10**16
            ch.setMarketParams(eth.id, tuple(market), ch.insuranceFeeShare(eth.id), sender=owner)
            params[3] = max(params[3], SLOW_SMOOTHING_TAU)
        return ch.setFundingParams(eth.id, tuple(params), sender=owner)
    if setter == "auction":
        params = list(eth.config.to_auction_params())
        params[index] = raw
        if field == "auction_duration":
            params[2] = min(params[2], max(raw, 1))  # the stairstep width stays within the duration
        return engine.setAuctionParams(eth.id, tuple(params), sender=owner)
    if setter == "concentration":
        # The range probed with amplification 1 (valid at any range); the amplification at the smallest range,
        # whose maxAmplification is the config's static ceiling (the per-range cap is checked in config_file).
        args = [10**16, WAD]
        args[index] = raw
        return amm.setConcentration(eth.id, *args, sender=owner)
    params = list(eth.config.to_amm_params())
    params[index] = raw
    return amm.setAmmParams(eth.id, tuple(params), sender=owner)


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_config_bounds_are_the_contracts(system, chain, field):
    eth = system.markets["ETH"]
    for raw, accepted in _probes(field):
        if raw < 0 or raw > TYPE_MAX.get(field, raw):
            continue  # beyond the field's type: cannot be sent (the bound is the type's)
        snap = chain.snapshot()
        try:
            eth.oracle.updateAnswer(eth.oracle.latestRoundData()[1], sender=system.deployer)  # a fresh feed
            if accepted:
                _send(system, field, raw)
            else:
                with pytest.raises(ContractLogicError) as info:
                    _send(system, field, raw)
                assert "ParameterOutOfBounds" in repr(info.value) or "ParameterOutOfBounds" in str(
                    getattr(info.value, "abi", "")) or OUT_OF_BOUNDS in repr(info.value), f"{field}={raw}: {info.value!r}"
        finally:
            chain.restore(snap)


def test_the_yaml_names_what_the_chain_would_refuse():
    """Two values config_file.py used to let through to the deploy: a depth ratio above what AmmParams' uint64
    holds (the deploy then failed inside the ABI encoder, naming no field) and a maximum open interest a few wei
    above int96.max (Decimal's 28-digit division rounded the bound up)."""
    from vperp.config_file import ConfigError, parse_config

    def market(**fields):
        return {"markets": [{"symbol": "ETH", "price": 3000, **fields}]}

    with pytest.raises(ConfigError, match=r"markets\[0\]\.depth_ratio .*at most 18\.446744073709551615"):
        parse_config(market(depth_ratio=50))
    assert parse_config(market(depth_ratio="18.446744073709551615")).markets[0].depth_ratio
    top = "39614081257.132168796771975167"  # int96.max / 1e18, exactly
    parse_config(market(max_open_interest=top))
    with pytest.raises(ConfigError, match="max_open_interest"):
        parse_config(market(max_open_interest="39614081257.132168796771975168"))


def test_peg_guard_is_a_flag_and_needs_governance():
    """`peg_guard` (docs/governance.md "Peg guard"): true or false, and only with a governance section, since the
    guard is the circuit breaker that section deploys. Off by default."""
    from vperp.config_file import ConfigError, parse_config

    gov = {"admin": "0x" + "11" * 20, "guardian": "0x" + "22" * 20}
    eth = {"symbol": "ETH", "price": 3000}
    assert parse_config({"markets": [eth]}).markets[0].peg_guard is False
    assert parse_config({"markets": [{**eth, "peg_guard": True}], "governance": gov}).markets[0].peg_guard is True
    with pytest.raises(ConfigError, match=r"markets\[0\]\.peg_guard \(ETH\): must be true or false"):
        parse_config({"markets": [{**eth, "peg_guard": "yes"}], "governance": gov})
    with pytest.raises(ConfigError, match=r"markets\[0\]\.peg_guard: needs a governance section"):
        parse_config({"markets": [{**eth, "peg_guard": True}]})
