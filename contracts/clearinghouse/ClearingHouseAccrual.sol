// SPDX-License-Identifier: BUSL-1.1
pragma solidity 0.8.28;

import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {IClearingHouse} from "../interfaces/IClearingHouse.sol";
import {WAD, WadMath} from "../libraries/WadMath.sol";
import {OracleLib} from "../libraries/OracleLib.sol";
import {VAmmMath} from "../libraries/VAmmMath.sol";
import {FundingMath} from "../libraries/FundingMath.sol";
import {ClearingHouseStorage} from "./ClearingHouseStorage.sol";

/// @title ClearingHouseAccrual
/// @notice A market's per-block accrual and the TWAPs: the index and its feed round (`_round`, `_tryRound`,
///         `_indexArea`), `_accrue` (TWAP sums, the ring and hourly observations, the funding target re-sampled
///         each hour from the day-long TWAPs and mean skew, the applied rate's motion, the funding index) with
///         what it reads, and the same accrual taken to now without writing it, for views and margin checks
///         (`_cumulativeFundingNow`, `_extendNow`, `_twaps`, `_spot`). Inherited by the settlement, so by both the
///         ClearingHouse and the ClearingHouseConfigurator (docs/funding.md, docs/design.md "TWAPs").
abstract contract ClearingHouseAccrual is ClearingHouseStorage {
    using WadMath for uint256;
    using WadMath for int256;
    using SafeCast for uint256;
    using SafeCast for int256;

    function _index(Market storage m) internal view returns (uint256 index) {
        (index,) = _round(m);
    }

    /// @dev The index and the time of the feed's round (from when the feed has reported it), for `_accrue`.
    function _round(Market storage m) internal view returns (uint256 index, uint256 since) {
        return OracleLib.readRound(m.oracle, m.heartbeat, 10 ** m.oracleScaleExp);
    }

    /// @dev `_round` for views that answer whatever the feed does: when the read fails (`ok` false), the last
    ///      recorded index from now on, which prices the time since the last accrual at that index.
    function _tryRound(Market storage m) internal view returns (bool ok, uint256 index, uint256 since) {
        (ok, index, since) = OracleLib.tryReadRound(m.oracle, m.heartbeat, 10 ** m.oracleScaleExp);
        if (!ok) (index, since) = (m.lastIndexPrice, block.timestamp);
    }

    /// @dev Index x seconds over [from, now] [wad * s]: the index recorded at the last accrual up to the start of
    ///      the feed's current round, that round's price after it. So the sums hold the feed's own history as far as
    ///      the accruals saw it, and a price the feed reported for no time (set and replaced within a block, around
    ///      an accrual) weighs nothing, whenever the next accrual comes. The round's time is clamped into the
    ///      interval: a round older than the last accrual prices all of it, one stamped in the future none.
    function _indexArea(uint256 from, uint256 lastIndex, uint256 index, uint256 since) internal view returns (uint256) {
        if (since < from) since = from;
        else if (since > block.timestamp) since = block.timestamp;
        unchecked {
            // from <= since <= now after the clamp; prices are below 2^128 and spans below 2^32: no wrap.
            return lastIndex * (since - from) + index * (block.timestamp - since);
        }
    }

    /// @dev Once per block: extend the TWAP sums with the prices that held since the last update
    ///      (vAMM price before this block's first trade; the index as `_indexArea` prices the interval from the
    ///      feed's round `since`), move the applied funding rate toward its target and accrue the funding index
    ///      over the interval (at the interval's mean index), record the new index, at each new quarter-window
    ///      write a ring observation, and at each new hour write an hourly observation and re-sample the funding
    ///      target from the day-long TWAPs (`_fundingTwaps`).
    function _accrue(Market storage m, uint256 index, uint256 since) internal {
        Observation memory prev = m.accumulator;
        if (prev.timestamp == block.timestamp) return;
        uint256 dt = block.timestamp - prev.timestamp;
        uint256 lastIndex = m.lastIndexPrice;
        uint256 indexArea = _indexArea(prev.timestamp, lastIndex, index, since);
        uint256 spot = VAmmMath.price(m.baseReserve, m.quoteReserve);
        bool newObservation;
        {
            uint256 quarter = m.twapWindow / OBSERVATIONS_PER_WINDOW;
            newObservation = block.timestamp / quarter != prev.timestamp / quarter;
        }
        // Hours begun since the last update: a new hour's first block samples; two or more, a whole idle hour.
        uint256 hoursSince = block.timestamp / 1 hours - prev.timestamp / 1 hours;
        bool newHour = hoursSince != 0;
        Observation memory acc = _extend(prev, spot, indexArea);
        m.accumulator = acc;
        int256 skew = _skewBps(m);
        if (index != lastIndex) m.lastIndexPrice = index.toUint128();
        {
            // A gap: the index moved more than the band since the last accrual, or the vAMM as this block
            // found it was inside its band around the last index and is outside it around the new one (the
            // index moved away and the vAMM has not followed). Recorded before any trade of the block, so
            // no trade can hide it; a vAMM pushed out by a trade at a steady index (a reduce may do that) is
            // not a gap.
            uint64 maxSpread = m.maxSpread;
            uint256 jump = index > lastIndex ? index - lastIndex : lastIndex - index;
            uint256 lastBand = lastIndex.mulWadDown(maxSpread);
            bool gap = jump > lastBand;
            if (!gap) {
                uint256 dist = spot > index ? spot - index : index - spot;
                uint256 before = spot > lastIndex ? spot - lastIndex : lastIndex - spot;
                gap = dist > index.mulWadDown(maxSpread) && before <= lastBand;
            }
            // Cast: timestamps fit 64 bits.
            if (gap) m.lastDislocation = uint64(block.timestamp);
        }

        FundingState memory fs = m.funding;
        if (fs.rate == 0 && fs.target == 0 && skew == 0 && !newObservation && !newHour) return;
        IClearingHouse.FundingParams memory f = m.fundingParams;
        int32 skewBefore = fs.skewCumulative;
        unchecked {
            // Wrapping by design (see FundingState): |skew| <= 1e4 and dt < 2^32.
            fs.skewCumulative = int32(int256(skewBefore) + skew * int256(dt));
        }
        if (newObservation) {
            fs.observationHead = uint8((fs.observationHead + 1) % OBSERVATIONS);
            m.observations[fs.observationHead] = acc;
        }
        // The hour's sample first (it reads nothing the rate's motion changes): an idle span applies it from the end
        // of the last update's hour (`_evolveIdle`).
        int256 premium;
        int256 target = fs.target;
        uint256 markTwap;
        uint256 indexTwap;
        if (newHour) {
            uint256 slot = (block.timestamp / 1 hours) % FUNDING_OBSERVATIONS;
            m.hourly[slot] = acc;
            m.hourlySkew[slot] = fs.skewCumulative;
            int256 skewTerm;
            (markTwap, indexTwap, skewTerm) = _fundingTwaps(m, acc, prev, fs.skewCumulative, skewBefore, skew);
            (premium, target) = _target(f, markTwap, indexTwap, skewTerm);
        }
        if (fs.rate != 0 || fs.target != 0 || target != 0) {
            (int256 rate, int256 area) = hoursSince >= 2
                ? _evolveIdle(fs.rate, fs.target, target, prev.timestamp, f)
                : FundingMath.evolve(fs.rate, fs.target, dt, f.smoothingTau, f.maxRateVelocity);
            // Cast: |rate| <= max(|rate0|, |targets|) <= maxFundingRate <= 1e16.
            fs.rate = int56(rate);
            fs.cumulativeFunding = (int256(fs.cumulativeFunding) + _fundingAccrual(area, indexArea, dt)).toInt104();
        }
        if (newHour) {
            // Cast: clamped to maxFundingRate <= 1e16.
            fs.target = int56(target);
            emit IClearingHouse.FundingSampled(
                m.id, premium, target, fs.rate, fs.cumulativeFunding, markTwap, indexTwap
            );
        }
        m.funding = fs;
    }

    /// @dev The applied rate's motion over [last, now] and its area [wad/h * s] when a whole hour went by with no
    ///      block touching the market (this block is at least two hours past the hour of `last`; otherwise the rate
    ///      moves toward `target` throughout, `FundingMath.evolve` called directly, which keeps the common path as
    ///      it was): `target` holds to the end of its hour and `sampled`, this block's sample, from there on. The
    ///      hours no block sampled are charged at what a block now finds, never at a target a position's own previous
    ///      side set (docs/security.md "Fixed: the funding oscillation"). Only the first touch after an idle hour pays
    ///      the second evolution.
    function _evolveIdle(int256 rate, int256 target, int256 sampled, uint256 last, IClearingHouse.FundingParams memory f)
        internal
        view
        returns (int256 r, int256 area)
    {
        uint256 boundary = (last / 1 hours + 1) * 1 hours;
        int256 first;
        (r, first) = FundingMath.evolve(rate, target, boundary - last, f.smoothingTau, f.maxRateVelocity);
        (r, area) = FundingMath.evolve(r, sampled, block.timestamp - boundary, f.smoothingTau, f.maxRateVelocity);
        area += first;
    }

    /// @dev A whole idle hour since an update at `last`: two or more hour boundaries crossed, so the hour after
    ///      `last`'s went without an update (its sample enters the rate's motion: `_evolveIdle`). The views'
    ///      test; `_accrue` reads the same rule from the hours it counts anyway (`hoursSince >= 2`).
    function _wholeIdleHour(uint256 last) internal view returns (bool) {
        return block.timestamp / 1 hours >= last / 1 hours + 2;
    }

    /// @dev For views: the rate's motion since `last` as `_accrue` makes it (`_evolveIdle` past a whole idle hour).
    function _evolveSince(int256 rate, int256 target, int256 sampled, uint256 last, IClearingHouse.FundingParams memory f)
        internal
        view
        returns (int256, int256)
    {
        if (_wholeIdleHour(last)) return _evolveIdle(rate, target, sampled, last, f);
        return FundingMath.evolve(rate, target, block.timestamp - last, f.smoothingTau, f.maxRateVelocity);
    }

    /// @dev The target this block's accrual would sample (a view of `_accrue`'s sample), with the interval's index
    ///      area `indexArea` since the last update.
    function _sampleNow(Market storage m, FundingState memory fs, uint256 indexArea, IClearingHouse.FundingParams memory f)
        internal
        view
        returns (int256 premium, int256 target, uint256 markTwap, uint256 indexTwap)
    {
        Observation memory prev = m.accumulator;
        int256 skew = _skewBps(m);
        int32 sum;
        unchecked {
            // As _accrue extends the sum to now (wrapping by design).
            sum = int32(int256(fs.skewCumulative) + skew * int256(block.timestamp - prev.timestamp));
        }
        int256 skewTerm;
        (markTwap, indexTwap, skewTerm) =
            _fundingTwaps(m, _extend(prev, _spot(m), indexArea), prev, sum, fs.skewCumulative, skew);
        (premium, target) = _target(f, markTwap, indexTwap, skewTerm);
    }

    /// @dev `acc` extended to now (a new memory struct): the vAMM price that held since its timestamp, and
    ///      `indexArea`, the index x seconds over the same interval (`_indexArea`).
    function _extend(Observation memory acc, uint256 spot, uint256 indexArea)
        internal
        view
        returns (Observation memory cur)
    {
        uint256 dt = block.timestamp - acc.timestamp;
        unchecked {
            // Wrapping by design (see Observation); truncation to 112 bits is the modulo.
            cur.markCumulative = uint112(uint256(acc.markCumulative) + spot * dt);
            cur.indexCumulative = uint112(uint256(acc.indexCumulative) + indexArea);
        }
        // Cast: timestamps fit 32 bits until 2106.
        cur.timestamp = uint32(block.timestamp);
    }

    /// @dev The funding target's inputs over the funding window, from an anchor to `current` (an accumulator at
    ///      block.timestamp): the mark and index TWAPs and the skew term of the mean skew,
    ///      skewFundingPpm x 1e-6 x mean skew (one division, truncated toward zero). The anchor is the hourly
    ///      observation of the oldest hour among the last FUNDING_WINDOW_HOURS that a block touched (the first
    ///      probe, the hour 24 hours back, finds it whenever that hour saw a block: one read, plus one for its
    ///      skew sum), or `prev`, the accumulator as the last update left it, when no block touched the market
    ///      in those hours: the prices and the skew (`skewNow`, as this block found it) that held over the idle
    ///      span. An hourly slot belongs to the hour its timestamp falls in; a slot left from an older hour does
    ///      not match and is skipped. Everything here held before this block, so no trade of the block moves it.
    ///      A span shorter than the window is padded to it at premium 0 and skew 0, mark and index at the span's own
    ///      mean index (no instantaneous read enters a sample).
    /// @param skewSum the funding state's skew sum now; `skewPrev` the sum as the last update left it
    function _fundingTwaps(
        Market storage m,
        Observation memory current,
        Observation memory prev,
        int32 skewSum,
        int32 skewPrev,
        int256 skewNow
    ) internal view returns (uint256 markTwap, uint256 indexTwap, int256 skewTerm) {
        Observation memory anchor = prev;
        int32 skewAnchor = skewPrev;
        uint256 hour = current.timestamp / 1 hours;
        unchecked {
            // The first slot whose observation falls in one of the window's hours, [hour - 24, hour - 1] (one
            // unsigned difference). A slot left from an older hour falls before them. (Before a day of chain time,
            // timestamps under 86,400, `hour - k` and `first` wrap and the probes read other slots; the model
            // mirrors that, no chain runs there.) The listing's observation (in every slot until an hour
            // overwrites it) falls in them while the market is younger than a day and past its listing hour: then
            // the first probe takes it, the anchor a search for each hour's own observation found only at the
            // listing hour's probe (up to 23 reads later).
            uint256 first = hour - FUNDING_WINDOW_HOURS;
            for (uint256 k = FUNDING_WINDOW_HOURS; k != 0; --k) {
                uint256 slot = (hour - k) % FUNDING_OBSERVATIONS;
                Observation memory o = m.hourly[slot];
                if (o.timestamp / 1 hours - first < FUNDING_WINDOW_HOURS) {
                    anchor = o;
                    skewAnchor = m.hourlySkew[slot];
                    break;
                }
            }
            uint256 span = current.timestamp - anchor.timestamp;
            // The skew sum over the span, modulo 2^32 (exact within the window: see FundingState); over an idle
            // span (the anchor is `prev`) the skew held constant, skewNow x span.
            int256 skewArea = anchor.timestamp == prev.timestamp
                ? skewNow * int256(span)
                : int256(int32(uint32(int32(skewSum)) - uint32(int32(skewAnchor))));
            // Differences modulo 2^112 recover the true sums over the span.
            markTwap = (uint256(current.markCumulative) - anchor.markCumulative) & type(uint112).max;
            indexTwap = (uint256(current.indexCumulative) - anchor.indexCumulative) & type(uint112).max;
            // A span shorter than the window (a market younger than a day, the day after a day without blocks, a
            // view in the block of the last update) is padded to the whole window at premium 0 and skew 0: mark
            // and index both at the span's mean index for the missing seconds (the index recorded in this block
            // when the span is empty). So a price or skew held for a few seconds weighs those
            // seconds against a day, whatever came before, and no instantaneous read of the feed enters the
            // sample (docs/funding.md#the-rule).
            uint256 window = FUNDING_WINDOW_HOURS * 1 hours;
            if (span < window) {
                // One floor: (window - span) x the span's index sum / span, below 2^112 x 2^17.
                uint256 pad = span == 0 ? window * m.lastIndexPrice : (window - span) * indexTwap / span;
                markTwap += pad;
                indexTwap += pad;
                span = window;
            }
            markTwap /= span;
            indexTwap /= span;
            // bps x ppm x 1e18 / (1e4 x 1e6 x span): |skewArea| < 2^31 x 1e4 ... far below 2^255.
            skewTerm = skewArea * int256(uint256(m.skewFundingPpm)) * 1e8 / int256(span);
        }
    }

    /// @dev The market's skew as this block finds it, (long OI - short OI) / base reserve in bps, truncated
    ///      toward zero and clamped to +-1e4; 0 while the skew term is off (skewFundingPpm = 0), so turning it on
    ///      phases it in over the funding window.
    function _skewBps(Market storage m) internal view returns (int256) {
        if (m.skewFundingPpm == 0) return 0;
        // Casts: OI sides and the reserve are below 2^128.
        int256 s = (int256(uint256(m.longOpenInterest)) - int256(uint256(m.shortOpenInterest))) * 1e4
            / int256(uint256(m.baseReserve));
        return s > 1e4 ? int256(1e4) : (s < -1e4 ? -1e4 : s);
    }

    /// @dev Funding per base for a rate area [wad/h * s] over `dt` seconds at the interval's mean index,
    ///      `indexArea / dt` (`_indexArea`), in one division rounded down. The index's rounding direction
    ///      cannot favour anyone: every settlement is trader <-> pool and the per-position amount owed is
    ///      rounded up (docs/funding.md).
    function _fundingAccrual(int256 area, uint256 indexArea, uint256 dt) internal pure returns (int256) {
        uint256 d;
        unchecked {
            d = dt * (1 hours * WAD); // dt < 2^32 and 3.6e21 < 2^72: no wrap
        }
        return area.sMulDivDown(indexArea, d);
    }

    /// @dev premium = (mark - index) / index (truncated); target = clamp(premium / period + baseline + skew term).
    function _target(IClearingHouse.FundingParams memory f, uint256 markTwap, uint256 indexTwap, int256 skewTerm)
        internal
        pure
        returns (int256 premium, int256 target)
    {
        premium = (markTwap.toInt256() - indexTwap.toInt256()) * int256(WAD) / indexTwap.toInt256();
        target = FundingMath.clamp(
            premium / int256(uint256(f.fundingPeriodHours)) + f.baselineRate + skewTerm, f.maxFundingRate
        );
    }

    /// @dev The skew term of the funding target [wad per hour]: skewFundingPpm x 1e-6 x (long OI - short OI) /
    ///      base reserve, truncated toward zero like the premium. The side that outweighs the
    ///      other pays it, and the pool, which holds the opposite of the net position, collects it on the net
    ///      for as long as it carries it, premium or not. Read as the market stands when the block first
    ///      touches it (before any of the block's trades), like the TWAPs.
    function _skewTerm(Market storage m) internal view returns (int256) {
        uint256 ppm = m.skewFundingPpm;
        if (ppm == 0) return 0;
        // Casts: OI sides and the reserve are below 2^128.
        int256 net = int256(uint256(m.longOpenInterest)) - int256(uint256(m.shortOpenInterest));
        // One division, truncated toward zero: |net| < 2^128, so |net| x 1e18 x 1e4 stays far below 2^255.
        return net * int256(WAD) * int256(ppm) / (int256(uint256(m.baseReserve)) * 1e6);
    }

    /// @dev TWAPs from the ring anchor to `current` (an accumulator at block.timestamp). The anchor
    ///      is the newest observation at least one window old, or the oldest one while the market
    ///      is younger than a window. Within one block the result cannot move: `current` only
    ///      includes prices that held before this block.
    function _twapsFrom(Market storage m, Observation memory current, uint256 head)
        internal
        view
        returns (uint256 markTwap, uint256 indexTwap)
    {
        uint256 nowTs = current.timestamp;
        uint256 target = nowTs > m.twapWindow ? nowTs - m.twapWindow : 0;
        Observation memory anchor;
        for (uint256 i; i < OBSERVATIONS; ++i) {
            anchor = m.observations[(head + OBSERVATIONS - i) % OBSERVATIONS];
            if (anchor.timestamp <= target) break;
        }
        uint256 span = nowTs - anchor.timestamp;
        if (span == 0) return (VAmmMath.price(m.baseReserve, m.quoteReserve), m.lastIndexPrice);
        unchecked {
            // Differences modulo 2^112 recover the true sums over the span.
            markTwap = ((uint256(current.markCumulative) - anchor.markCumulative) & type(uint112).max) / span;
            indexTwap = ((uint256(current.indexCumulative) - anchor.indexCumulative) & type(uint112).max) / span;
        }
    }

    // ------------------------------------------------------------------ the accrual to now, for views and margin

    /// @dev The market's funding index accrued to now (what `_accrue` would make it, given the feed's round
    ///      `index`/`since`), for views and margin checks.
    function _cumulativeFundingNow(Market storage m, uint256 index, uint256 since) internal view returns (int256 cf) {
        FundingState memory fs = m.funding;
        cf = fs.cumulativeFunding;
        uint256 last = m.accumulator.timestamp;
        if (block.timestamp == last) return cf;
        // A whole idle hour: the accrual's sample enters the rate's motion (`_evolveIdle`), so the view takes it.
        bool idle = _wholeIdleHour(last);
        if (!idle && fs.rate == 0 && fs.target == 0) return cf;
        IClearingHouse.FundingParams memory f = m.fundingParams;
        uint256 indexArea = _indexArea(last, m.lastIndexPrice, index, since);
        int256 area;
        if (idle) {
            (, int256 sampled,,) = _sampleNow(m, fs, indexArea, f);
            (, area) = _evolveIdle(fs.rate, fs.target, sampled, last, f);
        } else {
            (, area) = FundingMath.evolve(fs.rate, fs.target, block.timestamp - last, f.smoothingTau, f.maxRateVelocity);
        }
        cf += _fundingAccrual(area, indexArea, block.timestamp - last);
    }

    /// @dev `acc` (the accumulator) extended to now as `_accrue` would extend it, with the feed as it stands
    ///      (`_tryRound`), for views. Accrued in this block (a breaker's poke accrues, then reads the TWAPs), it is
    ///      already the sums to now: the feed is not read again.
    function _extendNow(Market storage m, Observation memory acc) internal view returns (Observation memory) {
        if (acc.timestamp == block.timestamp) return acc;
        (, uint256 index, uint256 since) = _tryRound(m);
        return _extend(acc, _spot(m), _indexArea(acc.timestamp, m.lastIndexPrice, index, since));
    }

    /// @dev Mark and index TWAPs over [anchor, now] for views: the accumulator extended to now.
    function _twaps(Market storage m) internal view returns (uint256 markTwap, uint256 indexTwap) {
        return _twapsFrom(m, _extendNow(m, m.accumulator), m.funding.observationHead);
    }

    function _spot(Market storage m) internal view returns (uint256) {
        return VAmmMath.price(m.baseReserve, m.quoteReserve);
    }
}
