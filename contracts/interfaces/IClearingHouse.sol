// SPDX-License-Identifier: BUSL-1.1
pragma solidity 0.8.28;

import {IErrors} from "./IErrors.sol";
import {IVault} from "./IVault.sol";

/// @title IClearingHouseModules
/// @notice The ClearingHouse's wiring and listing constants. Declared apart from `IClearingHouse` because the
///         ClearingHouse's storage contract (shared with its configurator) holds them: it implements this interface,
///         and `IClearingHouse` extends it.
interface IClearingHouseModules {
    /// @notice The Vault every trade settles in (fixed at construction).
    function vault() external view returns (IVault);
    /// @notice The liquidation engine, the only caller of the liquidation hooks (wired once).
    function liquidationEngine() external view returns (address);
    /// @notice The AMM controller, the only caller of `setReserves` (depth and repeg; wired once).
    function ammController() external view returns (address);
    /// @notice The order router, the only caller that may trade in a market with delayed orders on (zero: none).
    function orderRouter() external view returns (address);
    /// @notice Most markets that can be listed: one bit per market in the Vault's per-account bitmap.
    function MAX_MARKETS() external view returns (uint256);
    /// @notice Funding defaults at listing (docs/funding.md): the cap [wad per hour] (a market is listed with the
    ///         smaller of this and its taker fee / 9 per hour, the most a market's cap may be at a time constant under
    ///         12 h; from 12 h, the fee / 6), the velocity [wad per hour
    ///         per hour], the smoothing time constant [s], the premium's period [h] and the skew term [ppm per hour].
    function DEFAULT_MAX_FUNDING_RATE() external view returns (uint64);
    function DEFAULT_MAX_RATE_VELOCITY() external view returns (uint64);
    function DEFAULT_SMOOTHING_TAU() external view returns (uint32);
    function DEFAULT_FUNDING_PERIOD_HOURS() external view returns (uint16);
    function DEFAULT_SKEW_FUNDING_PPM() external view returns (uint16);
}

/// @title IClearingHouse
/// @notice Markets (virtual AMMs priced on virtual reserves), positions, TWAPs and margin checks.
///         Money never sits here: every trade's ledger movement is settled in the Vault, against the
///         liquidity pool's balance (the counterparty of every trader).
/// @dev Sign conventions: size > 0 is long. `openNotional` is the signed quote cost of the position
///      (long: paid, > 0; short: received, < 0), so unrealized PnL = size x price - openNotional.
///      A trade's `quote` is the signed quote flow to the trader: negative when the trader pays (buy),
///      positive when the trader receives (sell). Fees are charged on |quote| and are not part of it.
interface IClearingHouse is IClearingHouseModules, IErrors {
    // ------------------------------------------------------------------ types

    /// @notice What moved a position other than its holder's own order (see `PositionSettled`).
    enum SettlementCause {
        AuctionFill, // the liquidated account: a keeper took part of its auctioned slice
        AuctionTake, // the keeper (taker) that took it, on the other side at the same price
        Backstop // the liquidated account: the rest of its slice closed against the vAMM
    }

    /// @notice Per-market parameters, all bounded in code (see `ClearingHouse` bounds).
    struct MarketParams {
        address oracle; // Chainlink AggregatorV3Interface-compatible feed of the index price
        uint32 heartbeat; // [s] an oracle answer older than this is stale
        uint32 twapWindow; // [s] mark/index TWAP window
        uint64 imr; // [wad] initial margin ratio
        uint64 mmr; // [wad] maintenance margin ratio
        uint64 takerFee; // [wad] fee on |quote|
        uint64 maxSpread; // [wad] price band: max |vAMM price - index| / index after a trade
        uint64 maxOiPoolRatio; // [wad] per-side OI notional cap as a fraction of the pool balance
        uint96 maxOpenInterest; // [wad base] per-side absolute OI cap
        uint96 minPositionSize; // [wad base] no position may be left smaller (but zero)
    }

