// SPDX-License-Identifier: BUSL-1.1
pragma solidity 0.8.28;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

import {IAmmController} from "./interfaces/IAmmController.sol";
import {IClearingHouse} from "./interfaces/IClearingHouse.sol";
import {ILiquidityPool} from "./interfaces/ILiquidityPool.sol";
import {WadMath} from "./libraries/WadMath.sol";
import {VAmmMath} from "./libraries/VAmmMath.sol";

/// @title AmmController
/// @notice Depth and peg of every vAMM, from the shared pool (see IAmmController). Holds no money.
/// @dev Depth: quote reserve target = depthRatio x NAV, at most once per depthInterval and by bounded steps
///      (see `_depthStep`). Shrinking scales both reserves alike (price unchanged up to one wei, rounded
///      down); deepening also shifts the curve so the net position's exit value does not rise
///      (`_baseReserveFor`): a depth sync never costs the pool. Repeg: the quote reserve alone changes so the price moves toward the live
///      index by at most maxRepegStep, and less if the change of the net position's exit value would exceed
///      maxRepegCost x NAV.
///      Accounting: the pool's NAV values positions at what closing them against the vAMM would pay, so
///      each call moves NAV by exactly its cost, the change of the market's net position's exit value
///      (`VAmmMath.exitValue`); the cost is emitted and accumulated per market (`depthCost`, `repegCost`).
contract AmmController is IAmmController, Ownable2Step, ReentrancyGuardTransient {
    using WadMath for uint256;
    using WadMath for int256;

    uint256 internal constant WAD = 1e18;
    uint256 internal constant MAX_DEPTH_RATIO = 100e18;
    uint256 internal constant MAX_DEPTH_CHANGE = 0.5e18;
    uint256 internal constant MIN_REPEG_THRESHOLD = 0.001e18;
    uint256 internal constant MAX_REPEG_STEP = 0.1e18;
    uint256 internal constant MAX_REPEG_COST = 0.01e18;
    uint256 internal constant MAX_REPEG_INTERVAL = 1 days;
    uint256 internal constant MIN_DEPTH_INTERVAL = 60;
    uint256 internal constant MAX_DEPTH_INTERVAL = 1 days;
    uint256 internal constant MAX_DEPTH_COST = 0.01e18;

    IClearingHouse public immutable clearingHouse;
    ILiquidityPool public immutable pool;

    mapping(uint32 marketId => AmmParams) internal _params;
    /// @notice Last repeg time per market.
    mapping(uint32 marketId => uint256) public lastRepeg;
    /// @notice Sum of repeg costs per market [wad] (positive = cost to the pool).
    mapping(uint32 marketId => int256) public repegCost;
    /// @notice Last depth sync time per market.
    mapping(uint32 marketId => uint256) public lastDepthSync;
    /// @notice Sum of depth-sync costs per market [wad] (positive = cost to the pool).
    mapping(uint32 marketId => int256) public depthCost;

    constructor(IClearingHouse clearingHouse_, ILiquidityPool pool_, address owner_) Ownable(owner_) {
        if (address(clearingHouse_) == address(0) || address(pool_) == address(0)) revert ZeroAddress();
        clearingHouse = clearingHouse_;
        pool = pool_;
    }

    /// @notice Set `marketId`'s rule, within hard bounds.
    function setAmmParams(uint32 marketId, AmmParams calldata p) external onlyOwner {
        _checkMarket(marketId);
        _bound("depthRatio", p.depthRatio, 1, MAX_DEPTH_RATIO);
        _bound("maxDepthChange", p.maxDepthChange, 1, MAX_DEPTH_CHANGE);
        _bound("repegThreshold", p.repegThreshold, MIN_REPEG_THRESHOLD, WAD);
        _bound("maxRepegStep", p.maxRepegStep, 1, MAX_REPEG_STEP);
        _bound("maxRepegCost", p.maxRepegCost, 0, MAX_REPEG_COST);
        _bound("repegInterval", p.repegInterval, 0, MAX_REPEG_INTERVAL);
        _bound("depthInterval", p.depthInterval, MIN_DEPTH_INTERVAL, MAX_DEPTH_INTERVAL);
        _bound("maxDepthCost", p.maxDepthCost, 0, MAX_DEPTH_COST);
        _params[marketId] = p;
        emit AmmParamsSet(marketId, p);
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
        // Cast: nav > 0.
        uint256 target = uint256(nav).mulWadDown(p.depthRatio);
        y1 = _depthStep(marketId, p, x0, y0, net, target);
        x1 = _baseReserveFor(x0, y0, y1, net);
        int256 cost = _exitValue(x1, y1, net) - _exitValue(x0, y0, net);
        lastDepthSync[marketId] = block.timestamp;
        int256 total = depthCost[marketId] + cost;
        depthCost[marketId] = total;
        clearingHouse.setReserves(marketId, x1, y1);
        emit DepthSynced(marketId, x0, y0, x1, y1, nav);
        emit DepthSyncCost(marketId, cost, total);
    }

    /// @inheritdoc IAmmController
    function netExitValue(uint32 marketId) external view returns (int256) {
        IClearingHouse.MarketState memory s = clearingHouse.marketState(_checkMarket(marketId));
        // Casts: OI sides are below 2^128.
        return _exitValue(s.baseReserve, s.quoteReserve, int256(s.longOpenInterest) - int256(s.shortOpenInterest));
    }

    /// @dev The next quote reserve on the way to `target`, within these bounds:
    ///      - shrinking: at most maxDepthChange, and never below twice a net short's base (its exit stays finite);
    ///      - deepening: a scale s with s - 1 <= min(maxDepthChange, f / b) (f the taker fee, b the band), and,
    ///        with a net position of u base, (s - 1) u <= (f / 2) s (x0 - u): the price shift that keeps the net's
    ///        exit value (`_baseReserveFor`) is then at most f / 2 of the price (none when u >= x0).
    ///        The first bound keeps what a round trip gains from the deeper curve below one fee (docs/pool.md),
    ///        the second what it gains from the shift below half of one.
    function _depthStep(
        uint32 marketId,
        AmmParams memory p,
        uint256 x0,
        uint256 y0,
        int256 net,
        uint256 target
    ) internal view returns (uint256 y1) {
        if (target <= y0) {
            uint256 lo = y0 - y0.mulWadDown(p.maxDepthChange);
            if (net < 0) {
                // x1 = x0 y1 / y0 >= 2 |net|  <=>  y1 >= 2 |net| y0 / x0.
                uint256 floor = (2 * net.abs()).mulDivUp(y0, x0);
                if (floor > lo) lo = floor;
            }
            return target < lo ? (lo < y0 ? lo : y0) : target;
        }
        IClearingHouse.MarketParams memory mp = clearingHouse.marketParams(marketId);
        uint256 step = uint256(mp.takerFee).divWadDown(mp.maxSpread);
        if (step > p.maxDepthChange) step = p.maxDepthChange;
        uint256 hi = y0 + y0.mulWadDown(step);
        y1 = target > hi ? hi : target;
        if (net == 0) return y1;
        uint256 u = net.abs();
        if (u >= x0) return y0;
        // s (u - v) <= u with v = (x0 - u) f / 2 rounded down: y1 <= y0 u / (u - v), rounded down (>= y0).
        uint256 v = (x0 - u).mulWadDown(uint256(mp.takerFee) / 2);
        if (u > v) {
            uint256 byShift = Math.mulDiv(y0, u, u - v);
            if (byShift < y1) y1 = byShift;
        }
    }

    /// @dev The base reserve that goes with the quote reserve `y1` (from `y0`): the net position's exit value
    ///      does not rise. Shrinking scales both reserves alike (x1 = x0 y1 / y0 rounded up: the price can
    ///      only fall by a wei, and a shallower curve pays a net position less). Deepening by s = y1 / y0
    ///      also shifts the curve against the net position: x1 + net = s (x0 + net), rounded up for a net
    ///      long and down for a net short, which keeps E = y n / (x + n) (a net long's sale) and
    ///      C = y n / (x - n) (a net short's buy-back) exactly where they were, up to that rounding in the
    ///      pool's favour. A deepening therefore never pays open positions anything: the price moves toward
    ///      what the net position would get on the old curve (down for a net long, up for a net short), by
    ///      (s - 1) |net| / (s (x0 - |net|)) of the price at most.
    function _baseReserveFor(uint256 x0, uint256 y0, uint256 y1, int256 net) internal pure returns (uint256) {
        if (y1 <= y0 || net == 0) return x0.mulDivUp(y1, y0);
        // Casts: |net| < x0 here (a net long's sum is below 2^128 + x0, a net short's base is below x0).
        if (net > 0) return (x0 + uint256(net)).mulDivUp(y1, y0) - uint256(net);
        return (x0 - net.abs()).mulDivDown(y1, y0) + net.abs();
    }

    function _exitValue(uint256 x, uint256 y, int256 net) internal pure returns (int256) {
        return VAmmMath.exitValue(x, y, net);
    }

    /// @inheritdoc IAmmController
    function repeg(uint32 marketId) external nonReentrant returns (uint256 price1, int256 cost) {
        AmmParams memory p = _configured(marketId);
        uint256 next = lastRepeg[marketId] + p.repegInterval;
        if (lastRepeg[marketId] != 0 && block.timestamp < next) revert RepegTooSoon(next, block.timestamp);
        (uint256 markTwap, uint256 indexTwap) = clearingHouse.twaps(marketId);
        uint256 divergence = (markTwap > indexTwap ? markTwap - indexTwap : indexTwap - markTwap).divWadDown(indexTwap);
        if (divergence <= p.repegThreshold) revert RepegNotNeeded(divergence, p.repegThreshold);

        uint256 index = clearingHouse.indexPrice(marketId);
        IClearingHouse.MarketState memory s = clearingHouse.marketState(marketId);
        uint256 price0 = s.spotPrice;
        uint256 maxMove = price0.mulWadDown(p.maxRepegStep);
        uint256 x = s.baseReserve;
        // Casts: OI sides are below 2^128.
        int256 net = int256(s.longOpenInterest) - int256(s.shortOpenInterest);
        if (net != 0) {
            // Bound the change of the net position's exit value, |dE| = x dp n / (x +- n) (x fixed, y = x p),
            // by maxRepegCost x NAV: dp <= budget (x +- n) / (x n), + for a net long, - for a net short.
            int256 nav = pool.navWad();
            uint256 budget = nav > 0 ? uint256(nav).mulWadDown(p.maxRepegCost) : 0;
            uint256 n = net.abs();
            uint256 byCost = Math.mulDiv(budget, net > 0 ? x + n : x - n, x).divWadDown(n);
            if (byCost < maxMove) maxMove = byCost;
        }
        uint256 gap = index > price0 ? index - price0 : price0 - index;
        uint256 move = gap < maxMove ? gap : maxMove;
        // The quote reserve moves by x * move (rounded down), from the reserve itself rather than from the
        // truncated spot price, so the exit-value change stays within the cost budget to the wei.
        uint256 dy = x.mulWadDown(move);
        uint256 y1 = index > price0 ? s.quoteReserve + dy : s.quoteReserve - dy;
        clearingHouse.setReserves(marketId, x, y1);
        price1 = y1 * WAD / x;
        // Cost: the change of what closing the net position would pay traders (the pool's NAV moves by -cost).
        cost = _exitValue(x, y1, net) - _exitValue(x, s.quoteReserve, net);
        repegCost[marketId] += cost;
        lastRepeg[marketId] = block.timestamp;
        emit Repeg(marketId, price0, price1, index, cost);
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

    function _bound(bytes32 name, uint256 value, uint256 lo, uint256 hi) internal pure {
        if (value < lo || value > hi) revert ParameterOutOfBounds(name, value);
    }
}
