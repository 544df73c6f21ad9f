// SPDX-License-Identifier: BUSL-1.1
pragma solidity 0.8.28;

import {IErrors} from "./IErrors.sol";

/// @title ICircuitBreaker
/// @notice Deterministic circuit breakers (issue 17, item 2). A permissionless `poke` measures a market and
///         the protocol, and asks the RiskGovernor to restrict the market while a breaker holds:
///         - index move: |index - indexTwap| / indexTwap > moveThreshold -> reduce-only for `coolOff`;
///         - divergence: |markTwap - indexTwap| / indexTwap > divergenceThreshold seen by every poke for at
///           least `divergenceDuration` -> reduce-only for `coolOff`;
///         - insurance: insuranceFund < insuranceTarget x gross open-interest notional -> every market's
///           per-side cap scaled by insuranceFund / (insuranceTarget x notional);
///         - auctions: live auction notional > auctionSoftShare x maxAuctionNotional -> caps scaled linearly
///           down to zero at 100 %;
///         - skew: |long - short| x index > maxSkewShare x pool NAV (a NAV <= 0 counts as exceeded) -> the
///           per-side cap is the heavy side's open interest when last seen, held for coolOff after the last
///           poke that saw the skew (a balancing round trip and a poke cannot lift it at once).
///         The index-move and divergence thresholds, the divergence duration and the skew share may be set
///         per market (`setMarketThresholds`): a liquid market can take looser ones than a thin one.
/// @dev A restriction only lowers the ClearingHouse's open-interest caps (reduce-only: the pool-ratio cap at
///      1 wei). Those caps are checked only on the side a trade grows: a close, a reduce, a liquidation
///      (kick, take, backstop) and a withdrawal of free collateral never read them, so no breaker can block
///      any of these.
interface ICircuitBreaker is IErrors {
    // ------------------------------------------------------------------ types

    /// @notice The breakers' global parameters, bounded in code (a market may have its own reduce-only
    ///         thresholds: `MarketThresholds`).
    struct BreakerParams {
        uint64 moveThreshold; // [wad] |index - indexTwap| / indexTwap that trips reduce-only
        uint32 coolOff; // [s] reduce-only lasts this long after the last poke that saw a move or divergence
        uint64 divergenceThreshold; // [wad] |markTwap - indexTwap| / indexTwap counted as divergent
        uint32 divergenceDuration; // [s] how long pokes must see divergence before it trips
        uint64 insuranceTarget; // [wad] insurance fund wanted per unit of gross open-interest notional
        uint64 auctionSoftShare; // [wad] live auction notional / maxAuctionNotional where caps start to shrink
        uint64 maxSkewShare; // [wad] |long - short| x index / pool NAV above which the heavy side is capped
    }

    /// @notice One market's own thresholds for the two reduce-only breakers and the skew breaker
    ///         (`setMarketThresholds`); 0 in a field: that market uses the global value (`params`). Same hard
    ///         bounds as the global parameters, so an override can loosen a breaker at most to its bound (50 %
    ///         for the move and divergence, 1000 % of the NAV for the skew), never switch it off.
    struct MarketThresholds {
        uint64 moveThreshold; // [wad] 0: params().moveThreshold
        uint64 divergenceThreshold; // [wad] 0: params().divergenceThreshold
        uint32 divergenceDuration; // [s] 0: params().divergenceDuration
        uint64 maxSkewShare; // [wad] 0: params().maxSkewShare
    }

    /// @notice The breakers, as `kind` in the events and bits (1 << kind) in `holding`.
    enum Kind {
        IndexMove,
        Divergence,
        Insurance,
        Auctions,
        Skew
    }

    /// @notice What a poke of a market stores, with the restriction in force (the governor's).
    struct BreakerState {
        uint64 reduceOnlyUntil; // [s] reduce-only while block.timestamp < this
        uint64 divergentSince; // [s] first poke of the current run of divergent pokes (0: not divergent)
        uint96 capBase; // [wad base] per-side cap in force (type(uint96).max: none)
        bool reduceOnly; // reduce-only in force
        uint8 holding; // bit (1 << Kind) set while that breaker holds, as of the last poke
        uint64 move; // [wad] |index - indexTwap| / indexTwap at the last poke (saturates at uint64 max)
        uint64 divergence; // [wad] |markTwap - indexTwap| / indexTwap at the last poke (saturating)
        uint64 insuranceFactor; // [wad] cap scale of the insurance breaker at the last poke (1e18: none)
        uint64 auctionFactor; // [wad] cap scale of the auction breaker at the last poke (1e18: none)
        uint64 skewShare; // [wad] |long - short| x index / NAV at the last poke (uint64 max when NAV <= 0)
    }

