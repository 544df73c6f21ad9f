// SPDX-License-Identifier: BUSL-1.1
pragma solidity 0.8.28;

import {IClearingHouse} from "./IClearingHouse.sol";
import {IErrors} from "./IErrors.sol";
import {ILiquidityPool} from "./ILiquidityPool.sol";

/// @title IAmmController
/// @notice Keeps every market's virtual AMM in line with the shared pool (docs/pool.md): depth follows the
///         pool capital allotted to the market, and the peg (the curve's price at zero net position)
///         follows the index, at most once per block by a bounded step. Both are permissionless pokes
///         bounded per call; neither changes a trader's entry.
interface IAmmController is IErrors {
    /// @notice Per-market rule.
    struct AmmParams {
        uint64 depthRatio; // [wad] target quote reserve per unit of pool NAV (the market's weight x leverage of depth)
        uint64 maxDepthChange; // [wad] largest relative change of the reserves per syncDepth call
        uint64 repegThreshold; // [wad] |peg - index| / index above which repeg is allowed
        uint64 maxRepegStep; // [wad] largest relative move of the peg per repeg call
        uint64 maxRepegCost; // [wad] largest repeg cost (|change of the net's exit value|) per call / pool NAV
        uint32 repegInterval; // [s] least time between two repegs of one market (0: once per block)
        uint32 depthInterval; // [s] least time between two depth syncs of one market
        uint64 maxDepthCost; // [wad] largest exit value one depth sync moves to the net position (and charges back) / pool NAV
    }

    error UnknownMarket(uint32 marketId);
    /// @notice The market has no depth rule yet (depthRatio 0): governance must set one.
    error DepthNotConfigured(uint32 marketId);
    /// @notice The pool's NAV is not positive: depth cannot follow it.
    error PoolValueNotPositive(int256 nav);
    /// @notice The peg is within the threshold of the index (`divergence` = |peg - index| / index).
    error RepegNotNeeded(uint256 divergence, uint256 threshold);
    /// @notice The last repeg of this market was less than `repegInterval` ago (or in this block).
    error RepegTooSoon(uint256 nextAllowed, uint256 timestamp);
    /// @notice The last depth sync of this market was less than `depthInterval` ago.
    error DepthSyncTooSoon(uint256 nextAllowed, uint256 timestamp);
    /// @notice The market's peg guard holds its peg until `until` [s]: an index move is in force, or the peg has
    ///         moved the move threshold within its window (`setPegGuard`, `pegHeldUntil`).
    error PegHeld(uint32 marketId, uint256 until);
    /// @notice `guard` is not a circuit breaker of this deployment answering for the market (`setPegGuard`).
    error InvalidPegGuard(address guard);

    /// @notice Reserves rescaled (price kept) to follow the pool: `nav` is the pool NAV used [wad].
    event DepthSynced(uint32 indexed marketId, uint256 baseBefore, uint256 quoteBefore, uint256 baseAfter, uint256 quoteAfter, int256 nav);
    /// @notice vAMM price moved from `priceBefore` to `priceAfter` toward the index. `cost` is the change of
    ///         what closing the market's net position against the vAMM would pay traders [wad] (positive = the
    ///         pool's loss; the pool's NAV moves by exactly -cost).
    event Repeg(uint32 indexed marketId, uint256 priceBefore, uint256 priceAfter, uint256 indexPrice, int256 cost);
    event AmmParamsSet(uint32 indexed marketId, AmmParams params);
    /// @notice `marketId`'s depth is concentrated on prices within `range` of the peg, amplified `amplification`
    ///         times [wad both].
    event ConcentrationSet(uint32 indexed marketId, uint256 range, uint256 amplification);
    /// @notice `marketId`'s peg is held while `guard` reports an index move (address 0: no guard).
    event PegGuardSet(uint32 indexed marketId, address guard);
    /// @notice What a depth sync did to the value of the open positions: `cost` is the change of what
    ///         closing the market's net position against the vAMM would pay traders [wad] (positive = the
    ///         pool's loss; the pool's NAV moves by exactly -cost, up to rounding).
    event DepthSyncCost(uint32 indexed marketId, int256 cost, int256 totalCost);
    /// @notice A depth sync changed the net position's exit value by `exitChange` [wad] and charged it back
    ///         through the funding index: `chargePerBase` [wad quote per base] is what one long base pays
    ///         (negative: receives), as funding is; the pool keeps the rounding.
    event DepthCharged(uint32 indexed marketId, int256 exitChange, int256 chargePerBase);