    /// @notice Per-market funding parameters (docs/funding.md), bounded in code.
    struct FundingParams {
        uint64 maxFundingRate; // [wad per hour] clamp on the target and applied rate
        uint64 maxRateVelocity; // [wad per hour per hour] fastest the applied rate may move
        int64 baselineRate; // [wad per hour] constant (interest) term added to the target
        uint32 smoothingTau; // [s] time constant of the exponential kernel
        uint16 fundingPeriodHours; // [h] target = premium / fundingPeriodHours
    }

    /// @notice What the Vault needs to value an account: sums over the markets it holds, at the index.
    /// @dev A position's auctioned part owes no margin of its own kind (it is being sold), but it keeps
    ///      backing: `initial` includes the auctioned part's backing, its notional times the larger of the
    ///      maintenance ratio and the auction's maximum discount (enough for the worst fill), so equity that
    ///      stands behind an auction cannot be withdrawn, moved or used for new risk while the auction runs.
    struct MarginSummary {
        int256 unrealizedPnl; // [wad] sum of size x index - openNotional (rounded down)
        int256 pendingFunding; // [wad] funding owed since last settlement (positive = owed, rounded up)
        uint256 initial; // [wad] sum |free part| x index x imr + auctionedMaintenance (each rounded up)
        uint256 maintenance; // [wad] sum |free part| x index x mmr (rounded up); what `kick` tests
        uint256 auctionedNotional; // [wad] sum |auctioned part| x index (rounded up)
        uint256 auctionedMaintenance; // [wad] sum |auctioned part| x index x max(mmr, maxDiscount) (rounded up)
    }

    /// @notice Everything an integrator may want about a market's live state.
    struct MarketState {
        uint256 baseReserve; // [wad] virtual base
        uint256 quoteReserve; // [wad] virtual quote
        uint256 spotPrice; // [wad] quoteReserve / baseReserve
        uint256 longOpenInterest; // [wad base]
        uint256 shortOpenInterest; // [wad base]
        int256 cumulativeFunding; // [wad quote per base] funding index, accrued to now
        int256 fundingRate; // [wad per hour] applied rate at the last update
        int256 targetRate; // [wad per hour] target in force since the last sample
        uint256 lastIndexPrice; // [wad] index at the last update
        uint256 lastUpdate; // [s] timestamp of the last per-block update
        uint256 lastDislocation; // [s] last block that found an index gap the vAMM had not followed (0: never)
    }

    // ------------------------------------------------------------------ errors

