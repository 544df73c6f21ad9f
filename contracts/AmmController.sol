// SPDX-License-Identifier: BUSL-1.1
pragma solidity 0.8.28;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {IAmmController} from "./interfaces/IAmmController.sol";
import {IClearingHouse} from "./interfaces/IClearingHouse.sol";
import {WadMath} from "./libraries/WadMath.sol";

interface IPoolValue {
    function navWad() external view returns (int256);
}

/// @title AmmController
/// @notice Depth and peg of every vAMM, from the shared pool (see IAmmController). Holds no money.
/// @dev Depth: quote reserve target = depthRatio x NAV; both reserves scale by the same factor so the
///      price is unchanged (up to one wei, rounded down), and the move per call is capped at
///      maxDepthChange. Repeg: the quote reserve alone changes so the price moves toward the live index
///      by at most maxRepegStep, and less if net OI x move would exceed maxRepegCost x NAV.
///      Accounting: the pool's NAV values positions at the index, not at the vAMM, so neither call
///      changes NAV; what a repeg changes is the price at which open positions will be realized against
///      the vAMM. That change (net OI x price move) is the repeg's cost to the pool; it is emitted and
///      accumulated per market (`repegCost`), and bounded per call.
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

    IClearingHouse public immutable clearingHouse;
    IPoolValue public immutable pool;

    mapping(uint32 marketId => AmmParams) internal _params;
    /// @notice Last repeg time per market.
    mapping(uint32 marketId => uint256) public lastRepeg;
    /// @notice Sum of repeg costs per market [wad] (positive = cost to the pool).
    mapping(uint32 marketId => int256) public repegCost;

    constructor(IClearingHouse clearingHouse_, IPoolValue pool_, address owner_) Ownable(owner_) {
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
        _params[marketId] = p;
        emit AmmParamsSet(marketId, p);
    }

    /// @notice `marketId`'s rule.
    function ammParams(uint32 marketId) external view returns (AmmParams memory) {
        return _params[marketId];
    }

    /// @inheritdoc IAmmController
    function syncDepth(uint32 marketId) external nonReentrant returns (uint256 x1, uint256 y1) {
        AmmParams memory p = _configured(marketId);
        int256 nav = pool.navWad();
        if (nav <= 0) revert PoolValueNotPositive(nav);
        IClearingHouse.MarketState memory s = clearingHouse.marketState(marketId);
        uint256 x0 = s.baseReserve;
        uint256 y0 = s.quoteReserve;
        // Cast: nav > 0.
        uint256 target = uint256(nav).mulWadDown(p.depthRatio);
        uint256 lo = y0 - y0.mulWadDown(p.maxDepthChange);
        uint256 hi = y0 + y0.mulWadDown(p.maxDepthChange);
        y1 = target < lo ? lo : (target > hi ? hi : target);
        // Same factor on both sides keeps y/x: x1 = x0 * y1 / y0, rounded up so the price never rises.
        x1 = x0.mulDivUp(y1, y0);
        clearingHouse.setReserves(marketId, x1, y1);
        emit DepthSynced(marketId, x0, y0, x1, y1, nav);
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
        // Bound the cost: |net OI| x move <= maxRepegCost x NAV.
        // Casts: OI sides are below 2^128.
        int256 net = int256(s.longOpenInterest) - int256(s.shortOpenInterest);
        if (net != 0) {
            int256 nav = pool.navWad();
            uint256 budget = nav > 0 ? uint256(nav).mulWadDown(p.maxRepegCost) : 0;
            uint256 byCost = budget.divWadDown(net.abs());
            if (byCost < maxMove) maxMove = byCost;
        }
        uint256 gap = index > price0 ? index - price0 : price0 - index;
        uint256 move = gap < maxMove ? gap : maxMove;
        price1 = index > price0 ? price0 + move : price0 - move;
        uint256 y1 = s.baseReserve.mulWadDown(price1);
        clearingHouse.setReserves(marketId, s.baseReserve, y1);
        price1 = y1 * WAD / s.baseReserve;
        // Cost: longs gain (pool loses) when the price rises; shorts when it falls.
        cost = net.sMulWadUp(int256(price1) - int256(price0));
        repegCost[marketId] += cost;
        lastRepeg[marketId] = block.timestamp;
        emit Repeg(marketId, price0, price1, index, cost);
    }

    function _configured(uint32 marketId) internal view returns (AmmParams memory p) {
        _checkMarket(marketId);
        p = _params[marketId];
        if (p.depthRatio == 0) revert DepthNotConfigured(marketId);
    }

    function _checkMarket(uint32 marketId) internal view {
        if (marketId == 0 || marketId > clearingHouse.marketCount()) revert UnknownMarket(marketId);
    }

    function _bound(bytes32 name, uint256 value, uint256 lo, uint256 hi) internal pure {
        if (value < lo || value > hi) revert ParameterOutOfBounds(name, value);
    }
}
