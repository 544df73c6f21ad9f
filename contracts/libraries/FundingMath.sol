// SPDX-License-Identifier: BUSL-1.1
pragma solidity 0.8.28;

import {WAD, WadMath} from "./WadMath.sol";

/// @title FundingMath
/// @notice The applied funding rate's motion toward its target, and the area under it.
/// @dev Model: the applied rate r follows dr/dt = clamp((T - r) / tau, -v, +v) with the target T
///      constant over the interval. That is an exponential approach with time constant `tau`
///      whose speed is capped at `v`. Closed form, with d0 = T - r0 and g = v * tau:
///        |d0| > g: r moves linearly at speed v for t1 = (|d0| - g) / v, reaching T -/+ g,
///                  then decays exponentially;
///        |d0| <= g: r(t) = T - d0 * e^(-t / tau).
///      The closed form makes the result independent of how often it is evaluated (a week in one
///      step equals 168 hourly steps, up to the rounding documented in docs/funding.md), r never
///      overshoots T, and |r(t) - r0| <= v * t exactly (enforced after rounding).
///      Units: rates [wad per hour], v [wad per hour per hour], tau and dt [s]; `area` = integral of
///      r dt in [wad per hour * s]. Every signed division truncates toward zero (Solidity `/`),
///      which `vperp.funding` mirrors.
library FundingMath {
    uint256 internal constant HOUR = 3600;
    uint256 internal constant LN2_WAD = 693_147_180_559_945_309; // floor(ln 2 * 1e18)
    uint256 internal constant EXP_TERMS = 18; // 0.694^19 / 19! < 1e-19: below one wei; even (expNegWad pairs terms)

    /// @notice e^(-x / 1e18) in WAD for x >= 0, rounded down (each Taylor term truncated).
    /// @dev x = k ln2 + r with r in [0, ln2): e^-x = 2^-k e^-r, e^-r by its alternating series.
    function expNegWad(uint256 x) internal pure returns (uint256) {
        if (x >= 42e18) return 0; // e^-42 < 1e-18
        // Unchecked: nothing below can wrap, so the result is bit for bit the checked one (test_exp_neg_wad_*
        // compares both over the whole domain). With x < 42e18: k = floor(x / ln2) <= 60 and k * ln2 <= x,
        // so r = x - k * ln2 is in [0, ln2) and r < WAD. Term n is floor(term(n-1) * r / (n * WAD)); as
        // r < WAD <= n * WAD the terms never increase, so term <= WAD, a product stays below
        // WAD * ln2 < 7e35 and a divisor is at most 18e18 (never 0). pos and neg are each at most
        // WAD * e^ln2 = 2e18. pos - neg = (WAD - t1) + (t2 - t3) + ... + (t16 - t17) + t18 >= 0 because
        // the terms never increase. The loop takes the terms in pairs (odd to neg, even to pos), the same
        // operations in the same order as one term per step. It stops once a term is 0: every later term is
        // floor(0 * r / (n * WAD)) = 0 and would add nothing, so the result is the full series' to the wei
        // (with the default tau of 2 h: after two of the nine rounds for a step of seconds, eight for an hour).
        unchecked {
            uint256 k = x / LN2_WAD;
            uint256 r = x - k * LN2_WAD;
            uint256 term = WAD;
            uint256 pos = WAD;
            uint256 neg;
            for (uint256 n = 1; n < EXP_TERMS; n += 2) {
                term = term * r / (n * WAD);
                neg += term;
                term = term * r / ((n + 1) * WAD);
                pos += term;
                if (term == 0) break;
            }
            return (pos - neg) >> k;
        }
    }

    /// @notice Evolve the applied rate `r0` toward `target` over `dt` seconds.
    /// @return r the applied rate after `dt`
    /// @return area integral of the rate over the interval [wad per hour * s]
    function evolve(int256 r0, int256 target, uint256 dt, uint256 tau, uint256 v)
        internal
        pure
        returns (int256 r, int256 area)
    {
        // Casts below: rates are bounded by int64 and dt, tau by uint32, so every product fits.
        if (dt == 0) return (r0, 0);
        int256 d0 = target - r0;
        if (d0 == 0) return (r0, r0 * int256(dt));
        int256 sign = d0 > 0 ? int256(1) : int256(-1);
        uint256 gap = WadMath.abs(d0);
        uint256 maxMove = v * dt / HOUR; // [rate] the most r may move in dt
        uint256 vTau = v * tau / HOUR; // [rate] gap at which the exponential's speed equals v
        uint256 dtW = dt * WAD; // [wad s]
        int256 r1 = r0;
        uint256 linW; // [wad s] length of the velocity-limited phase inside the interval
        if (gap > vTau) {
            uint256 t1W = (gap - vTau) * HOUR * WAD / v;
            if (t1W >= dtW) {
                r = r0 + sign * int256(maxMove);
                return (r, (r0 + r) * int256(dt) / 2);
            }
            r1 = target - sign * int256(vTau);
            linW = t1W;
            area = (r0 + r1) * int256(t1W) / int256(2 * WAD);
        }
        uint256 uW = dtW - linW;
        int256 d1 = target - r1;
        uint256 e = expNegWad(uW / tau);
        r = target - d1 * int256(e) / int256(WAD);
        area += target * int256(uW) / int256(WAD) - d1 * int256(tau) * int256(WAD - e) / int256(WAD);
        // The rounded closed form may exceed the velocity cap by a wei; the cap is exact.
        if (WadMath.abs(r - r0) > maxMove) r = r0 + sign * int256(maxMove);
    }

    /// @notice clamp(x, -cap, cap).
    function clamp(int256 x, uint256 cap) internal pure returns (int256) {
        int256 c = int256(cap);
        return x > c ? c : (x < -c ? -c : x);
    }
}