    /// @notice `marketId` is not listed.
    error UnknownMarket(uint32 marketId);
    /// @notice Listing or re-pointing a market at a feed with more than 18 decimals (raised by OracleLib in
    ///         ClearingHouseConfigurator, which runs inside the ClearingHouse; declared here so the ClearingHouse's
    ///         ABI decodes it).
    error UnsupportedOracleDecimals(address feed, uint8 decimals);
    /// @notice A builder fee would leave the account's value `excess` below its maintenance requirement (free and
    ///         auctioned parts), so it would be paid out of what backs the pool (`openPositionWithBuilder`).
    error BuilderFeeBelowMaintenance(address owner, uint32 subaccount, int256 excess);
    /// @notice A reduce or close filled worse than the index would leave the account's value `excess` below its
    ///         maintenance requirement (free and auctioned parts), or a close would leave it with no position and
    ///         negative collateral: a loss beyond what the account holds would fall on the insurance fund and the
    ///         pool. Reduce less, or at a better price; an account below maintenance leaves through liquidation.
    error ReduceBelowMaintenance(address owner, uint32 subaccount, int256 excess);
    /// @notice A trade of zero base.
    error ZeroSize();
    /// @notice `deadline` is before the block's timestamp.
    error DeadlinePassed(uint256 deadline, uint256 timestamp);
    /// @notice The trade's quote flow `quote` is worse than `quoteLimit`.
    error SlippageExceeded(int256 quote, uint256 quoteLimit);
    /// @notice The position left would be nonzero but smaller than the market's minimum.
    error BelowMinPositionSize(uint32 marketId, int256 size, uint256 minPositionSize);
    /// @notice The vAMM price after the trade is further than `maxSpread` from the index (and further than before).
    error PriceBandExceeded(uint32 marketId, uint256 priceAfter, uint256 indexPrice, uint256 maxSpread);
    /// @notice The side this trade increases would exceed its open-interest cap.
    error OpenInterestCapExceeded(uint32 marketId, uint256 openInterest, uint256 cap);
    /// @notice The trade would leave the account below its initial margin requirement.
    error InsufficientMargin(address owner, uint32 subaccount, int256 freeCollateral);
    /// @notice The account has no position in this market.
    error NoPosition(address owner, uint32 subaccount, uint32 marketId);
    /// @notice A buy of `baseAmount` would take the whole virtual base reserve.
    error InsufficientLiquidity(uint32 marketId, int256 baseAmount, uint256 baseReserve);
    /// @notice The listing limit (one bit per market in the account bitmap) is reached.
    error TooManyMarkets(uint256 maxMarkets);
    /// @notice `caller` may not act for `owner`.
    error NotOwnerOrOperator(address caller, address owner);
    /// @notice The trade would cut into the part of the position that is in a liquidation auction.
    error PositionInAuction(address owner, uint32 subaccount, uint32 marketId, int256 auctionedSize);
    /// @notice A liquidation slice that is zero, of the wrong sign, or larger than the free position.
    error InvalidAuctionSlice(int256 slice, int256 available);
    /// @notice A module-only call came from another address.
    error UnauthorizedModule(address caller);
    /// @notice A one-time wiring was already done.
    error ModuleAlreadySet(address module);
    /// @notice A trade was refused by the stale-peg rule: a buy with the market's peg (the curve's price at zero net
    ///         position) below the index by more than its tolerance, or a sell with it above; a repeg
    ///         (AmmController.repeg, permissionless) brings it back.
    error PegStale(uint32 marketId, uint256 peg, uint256 indexPrice);
    /// @notice `marketId` takes delayed orders only: trade through the order router (`orderRouter()`).
    error DelayedOrdersOnly(uint32 marketId);
    /// @notice Delayed orders need an order router, and none is set (`setOrderRouter`).
    error NoOrderRouter();
    /// @notice `marketId` with delayed orders on needs a stale-peg tolerance: set one before turning them on, and
    ///         keep one while they are on (an order executes only at a peg within it, in either direction).
    error PegToleranceRequired(uint32 marketId);

    // ------------------------------------------------------------------ events

    /// @notice A market was listed.
    event MarketListed(uint32 indexed marketId, bytes32 symbol, address oracle, uint256 baseReserve, uint256 quoteReserve);
    /// @notice A market's parameters were set (at listing and on every change).
    event MarketParamsSet(uint32 indexed marketId, MarketParams params);
    /// @notice The part of `marketId`'s taker fee that goes to the insurance fund [wad], set with its parameters
    ///         (right after `MarketParamsSet`): with `PositionChanged.fee` it splits each fee between the pool
    ///         and the insurance fund (`fee x share`, rounded down, to the insurance fund), so both balances
    ///         rebuild from events.
    event InsuranceFeeShareSet(uint32 indexed marketId, uint256 insuranceFeeShare);
    /// @notice A trade (open, increase, reduce, close, flip). Everything an indexer needs.
    /// @param quoteDelta signed quote flow to the trader (negative = paid)
    /// @param realizedPnl PnL realized on the reduced part (excludes fee and funding)
    /// @param fundingPaid funding settled on this position by this trade (positive = paid)
    event PositionChanged(
        address indexed owner,
        uint32 indexed subaccount,
        uint32 indexed marketId,
        int256 baseDelta,
        int256 quoteDelta,
        uint256 fee,
        int256 realizedPnl,
        int256 fundingPaid,
        int256 newSize,
        int256 newOpenNotional,
        uint256 priceAfter
    );