    /// @notice What a poke would do now (`check`) or just did.
    struct Evaluation {
        uint96 capBase; // [wad base] per-side cap the breakers ask for (type(uint96).max: none)
        bool reduceOnly; // reduce-only asked for
        bool changes; // differs from the restriction in force (a poke would call the governor)
        uint8 holding; // bit (1 << Kind) per breaker that holds
        uint64 reduceOnlyUntil; // [s] after this poke
        uint64 divergentSince; // [s] after this poke (0: not divergent)
        uint256 index; // [wad] live index
        uint256 move; // [wad] |index - indexTwap| / indexTwap
        uint256 divergence; // [wad] |markTwap - indexTwap| / indexTwap
        uint256 insuranceFund; // [wad]
        uint256 insuranceRequired; // [wad] insuranceTarget x gross OI notional of all markets, rounded up
        uint256 insuranceFactor; // [wad] min(1, insuranceFund / insuranceRequired)
        uint256 liveAuctionNotional; // [wad]
        uint256 auctionSoft; // [wad] auctionSoftShare x maxAuctionNotional
        uint256 auctionFactor; // [wad] 1 up to the soft level, linearly down to 0 at maxAuctionNotional
        uint256 skewNotional; // [wad] |long - short| x index, rounded up
        uint256 skewLimit; // [wad] maxSkewShare x NAV (0 when NAV <= 0)
        int256 nav; // [wad] the pool's NAV (`LiquidityPool.navWad`)
        uint64 skewUntil; // [s] after this poke: the skew cap holds until then (coolOff after it was last seen)
        uint96 skewCap; // [wad base] after this poke: the heavy side's open interest when the skew was last seen
    }

    // ------------------------------------------------------------------ errors

    /// @notice `caller` is not the RiskGovernor.
    error NotGovernor(address caller);
    /// @notice `marketId` is not listed on the ClearingHouse.
    error UnknownMarket(uint32 marketId);

    // ------------------------------------------------------------------ events

    /// @notice Breaker `kind` started to hold on `marketId`: measured `value` against `threshold` (both [wad],
    ///         see `Evaluation`); `until` is the end of reduce-only for the move and divergence breakers, 0 for
    ///         the cap breakers.
    event BreakerTripped(uint32 indexed marketId, Kind indexed kind, uint256 value, uint256 threshold, uint256 until);
    /// @notice Breaker `kind` no longer holds on `marketId` (a reduce-only cool-off may still run).
    event BreakerCleared(uint32 indexed marketId, Kind indexed kind);
    /// @notice The restriction of `marketId` changed (sent to the governor).
    event RestrictionApplied(uint32 indexed marketId, uint96 capBase, bool reduceOnly);
    /// @notice The breaker parameters were set (at deployment and on every change).
    event BreakerParamsSet(BreakerParams params);
    /// @notice `marketId`'s own thresholds were set (0 in a field: the global value).
    event MarketThresholdsSet(uint32 indexed marketId, MarketThresholds thresholds);

    // ------------------------------------------------------------------ actions

    /// @notice Permissionless: evaluate `marketId`'s breakers now and update its restriction when it changes.
    ///         Reverts like `ClearingHouse.indexPrice` when the market is unknown or its feed is stale.
    function poke(uint32 marketId) external;

    /// @notice Permissionless: `poke` every listed market; a market whose index cannot be read now is skipped.
    function pokeAll() external;

    /// @notice Governor only: set the parameters, within hard bounds.
    function setParams(BreakerParams calldata p) external;

    /// @notice Governor only: set `marketId`'s own thresholds for the index-move, divergence and skew breakers
    ///         (0 in a field: the global value), each non-zero field within the global parameter's hard bound. The one
    ///         exception is the deployment: the breaker's deployer may set them while the governor has no
    ///         breaker wired yet (before `RiskGovernor.setBreaker`'s one-time wiring, when this breaker cannot
    ///         restrict anything); once a breaker is wired, only the governor (timelock path).
    function setMarketThresholds(uint32 marketId, MarketThresholds calldata t) external;

    // ------------------------------------------------------------------ views

    /// @notice What `poke(marketId)` would do now, without writing.
    function check(uint32 marketId) external view returns (Evaluation memory);

    /// @notice `marketId`'s stored breaker state and the restriction in force.
    function breakerState(uint32 marketId) external view returns (BreakerState memory);

    /// @notice Until when [s] an index move holds `marketId`'s peg (for a market whose AmmController names this
    ///         breaker as its peg guard, `IAmmController.setPegGuard`): the reduce-only end set by the last poke
    ///         that saw the index move past its threshold, or now + coolOff when the live index is past it from the
    ///         index TWAP already (a repeg in the block of a push, before any poke, is held too). In the past: no
    ///         hold. Only the index-move breaker holds a peg: a peg held on divergence would keep the mark away
    ///         from the index and the divergence with it.
    function pegHoldUntil(uint32 marketId) external view returns (uint256);

    /// @notice The peg guard's whole reading for `marketId`: `until` as `pegHoldUntil`; `live`, whether the live
    ///         index is past the move threshold from the index TWAP now; `moveThreshold`, the market's threshold in
    ///         force [wad]. A guarded peg is held before `until` while the move is live, or while the index is past
    ///         `moveThreshold` from the peg (`IAmmController.pegHeldUntil`).
    function pegHold(uint32 marketId) external view returns (uint256 until, bool live, uint256 moveThreshold);

    /// @notice The global parameters (a market's own thresholds replace four of them: `marketThresholds`).
    function params() external view returns (BreakerParams memory);

    /// @notice The thresholds in force for `marketId`: its own where set, else the global ones.
    function marketThresholds(uint32 marketId) external view returns (MarketThresholds memory);

    /// @notice `marketId`'s own thresholds as set (0 in a field: none, the global value applies).
    function thresholdOverrides(uint32 marketId) external view returns (MarketThresholds memory);

    /// @notice Who deployed the breaker: it may set market thresholds until the governor wires a breaker.
    function deployer() external view returns (address);

    /// @notice The RiskGovernor the breaker reports to.
    function governor() external view returns (address);

    /// @notice The global parameters at deployment (what `params` returns until `setParams`).
    function defaultParams() external pure returns (BreakerParams memory);
}
