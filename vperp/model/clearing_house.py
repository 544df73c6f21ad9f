"""Mirror of ClearingHouse (with its storage, settlement and configurator parts): the `ClearingHouseMirror`
part of `Model`."""
from __future__ import annotations

import copy

from ..funding import clamp, evolve, tdiv
from ..units import (cap_fee_hours, FUNDING_WINDOW_HOURS, HOUR, INT96_MAX, max_funding_cap, MAX_PEG_TOLERANCE_BPS,
                     MAX_SKEW_FUNDING_PPM, min_rate_velocity, PAUSE_NO_NEW_RISK, PAUSE_NO_TRADING, WAD)
from .base import FUNDING_OBSERVATIONS, ModelRevert, OBSERVATIONS, OBSERVATIONS_PER_WINDOW, U112
from .state import _atomic, Account, FundingParams, MarginSummary, Market, Observation, peg_holds, Position, TradeResult
from .wad_math import (
    _int128, _int_n, _uint128, _wrap_i32, account_value, apply_trade, div_wad_down, excess_over_maintenance,
    free_collateral, mul_wad_down, mul_wad_up, s_mul_div_down, s_mul_wad_down, s_mul_wad_up, vamm_price, vamm_swap,
)


class ClearingHouseMirror:
    """The ClearingHouse (with its storage, settlement and configurator parts) part of `Model` (a mixin: every method runs on the one Model state)."""

    # ------------------------------------------------------------------ ClearingHouse actions

    @_atomic
    def poke_funding(self, market_id: int, timestamp: int) -> None:
        m = self._market(market_id)
        self._accrue(m, self._index(m, timestamp), timestamp)

    @_atomic
    def open_position(self, owner, sub: int, market_id: int, base: int, quote_limit: int, timestamp: int,
                      deadline: int, builder=None, builder_fee_rate: int = 0) -> TradeResult:
        """ClearingHouse.openPosition, or openPositionWithBuilder when `builder` is given (the fee is in
        `TradeResult.builder_fee`)."""
        if builder is not None and builder_fee_rate >= 2**96:  # packed with the builder in one word
            raise ModelRevert("ParameterOutOfBounds", "builderFeeRate", builder_fee_rate)
        return self._trade(owner, sub, market_id, base, quote_limit, timestamp, deadline, builder, builder_fee_rate)

    @_atomic
    def close_position(self, owner, sub: int, market_id: int, quote_limit: int, timestamp: int,
                       deadline: int) -> TradeResult:
        p = self._position(market_id, owner, sub)
        size = p.size - p.auctioned  # what is in an auction is the auction's to close
        if size == 0:
            raise ModelRevert("NoPosition", owner, sub, market_id)
        return self._trade(owner, sub, market_id, -size, quote_limit, timestamp, deadline)

    @_atomic
    def set_funding_params(self, market_id: int, params: FundingParams, timestamp: int) -> None:
        """ClearingHouse.setFundingParams: accrue at the old parameters and the last recorded index (the
        feed is not read: governance does not depend on it), then bound the parameters, then clamp rate
        and target."""
        m = self._market(market_id)
        self._accrue(m, m.last_index_price, timestamp, since=timestamp)
        bounds = (("maxFundingRate", params.max_funding_rate, 0, max_funding_cap(m.taker_fee, params.smoothing_tau)),
                  ("maxRateVelocity", params.max_rate_velocity, min_rate_velocity(params.max_funding_rate), 10**17),
                  ("smoothingTau", params.smoothing_tau, 60, 7 * 86400),
                  ("fundingPeriodHours", params.funding_period_hours, 1, 720),
                  ("baselineRate", abs(params.baseline_rate), 0, params.max_funding_rate))
        for name, value, lo, hi in bounds:
            if not lo <= value <= hi:
                raise ModelRevert("ParameterOutOfBounds", name, value)
        m.funding_params = copy.copy(params)
        m.rate = clamp(m.rate, params.max_funding_rate)
        m.target = clamp(m.target, params.max_funding_rate)

    @_atomic
    def set_market_params(self, market_id: int, timestamp: int, *, heartbeat: int | None = None,
                          twap_window: int | None = None, imr: int | None = None, mmr: int | None = None,
                          taker_fee: int | None = None, max_spread: int | None = None,
                          max_oi_pool_ratio: int | None = None, max_open_interest: int | None = None,
                          min_position_size: int | None = None, insurance_fee_share: int | None = None) -> None:
        """ClearingHouse.setMarketParams (the market keeps its oracle): accrue at the last recorded index
        without reading the feed (so `_accrue`'s dislocation test runs against that index and the old
        band), then the new parameters, each within its hard bound in the contract's order
        (ParameterOutOfBounds). Parameters left None keep their value."""
        m = self._market(market_id)
        self._accrue(m, m.last_index_price, timestamp, since=timestamp)
        new = {k: (getattr(m, k) if v is None else v) for k, v in (
            ("heartbeat", heartbeat), ("twap_window", twap_window), ("imr", imr), ("mmr", mmr),
            ("taker_fee", taker_fee), ("max_spread", max_spread), ("max_oi_pool_ratio", max_oi_pool_ratio),
            ("max_open_interest", max_open_interest), ("min_position_size", min_position_size),
            ("insurance_fee_share", insurance_fee_share))}
        bounds = (("heartbeat", new["heartbeat"], 60, 2 * 86400),
                  ("twapWindow", new["twap_window"], 60, 4 * HOUR),
                  ("mmr", new["mmr"], 5 * 10**15, WAD // 2),
                  ("imr", new["imr"], new["mmr"] + 1, WAD),
                  ("takerFee", new["taker_fee"],
                   m.funding_params.max_funding_rate * cap_fee_hours(m.funding_params.smoothing_tau), 10**16),
                  ("maxSpread", new["max_spread"], 5 * 10**15, WAD // 2),
                  ("maxOiPoolRatio", new["max_oi_pool_ratio"], 1, 10 * WAD),
                  ("maxOpenInterest", new["max_open_interest"], 1, INT96_MAX),
                  ("minPositionSize", new["min_position_size"], 1, new["max_open_interest"]),
                  ("insuranceFeeShare", new["insurance_fee_share"], 0, WAD))
        for name, value, lo, hi in bounds:
            if not lo <= value <= hi:
                raise ModelRevert("ParameterOutOfBounds", name, value)
        for k, v in new.items():
            setattr(m, k, v)

    def _trade(self, owner, sub, market_id, base, quote_limit, timestamp, deadline, builder=None,
               builder_fee_rate: int = 0) -> TradeResult:
        """ClearingHouse._trade, check for check in the same order."""
        if timestamp > deadline:
            raise ModelRevert("DeadlinePassed", deadline, timestamp)
        if base == 0:
            raise ModelRevert("ZeroSize")
        m = self._market(market_id)
        index = self._index(m, timestamp)
        self._accrue(m, index, timestamp)

        p = self._position(market_id, owner, sub)
        size = p.size
        cf = m.cumulative_funding
        funding = s_mul_wad_up(size, cf - p.last_cumulative_funding) if size != 0 else 0

        # Reducing: toward zero without crossing it; a reduce or close skips the price band.
        reducing = size != 0 and (size > 0) != (base > 0) and abs(base) <= abs(size)

        x, y = m.x, m.y
        self._check_liquidity(market_id, base, x)
        self._check_peg(market_id, m, index, base)
        price_before = vamm_price(x, y)
        quote, x, y = vamm_swap(x, y, base)
        price_after = vamm_price(x, y)
        if not reducing:
            self._check_price_band(market_id, m.max_spread, index, price_before, price_after)
        m.x, m.y = _uint128(x), _uint128(y)

        if (-quote > quote_limit) if base > 0 else (quote < quote_limit):
            raise ModelRevert("SlippageExceeded", quote, quote_limit)

        new_size, new_on, realized = apply_trade(size, p.open_notional, base, quote)
        self._check_auctioned_part(owner, sub, m, new_size, p.auctioned)
        if new_size != 0 and abs(new_size) < m.min_position_size:
            raise ModelRevert("BelowMinPositionSize", market_id, new_size, m.min_position_size)
        self._move_aggregates(m, p, new_size, new_on, cf)
        self.positions[(market_id, owner, sub)] = Position(_int128(new_size), _int128(new_on), _int128(cf), p.auctioned)

        fee = mul_wad_up(abs(quote), m.taker_fee)
        to_insurance = mul_wad_down(fee, m.insurance_fee_share)
        acct = self._settle_trade(owner, sub, market_id, new_size != 0, realized - funding - fee,
                                  funding - realized + (fee - to_insurance), to_insurance)

        if self.pause_level >= PAUSE_NO_TRADING or (self.pause_level == PAUSE_NO_NEW_RISK and not reducing):
            raise ModelRevert("Paused", self.pause_level)
        self._update_open_interest(market_id, m, size, new_size, index, self.pool_balance_wad)
        builder_fee = 0
        with_builder = not self._is_zero_address(builder) and builder_fee_rate != 0
        if with_builder:
            builder_fee = mul_wad_up(abs(quote), builder_fee_rate)
            acct = self._charge_builder_fee(owner, sub, builder, builder_fee_rate, builder_fee, timestamp)
        if not reducing:
            self._check_initial_margin(owner, sub, acct, market_id, index, timestamp)
        elif not with_builder and (acct.collateral < 0 if acct.open_markets == 0
                                   else quote * WAD + base * index < 0):
            self._check_reduce(owner, sub, acct, market_id, index, timestamp)
        return TradeResult(base, quote, fee, realized, funding, new_size, new_on, price_after, to_insurance,
                           builder_fee)

    def _check_initial_margin(self, owner, sub, acct: Account, market_id: int, index: int, timestamp: int) -> None:
        s = self._margin_summary(owner, sub, acct.open_markets, timestamp, market_id, index)
        free = free_collateral(acct.collateral, account_value(acct.collateral, s), s)
        if free < 0:
            raise ModelRevert("InsufficientMargin", owner, sub, free)

    def _check_reduce(self, owner, sub, acct: Account, market_id: int, index: int, timestamp: int) -> None:
        """ClearingHouseMargin._checkReduce: a reduce or close (no builder fee) filled worse than the index
        (quote x 1e18 + base x index < 0, exactly), or a close leaving no position with negative collateral, must
        leave the account at or above maintenance, free and auctioned parts (with no position: collateral >= 0)."""
        s = self._margin_summary(owner, sub, acct.open_markets, timestamp, market_id, index)
        excess = excess_over_maintenance(acct.collateral, s)
        if excess < 0:
            raise ModelRevert("ReduceBelowMaintenance", owner, sub, excess)

    @staticmethod
    def _check_auctioned_part(owner, sub, m: Market, new_size: int, auctioned: int) -> None:
        """ClearingHouseSettlement._checkAuctionedPart, which ClearingHouse._trade and _auctionSettle (the taker's
        side) call before the new size's own dust check: a trade or a taker's fill neither cuts into the auctioned
        part nor leaves the free part dust (the auction's last fill leaves exactly the free part)."""
        if auctioned == 0:
            return
        if (new_size < auctioned) if auctioned > 0 else (new_size > auctioned):
            raise ModelRevert("PositionInAuction", owner, sub, m.id, auctioned)
        free_part = new_size - auctioned
        if free_part != 0 and abs(free_part) < m.min_position_size:
            raise ModelRevert("BelowMinPositionSize", m.id, free_part, m.min_position_size)

    @staticmethod
    def _move_aggregates(m: Market, p: Position, new_size: int, new_on: int, cf: int) -> None:
        """ClearingHouseSettlement._moveAggregates: replace the position's share of the market's sums."""
        m.sum_open_notional = _int128(m.sum_open_notional + new_on - p.open_notional)
        m.sum_funding_basis = _int128(m.sum_funding_basis + s_mul_wad_down(new_size, cf)
                                      - s_mul_wad_down(p.size, p.last_cumulative_funding))

    @staticmethod
    def _move_open_interest(m: Market, old_size: int, new_size: int) -> None:
        m.long_open_interest = _uint128(m.long_open_interest + max(new_size, 0) - max(old_size, 0))
        m.short_open_interest = _uint128(m.short_open_interest + max(-new_size, 0) - max(-old_size, 0))

    @staticmethod
    def _check_liquidity(market_id: int, base: int, x: int) -> None:
        if base > 0 and base >= x:
            raise ModelRevert("InsufficientLiquidity", market_id, base, x)

    @classmethod
    def _check_peg(cls, market_id: int, m: Market, index: int, base: int) -> None:
        """ClearingHouseTradeRules._checkPeg: with a tolerance set, a buy reverts PegStale while the peg (`_peg`, read before the
        swap) is below the index by more than floor(index x bps / 1e4), a sell while it is above by more; reduces
        and closes included."""
        if m.peg_tolerance_bps == 0:
            return
        peg = cls._peg(m.x, m.y, m.long_open_interest - m.short_open_interest)
        # A market with delayed orders on (every trade is the router's): a stale peg either way holds the trade.
        held = (peg_holds(peg, index, m.peg_tolerance_bps, True) or peg_holds(peg, index, m.peg_tolerance_bps, False)
                if m.delayed_orders else peg_holds(peg, index, m.peg_tolerance_bps, base > 0))
        if held:
            raise ModelRevert("PegStale", market_id, peg, index)

    @staticmethod
    def _check_price_band(market_id, max_spread, index, before, after) -> None:
        dist_after = abs(after - index)
        if dist_after > mul_wad_down(index, max_spread):
            if dist_after > abs(before - index):
                raise ModelRevert("PriceBandExceeded", market_id, after, index, max_spread)

    def _update_open_interest(self, market_id, m: Market, old_size, new_size, index, pool_balance) -> None:
        old_long, old_short = max(old_size, 0), max(-old_size, 0)
        new_long, new_short = max(new_size, 0), max(-new_size, 0)
        long_oi = m.long_open_interest + new_long - old_long
        short_oi = m.short_open_interest + new_short - old_short
        if new_long > old_long:
            self._check_oi_cap(market_id, m, long_oi, index, pool_balance)
        if new_short > old_short:
            self._check_oi_cap(market_id, m, short_oi, index, pool_balance)
        m.long_open_interest = _uint128(long_oi)
        m.short_open_interest = _uint128(short_oi)

    @staticmethod
    def _check_oi_cap(market_id, m: Market, oi, index, pool_balance) -> None:
        if oi > m.max_open_interest:
            raise ModelRevert("OpenInterestCapExceeded", market_id, oi, m.max_open_interest)
        pool = max(pool_balance, 0)
        notional_cap = mul_wad_down(pool, m.max_oi_pool_ratio)
        if mul_wad_up(oi, index) > notional_cap:
            raise ModelRevert("OpenInterestCapExceeded", market_id, oi, div_wad_down(notional_cap, index))

    # ------------------------------------------------------------------ TWAP and funding internals

    def _accrue(self, m: Market, index: int, timestamp: int, since: int | None = None) -> None:
        """ClearingHouseAccrual._accrue: at most once per block (a no-op at the accumulator's timestamp).

        Mirrors the Solidity, which alone defines these details:
        - the interval since the last update is priced at the vAMM spot *before* this block's first
          trade and at the index *last observed* (lastIndexPrice), then the new index is recorded;
        - a ring observation is written when the block is in a new quarter-window (`timestamp // (window/4)`
          changed), not every window/4 s; an hourly observation is written, and the funding target re-sampled
          from the day-long TWAPs (`_funding_twaps`), when the block is in a new hour (`timestamp // 3600`);
        - the applied rate evolves (closed form) and the funding index accrues only when the rate or a
          target is nonzero, at the interval's index (the old lastIndexPrice), rounded down; past a whole idle
          hour toward this block's sample from the end of the last update's hour (`_evolve_funding`);
        - after recording the index, a block that finds an index gap is a dislocation, lastDislocation =
          timestamp: the index moved more than floor(lastIndex x maxSpread) since the last recorded one, or
          the vAMM spot as the block found it (before its first trade) is further from `index` than
          floor(index x maxSpread) but no further from the last recorded index than floor(lastIndex x
          maxSpread) (the index moved away and the vAMM has not followed; a vAMM pushed out by a reduce at
          a steady index is not a gap). `index` is the live one for trades, pokes, fills, backstops and
          setReserves, the last recorded one for setMarketParams / setFundingParams (never a gap then).
        """
        acc = m.accumulator
        if acc.timestamp == timestamp:
            return
        dt = timestamp - acc.timestamp
        last_index = m.last_index_price
        index_area = self._index_area(acc.timestamp, last_index, index,
                                      m.answer_updated_at if since is None else since, timestamp)
        spot = m.spot
        quarter = m.twap_window // OBSERVATIONS_PER_WINDOW
        new_observation = timestamp // quarter != acc.timestamp // quarter
        new_hour = timestamp // HOUR != acc.timestamp // HOUR
        prev = acc
        acc = Observation(timestamp, (acc.mark_cumulative + spot * dt) & U112,
                          (acc.index_cumulative + index_area) & U112)
        m.accumulator = acc
        if index != last_index:
            m.last_index_price = _uint128(index)
        # A gap, recorded before any trade of the block: the index jumped more than the band since the last
        # accrual, or the vAMM as this block found it was inside its band around the last index and is
        # outside it around the new one.
        last_band = mul_wad_down(last_index, m.max_spread)
        if abs(index - last_index) > last_band or (
                abs(spot - index) > mul_wad_down(index, m.max_spread) and abs(spot - last_index) <= last_band):
            m.last_dislocation = timestamp
        skew = self._skew_bps(m)
        if m.rate == 0 and m.target == 0 and skew == 0 and not new_observation and not new_hour:
            return
        f = m.funding_params
        skew_before = m.skew_cumulative
        m.skew_cumulative = _wrap_i32(skew_before + skew * dt)
        if new_observation:
            m.observation_head = (m.observation_head + 1) % OBSERVATIONS
            m.observations[m.observation_head] = copy.copy(acc)
        # The hour's sample first: an idle span applies it from the end of the last update's hour (_evolve_funding).
        target = m.target
        if new_hour:
            slot = timestamp // HOUR % FUNDING_OBSERVATIONS
            m.hourly[slot] = copy.copy(acc)
            m.hourly_skew[slot] = m.skew_cumulative
            mark_twap, index_twap, skew_term = self._funding_twaps(m, acc, prev, m.skew_cumulative, skew_before, skew)
            _, target = self._target(f, mark_twap, index_twap, skew_term)
        if m.rate != 0 or m.target != 0 or target != 0:
            rate, area = self._evolve_funding(m.rate, m.target, target, prev.timestamp, timestamp, f)
            m.rate = _int_n(rate, 56)
            m.cumulative_funding = _int_n(m.cumulative_funding + self._funding_accrual(area, index_area, dt), 104)
        if new_hour:
            m.target = _int_n(target, 56)

    @staticmethod
    def _evolve_funding(rate: int, target: int, sampled: int, last: int, timestamp: int,
                        f: FundingParams) -> tuple[int, int]:
        """ClearingHouseAccrual._evolveIdle (through _accrue and _evolveSince): toward `target` over [last, timestamp], unless a whole hour went by
        with no block (timestamp at least two hours past last's hour): then `target` to the end of last's hour and
        `sampled` (the block's sample) from there."""
        boundary = (last // HOUR + 1) * HOUR
        if timestamp < boundary + HOUR:
            return evolve(rate, target, timestamp - last, f.smoothing_tau, f.max_rate_velocity)
        r, first = evolve(rate, target, boundary - last, f.smoothing_tau, f.max_rate_velocity)
        r, area = evolve(r, sampled, timestamp - boundary, f.smoothing_tau, f.max_rate_velocity)
        return r, area + first

    def _sample_now(self, m: Market, index_area: int, timestamp: int) -> tuple[int, int, int, int]:
        """ClearingHouseAccrual._sampleNow: (premium, target, markTwap, indexTwap) as an accrual at `timestamp`
        would sample them, with the interval's index area."""
        acc = m.accumulator
        dt = timestamp - acc.timestamp
        current = Observation(timestamp, (acc.mark_cumulative + m.spot * dt) & U112,
                              (acc.index_cumulative + index_area) & U112)
        skew = self._skew_bps(m)
        mark_twap, index_twap, skew_term = self._funding_twaps(
            m, current, acc, _wrap_i32(m.skew_cumulative + skew * dt), m.skew_cumulative, skew)
        premium, target = self._target(m.funding_params, mark_twap, index_twap, skew_term)
        return premium, target, mark_twap, index_twap

    @staticmethod
    def _funding_accrual(area: int, index_area: int, dt: int) -> int:
        """Funding per base for a rate area [wad/h * s] over dt seconds at the interval's mean index
        (index_area / dt), in one division rounded down (toward -inf)."""
        return s_mul_div_down(area, index_area, dt * HOUR * WAD)

    @staticmethod
    def _index_area(start: int, last_index: int, index: int, since: int, timestamp: int) -> int:
        """ClearingHouseAccrual._indexArea: index x seconds over [start, timestamp], the last recorded index
        until the feed's round time `since` (clamped into the interval), the round's price after it."""
        since = min(max(since, start), timestamp)
        return last_index * (since - start) + index * (timestamp - since)

    def _round_now(self, m: Market, timestamp: int) -> tuple[int, int]:
        """ClearingHouseAccrual._tryRound: the feed's price and round time, or (last recorded index,
        timestamp) when the read fails (the time since the last accrual then prices at that index)."""
        index = self._try_index(m, timestamp)
        return (m.last_index_price, timestamp) if index is None else (index, m.answer_updated_at)

    def _extend_now(self, m: Market, acc: Observation, timestamp: int) -> Observation:
        """ClearingHouseAccrual._extendNow: the accumulator extended to `timestamp` as an accrual then would."""
        index, since = self._round_now(m, timestamp)
        return Observation(timestamp, (acc.mark_cumulative + m.spot * (timestamp - acc.timestamp)) & U112,
                           (acc.index_cumulative + self._index_area(acc.timestamp, m.last_index_price, index,
                                                                    since, timestamp)) & U112)

    def _cumulative_funding_now(self, m: Market, timestamp: int) -> int:
        """The funding index accrued to `timestamp` as an accrual then would, with the feed as it stands."""
        cf = m.cumulative_funding
        last = m.accumulator.timestamp
        if timestamp == last:
            return cf
        idle = timestamp // HOUR >= last // HOUR + 2  # a whole idle hour: the accrual's sample enters the motion
        if m.rate == 0 and m.target == 0 and not idle:
            return cf
        f = m.funding_params
        dt = timestamp - last
        index, since = self._round_now(m, timestamp)
        index_area = self._index_area(last, m.last_index_price, index, since, timestamp)
        sampled = self._sample_now(m, index_area, timestamp)[1] if idle else 0
        _, area = self._evolve_funding(m.rate, m.target, sampled, last, timestamp, f)
        return cf + self._funding_accrual(area, index_area, dt)

    @staticmethod
    def _target(f: FundingParams, mark_twap: int, index_twap: int, skew_term: int = 0) -> tuple[int, int]:
        premium = tdiv((mark_twap - index_twap) * WAD, index_twap)
        target = clamp(tdiv(premium, f.funding_period_hours) + f.baseline_rate + skew_term, f.max_funding_rate)
        return premium, target

    @staticmethod
    def _skew_term(m: Market) -> int:
        """ClearingHouseAccrual._skewTerm: skewFundingPpm x 1e-6 x (long OI - short OI) / x [wad per hour], one
        division truncated toward zero."""
        if m.skew_funding_ppm == 0:
            return 0
        return tdiv((m.long_open_interest - m.short_open_interest) * WAD * m.skew_funding_ppm, m.x * 10**6)

    @_atomic
    def set_skew_funding(self, market_id: int, rate_ppm: int, timestamp: int) -> None:
        """ClearingHouse.setSkewFunding: accrue at the last recorded index, then bound (0..10,000 ppm)."""
        m = self._market(market_id)
        self._accrue(m, m.last_index_price, timestamp, since=timestamp)
        if not 0 <= rate_ppm <= MAX_SKEW_FUNDING_PPM:
            raise ModelRevert("ParameterOutOfBounds", "skewFundingPpm", rate_ppm)
        m.skew_funding_ppm = rate_ppm

    @_atomic
    def set_peg_tolerance(self, market_id: int, bps: int) -> None:
        """ClearingHouse.setPegTolerance: bound (0..500 bps); nothing accrues."""
        m = self._market(market_id)
        if not 0 <= bps <= MAX_PEG_TOLERANCE_BPS:
            raise ModelRevert("ParameterOutOfBounds", "pegToleranceBps", bps)
        if bps == 0 and m.delayed_orders:
            raise ModelRevert("PegToleranceRequired", market_id)
        m.peg_tolerance_bps = bps

    @_atomic
    def set_delayed_orders(self, market_id: int, on: bool) -> None:
        """ClearingHouse.setDelayedOrders (a router is assumed set): needs a tolerance to turn on; nothing accrues.
        The model has no callers: with it on, every trade is the router's, held by a stale peg either way."""
        m = self._market(market_id)
        if on and m.peg_tolerance_bps == 0:
            raise ModelRevert("PegToleranceRequired", market_id)
        m.delayed_orders = bool(on)

    def peg_tolerance(self, market_id: int) -> int:
        """ClearingHouse.pegTolerance [bps]."""
        return self._market(market_id).peg_tolerance_bps

    def skew_funding(self, market_id: int) -> tuple[int, int]:
        """ClearingHouse.skewFunding: (ratePpm, term now)."""
        m = self._market(market_id)
        return m.skew_funding_ppm, self._skew_term(m)

    @staticmethod
    def _twaps_from(m: Market, current: Observation, head: int) -> tuple[int, int]:
        """TWAPs from the ring anchor to `current`: the newest observation at least one window old,
        or the oldest one while the market is younger than a window (the loop's last visit)."""
        now = current.timestamp
        target = now - m.twap_window if now > m.twap_window else 0
        anchor = None
        for i in range(OBSERVATIONS):
            anchor = m.observations[(head + OBSERVATIONS - i) % OBSERVATIONS]
            if anchor.timestamp <= target:
                break
        span = now - anchor.timestamp
        if span == 0:
            return m.spot, m.last_index_price
        mark = ((current.mark_cumulative - anchor.mark_cumulative) & U112) // span
        idx = ((current.index_cumulative - anchor.index_cumulative) & U112) // span
        return mark, idx

    @staticmethod
    def _funding_twaps(m: Market, current: Observation, prev: Observation, skew_sum: int, skew_prev: int,
                       skew_now: int) -> tuple[int, int, int]:
        """ClearingHouseAccrual._fundingTwaps: (mark TWAP, index TWAP, skew term of the mean skew) from the hourly
        observation of the oldest of the last FUNDING_WINDOW_HOURS hours a block touched (probed from 24 hours
        back; on a market younger than a day, the listing's), else from `prev` (the accumulator before this update, the skew `skew_now` over the idle span), to
        `current`; a span shorter than the window is padded to it at premium 0 and skew 0 (mark and index at the
        span's mean index, one floor over the pad; the last recorded index when the span is empty)."""
        anchor, skew_anchor = prev, skew_prev
        hour = current.timestamp // HOUR
        # the first slot whose observation falls in one of the window's hours [hour - 24, hour - 1]: an hour's own,
        # or the listing's on a market younger than a day and past its listing hour
        first = hour - FUNDING_WINDOW_HOURS
        for k in range(FUNDING_WINDOW_HOURS, 0, -1):
            slot = ((hour - k) % 2**256) % FUNDING_OBSERVATIONS  # the contract's unsigned hour - k (wraps before a day)
            o = m.hourly[slot]
            if 0 <= o.timestamp // HOUR - first < FUNDING_WINDOW_HOURS:
                anchor, skew_anchor = o, m.hourly_skew[slot]
                break
        span = current.timestamp - anchor.timestamp
        area = skew_now * span if anchor.timestamp == prev.timestamp else _wrap_i32(skew_sum - skew_anchor)
        mark = (current.mark_cumulative - anchor.mark_cumulative) & U112
        idx = (current.index_cumulative - anchor.index_cumulative) & U112
        window = FUNDING_WINDOW_HOURS * HOUR
        if span < window:  # padded to the whole window at premium 0 and skew 0 (mark = index = the span's mean)
            pad = (window - span) * idx // span if span else window * m.last_index_price
            mark, idx, span = mark + pad, idx + pad, window
        mark, idx = mark // span, idx // span
        return mark, idx, tdiv(area * m.skew_funding_ppm * 10**8, span)

    @staticmethod
    def _skew_bps(m: Market) -> int:
        """ClearingHouseAccrual._skewBps: (long OI - short OI) / x in bps, truncated toward zero, clamped to
        +-1e4; 0 while skewFundingPpm is 0."""
        if m.skew_funding_ppm == 0:
            return 0
        return max(-10**4, min(10**4, tdiv((m.long_open_interest - m.short_open_interest) * 10**4, m.x)))

    def _margin_summary(self, owner, sub, open_markets: int, timestamp: int, known_market: int = 0,
                        known_index: int = 0) -> MarginSummary:
        """ClearingHouseMargin._marginSummary over the bitmap, lowest market first (oracle order matters
        for which StaleOracle is reported)."""
        upnl = pending = initial = maintenance = auctioned_notional = auctioned_maintenance = 0
        while open_markets:
            bit = open_markets & -open_markets
            open_markets ^= bit
            market_id = bit.bit_length()
            m = self.markets[market_id]
            p = self._position(market_id, owner, sub)
            index = known_index if market_id == known_market else self._index(m, timestamp)
            upnl += s_mul_wad_down(p.size, index) - p.open_notional
            pending += s_mul_wad_up(p.size, self._cumulative_funding_now(m, timestamp) - p.last_cumulative_funding)
            # The free part owes initial and maintenance margin; the auctioned part keeps backing at
            # max(mmr, the auction's maxDiscount), enough for its worst fill, counted in `initial` (not
            # withdrawable while the auction runs) but not in `maintenance` (what kick tests). PnL and
            # funding run on the whole position.
            notional = mul_wad_up(abs(p.size - p.auctioned), index)
            initial += mul_wad_up(notional, m.imr)
            maintenance += mul_wad_up(notional, m.mmr)
            if p.auctioned:
                a_notional = mul_wad_up(abs(p.auctioned), index)
                ratio = max(m.mmr, self._auction_params_of(market_id).max_discount)
                backing = mul_wad_up(a_notional, ratio)
                auctioned_notional += a_notional
                auctioned_maintenance += backing
                initial += backing
        return MarginSummary(upnl, pending, initial, maintenance, auctioned_notional, auctioned_maintenance)

    def _health(self, owner, sub, timestamp) -> tuple[int, int, int, int]:
        """Vault._health: (accountValue, freeCollateral, initial, maintenance)."""
        acct = self.accounts.get((owner, sub)) or Account()
        coll = acct.collateral
        if acct.open_markets == 0:
            return coll, coll, 0, 0
        s = self._margin_summary(owner, sub, acct.open_markets, timestamp)
        value = account_value(coll, s)
        free = free_collateral(coll, value, s)
        return value, free, s.initial, s.maintenance

    # ------------------------------------------------------------------ views (ClearingHouse)

    def position(self, owner, sub: int, market_id: int, timestamp: int) -> tuple[int, int, int]:
        """(size, openNotional, pendingFunding). Like the contract, no market check."""
        p = self._position(market_id, owner, sub)
        pending = 0
        if p.size != 0:
            m = self.markets[market_id]
            pending = s_mul_wad_up(p.size, self._cumulative_funding_now(m, timestamp) - p.last_cumulative_funding)
        return p.size, p.open_notional, pending

    def margin_summary(self, owner, sub: int, open_markets: int, timestamp: int) -> MarginSummary:
        return self._margin_summary(owner, sub, open_markets, timestamp)

    def quote(self, market_id: int, base: int) -> tuple[int, int]:
        m = self._market(market_id)
        if base == 0:
            raise ModelRevert("ZeroSize")
        self._check_liquidity(market_id, base, m.x)
        q, x, y = vamm_swap(m.x, m.y, base)
        return q, vamm_price(x, y)

    def index_price(self, market_id: int, timestamp: int) -> int:
        return self._index(self._market(market_id), timestamp)

    def spot_price(self, market_id: int) -> int:
        return self._market(market_id).spot

    def twaps(self, market_id: int, timestamp: int) -> tuple[int, int]:
        """Mark and index TWAPs: the accumulator extended to `timestamp`, from the ring anchor."""
        m = self._market(market_id)
        return self._twaps_from(m, self._extend_now(m, m.accumulator, timestamp), m.observation_head)

    def mark_price(self, market_id: int, timestamp: int) -> int:
        return self.twaps(market_id, timestamp)[0]

    def market_count(self) -> int:
        return len(self.markets)

    def market_state(self, market_id: int, timestamp: int) -> tuple:
        """IClearingHouse.MarketState, field for field (the last is lastDislocation)."""
        m = self._market(market_id)
        return (m.x, m.y, m.spot, m.long_open_interest, m.short_open_interest,
                self._cumulative_funding_now(m, timestamp), m.rate, m.target, m.last_index_price,
                m.accumulator.timestamp, m.last_dislocation)

    def funding_state(self, market_id: int, timestamp: int) -> tuple:
        """(appliedRate, targetRate, premium, markTwap, indexTwap, projected1h, projected8h)."""
        m = self._market(market_id)
        f = m.funding_params
        last = m.accumulator.timestamp
        index, since = self._round_now(m, timestamp)
        premium, target, mark_twap, index_twap = self._sample_now(
            m, self._index_area(last, m.last_index_price, index, since, timestamp), timestamp)
        applied, _ = self._evolve_funding(m.rate, m.target, target, last, timestamp, f)
        p1, _ = evolve(applied, target, HOUR, f.smoothing_tau, f.max_rate_velocity)
        p8, _ = evolve(applied, target, 8 * HOUR, f.smoothing_tau, f.max_rate_velocity)
        return applied, target, premium, mark_twap, index_twap, p1, p8

    # ------------------------------------------------------------------ aggregates (for invariants)

    def total_claims(self) -> int:
        """Sum of every trader's collateral + pool balance + insurance fund + builder fees [wad]."""
        return (sum(a.collateral for a in self.accounts.values()) + self.pool_balance_wad + self.insurance_fund_wad
                + sum(self.builder_fees_wad.values()))

    def open_positions(self, market_id: int | None = None):
        return [(k, p) for k, p in self.positions.items() if p.size != 0 and (market_id is None or k[0] == market_id)]

    # ------------------------------------------------------------------ traders' side (pool valuation)

    def traders_pnl(self, timestamp: int) -> tuple[int, int]:
        """ClearingHouse.tradersPnl: (traders' unrealized PnL at the index net of funding owed, sum of
        |net OI| x index rounded up), from the per-market aggregates; markets with nothing open skipped."""
        pnl = exposure = 0
        for market_id in sorted(self.markets):
            m = self.markets[market_id]
            net = m.long_open_interest - m.short_open_interest
            if net == 0 and m.sum_open_notional == 0 and m.sum_funding_basis == 0:
                continue
            index = self._index(m, timestamp)
            cf = self._cumulative_funding_now(m, timestamp)
            pnl += s_mul_wad_down(net, index) - m.sum_open_notional - (s_mul_wad_down(net, cf) - m.sum_funding_basis)
            exposure += mul_wad_up(abs(net), index)
        return pnl, exposure

    def traders_pnl_by_positions(self, timestamp: int) -> int:
        """The same figure summed position by position (what the aggregates must equal, up to the
        rounding of each position's funding basis: see `aggregate_errors`)."""
        total = 0
        for (market_id, _, _), p in self.open_positions():
            m = self.markets[market_id]
            index = self._index(m, timestamp)
            total += s_mul_wad_down(p.size, index) - p.open_notional
            total -= s_mul_wad_down(p.size, self._cumulative_funding_now(m, timestamp)) - s_mul_wad_down(
                p.size, p.last_cumulative_funding)
        return total