    /// @notice Emitted right after the `PositionChanged` of the same owner, subaccount and market when a
    ///         liquidation, not the holder's own order, moved the position: an auction fill (both sides) or a
    ///         backstop close. `price` is the execution price [wad]: the auction's price for a fill (the
    ///         quote each side pays or receives is `baseDelta x price`, rounded against it), and
    ///         |quoteDelta| / |baseDelta| rounded down for a backstop. A `PositionChanged` without one is the
    ///         holder's order (openPosition, openPositionFor, closePosition): its execution price is
    ///         |quoteDelta| / |baseDelta|, and it flipped the position when `newSize` and
    ///         `newSize - baseDelta` have opposite signs.
    event PositionSettled(
        address indexed owner, uint32 indexed subaccount, uint32 indexed marketId, SettlementCause cause, uint256 price
    );

    /// @notice The AMM controller rescaled (depth) or re-priced (repeg) a market's virtual reserves.
    event ReservesSet(uint32 indexed marketId, uint256 baseReserve, uint256 quoteReserve);
    /// @notice A module was wired in (`name` is "liquidationEngine" or "ammController"); once each.
    event ModuleSet(bytes32 indexed name, address module);
    /// @notice A market's funding parameters were set (at listing and on every change).
    event FundingParamsSet(uint32 indexed marketId, FundingParams params);
    /// @notice The skew term's rate changed: `ratePpm` millionths per hour of funding per unit of skew.
    event SkewFundingSet(uint32 indexed marketId, uint256 ratePpm);
    /// @notice The stale-peg rule's tolerance changed: an increase trades only while the peg is within `bps` of the
    ///         index (0: the rule is off).
    event PegToleranceSet(uint32 indexed marketId, uint256 bps);
    /// @notice The order router changed (the one caller that may trade in a market with delayed orders on).
    event OrderRouterSet(address indexed router);
    /// @notice Delayed orders were turned on or off for `marketId`.
    event DelayedOrdersSet(uint32 indexed marketId, bool on);
    /// @notice The funding target was re-sampled from the day-long TWAPs (once an hour, by the hour's first block).
    /// @param premium (markTwap - indexTwap) / indexTwap [wad]
    /// @param targetRate new target [wad per hour]
    /// @param appliedRate applied rate at this moment [wad per hour]
    /// @param cumulativeFunding the market's funding index [wad quote per base]
    event FundingSampled(
        uint32 indexed marketId,
        int256 premium,
        int256 targetRate,
        int256 appliedRate,
        int256 cumulativeFunding,
        uint256 markTwap,
        uint256 indexTwap
    );

    // ------------------------------------------------------------------ funding

    /// @notice Accrue `marketId`'s funding and TWAPs to now (permissionless; at most once per block).
    function pokeFunding(uint32 marketId) external;

    /// @notice Funding state of `marketId`, all rates per hour in WAD.
    /// @return appliedRate the rate in force now (accrued to this second)
    /// @return targetRate the target the funding TWAPs and skew imply now: clamp(premium / period + baseline + skew
    ///         term); the target in force is re-sampled once an hour (FundingSampled)
    /// @return premium (markTwap - indexTwap) / indexTwap now [wad]
    /// @return markTwap mark TWAP over the funding window, about the last 24 hours (docs/funding.md) [wad]
    /// @return indexTwap index TWAP over the same span [wad]
    /// @return projected1h applied rate 1 h ahead if the premium stays where it is
    /// @return projected8h applied rate 8 h ahead if the premium stays where it is
    function fundingState(uint32 marketId)
        external
        view
        returns (
            int256 appliedRate,
            int256 targetRate,
            int256 premium,
            uint256 markTwap,
            uint256 indexTwap,
            int256 projected1h,
            int256 projected8h
        );

    /// @notice Funding parameters of `marketId`.
    function fundingParams(uint32 marketId) external view returns (FundingParams memory);

