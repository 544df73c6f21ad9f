"""Mirror of AmmController: the `AmmControllerMirror` part of `Model`."""
from __future__ import annotations

import math

from ..config import max_amplification
from ..units import WAD
from .base import ModelRevert
from .state import _atomic, AmmParams, Market
from .wad_math import _checked, _int_n, div_wad_down, exit_value, mul_div_up, mul_wad_down, mul_wad_up, s_mul_wad_down


class AmmControllerMirror:
    """The AmmController part of `Model` (a mixin: every method runs on the one Model state)."""

    # ------------------------------------------------------------------ AmmController

    def _amm_configured(self, market_id: int) -> AmmParams:
        """AmmController._configured: a listed market with AMM parameters."""
        if market_id == 0 or market_id > len(self.markets):
            raise ModelRevert("UnknownMarket", market_id)
        p = self.amm_params.get(market_id)
        if p is None or p.depth_ratio == 0:
            raise ModelRevert("DepthNotConfigured", market_id)
        return p

    def _set_reserves(self, m: Market, x: int, y: int, timestamp: int, funding_charge: int = 0) -> None:
        """ClearingHouse.setReserves: accrue (TWAPs, funding) on the old reserves first, then bound, then add
        the depth charge to the funding index."""
        self._accrue(m, self._index(m, timestamp), timestamp)
        if x < 10**18 or x > 10**36:
            raise ModelRevert("ParameterOutOfBounds", "baseReserve", x)
        if y == 0 or y > 10**36:
            raise ModelRevert("ParameterOutOfBounds", "quoteReserve", y)
        m.x, m.y = x, y
        if funding_charge:
            m.cumulative_funding = _int_n(m.cumulative_funding + funding_charge, 104)

    @_atomic
    def sync_depth(self, market_id: int, timestamp: int) -> tuple[int, int, int, int]:
        """AmmController.syncDepth: at most once per depthInterval (DepthSyncTooSoon), the quote reserve
        moves toward depthRatio x effective amplification x NAV (compared at zero net position: the target is
        scaled by (x + net) / x, rounded down) within `_depth_step`'s bounds; the base reserve
        scales by the same factor (rounded up, so the price never rises); the change of the net position's exit value is
        charged back through the funding index (`_depth_charge`), and the cost to the pool (that change less
        what the charge adds to floor(net x F), never positive) is booked in depthCost. Returns (x1, y1,
        cost, total cost): the DepthSynced and DepthSyncCost events' fields (DepthCharged's in
        `last_depth_charge`)."""
        p = self._amm_configured(market_id)
        last = self.last_depth_sync.get(market_id, 0)
        if last != 0 and timestamp < last + p.depth_interval:
            raise ModelRevert("DepthSyncTooSoon", last + p.depth_interval, timestamp)
        nav = self.pool_nav(timestamp)
        if nav <= 0:
            raise ModelRevert("PoolValueNotPositive", nav)
        m = self.markets[market_id]
        x0, y0 = m.x, m.y
        net = m.long_open_interest - m.short_open_interest
        target = mul_wad_down(mul_wad_down(nav, p.depth_ratio), self.effective_amplification(market_id))
        if net != 0 and x0 + net > 0:  # the target in live-reserve terms: depth is the quote reserve at zero net
            target = _checked(target * (x0 + net)) // x0  # position, x0 y0 / (x0 + net)
        y1 = self._depth_step(m, p, x0, y0, net, target, nav)
        if y1 < y0 and net != 0:  # the spot kept inside the band (reads the index: a stale feed reverts)
            floor = self._band_floor(x0, y0, net, self.index_price(market_id, timestamp), m.max_spread)
            if floor > y1:
                y1 = min(floor, y0)
        if y1 < y0 and net != 0:
            x1, y1 = self._shrink_keeping_peg(x0, y0, net, y1)
        else:
            x1 = mul_div_up(x0, y1, y0)
        exit_change = exit_value(x1, y1, net) - exit_value(x0, y0, net)
        charge = self._depth_charge(exit_change, net, m.taker_fee)
        cf = self._cumulative_funding_now(m, timestamp)
        cost = exit_change - (s_mul_wad_down(net, cf + charge) - s_mul_wad_down(net, cf))
        self.last_depth_sync[market_id] = timestamp
        total = self.depth_cost.get(market_id, 0) + cost
        self.depth_cost[market_id] = total
        self._set_reserves(m, x1, y1, timestamp, charge)
        self.last_depth_charge[market_id] = (exit_change, charge)
        return x1, y1, cost, total

    @classmethod
    def _depth_step(cls, m: Market, p: AmmParams, x0: int, y0: int, net: int, target: int, nav: int) -> int:
        """AmmController._depthStep: shrinking, at most maxDepthChange and, under a net position, not below
        `_shrink_floor` (the charge budget for a curve scaled about its zero-skew point, and a net short's
        x1 >= 2 |net|); deepening, at most min(maxDepthChange, takerFee / maxSpread) and within the same budget
        of exit value moved to the net position (closed form, E on (s x0, s y0)). The budget
        (`_charge_budget`) keeps the charge per base that hands it back (`_depth_charge`) within half a taker
        fee of the price."""
        if target <= y0:
            lo = y0 - mul_wad_down(y0, p.max_depth_change)
            if net != 0:
                lo = max(lo, cls._shrink_floor(x0, y0, net, cls._charge_budget(m, p, x0, y0, abs(net), nav)))
            return (lo if lo < y0 else y0) if target < lo else target
        step = min(div_wad_down(m.taker_fee, m.max_spread), p.max_depth_change)
        hi = y0 + mul_wad_down(y0, step)
        y1 = hi if target > hi else target
        if net == 0:
            return y1
        n = abs(net)
        budget = cls._charge_budget(m, p, x0, y0, n, nav)
        s_max = 0  # [wad] the largest scale factor within the budget; 0 = unbounded
        if net > 0:
            t = exit_value(x0, y0, net) + budget
            lhs = _checked(y0 * n)
            if lhs > _checked(t * x0):
                s_max = _checked(_checked(t * n) * WAD // (lhs - t * x0))  # Math.mulDiv
        else:
            c0 = -exit_value(x0, y0, net)
            if c0 > budget:
                r = c0 - budget
                if _checked(r * x0) > _checked(y0 * n):
                    s_max = _checked(_checked(r * n) * WAD // (r * x0 - y0 * n))
        if s_max != 0:
            by_cost = max(_checked(y0 * s_max) // WAD, y0)
            y1 = min(y1, by_cost)
        return y1

    @staticmethod
    def _charge_budget(m: Market, p: AmmParams, x0: int, y0: int, n: int, nav: int) -> int:
        """AmmController._chargeBudget: min(floor(NAV x maxDepthCost), floor(floor(y0 x takerFee) x maxSpread),
        floor(floor(n y0 / x0) x floor(takerFee / 2)))."""
        return min(mul_wad_down(nav, p.max_depth_cost), mul_wad_down(mul_wad_down(y0, m.taker_fee), m.max_spread),
                   mul_wad_down(_checked(n * y0) // x0, m.taker_fee // 2))

    @classmethod
    def _shrink_floor(cls, x0: int, y0: int, net: int, budget: int) -> int:
        """AmmController._shrinkFloor: ceil(y0 x sMin) with Z = x0 + net, Y = floor(x0 y0 / Z) and, for a net long n,
        sMin = ceil((e0 + B) n WAD / ((e0 + B) Z - Y n)); for a net short, the larger of ceil(n WAD / Z) and (when
        c0 > B, r = c0 - B) ceil(r n WAD / (Y n - r Z)); y0 itself (no shrink) when that denominator is not positive."""
        n = abs(net)
        z = cls._zero_skew_base(x0, net)
        yz = _checked(x0 * y0) // z
        if net > 0:
            t = exit_value(x0, y0, net) + budget
            if _checked(t * z) <= _checked(yz * n):
                return y0
            s_min = -((-_checked(t * n) * WAD) // (t * z - yz * n))  # Math.mulDiv, Ceil
        else:
            s_min = mul_div_up(n, WAD, z)
            c0 = -exit_value(x0, y0, net)
            if c0 > budget:
                r = c0 - budget
                if _checked(yz * n) <= _checked(r * z):
                    return y0
                s_min = max(s_min, -((-_checked(r * n) * WAD) // (yz * n - r * z)))
        return mul_wad_up(y0, s_min)

    @classmethod
    def _band_floor(cls, x0: int, y0: int, net: int, index: int, band: int) -> int:
        """AmmController._bandFloor: the lowest quote reserve whose shrink about the zero-skew point keeps the spot
        inside index +- floor(index x band): ceil(y0 x sMin) with, for a net long, q = isqrt(floor((index + edge)
        WAD / peg) WAD) and sMin = ceil(q n WAD / ((q - WAD) Z)); for a net short, q = ceil-isqrt(ceil((index - edge)
        WAD / peg) WAD) and sMin = ceil(q n WAD / ((WAD - q) Z)); y0 when q is on the wrong side of WAD."""
        n = abs(net)
        z = cls._zero_skew_base(x0, net)
        peg = cls._peg(x0, y0, net)
        edge = mul_wad_down(index, band)
        if net > 0:
            q = math.isqrt(_checked(_checked((index + edge) * WAD) // peg * WAD))
            if q <= WAD:
                return y0
            s_min = -((-_checked(q * n) * WAD) // _checked((q - WAD) * z))
        else:
            r = _checked(mul_div_up(index - edge, WAD, peg) * WAD)
            q = math.isqrt(r)
            if q * q < r:
                q += 1
            if q >= WAD:
                return y0
            s_min = -((-_checked(q * n) * WAD) // _checked((WAD - q) * z))
        return mul_wad_up(y0, s_min)

    @classmethod
    def _shrink_keeping_peg(cls, x0: int, y0: int, net: int, scaled: int) -> tuple[int, int]:
        """AmmController._shrinkKeepingPeg: Z = x0 + net, Z1 = floor(Z scaled / y0), Y1 = floor(floor(x0 y0 / Z) Z1 / Z),
        x1 = Z1 - net, y1 = floor(Y1 Z1 / x1): the curve scaled about its zero-skew point, the peg kept."""
        z = cls._zero_skew_base(x0, net)
        z1 = _checked(z * scaled) // y0
        yz1 = _checked((_checked(x0 * y0) // z) * z1) // z
        x1 = z1 - net
        if x1 < 0:
            raise ModelRevert("Panic", 0x11)
        if x1 == 0:
            raise ModelRevert("Panic", 0x12)
        return x1, _checked(yz1 * z1) // x1

    @staticmethod
    def _depth_charge(exit_change: int, net: int, taker_fee: int) -> int:
        """AmmController._depthCharge: per base, ceil(|exitChange| (WAD + f) / |net|) paid by the net side when
        it gained, floor(|exitChange| (WAD - f) / |net|) paid to it when it lost; positive = longs pay."""
        if exit_change == 0 or net == 0:
            return 0
        n = abs(net)
        if exit_change > 0:
            magnitude = mul_div_up(exit_change, WAD + taker_fee, n)
        else:
            magnitude = -exit_change * (WAD - taker_fee) // n
        return magnitude if (net > 0) == (exit_change > 0) else -magnitude

    def net_exit_value(self, market_id: int) -> int:
        """AmmController.netExitValue: the market's net position's vAMM exit value [wad]."""
        if market_id == 0 or market_id > len(self.markets):
            raise ModelRevert("UnknownMarket", market_id)
        m = self.markets[market_id]
        return exit_value(m.x, m.y, m.long_open_interest - m.short_open_interest)

    def set_concentration(self, market_id: int, range_: int, amplification: int) -> None:
        """AmmController.setConcentration: range in [0.01, 0.5], amplification in [1, maxAmplification(range)]."""
        if market_id == 0 or market_id > len(self.markets):
            raise ModelRevert("UnknownMarket", market_id)
        if not 10**16 <= range_ <= 5 * 10**17:
            raise ModelRevert("ParameterOutOfBounds", "range", range_)
        if not WAD <= amplification <= max_amplification(range_):
            raise ModelRevert("ParameterOutOfBounds", "amplification", amplification)
        self.concentration[market_id] = (range_, amplification)

    def effective_amplification(self, market_id: int) -> int:
        """AmmController._effectiveAmplification: 1 (WAD) without a concentration or while the market's band
        (maxSpread) is wider than the range, else the amplification."""
        range_, amplification = self.concentration.get(market_id, (0, 0))
        if amplification == 0 or self.markets[market_id].max_spread > range_:
            return WAD
        return amplification

    @staticmethod
    def _zero_skew_base(x: int, net: int) -> int:
        """AmmController._zeroSkewBase: x + net, the base reserve at zero net position (0 if not positive)."""
        return max(x + net, 0)

    @classmethod
    def _peg(cls, x: int, y: int, net: int) -> int:
        """AmmController._peg: x y / (x + net)^2 [wad], rounded down twice (Math.mulDiv); 0 without a
        zero-skew base."""
        x0 = cls._zero_skew_base(x, net)
        return 0 if x0 == 0 else (x * y // x0) * WAD // x0

    def peg_price(self, market_id: int) -> int:
        """AmmController.pegPrice: the curve's price where the traders' net position would be zero."""
        if market_id == 0 or market_id > len(self.markets):
            raise ModelRevert("UnknownMarket", market_id)
        m = self.markets[market_id]
        return self._peg(m.x, m.y, m.long_open_interest - m.short_open_interest)

    def _guard_room(self, market_id: int, timestamp: int, hold: tuple[int, bool, int] | None, peg: int,
                    index: int) -> tuple[int, int, tuple[int, int] | None]:
        """AmmController._guardRoom: (heldUntil, room, window). `hold` is the guard's CircuitBreaker.pegHold answer
        (until, live, moveThreshold), None without a guard. Held until `until` while it is after `timestamp` and the
        move is live or the index is past the threshold from the peg (|index - peg| / peg, rounded down). Otherwise
        the window (peg, start) in `peg_window`, rolled to (peg, timestamp) once start + twapWindow has passed, bounds
        the peg to the window's peg +- floor(its peg x threshold); room 0: held until the window's end."""
        if hold is None:
            return 0, 2**256 - 1, None
        until, live, threshold = hold
        distance = 2**256 - 1 if peg == 0 else div_wad_down(abs(index - peg), peg)
        if until > timestamp and (live or distance > threshold):
            return until, 0, None
        w_peg, start = self.peg_window.get(market_id, (0, 0))
        window = self.markets[market_id].twap_window
        end = start + window
        if timestamp >= end:
            w_peg, start, end = peg, timestamp, timestamp + window
        edge = mul_wad_down(w_peg, threshold)
        if index > peg:
            room = max(w_peg + edge - peg, 0)
        else:
            room = max(peg - (w_peg - edge), 0)
        return (end if room == 0 else 0), room, (w_peg, start)

    def peg_held_until(self, market_id: int, timestamp: int, hold: tuple[int, bool, int] | None) -> int:
        """AmmController.pegHeldUntil: `hold` is the guard's CircuitBreaker.pegHold answer (None without a guard;
        `circuit_breaker.peg_hold` computes it): until when the peg is held (`_guard_room`), else 0."""
        peg = self.peg_price(market_id)
        return self._guard_room(market_id, timestamp, hold, peg, self._index(self.markets[market_id], timestamp))[0]

    @_atomic
    def repeg(self, market_id: int, timestamp: int, hold: tuple[int, bool, int] | None = None) -> tuple[int, int]:
        """AmmController.repeg: at most once per block (and repegInterval), when the peg (`_peg`, the curve's
        price at zero net position) is more than repegThreshold from the live index, the quote reserve alone
        moves the peg toward the index, by at most maxRepegStep of the peg and at most what keeps the change
        of the net position's exit value within budget = max(NAV, 0) x maxRepegCost: with n = |net|, x the
        base reserve (fixed) and x0 = x + net, dy = dP x0^2 / x moves the exit value by dP n x0 / x, so
        dP <= floor(floor(budget x / x0) x 1e18 / n); dy = floor(floor(dP x0 / x) x0 / 1e18). The cost
        booked in repegCost and emitted is the exact change of the net's exit value,
        exitValue(x, y1, net) - exitValue(x, y0, net): the pool's NAV moves by -cost.
        `hold`: the market's peg guard's answer (CircuitBreaker.pegHold: until, live, moveThreshold; None without a
        guard); while it holds the peg (`_guard_room`) the repeg reverts PegHeld, after the threshold check, and the
        move is at most the window's room.
        Returns (price1, cost), the Repeg event's priceAfter and cost."""
        p = self._amm_configured(market_id)
        last = self.last_repeg.get(market_id, 0)
        nxt = last + (p.repeg_interval or 1)
        if last != 0 and timestamp < nxt:
            raise ModelRevert("RepegTooSoon", nxt, timestamp)
        m = self.markets[market_id]
        index = self._index(m, timestamp)
        net = m.long_open_interest - m.short_open_interest
        x, y0 = m.x, m.y
        x0 = self._zero_skew_base(x, net)
        peg0 = self._peg(x, y0, net)
        gap = abs(index - peg0)
        divergence = div_wad_down(gap, index)
        if x0 == 0 or divergence <= p.repeg_threshold:
            raise ModelRevert("RepegNotNeeded", divergence, p.repeg_threshold)
        until, room, window = self._guard_room(market_id, timestamp, hold, peg0, index)
        if until:
            raise ModelRevert("PegHeld", market_id, until)
        if window is not None and window[1] == timestamp:
            self.peg_window[market_id] = window
        max_move = min(mul_wad_down(peg0, p.max_repeg_step), room)
        if net != 0:
            nav = self.pool_nav(timestamp)
            budget = mul_wad_down(nav, p.max_repeg_cost) if nav > 0 else 0
            by_cost = div_wad_down(budget * x // x0, abs(net))
            max_move = min(max_move, by_cost)
        move = min(gap, max_move)
        dy = (move * x0 // x) * x0 // WAD
        y1 = y0 + dy if index > peg0 else y0 - dy
        self._set_reserves(m, x, y1, timestamp)
        price1 = y1 * WAD // x
        cost = exit_value(x, y1, net) - exit_value(x, y0, net)
        self.repeg_cost[market_id] = self.repeg_cost.get(market_id, 0) + cost
        self.last_repeg[market_id] = timestamp
        return price1, cost
