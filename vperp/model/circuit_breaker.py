"""CircuitBreaker (read-only mirror): the breakers' check over a Model's state."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..units import WAD
from .base import ModelRevert
from .wad_math import div_wad_down, mul_wad_down, mul_wad_up

if TYPE_CHECKING:
    from .model import Model


NO_CAP = 2**96 - 1


@dataclass
class BreakerParams:
    """ICircuitBreaker.BreakerParams, at CircuitBreaker.defaultParams()."""
    move_threshold: int = 5 * 10**16
    cool_off: int = 1_800
    divergence_threshold: int = 3 * 10**16
    divergence_duration: int = 1_800
    insurance_target: int = 10**16
    auction_soft_share: int = 5 * 10**17
    max_skew_share: int = 2 * 10**17


@dataclass
class MarketThresholds:
    """ICircuitBreaker.MarketThresholds: a market's own move, divergence and skew thresholds, 0 in a field: the global value."""
    move_threshold: int = 0
    divergence_threshold: int = 0
    divergence_duration: int = 0
    max_skew_share: int = 0


def breaker_thresholds(params: BreakerParams | None = None,
                       overrides: MarketThresholds | None = None) -> MarketThresholds:
    """CircuitBreaker.marketThresholds: the thresholds in force, the market's own where set, else the global."""
    bp = params or BreakerParams()
    t = overrides or MarketThresholds()
    return MarketThresholds(t.move_threshold or bp.move_threshold, t.divergence_threshold or bp.divergence_threshold,
                            t.divergence_duration or bp.divergence_duration, t.max_skew_share or bp.max_skew_share)


def _relative(a: int, b: int) -> int:
    """CircuitBreaker._relative: |a - b| / b [wad] rounded down, 0 when b is 0."""
    return 0 if b == 0 else div_wad_down(abs(a - b), b)


def breaker_check(model: Model, market_id: int, timestamp: int, params: BreakerParams | None = None,
                  reduce_only_until: int = 0, divergent_since: int = 0,
                  restriction: tuple[int, bool] = (NO_CAP, False),
                  configured_max_open_interest: int | None = None, skew_until: int = 0, skew_cap: int = 0,
                  thresholds: MarketThresholds | None = None) -> tuple:
    """CircuitBreaker.check(marketId): what a poke would measure and ask for, as the Evaluation tuple (capBase,
    reduceOnly, changes, holding, reduceOnlyUntil, divergentSince, index, move, divergence, insuranceFund,
    insuranceRequired, insuranceFactor, liveAuctionNotional, auctionSoft, auctionFactor, skewNotional, skewLimit,
    nav, skewUntil, skewCap). The breaker's stored state and the governor's restriction and configured cap are arguments (a breaker
    never poked and a governor that recorded nothing: the defaults). `thresholds`: the market's own
    thresholds as set (`setMarketThresholds`; None: none). Raises what indexPrice / twaps raise."""
    bp = params or BreakerParams()
    t = breaker_thresholds(bp, thresholds)
    index = model.index_price(market_id, timestamp)
    # _globals: every market's open interest, gross notional at the index each last accrued at.
    gross = 0
    for mid in sorted(model.markets):
        mk = model.markets[mid]
        gross += mul_wad_up(mk.long_open_interest + mk.short_open_interest, mk.last_index_price)
    fund = model.insurance_fund()
    required = mul_wad_up(gross, bp.insurance_target)
    insurance_factor = WAD if fund >= required else div_wad_down(fund, required)
    live = model.live_notional
    max_live = model.liquidation_params.max_auction_notional
    soft = mul_wad_down(max_live, bp.auction_soft_share)
    if live <= soft:
        auction_factor = WAD
    elif live < max_live:
        auction_factor = div_wad_down(max_live - live, max_live - soft)
    else:
        auction_factor = 0
    nav = model.pool_nav(timestamp)
    # _evaluate
    if market_id == 0 or market_id > len(model.markets):
        raise ModelRevert("UnknownMarket", market_id)
    mark_twap, index_twap = model.twaps(market_id, timestamp)
    move = _relative(index, index_twap)
    divergence = _relative(mark_twap, index_twap)
    until = reduce_only_until
    cool_off_end = timestamp + bp.cool_off
    holding = 0
    if move > t.move_threshold:
        holding |= 1 << 0
        until = max(until, cool_off_end)
    since = divergent_since
    if divergence > t.divergence_threshold:
        if since == 0:
            since = timestamp
        if timestamp - since >= t.divergence_duration:
            holding |= 1 << 1
            until = max(until, cool_off_end)
    else:
        since = 0
    reduce_only = timestamp < until
    cap = NO_CAP
    conf = model.markets[market_id].max_open_interest if configured_max_open_interest is None \
        else configured_max_open_interest
    if insurance_factor < WAD:
        holding |= 1 << 2
        cap = min(cap, mul_wad_down(conf, insurance_factor))
    if auction_factor < WAD:
        holding |= 1 << 3
        cap = min(cap, mul_wad_down(conf, auction_factor))
    mk = model.markets[market_id]
    long_oi, short_oi = mk.long_open_interest, mk.short_open_interest
    skew_notional = mul_wad_up(abs(long_oi - short_oi), index)
    skew_limit = mul_wad_down(nav, t.max_skew_share) if nav > 0 else 0
    if nav <= 0 or skew_notional > skew_limit:  # seen now: the cap holds a cool-off from now
        skew_until, skew_cap = cool_off_end, max(long_oi, short_oi)
    if timestamp < skew_until:
        holding |= 1 << 4
        cap = min(cap, skew_cap)
    changes = restriction[0] != cap or restriction[1] != reduce_only
    return (cap, reduce_only, changes, holding, until, since, index, move, divergence, fund, required,
            insurance_factor, live, soft, auction_factor, skew_notional, skew_limit, nav, skew_until, skew_cap)


def peg_hold(model: Model, market_id: int, timestamp: int, params: BreakerParams | None = None,
             move_until: int = 0, thresholds: MarketThresholds | None = None) -> tuple[int, bool, int]:
    """CircuitBreaker.pegHold(marketId): (until, live, moveThreshold). `live`: the live index is past the move
    threshold from the index TWAP; `until`: the stored end of the last poke that saw an index move (`move_until`, the
    reduce-only end that poke set), or timestamp + coolOff while the move is live, whichever is later. Raises what
    twaps / indexPrice raise."""
    bp = params or BreakerParams()
    t = breaker_thresholds(bp, thresholds)
    if market_id == 0 or market_id > len(model.markets):
        raise ModelRevert("UnknownMarket", market_id)
    _, index_twap = model.twaps(market_id, timestamp)
    live = _relative(model.index_price(market_id, timestamp), index_twap) > t.move_threshold
    return (max(move_until, timestamp + bp.cool_off) if live else move_until), live, t.move_threshold


def peg_hold_until(model: Model, market_id: int, timestamp: int, params: BreakerParams | None = None,
                   move_until: int = 0, thresholds: MarketThresholds | None = None) -> int:
    """CircuitBreaker.pegHoldUntil(marketId): `peg_hold`'s until."""
    return peg_hold(model, market_id, timestamp, params, move_until, thresholds)[0]
