// SPDX-License-Identifier: BUSL-1.1
pragma solidity 0.8.28;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

import {IAmmController} from "./interfaces/IAmmController.sol";
import {IClearingHouse} from "./interfaces/IClearingHouse.sol";
import {ILiquidityPool} from "./interfaces/ILiquidityPool.sol";
import {ICircuitBreaker} from "./interfaces/ICircuitBreaker.sol";
import {IRiskGovernor} from "./interfaces/IRiskGovernor.sol";
import {WAD, WadMath} from "./libraries/WadMath.sol";
import {VAmmMath} from "./libraries/VAmmMath.sol";
import {Bounds} from "./libraries/Bounds.sol";

/// @title AmmController
/// @notice Depth and peg of every vAMM, from the shared pool (see IAmmController). Holds no money.
/// @dev Depth: quote reserve target = depthRatio x amplification x NAV (amplification: the depth
///      concentrated on a price range, `setConcentration`), compared with the quote reserve at zero net
///      position, x y / (x + net), which no trade moves; both reserves scale by the same factor so the
///      price is unchanged (up to one wei, rounded down), at most once per depthInterval and by bounded
///      steps (see `_depthStep`). What the rescale does to the net position's exit value is charged to
///      (or, shrinking, credited to) the positions on the net side through the funding index, so the pool
///      neither pays nor earns it (`_depthCharge`). With a net position the rescale moves the peg (below)
///      by (s (x + net) / (s x + net))^2; a repeg may then move it back at the pool's cost (docs/pool.md):
///      only a change of the pool's NAV makes that rescale due, never a trade.
///      Repeg: the quote reserve alone changes so the peg, the curve's price at zero net position (`_peg`),
///      moves toward the live index by at most maxRepegStep, and less if the change of the net position's
///      exit value would exceed maxRepegCost x NAV; at most once per block. The mark's distance from the
///      peg is then the traders' own skew against depth.
///      Accounting: the pool's NAV values positions at what closing them against the vAMM would pay, so
///      each call moves NAV by exactly its cost, the change of the market's net position's exit value
///      (`VAmmMath.exitValue`); the cost is emitted and accumulated per market (`depthCost`, `repegCost`).
contract AmmController is IAmmController, Ownable2Step, ReentrancyGuardTransient {
    using WadMath for uint256;
    using WadMath for int256;

    uint256 internal constant MAX_DEPTH_RATIO = 100e18;
    uint256 internal constant MAX_DEPTH_CHANGE = 0.5e18;
    uint256 internal constant MIN_REPEG_THRESHOLD = 0.001e18;
    uint256 internal constant MAX_REPEG_STEP = 0.1e18;
    uint256 internal constant MAX_REPEG_COST = 0.01e18;
    uint256 internal constant MAX_REPEG_INTERVAL = 1 days;
    uint256 internal constant MIN_DEPTH_INTERVAL = 60;
    uint256 internal constant MAX_DEPTH_INTERVAL = 1 days;
    uint256 internal constant MAX_DEPTH_COST = 0.01e18;
    uint256 internal constant MIN_RANGE = 0.01e18;
    uint256 internal constant MAX_RANGE = 0.5e18;

    IClearingHouse public immutable clearingHouse;
    ILiquidityPool public immutable pool;

    mapping(uint32 marketId => AmmParams) internal _params;
    /// @dev Per market, one slot: the last repeg time and the peg guard, so a repeg reads both with one cold read.
    struct RepegSlot {
        uint64 lastRepeg; // [s]
        address guard; // 0: none
    }

    mapping(uint32 marketId => RepegSlot) internal _repegSlot;
    /// @dev Per guarded market, one slot: the peg when its current window began, and that time. Within a window
    ///      (the market's TWAP window) a guarded peg moves at most the move threshold from the window's peg.
    struct PegWindow {
        uint128 peg; // [wad]
        uint64 start; // [s]
    }

    mapping(uint32 marketId => PegWindow) internal _pegWindow;
    /// @notice Sum of repeg costs per market [wad] (positive = cost to the pool).
    mapping(uint32 marketId => int256) public repegCost;
    /// @notice Last depth sync time per market.
    mapping(uint32 marketId => uint256) public lastDepthSync;
    /// @notice Sum of depth-sync costs per market [wad] (positive = cost to the pool).
    mapping(uint32 marketId => int256) public depthCost;
    /// @dev Per market: the price range [wad] the depth is concentrated on, and the amplification [wad] (0: none).
    mapping(uint32 marketId => uint256) internal _range;
    mapping(uint32 marketId => uint256) internal _amplification;

    constructor(IClearingHouse clearingHouse_, ILiquidityPool pool_, address owner_) Ownable(owner_) {
        if (address(clearingHouse_) == address(0) || address(pool_) == address(0)) revert ZeroAddress();
        clearingHouse = clearingHouse_;
        pool = pool_;
    }

    /// @notice Set `marketId`'s rule, within hard bounds.
    function setAmmParams(uint32 marketId, AmmParams calldata p) external onlyOwner {
        _checkMarket(marketId);
        Bounds.check("depthRatio", p.depthRatio, 1, MAX_DEPTH_RATIO);
        Bounds.check("maxDepthChange", p.maxDepthChange, 1, MAX_DEPTH_CHANGE);
        Bounds.check("repegThreshold", p.repegThreshold, MIN_REPEG_THRESHOLD, WAD);
        Bounds.check("maxRepegStep", p.maxRepegStep, 1, MAX_REPEG_STEP);
        Bounds.check("maxRepegCost", p.maxRepegCost, 0, MAX_REPEG_COST);
        Bounds.check("repegInterval", p.repegInterval, 0, MAX_REPEG_INTERVAL);
        Bounds.check("depthInterval", p.depthInterval, MIN_DEPTH_INTERVAL, MAX_DEPTH_INTERVAL);
        Bounds.check("maxDepthCost", p.maxDepthCost, 0, MAX_DEPTH_COST);
        _params[marketId] = p;
        emit AmmParamsSet(marketId, p);
    }

    /// @notice Concentrate `marketId`'s depth on the prices within `range` of the peg: the depth target is
    ///         multiplied by `amplification`, at most `maxAmplification(range)`, the capital efficiency of a
    ///         range of that width (docs/pool.md "Concentrated depth"). Applies from the next depth sync.
    function setConcentration(uint32 marketId, uint256 range, uint256 amplification) external onlyOwner {
        _checkMarket(marketId);
        Bounds.check("range", range, MIN_RANGE, MAX_RANGE);
        Bounds.check("amplification", amplification, WAD, maxAmplification(range));
        _range[marketId] = range;
        _amplification[marketId] = amplification;
        emit ConcentrationSet(marketId, range, amplification);
    }

    /// @inheritdoc IAmmController
    function setPegGuard(uint32 marketId, address guard) external onlyOwner {
        _checkMarket(marketId);
        if (guard != address(0)) _checkGuard(marketId, guard);
        _repegSlot[marketId].guard = guard;
        emit PegGuardSet(marketId, guard);
    }

    /// @inheritdoc IAmmController
    function pegHeldUntil(uint32 marketId) external view returns (uint256) {
        address guard = _repegSlot[_checkMarket(marketId)].guard;
        if (guard == address(0)) return 0;
        IClearingHouse.MarketState memory s = clearingHouse.marketState(marketId);
        // Casts: OI sides are below 2^128.
        int256 net = int256(s.longOpenInterest) - int256(s.shortOpenInterest);
        uint256 peg = _peg(s.baseReserve, s.quoteReserve, net);
        (uint256 heldUntil,,) = _guardRoom(marketId, guard, peg, clearingHouse.indexPrice(marketId));
        return heldUntil;
    }

    /// @inheritdoc IAmmController
    function pegGuard(uint32 marketId) external view returns (address) {
        return _repegSlot[marketId].guard;
    }

    /// @inheritdoc IAmmController
    function lastRepeg(uint32 marketId) external view returns (uint256) {
        return _repegSlot[marketId].lastRepeg;
    }

    /// @dev A guard must be a circuit breaker of this deployment (its governor's ClearingHouse is this one's) that
    ///      answers for the market: anything else (an account, another deployment's breaker) would make every repeg
    ///      of the market revert, or hold it on another market's index.
    function _checkGuard(uint32 marketId, address guard) internal view {
        if (guard.code.length == 0) revert InvalidPegGuard(guard);
        try ICircuitBreaker(guard).governor() returns (address gov) {
            if (gov.code.length == 0) revert InvalidPegGuard(guard);
            try IRiskGovernor(gov).clearingHouse() returns (address ch) {
                if (ch != address(clearingHouse)) revert InvalidPegGuard(guard);
            } catch {
                revert InvalidPegGuard(guard);
            }
        } catch {
            revert InvalidPegGuard(guard);
        }
        try ICircuitBreaker(guard).pegHold(marketId) returns (uint256, bool, uint256) {}
        catch {
            revert InvalidPegGuard(guard);
        }
    }

    /// @dev What `guard` lets a repeg of a known market do, `peg` and `index` its peg and live index: `heldUntil`
    ///      (0: not held), `room`, the most the peg may move toward the index [wad] (no bound without a guard), and
    ///      `w`, the market's window as the repeg would leave it. Two rules:
    ///      - the hold: within the guard's hold window (`ICircuitBreaker.pegHold`) the peg is held while the move is
    ///        live (the index past the move threshold from the index TWAP, which no one moves within a block) or the
    ///        index is past the threshold from the peg (|index - peg| / peg, the breaker's measure with the peg as
    ///        reference). A repeg follows an index back near both, as after a one-block spike, and never one that
    ///        left the TWAP: steps under the threshold from the peg add up against the TWAP;
    ///      - the window: within one TWAP window the peg moves at most the threshold from where the window began
    ///        (a window begins at the first repeg after the last one ended, at the peg then). Whatever the TWAP
    ///        reads, so also if the index it is built from was steered at each block's first accrual, a guarded
    ///        peg moves at most the threshold a window. With no room left the peg is held until the window ends.
    function _guardRoom(uint32 marketId, address guard, uint256 peg, uint256 index)
        internal
        view
        returns (uint256 heldUntil, uint256 room, PegWindow memory w)
    {
        if (guard == address(0)) return (0, type(uint256).max, w);
        (uint256 until, bool live, uint256 threshold) = ICircuitBreaker(guard).pegHold(marketId);
        uint256 distance = peg == 0 ? type(uint256).max : (index > peg ? index - peg : peg - index).divWadDown(peg);
        if (until > block.timestamp && (live || distance > threshold)) return (until, 0, w);
        w = _pegWindow[marketId];
        uint256 window = clearingHouse.marketParams(marketId).twapWindow;
        uint256 end = uint256(w.start) + window;
        if (block.timestamp >= end) {
            // Casts: a peg is a price below 2^128 (reserves are); timestamps fit 64 bits.
            w = PegWindow(uint128(peg), uint64(block.timestamp));
            end = block.timestamp + window;
        }
        uint256 edge = uint256(w.peg).mulWadDown(threshold); // rounded down: the room is never more than the rule
        if (index > peg) {
            uint256 top = uint256(w.peg) + edge;
            room = top > peg ? top - peg : 0;
        } else {
            uint256 bottom = uint256(w.peg) - edge;
            room = peg > bottom ? peg - bottom : 0;
        }
        if (room == 0) heldUntil = end;
    }

    /// @inheritdoc IAmmController
    function concentration(uint32 marketId)
        external
        view
        returns (uint256 range, uint256 amplification, uint256 effectiveAmplification)
    {
        _checkMarket(marketId);
        range = _range[marketId];
        amplification = _amplification[marketId];
        effectiveAmplification = _effectiveAmplification(marketId, clearingHouse.marketParams(marketId).maxSpread);
    }

    /// @inheritdoc IAmmController
    function maxAmplification(uint256 range) public pure returns (uint256) {
        Bounds.check("range", range, MIN_RANGE, MAX_RANGE);
        // 1 / (1 - (1 + r)^(-1/2)), 1/sqrt(1 + r) and the quotient each rounded down.
        uint256 inv = WAD * WAD / Math.sqrt((WAD + range) * WAD);
        return WAD * WAD / (WAD - inv);
    }

    /// @dev The amplification a depth sync applies: 1 without a concentration, and 1 while the market's price
    ///      band (`maxSpread`) is wider than the range, since trades could then reach prices the amplified
    ///      depth is not backed for.
    function _effectiveAmplification(uint32 marketId, uint256 maxSpread) internal view returns (uint256) {
        uint256 a = _amplification[marketId];
        return a == 0 || maxSpread > _range[marketId] ? WAD : a;
    }

    /// @inheritdoc IAmmController
    function ammParams(uint32 marketId) external view returns (AmmParams memory) {
        return _params[marketId];
    }

    /// @inheritdoc IAmmController
    function syncDepth(uint32 marketId) external nonReentrant returns (uint256 x1, uint256 y1) {
        AmmParams memory p = _configured(marketId);
        uint256 last = lastDepthSync[marketId];
        if (last != 0 && block.timestamp < last + p.depthInterval) {
            revert DepthSyncTooSoon(last + p.depthInterval, block.timestamp);
        }
        int256 nav = pool.navWad();
        if (nav <= 0) revert PoolValueNotPositive(nav);
        IClearingHouse.MarketState memory s = clearingHouse.marketState(marketId);
        uint256 x0 = s.baseReserve;
        uint256 y0 = s.quoteReserve;
        // Casts: OI sides are below 2^128.
        int256 net = int256(s.longOpenInterest) - int256(s.shortOpenInterest);
        IClearingHouse.MarketParams memory mp = clearingHouse.marketParams(marketId);
        // Cast: nav > 0.
        uint256 target = uint256(nav).mulWadDown(p.depthRatio).mulWadDown(_effectiveAmplification(marketId, mp.maxSpread));
        // Depth is the quote reserve at zero net position, x0 y0 / (x0 + net): a curve property no trade moves
        // (a trade slides along x y = k with net changing by the base it takes out). The target is compared
        // with the live reserve in those terms, target x (x0 + net) / x0, rounded down: a trader's own buy
        // cannot make a shrink due (tests/amm/test_peg_follow.py). The base at zero skew is positive (a net short's
        // reserve is kept at twice its base or more, `_depthStep`); the guard only keeps the cast honest.
        int256 zeroSkewBase = int256(x0) + net; // Cast: x0 < 2^128.
        if (net != 0 && zeroSkewBase > 0) target = target.mulDivDown(uint256(zeroSkewBase), x0);
        y1 = _depthStep(mp, p, x0, y0, net, target, uint256(nav));
        if (y1 < y0 && net != 0) {
            // A shrink about the zero-skew point moves the spot away from the peg: keep it inside the band.
            uint256 floor = _bandFloor(x0, y0, net, clearingHouse.indexPrice(marketId), mp.maxSpread);
            if (floor > y1) y1 = floor < y0 ? floor : y0;
        }
        if (y1 < y0 && net != 0) {
            (x1, y1) = _shrinkKeepingPeg(x0, y0, net, y1);
        } else {
            // Same factor on both sides keeps y/x: x1 = x0 * y1 / y0, rounded up so the price never rises.
            x1 = x0.mulDivUp(y1, y0);
        }
        int256 exitChange = _exitValue(x1, y1, net) - _exitValue(x0, y0, net);
        int256 charge = _depthCharge(exitChange, net, mp.takerFee);
        // What the charge moves into the pool's NAV, to the wei: NAV counts the traders' funding owed as
        // floor(net x F) - sum of bases, and setReserves accrues F to s.cumulativeFunding (accrued to now)
        // before it adds the charge.
        int256 collected = net.sMulWadDown(s.cumulativeFunding + charge) - net.sMulWadDown(s.cumulativeFunding);
        int256 cost = exitChange - collected;
        lastDepthSync[marketId] = block.timestamp;
        int256 total = depthCost[marketId] + cost;
        depthCost[marketId] = total;
        clearingHouse.setReserves(marketId, x1, y1, charge);
        emit DepthSynced(marketId, x0, y0, x1, y1, nav);
        emit DepthSyncCost(marketId, cost, total);
        emit DepthCharged(marketId, exitChange, charge);
    }

    /// @inheritdoc IAmmController
    function netExitValue(uint32 marketId) external view returns (int256) {
        IClearingHouse.MarketState memory s = clearingHouse.marketState(_checkMarket(marketId));
        // Casts: OI sides are below 2^128.
        return _exitValue(s.baseReserve, s.quoteReserve, int256(s.longOpenInterest) - int256(s.shortOpenInterest));
    }

    /// @dev The next quote reserve on the way to `target` (a scale s = y1 / y0 of the curve), within these bounds:
    ///      - shrinking: at most maxDepthChange; under a net position (where the curve is scaled about its
    ///        zero-skew point, `_shrinkKeepingPeg`) an exit value moved to the net position of at most the
    ///        budget below, and a net short's reserve kept at twice its base or more (its exit stays finite);
    ///      - deepening: s - 1 <= min(maxDepthChange, f / b) (f the taker fee, b the band), and an exit value
    ///        moved to the net position of at most the budget below.
    ///      Either way the exit value moved (and charged back to the net side, `_depthCharge`) is at most
    ///      min(maxDepthCost x NAV, f x b x y0, |net| x price x f / 2): the last bound keeps the charge per unit
    ///      of base within half a taker fee per sync.
    function _depthStep(
        IClearingHouse.MarketParams memory mp,
        AmmParams memory p,
        uint256 x0,
        uint256 y0,
        int256 net,
        uint256 target,
        uint256 nav
    ) internal pure returns (uint256 y1) {
        if (target <= y0) {
            uint256 lo = y0 - y0.mulWadDown(p.maxDepthChange);
            if (net != 0) {
                uint256 floor = _shrinkFloor(x0, y0, net, _chargeBudget(mp, p, x0, y0, net.abs(), nav));
                if (floor > lo) lo = floor;
            }
            return target < lo ? (lo < y0 ? lo : y0) : target;
        }
        uint256 step = uint256(mp.takerFee).divWadDown(mp.maxSpread);
        if (step > p.maxDepthChange) step = p.maxDepthChange;
        uint256 hi = y0 + y0.mulWadDown(step);
        y1 = target > hi ? hi : target;
        if (net == 0) return y1;
        uint256 n = net.abs();
        uint256 budget = _chargeBudget(mp, p, x0, y0, n, nav);
        // The largest scale whose exit-value change E(s) - E(1) stays within the budget (E on (s x0, s y0)).
        uint256 sMax = 0; // [wad] 0 = unbounded
        if (net > 0) {
            // E(s) = s y0 n / (s x0 + n) <= e0 + B  <=>  s (y0 n - (e0 + B) x0) <= (e0 + B) n.
            uint256 t = uint256(_exitValue(x0, y0, net)) + budget;
            uint256 lhs = y0 * n;
            if (lhs > t * x0) sMax = Math.mulDiv(t * n, WAD, lhs - t * x0);
        } else {
            // C(s) = s y0 n / (s x0 - n) >= c0 - B  <=>  s (r x0 - y0 n) <= r n  with r = c0 - B.
            uint256 c0 = uint256(-_exitValue(x0, y0, net));
            if (c0 > budget) {
                uint256 r = c0 - budget;
                if (r * x0 > y0 * n) sMax = Math.mulDiv(r * n, WAD, r * x0 - y0 * n);
            }
        }
        if (sMax != 0) {
            uint256 byCost = y0.mulWadDown(sMax);
            if (byCost < y0) byCost = y0;
            if (byCost < y1) y1 = byCost;
        }
    }

    /// @dev The exit value a sync may move to a net position of n base: min(maxDepthCost x NAV, f x b x y0,
    ///      floor(n y0 / x0) x f / 2), each rounded down.
    function _chargeBudget(
        IClearingHouse.MarketParams memory mp,
        AmmParams memory p,
        uint256 x0,
        uint256 y0,
        uint256 n,
        uint256 nav
    ) internal pure returns (uint256 budget) {
        budget = nav.mulWadDown(p.maxDepthCost);
        uint256 byDepth = y0.mulWadDown(mp.takerFee).mulWadDown(mp.maxSpread);
        if (byDepth < budget) budget = byDepth;
        uint256 byCharge = n.mulDivDown(y0, x0).mulWadDown(mp.takerFee / 2);
        if (byCharge < budget) budget = byCharge;
    }

    /// @dev The lowest quote reserve a shrink under a net position may reach, y0 x sMin rounded up. The curve is
    ///      scaled about its zero-skew point (Z, Y) = (x0 + net, x0 y0 / Z), Y rounded down, by s:
    ///      - net long n: the exit value E(s) = s Y n / (s Z - n) rises as s falls; E(s) <= e0 + B  <=>
    ///        s >= (e0 + B) n / ((e0 + B) Z - Y n);
    ///      - net short n: the buy-back cost C(s) = s Y n / (s Z + n) falls as s falls; C(s) >= c0 - B  <=>
    ///        s >= r n / (Y n - r Z) with r = c0 - B (no bound when B >= c0); and x1 = s Z + n >= 2 n, i.e.
    ///        s >= n / Z, so the short's exit stays finite.
    ///      sMin is rounded up; a denominator that rounding leaves at zero (a dust net position) allows no shrink.
    function _shrinkFloor(uint256 x0, uint256 y0, int256 net, uint256 budget) internal pure returns (uint256) {
        uint256 n = net.abs();
        uint256 z = _zeroSkewBase(x0, net);
        uint256 yz = x0.mulDivDown(y0, z);
        uint256 sMin; // [wad]
        if (net > 0) {
            uint256 t = uint256(_exitValue(x0, y0, net)) + budget;
            if (t * z <= yz * n) return y0;
            sMin = Math.mulDiv(t * n, WAD, t * z - yz * n, Math.Rounding.Ceil);
        } else {
            sMin = n.mulDivUp(WAD, z);
            uint256 c0 = uint256(-_exitValue(x0, y0, net));
            if (c0 > budget) {
                uint256 r = c0 - budget;
                if (yz * n <= r * z) return y0;
                uint256 byCost = Math.mulDiv(r * n, WAD, yz * n - r * z, Math.Rounding.Ceil);
                if (byCost > sMin) sMin = byCost;
            }
        }
        return y0.mulWadUp(sMin);
    }

    /// @dev The lowest quote reserve a shrink under a net position may reach with the spot inside the band around
    ///      the live index (a spot outside it suspends LP flows and blocks trades away from the index). The shrink
    ///      keeps the peg P and moves the spot to P (s Z / (s Z - net))^2: for a net long n it stays at or below
    ///      index + floor(index x band) while s Z >= q n / (q - 1), q = sqrt((index + floor(index x band)) / P)
    ///      rounded down; for a net short at or above index - floor(index x band) while s Z >= q n / (1 - q),
    ///      q = sqrt((index - floor(index x band)) / P) rounded up (each rounding makes the floor higher). y0 (no
    ///      shrink) when the spot is already at or past the band's edge on the net's side.
    function _bandFloor(uint256 x0, uint256 y0, int256 net, uint256 index, uint256 band)
        internal
        pure
        returns (uint256)
    {
        uint256 n = net.abs();
        uint256 z = _zeroSkewBase(x0, net);
        uint256 peg = _peg(x0, y0, net);
        uint256 edge = index.mulWadDown(band);
        uint256 sMin; // [wad]
        if (net > 0) {
            uint256 q = Math.sqrt((index + edge).mulDivDown(WAD, peg) * WAD);
            if (q <= WAD) return y0;
            sMin = Math.mulDiv(q * n, WAD, (q - WAD) * z, Math.Rounding.Ceil);
        } else {
            uint256 q = Math.sqrt((index - edge).mulDivUp(WAD, peg) * WAD, Math.Rounding.Ceil);
            if (q >= WAD) return y0;
            sMin = Math.mulDiv(q * n, WAD, (WAD - q) * z, Math.Rounding.Ceil);
        }
        return y0.mulWadUp(sMin);
    }

    /// @dev A shrink under a net position, by s = y1 / y0, scales the curve about its zero-skew point so that the
    ///      peg (Y / Z) is kept: Z1 = Z s, Y1 = Y Z1 / Z, and the net position's reserves x1 = Z1 - net,
    ///      y1 = Y1 Z1 / x1, each rounded down (the peg can only fall by rounding). Keeping the spot instead
    ///      moved the peg against the net position (a net long's down), and the repeg that followed moved it back
    ///      at the pool's cost. The net side's exit gain is charged back to it (`_depthCharge`); `_shrinkFloor`
    ///      keeps Z1 above a net long's base, so x1 > 0.
    function _shrinkKeepingPeg(uint256 x0, uint256 y0, int256 net, uint256 scaled)
        internal
        pure
        returns (uint256 x1, uint256 y1)
    {
        uint256 z = _zeroSkewBase(x0, net);
        uint256 z1 = z.mulDivDown(scaled, y0);
        uint256 yz1 = x0.mulDivDown(y0, z).mulDivDown(z1, z);
        // Cast: net != 0 and |net| < 2^128.
        x1 = net > 0 ? z1 - uint256(net) : z1 + net.abs();
        y1 = yz1.mulDivDown(z1, x1);
    }

    /// @dev The funding-index charge [wad quote per base] that hands the pool back what a rescale moved to
    ///      the net position, fee included: the net side's close would also pay the taker fee f on a changed
    ///      quote, so its gain is |exitChange| (1 + f) at most and its loss |exitChange| (1 - f) at least.
    ///      Per unit of base it pays |exitChange| (1 + f) / |net| when the exit value rose (rounded up) and is
    ///      paid |exitChange| (1 - f) / |net| when it fell (rounded down), so neither the pool's NAV nor its
    ///      fees fall. Longs pay a rising index; a net short's charge is therefore negative. Positions on the
    ///      other side receive (or pay) the same per unit, as with funding, and a position that is the whole
    ///      net position gains nothing from a rescale.
    function _depthCharge(int256 exitChange, int256 net, uint256 takerFee) internal pure returns (int256) {
        if (exitChange == 0 || net == 0) return 0;
        uint256 n = net.abs();
        uint256 magnitude = exitChange > 0
            ? exitChange.abs().mulDivUp(WAD + takerFee, n)
            : exitChange.abs().mulDivDown(WAD - takerFee, n);
        return (net > 0) == (exitChange > 0) ? int256(magnitude) : -int256(magnitude);
    }

    function _exitValue(uint256 x, uint256 y, int256 net) internal pure returns (int256) {
        return VAmmMath.exitValue(x, y, net);
    }

    /// @inheritdoc IAmmController
    function pegPrice(uint32 marketId) external view returns (uint256) {
        IClearingHouse.MarketState memory s = clearingHouse.marketState(_checkMarket(marketId));
        // Casts: OI sides are below 2^128.
        return _peg(s.baseReserve, s.quoteReserve, int256(s.longOpenInterest) - int256(s.shortOpenInterest));
    }

    /// @dev The curve's price where the traders' net position would be zero, x y / (x + net)^2 [wad], rounded
    ///      down twice. A trade moves x by -base and net by +base, so x + net is unchanged by trades and k = x y
    ///      only grows by the swap's rounding: no trade moves the peg (by more than that rounding). 0 when the
    ///      curve does not hold the net short (unreachable: AmmController keeps x >= 2 |net short| on a sync).
    function _peg(uint256 x, uint256 y, int256 net) internal pure returns (uint256) {
        uint256 x0 = _zeroSkewBase(x, net);
        if (x0 == 0) return 0;
        return Math.mulDiv(Math.mulDiv(x, y, x0), WAD, x0);
    }

    /// @dev x + net: the base reserve at which the traders' net position would be zero (0 if not positive).
    function _zeroSkewBase(uint256 x, int256 net) internal pure returns (uint256) {
        if (net >= 0) return x + net.abs();
        uint256 n = net.abs();
        return n >= x ? 0 : x - n;
    }

    /// @inheritdoc IAmmController
    function repeg(uint32 marketId) external nonReentrant returns (uint256 price1, int256 cost) {
        AmmParams memory p = _configured(marketId);
        // At most once per block (second) and once per repegInterval.
        RepegSlot memory rs = _repegSlot[marketId];
        uint256 last = rs.lastRepeg;
        uint256 next = last + (p.repegInterval == 0 ? 1 : p.repegInterval);
        if (last != 0 && block.timestamp < next) revert RepegTooSoon(next, block.timestamp);

        uint256 index = clearingHouse.indexPrice(marketId);
        IClearingHouse.MarketState memory s = clearingHouse.marketState(marketId);
        uint256 x = s.baseReserve;
        // Casts: OI sides are below 2^128.
        int256 net = int256(s.longOpenInterest) - int256(s.shortOpenInterest);
        uint256 x0 = _zeroSkewBase(x, net);
        uint256 peg0 = _peg(x, s.quoteReserve, net);
        uint256 gap = index > peg0 ? index - peg0 : peg0 - index;
        uint256 divergence = gap.divWadDown(index);
        if (x0 == 0 || divergence <= p.repegThreshold) revert RepegNotNeeded(divergence, p.repegThreshold);
        // A guarded market's peg stays while an index move holds it, and moves at most the threshold a window.
        (uint256 heldUntil, uint256 room, PegWindow memory w) = _guardRoom(marketId, rs.guard, peg0, index);
        if (heldUntil != 0) revert PegHeld(marketId, heldUntil);
        if (w.start == block.timestamp) _pegWindow[marketId] = w; // a window begins with this repeg

        uint256 maxMove = peg0.mulWadDown(p.maxRepegStep);
        if (room < maxMove) maxMove = room;
        if (net != 0) {
            // The quote reserve moves by dy = dP x0^2 / x for a peg move dP, so the net position's exit value
            // (y n / x0 for a net long, -y n / x0 for a net short) moves by dP n x0 / x: bound it by
            // maxRepegCost x NAV, i.e. dP <= budget x / (x0 n).
            int256 nav = pool.navWad();
            uint256 budget = nav > 0 ? uint256(nav).mulWadDown(p.maxRepegCost) : 0;
            uint256 byCost = Math.mulDiv(budget, x, x0).divWadDown(net.abs());
            if (byCost < maxMove) maxMove = byCost;
        }
        uint256 move = gap < maxMove ? gap : maxMove;
        // dy = move x0^2 / x rounded down: the peg moves by at most `move` (never past the index) and the
        // exit-value change stays within the budget (up to the exit value's own rounding, one wei).
        uint256 dy = Math.mulDiv(Math.mulDiv(move, x0, x), x0, WAD);
        uint256 y1 = index > peg0 ? s.quoteReserve + dy : s.quoteReserve - dy;
        clearingHouse.setReserves(marketId, x, y1, 0);
        price1 = y1 * WAD / x;
        // Cost: the change of what closing the net position would pay traders (the pool's NAV moves by -cost).
        cost = _exitValue(x, y1, net) - _exitValue(x, s.quoteReserve, net);
        repegCost[marketId] += cost;
        _repegSlot[marketId].lastRepeg = uint64(block.timestamp); // Cast: timestamps fit 64 bits
        emit Repeg(marketId, s.spotPrice, price1, index, cost);
    }

    function _configured(uint32 marketId) internal view returns (AmmParams memory p) {
        _checkMarket(marketId);
        p = _params[marketId];
        if (p.depthRatio == 0) revert DepthNotConfigured(marketId);
    }

    function _checkMarket(uint32 marketId) internal view returns (uint32) {
        if (marketId == 0 || marketId > clearingHouse.marketCount()) revert UnknownMarket(marketId);
        return marketId;
    }
}