    /// @notice Set the skew term of `marketId`'s funding target: `ratePpm` millionths per hour per unit of skew
    ///         (long OI - short OI) / base reserve, at most 10,000 (1 %/h for a skew of the whole reserve);
    ///         0 turns it off. Accrues first; the new term enters the target at the next sample.
    function setSkewFunding(uint32 marketId, uint256 ratePpm) external;

    /// @notice `marketId`'s skew funding: the rate [1e-6 per hour per unit of skew] and the term it adds to the
    ///         funding target now [wad per hour] (positive: longs pay), before the target's clamp.
    function skewFunding(uint32 marketId) external view returns (uint256 ratePpm, int256 term);

    /// @notice Set the stale-peg rule's tolerance of `marketId` [bps, at most 500]; 0 turns it off (the default at
    ///         listing). While on, a buy reverts `PegStale` when the peg, x y / (x + net)^2, is more than `bps` below
    ///         the live index, a sell when it is more than `bps` above (reduces and closes too: the direction the
    ///         next repeg rewards). Set it above the repeg threshold the keeper follows and below twice the taker
    ///         fee, so that a position bought or sold at the peg cannot be paid more than its fees by the repeg.
    function setPegTolerance(uint32 marketId, uint256 bps) external;

    /// @notice `marketId`'s stale-peg tolerance [bps]; 0: off.
    function pegTolerance(uint32 marketId) external view returns (uint256 bps);

    /// @notice Set the order router (not zero): the one caller that may trade in a market with delayed orders on.
    function setOrderRouter(address router) external;

    /// @notice Turn delayed orders on or off for `marketId` (off at listing; docs/orders.md). While on, every trade
    ///         there (`openPosition`, `openPositionFor`, `openPositionWithBuilder`, `closePosition`) reverts
    ///         `DelayedOrdersOnly` unless the order router sends it, and the router's trades need the peg within the
    ///         stale-peg tolerance of the index in either direction (`PegStale`); liquidations are unaffected. On
    ///         needs a router (`NoOrderRouter`) and a tolerance (`PegToleranceRequired`, also `setPegTolerance(id, 0)`
    ///         while on).
    function setDelayedOrders(uint32 marketId, bool on) external;

    /// @notice Whether `marketId` takes delayed orders only.
    function delayedOrders(uint32 marketId) external view returns (bool);

    // ------------------------------------------------------------------ trading

    /// @notice Buy (`baseAmount > 0`) or sell base in `marketId` for the caller's `subaccount`.
    /// @param quoteLimit buy: the most quote paid; sell: the least quote received (fee excluded)
    /// @param deadline last timestamp at which the trade may execute
    /// @return base the base traded (= baseAmount)
    /// @return quote the signed quote flow to the trader (negative = paid)
    /// @return fee the taker fee charged, WAD
    function openPosition(uint32 subaccount, uint32 marketId, int256 baseAmount, uint256 quoteLimit, uint256 deadline)
        external
        returns (int256 base, int256 quote, uint256 fee);

    /// @notice `openPosition` on behalf of `owner` by the owner or an approved operator.
    function openPositionFor(
        address owner,
        uint32 subaccount,
        uint32 marketId,
        int256 baseAmount,
        uint256 quoteLimit,
        uint256 deadline
    ) external returns (int256 base, int256 quote, uint256 fee);