    /// @notice Rescale `marketId`'s virtual reserves toward depthRatio x amplification x pool NAV, at most once
    ///         per `depthInterval`; depth is the quote reserve at zero net position, x y / (x + net), so trades
    ///         never make a rescale due. A deepening (or any sync with no net position) keeps the price and scales
    ///         by at most min(maxDepthChange, takerFee / maxSpread); a shrink scales by at most maxDepthChange and,
    ///         under a net position, about the curve's zero-skew point, so the peg (`pegPrice`) is kept and no
    ///         repeg follows to move it back, and no further than keeps the spot inside the band around the index
    ///         (read for that shrink only: a stale feed makes it revert). Either way at most min(maxDepthCost x NAV, takerFee x maxSpread x
    ///         quote reserve, |net| x price x takerFee / 2) of exit value moves to the net position; that change
    ///         (up or down) is charged to the positions through the funding index (`DepthCharged`), so the pool's
    ///         NAV never falls: the booked cost is never positive (docs/pool.md).
    function syncDepth(uint32 marketId) external returns (uint256 baseReserve, uint256 quoteReserve);

    /// @notice Move `marketId`'s peg (the curve's price at zero net position, `pegPrice`) toward the live index,
    ///         when they are more than `repegThreshold` apart: by at most maxRepegStep of the peg and at most
    ///         maxRepegCost x NAV of exit value moved to the net position, once per block (and repegInterval).
    ///         Returns the vAMM's spot price after and the cost to the pool.
    function repeg(uint32 marketId) external returns (uint256 newPrice, int256 cost);

    /// @notice Owner only: hold `marketId`'s peg while `guard` (the protocol's circuit breaker,
    ///         `ICircuitBreaker.pegHold`) reports an index move, live or with the index still more than the
    ///         market's move threshold from the peg; address 0 removes the guard. For a market whose
    ///         index can be pushed: a repeg would carry the vAMM after a pushed index, and a position built before
    ///         the push would sell into it. While held, `repeg` reverts `PegHeld`, and the stale-peg rule refuses
    ///         trades in the direction the move favours (reduces included) until the hold ends; the other
    ///         direction, liquidations and withdrawals go on (docs/governance.md "Peg guard"). The guard must be a
    ///         circuit breaker whose governor's ClearingHouse is this one's and which answers for the market
    ///         (`InvalidPegGuard`).
    function setPegGuard(uint32 marketId, address guard) external;

    /// @notice `marketId`'s peg guard (address 0: none).
    function pegGuard(uint32 marketId) external view returns (address);

    /// @notice Until when [s] `marketId`'s peg is held, as the index stands now: the guard's hold end while the
    ///         move is live or the index is more than the move threshold from the peg; else the end of the peg's
    ///         window once the peg has moved the threshold within it (a guarded peg moves at most that much per TWAP
    ///         window); else 0 (also 0 without a guard). A held `repeg` reverts `PegHeld` with this time.
    function pegHeldUntil(uint32 marketId) external view returns (uint256);

    /// @notice `marketId`'s peg [wad]: the curve's price where the traders' net position would be zero,
    ///         x y / (x + net)^2. Trades do not move it (beyond rounding); repeg moves it toward the index, so
    ///         the mark's premium over the index is the traders' net skew against depth.
    function pegPrice(uint32 marketId) external view returns (uint256);

    /// @notice `marketId`'s concentration: the `range` of prices around the peg its depth is concentrated on and
    ///         the `amplification` set [wad]; `effectiveAmplification` is what a depth sync applies now: 1 (1e18)
    ///         without a concentration or while the market's price band is wider than the range.
    function concentration(uint32 marketId)
        external
        view
        returns (uint256 range, uint256 amplification, uint256 effectiveAmplification);

    /// @notice The most a depth concentrated on a `range` [wad] may be amplified: 1 / (1 - (1 + range)^(-1/2)),
    ///         the capital efficiency of liquidity confined to prices within `range` of the peg (21.5 at 10 %);
    ///         a range outside [1 %, 50 %] reverts `ParameterOutOfBounds("range", range)`.
    function maxAmplification(uint256 range) external pure returns (uint256);

    /// @notice `marketId`'s depth and peg rule.
    function ammParams(uint32 marketId) external view returns (AmmParams memory);

    /// @notice What closing `marketId`'s net position against the vAMM would pay traders now [wad]: the
    ///         quote a net long receives selling, minus what a net short pays buying back (negative then).
    function netExitValue(uint32 marketId) external view returns (int256);

    /// @notice Timestamp of `marketId`'s last repeg (0: never).
    function lastRepeg(uint32 marketId) external view returns (uint256);

    /// @notice Sum of `marketId`'s repeg costs so far [wad] (positive = the pool's loss).
    function repegCost(uint32 marketId) external view returns (int256);

    /// @notice Timestamp of `marketId`'s last depth sync (0: never).
    function lastDepthSync(uint32 marketId) external view returns (uint256);

    /// @notice Sum of `marketId`'s depth-sync costs so far [wad] (positive = the pool's loss).
    function depthCost(uint32 marketId) external view returns (int256);

    /// @notice The ClearingHouse whose reserves it sets, and the pool whose NAV sets the depth.
    function clearingHouse() external view returns (IClearingHouse);
    function pool() external view returns (ILiquidityPool);
}
