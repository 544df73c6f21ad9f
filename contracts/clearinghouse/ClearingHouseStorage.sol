// SPDX-License-Identifier: BUSL-1.1
pragma solidity 0.8.28;

import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";

import {IClearingHouse, IClearingHouseModules} from "../interfaces/IClearingHouse.sol";

/// @title ClearingHouseStorage
/// @notice The ClearingHouse's constants, bounds and storage layout, and the listed-market check (`_market`).
///         Shared by the ClearingHouse and the ClearingHouseConfigurator, which runs inside the ClearingHouse by
///         `delegatecall` and therefore must see the same layout: both inherit it (through
///         `ClearingHouseAccrual`), and nothing else declares storage in either.
abstract contract ClearingHouseStorage is IClearingHouseModules, Ownable2Step {
    // ------------------------------------------------------------------ constants and bounds

    /// @notice One bit per market in the Vault's per-account bitmap.
    uint256 public constant MAX_MARKETS = 128;
    /// @notice Observations in each market's TWAP ring; one is written per `twapWindow / 4`.
    uint256 internal constant OBSERVATIONS = 8;
    uint256 internal constant OBSERVATIONS_PER_WINDOW = 4;
    /// @notice The funding target's premium and skew term are the mark and index TWAPs and the mean skew over
    ///         about the last day (from the first block of the hour 24 hours back), re-sampled once an hour
    ///         (docs/funding.md: the day-long mean is what keeps the applied rate's hourly change within a tenth
    ///         of the unsmoothed rule's when positions build over hours).
    uint256 internal constant FUNDING_WINDOW_HOURS = 24;
    /// @notice Hourly observations kept per market, one slot per hour modulo this: as many as the window's
    ///         25 hours (h - 24 .. h), so the slots of those hours are distinct.
    uint256 internal constant FUNDING_OBSERVATIONS = 25;

    uint256 internal constant MIN_BASE_RESERVE = 1e18;
    uint256 internal constant MAX_RESERVE = 1e36;

    /// @notice Funding defaults at listing (docs/funding.md): 24 h period, a cap of the taker fee / 9 per hour
    ///         (ClearingHouseConfigurator.FUNDING_CAP_FEE_HOURS_FAST, at tau 2 h) and at most DEFAULT_MAX_FUNDING_RATE (0.1 %/h), tau
    ///         2 h (after the day-long premium mean), 0.05 %/h per hour velocity, no baseline.
    uint64 public constant DEFAULT_MAX_FUNDING_RATE = 0.001e18;
    uint64 public constant DEFAULT_MAX_RATE_VELOCITY = 0.0005e18;
    uint32 public constant DEFAULT_SMOOTHING_TAU = 2 hours;
    uint16 public constant DEFAULT_FUNDING_PERIOD_HOURS = 24;
    /// @notice Skew term at listing: 0.2 %/h of funding for a skew of the whole base reserve (0.01 %/h at 5 %).
    uint16 public constant DEFAULT_SKEW_FUNDING_PPM = 2_000;

    // ------------------------------------------------------------------ storage

    /// @dev One TWAP observation: cumulative sums of price x seconds. The sums wrap modulo 2^112;
    ///      only differences over at most a few windows are used, far below 2^112.
    struct Observation {
        uint32 timestamp; // [s]
        uint112 markCumulative; // [wad * s] vAMM price
        uint112 indexCumulative; // [wad * s] index price
    }

    struct Market {
        // slot 0
        address oracle;
        uint24 heartbeat; // [s] at most MAX_HEARTBEAT (2 days < 2^24)
        bool delayedOrders; // trades only through the order router (`setDelayedOrders`; _trade)
        uint16 twapWindow; // [s] at most MAX_TWAP_WINDOW (4 h < 2^16)
        uint16 pegToleranceBps; // [bps] an increase needs the peg within this of the index; 0: off (_trade)
        uint8 oracleScaleExp; // 18 - feed decimals
        uint8 id; // this market's id (<= MAX_MARKETS), for events from internal code
        uint16 skewFundingPpm; // [1e-6 per hour] funding target added per unit of skew (see _skewTerm)
        // slot 1
        uint64 imr; // [wad]
        uint64 mmr; // [wad]
        uint64 takerFee; // [wad]
        uint64 maxSpread; // [wad]
        // slot 2
        uint64 maxOiPoolRatio; // [wad]
        uint96 maxOpenInterest; // [wad base]
        uint96 minPositionSize; // [wad base]
        // slot 3
        uint128 baseReserve; // [wad] virtual
        uint128 quoteReserve; // [wad] virtual
        // slot 4
        uint128 longOpenInterest; // [wad base] sum of long sizes
        uint128 shortOpenInterest; // [wad base] sum of |short sizes|
        // slot 5: aggregates that value the pool's side of every position in O(1) per market
        int128 sumOpenNotional; // [wad quote] sum of positions' open notional
        int128 sumFundingBasis; // [wad quote] sum of floor(size x lastCumulativeFunding)
        // slot 6
        Observation accumulator; // cumulative sums up to `accumulator.timestamp`
        // slot 7
        FundingState funding;
        // slot 8
        uint128 lastIndexPrice; // [wad] index at the last update, prices the interval that follows
        uint64 insuranceFeeShare; // [wad] part of the taker fee that goes to the insurance fund
        uint64 lastDislocation; // [s] last block that found an index gap (see _accrue)
        // slot 9
        IClearingHouse.FundingParams fundingParams;
        // slots 10..17
        Observation[OBSERVATIONS] observations;
        // slots 18..42: the accumulator as the first block of each hour left it, at hour % FUNDING_OBSERVATIONS
        Observation[FUNDING_OBSERVATIONS] hourly;
        // slots 43..46: the funding state's skew sum at the same moments, same index (eight per slot)
        int32[FUNDING_OBSERVATIONS] hourlySkew;
    }

    /// @dev Written at most once per block per market, as one slot. Widths: the funding index holds 1e13 quote
    ///      per base (a century at the 1 %/h hard cap on a market priced 1e9); rates are clamped to at most
    ///      1 %/h (1e16, within int56).
    struct FundingState {
        int104 cumulativeFunding; // [wad quote per base] funding index: what one long base has paid
        int56 rate; // [wad per hour] applied rate at the last update
        int56 target; // [wad per hour] target in force since the last sample
        uint8 observationHead; // index of the newest TWAP observation
        // [bps of the base reserve x s] sum of the market's skew as each block found it (`_skewBps`), wrapping
        // modulo 2^32: only differences over the funding window (at most 25 hours) are read; |skew| <= 1e4 bps,
        // so a span up to 59 hours is exact (longer idle spans are read without it, see _fundingTwaps)
        int32 skewCumulative;
    }

    struct Position {
        int128 size; // [wad base]
        int128 openNotional; // [wad quote]
        int128 lastCumulativeFunding; // [wad quote per base] funding index at last settlement
        int128 auctioned; // [wad base] part of `size` in liquidation auctions (same sign)
    }

    uint32 internal _marketCount;
    mapping(uint32 marketId => Market) internal _markets;
    /// @dev Symbol of each market (e.g. "ETH"); read through `ClearingHouse.symbolOf`.
    mapping(uint32 marketId => bytes32) internal _symbolOf;
    mapping(uint32 marketId => mapping(address owner => mapping(uint32 subaccount => Position))) internal _positions;

    /// @notice The liquidation engine, the only caller of the liquidation hooks (wired once).
    address public liquidationEngine;
    /// @notice The AMM controller, the only caller of `setReserves` (depth and repeg; wired once).
    address public ammController;
    /// @notice The order router, the only caller that may trade in a market with delayed orders on
    ///         (`setOrderRouter`; zero until set).
    address public orderRouter;

    // ------------------------------------------------------------------ listed markets

    /// @dev A market is listed iff its oracle is set: `listMarket` sets it (never to zero, `_setParams`)
    ///      for ids 1..`_marketCount` only, and nothing clears it. Reading slot 0 here instead of
    ///      `_marketCount` warms the slot the caller reads next (the oracle), one cold read fewer.
    function _market(uint32 marketId) internal view returns (Market storage m) {
        m = _markets[marketId];
        if (m.oracle == address(0)) revert IClearingHouse.UnknownMarket(marketId);
    }
}