    /// @notice `openPosition` for the caller's own account, paying `builder` (a front end, a bot) a fee of
    ///         |quote| x `builderFeeRate` [wad], rounded up, on top of the taker fee. The caller must have
    ///         approved `builder` for at least that rate (`Vault.approveBuilderFee`); the fee accrues to the
    ///         builder's balance in the Vault (`Vault.BuilderFeePaid`) and is charged after the trade settles
    ///         and before the margin check: an increase must pass initial margin with the fee paid, a reduce
    ///         must leave the account at or above maintenance (`BuilderFeeBelowMaintenance`). `builder` zero
    ///         or `builderFeeRate` zero: exactly `openPosition`. Not available to operators. A rate above
    ///         2^96 - 1 (never approvable) reverts `ParameterOutOfBounds("builderFeeRate", rate)` first.
    /// @return base the base traded (= baseAmount)
    /// @return quote the signed quote flow to the trader (negative = paid)
    /// @return fee the taker fee charged, WAD (the builder fee is in the Vault's `BuilderFeePaid`)
    function openPositionWithBuilder(
        uint32 subaccount,
        uint32 marketId,
        int256 baseAmount,
        uint256 quoteLimit,
        uint256 deadline,
        address builder,
        uint256 builderFeeRate
    ) external returns (int256 base, int256 quote, uint256 fee);

    /// @notice Close the caller's whole position in `marketId`.
    /// @param quoteLimit closing a long (a sell): least quote received; closing a short: most quote paid
    function closePosition(uint32 subaccount, uint32 marketId, uint256 quoteLimit, uint256 deadline)
        external
        returns (int256 base, int256 quote, uint256 fee);

    // ------------------------------------------------------------------ module hooks

    /// @notice AMM controller only: set `marketId`'s virtual reserves (after accruing TWAPs and funding), and add
    ///         `fundingCharge` [wad quote per base] to its funding index (a depth sync's charge; 0 for a repeg).
    function setReserves(uint32 marketId, uint256 baseReserve, uint256 quoteReserve, int256 fundingCharge) external;

    // ------------------------------------------------------------------ liquidation hooks

    /// @notice Liquidation engine only: put `slice` base of the position (same sign as the position)
    ///         into an auction. The account keeps the slice's PnL and funding until it is filled, but
    ///         no longer owes margin on it and may not trade it.
    function markForAuction(address owner, uint32 subaccount, uint32 marketId, int256 slice) external;

    /// @notice Liquidation engine only: transfer `base` of the auctioned slice (the position's sign) from
    ///         `owner` to the taker's account at `price`. The owner realizes PnL at `price`; the vAMM is
    ///         not touched; the taker must end at or above its initial margin; reverts `Paused` from pause
    ///         level 2 (no trading), the level the taker's settlement returns.
    /// @return minPositionSize the market's minimum position size [wad base], for the engine's own size rules
    ///         on the fill (read here, where the market is already loaded, instead of by a second call)
    function settleAuctionFill(
        address owner,
        uint32 subaccount,
        uint32 marketId,
        int256 base,
        uint256 price,
        address taker,
        uint32 takerSubaccount
    ) external returns (uint256 minPositionSize);

    /// @notice Liquidation engine only: close `base` of the auctioned slice (its sign) against the vAMM, the
    ///         backstop of an auction nobody took; reverts `PriceBandExceeded` if the price after is worse for
    ///         the owner than `limitPrice` (the auction's price at its full discount) or outside the market's
    ///         band around the index. The engine sizes `base` to fit (`LiquidationEngine._backstopFit`), so a
    ///         backstop realizes no worse than the auction itself allowed, whatever was traded before it.
    /// @return quote the signed quote flow to the owner
    function backstopClose(address owner, uint32 subaccount, uint32 marketId, int256 base, uint256 limitPrice)
        external
        returns (int256 quote);

    /// @notice Liquidation engine only: return `slice` of the auctioned part (its sign) to the position's
    ///         free part (a cancelled auction).
    function releaseFromAuction(address owner, uint32 subaccount, uint32 marketId, int256 slice) external;

    // ------------------------------------------------------------------ views

    /// @notice The traders' side of every market, from per-market aggregates (O(markets), no loop over
    ///         accounts): their unrealized PnL at the index minus the funding they owe, summed, and the
    ///         notional of the net open interest, sum |longs - shorts| x index. The pool is the other side.
    /// @dev Equals the sum over positions within one wei per position (rounding of each position's terms).
    function tradersPnl() external view returns (int256 pnl, uint256 netExposure);

    /// @notice The traders' side valued as the pool can realize it, for LP flows (never reverts): every
    ///         market's net position closed against its vAMM (`VAmmMath.exitValue`) minus the open notionals
    ///         and the funding owed, summed. A trade moves a market's exit value and its open notionals by
    ///         the same quote flow, so no trade, in any block, moves this figure except by its fee.
    /// @return pnl the traders' PnL at vAMM exit net of funding owed [wad]
    /// @return netExposure sum over markets of |net OI| x vAMM price, rounded up [wad] (sizes the reserve)
    /// @return suspendedNotional gross OI notional (at the vAMM price) of the markets whose index cannot be
    ///         trusted now [wad]: a stale or invalid feed; a vAMM price outside the market's band around the
    ///         index; an index more than the band away from the one the market last accrued at (a gap no
    ///         block has seen yet); or, for a TWAP window, a block that found a gap: the index more than the
    ///         band from the one last accrued at, or the vAMM inside its band around the old index and outside
    ///         it around the new one (so a trade back into the band does not end it)
    /// @return suspendedMarket the lowest such market id with open interest (0 when none)
    function tradersExitPnl()
        external
        view
        returns (int256 pnl, uint256 netExposure, uint256 suspendedNotional, uint32 suspendedMarket);

    /// @notice What a liquidation kick needs in one call: the position's free part (size less its
    ///         auctioned part, signed), the market's maintenance ratio and minimum position size, and the
    ///         index (reverts when stale or invalid). All zero, with no oracle read, when nothing is free.
    function liquidationInputs(address owner, uint32 subaccount, uint32 marketId)
        external
        view
        returns (int256 available, uint256 mmr, uint256 minPositionSize, uint256 index);

    /// @notice The part of a position that is in liquidation auctions (same sign as the position).
    function auctionedSize(address owner, uint32 subaccount, uint32 marketId) external view returns (int256);

    /// @notice A position: size, open notional and funding owed since its last settlement (positive = owed).
    function position(address owner, uint32 subaccount, uint32 marketId)
        external
        view
        returns (int256 size, int256 openNotional, int256 pendingFunding);

    /// @notice What a trade of `baseAmount` would do now: quote flow to the trader and vAMM price after.
    function quote(uint32 marketId, int256 baseAmount) external view returns (int256 quote, uint256 priceAfter);

    /// @notice Margin summary of `(owner, subaccount)` over the markets in `openMarkets` (a bitmap).
    function marginSummary(address owner, uint32 subaccount, uint256 openMarkets)
        external
        view
        returns (MarginSummary memory);

    /// @notice Mark price: TWAP of the vAMM price over the market's window, WAD.
    function markPrice(uint32 marketId) external view returns (uint256);

    /// @notice Index price: the validated oracle price, WAD (reverts when stale or invalid).
    function indexPrice(uint32 marketId) external view returns (uint256);

    /// @notice Current vAMM price (quote reserve / base reserve), WAD.
    function spotPrice(uint32 marketId) external view returns (uint256);

    /// @notice Mark and index TWAPs over the market's window, WAD.
    function twaps(uint32 marketId) external view returns (uint256 markTwap, uint256 indexTwap);

    /// @notice Number of listed markets; ids run from 1 to `marketCount()`.
    function marketCount() external view returns (uint32);

    /// @notice Where listing and parameter calls run (by `delegatecall`; fixed at construction).
    function configurator() external view returns (address);

    /// @notice Parameters of `marketId`.
    function marketParams(uint32 marketId) external view returns (MarketParams memory);

    /// @notice Live state of `marketId`.
    function marketState(uint32 marketId) external view returns (MarketState memory);

    /// @notice The symbol `marketId` was listed under (e.g. "ETH"), right-padded with zeros.
    function symbolOf(uint32 marketId) external view returns (bytes32);

    /// @notice Part of `marketId`'s taker fee that goes to the insurance fund [wad].
    function insuranceFeeShare(uint32 marketId) external view returns (uint256);
}
