// SPDX-License-Identifier: BUSL-1.1
pragma solidity 0.8.28;

import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {IClearingHouse} from "./interfaces/IClearingHouse.sol";
import {IVault} from "./interfaces/IVault.sol";
import {ILiquidationEngine} from "./interfaces/ILiquidationEngine.sol";
import {WadMath} from "./libraries/WadMath.sol";
import {OracleLib} from "./libraries/OracleLib.sol";
import {VAmmMath} from "./libraries/VAmmMath.sol";
import {FundingMath} from "./libraries/FundingMath.sol";

/// @title ClearingHouse
/// @notice Lists markets, prices trades on each market's virtual AMM, keeps positions and TWAPs,
///         and enforces margin. Ledger movements (fees, realized PnL, funding) settle in the Vault
///         in one call per trade, always against the liquidity pool's balance.
/// @dev Storage is packed for the hot path: a trade reads 8 market slots, writes the position
///      (2 slots) and makes one Vault call and one oracle call. No loop grows with market activity;
///      the margin check loops over the markets the account holds (at most 16, `Vault.MAX_OPEN_MARKETS`).
contract ClearingHouse is IClearingHouse, Ownable2Step, ReentrancyGuardTransient {
    using WadMath for uint256;
    using WadMath for int256;
    using SafeCast for uint256;
    using SafeCast for int256;

    // ------------------------------------------------------------------ constants and bounds

    /// @notice One bit per market in the Vault's per-account bitmap.
    uint256 public constant MAX_MARKETS = 128;
    /// @notice Observations in each market's TWAP ring; one is written per `twapWindow / 4`.
    uint256 internal constant OBSERVATIONS = 8;
    uint256 internal constant OBSERVATIONS_PER_WINDOW = 4;

    uint256 internal constant MIN_MMR = 0.005e18;
    uint256 internal constant MAX_MMR = 0.5e18;
    uint256 internal constant MAX_IMR = 1e18;
    uint256 internal constant MAX_TAKER_FEE = 0.01e18;
    uint256 internal constant MAX_INSURANCE_FEE_SHARE = 1e18;
    uint256 internal constant MIN_MAX_SPREAD = 0.005e18;
    uint256 internal constant MAX_MAX_SPREAD = 0.5e18;
    uint256 internal constant MAX_OI_POOL_RATIO = 10e18; // per-side notional <= 10 x the pool
    uint256 internal constant MIN_TWAP_WINDOW = 60;
    uint256 internal constant MAX_TWAP_WINDOW = 4 hours;
    uint256 internal constant MIN_HEARTBEAT = 60;
    uint256 internal constant MAX_HEARTBEAT = 2 days;
    uint256 internal constant MIN_BASE_RESERVE = 1e18;
    uint256 internal constant MAX_RESERVE = 1e36;
    uint256 internal constant MAX_FUNDING_RATE = 0.01e18; // 1 %/h
    uint256 internal constant MIN_RATE_VELOCITY = 1e10;
    uint256 internal constant MAX_RATE_VELOCITY = 0.1e18;
    uint256 internal constant MIN_SMOOTHING_TAU = 60;
    uint256 internal constant MAX_SMOOTHING_TAU = 7 days;
    uint256 internal constant MAX_FUNDING_PERIOD_HOURS = 720;
    uint256 internal constant MAX_SKEW_FUNDING_PPM = 10_000; // 1 %/h at a skew of the whole base reserve

    /// @notice Funding defaults at listing (docs/funding.md): 24 h period, 0.1 %/h cap, tau 4 h,
    ///         0.05 %/h per hour velocity, no baseline.
    uint64 public constant DEFAULT_MAX_FUNDING_RATE = 0.001e18;
    uint64 public constant DEFAULT_MAX_RATE_VELOCITY = 0.0005e18;
    uint32 public constant DEFAULT_SMOOTHING_TAU = 4 hours;
    uint16 public constant DEFAULT_FUNDING_PERIOD_HOURS = 24;
    /// @notice Skew term at listing: 0.2 %/h of funding for a skew of the whole base reserve (0.01 %/h at 5 %).
    uint16 public constant DEFAULT_SKEW_FUNDING_PPM = 2_000;

    uint8 internal constant PAUSE_NO_NEW_RISK = 1;
    uint8 internal constant PAUSE_NO_TRADING = 2;

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
        uint32 heartbeat; // [s]
        uint32 twapWindow; // [s]
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
        uint64 lastDislocation; // [s] last block that found an index gap (see _update)
        // slot 9
        FundingParams fundingParams;
        // slots 10..17
        Observation[OBSERVATIONS] observations;
    }

    /// @dev Written at most once per block per market, as one slot.
    struct FundingState {
        int112 cumulativeFunding; // [wad quote per base] funding index: what one long base has paid
        int64 rate; // [wad per hour] applied rate at the last update
        int64 target; // [wad per hour] target in force since the last sample
        uint8 observationHead; // index of the newest TWAP observation
    }

    struct Position {
        int128 size; // [wad base]
        int128 openNotional; // [wad quote]
        int128 lastCumulativeFunding; // [wad quote per base] funding index at last settlement
        int128 auctioned; // [wad base] part of `size` in liquidation auctions (same sign)
    }

    /// @notice The Vault that holds the money and the account ledger.
    IVault public immutable vault;

    uint32 internal _marketCount;
    mapping(uint32 marketId => Market) internal _markets;
    /// @notice Symbol of each market (e.g. "ETH").
    mapping(uint32 marketId => bytes32) public symbolOf;
    mapping(uint32 marketId => mapping(address owner => mapping(uint32 subaccount => Position))) internal _positions;

    /// @notice The liquidation engine, the only caller of the liquidation hooks (wired once).
    address public liquidationEngine;
    /// @notice The AMM controller, the only caller of `setReserves` (depth and repeg; wired once).
    address public ammController;

    modifier onlyLiquidationEngine() {
        if (msg.sender != liquidationEngine) revert UnauthorizedModule(msg.sender);
        _;
    }

    constructor(IVault vault_, address owner_) Ownable(owner_) {
        if (address(vault_) == address(0)) revert ZeroAddress();
        vault = vault_;
    }

    // ------------------------------------------------------------------ governance

    /// @notice Wire the AMM controller in. Once only.
    function setAmmController(address controller) external onlyOwner {
        if (controller == address(0)) revert ZeroAddress();
        if (ammController != address(0)) revert ModuleAlreadySet(ammController);
        ammController = controller;
        emit ModuleSet("ammController", controller);
    }

    /// @inheritdoc IClearingHouse
    function setReserves(uint32 marketId, uint256 baseReserve, uint256 quoteReserve, int256 fundingCharge)
        external
        nonReentrant
    {
        if (msg.sender != ammController) revert UnauthorizedModule(msg.sender);
        Market storage m = _market(marketId);
        // Accrue first: the TWAP sums and funding up to now use the reserves that held until now.
        _update(m, _index(m));
        if (baseReserve < MIN_BASE_RESERVE || baseReserve > MAX_RESERVE) {
            revert ParameterOutOfBounds("baseReserve", baseReserve);
        }
        if (quoteReserve == 0 || quoteReserve > MAX_RESERVE) revert ParameterOutOfBounds("quoteReserve", quoteReserve);
        // Casts: both <= MAX_RESERVE < 2^128.
        m.baseReserve = uint128(baseReserve);
        m.quoteReserve = uint128(quoteReserve);
        if (fundingCharge != 0) {
            m.funding.cumulativeFunding = (int256(m.funding.cumulativeFunding) + fundingCharge).toInt112();
        }
        emit ReservesSet(marketId, baseReserve, quoteReserve);
    }

    /// @notice Wire the liquidation engine in. Once only.
    function setLiquidationEngine(address engine) external onlyOwner {
        if (engine == address(0)) revert ZeroAddress();
        if (liquidationEngine != address(0)) revert ModuleAlreadySet(liquidationEngine);
        liquidationEngine = engine;
        emit ModuleSet("liquidationEngine", engine);
    }

    /// @notice List a market whose vAMM starts at the oracle's price with `baseReserve` virtual base.
    /// @param insuranceFeeShare_ share of the taker fee paid to the insurance fund [wad]
    function listMarket(bytes32 symbol, MarketParams calldata params, uint64 insuranceFeeShare_, uint256 baseReserve)
        external
        onlyOwner
        returns (uint32 marketId)
    {
        if (_marketCount >= MAX_MARKETS) revert TooManyMarkets(MAX_MARKETS);
        if (baseReserve < MIN_BASE_RESERVE || baseReserve > MAX_RESERVE) {
            revert ParameterOutOfBounds("baseReserve", baseReserve);
        }
        marketId = ++_marketCount;
        Market storage m = _markets[marketId];
        // Cast: marketId <= MAX_MARKETS = 128.
        m.id = uint8(marketId);
        m.skewFundingPpm = DEFAULT_SKEW_FUNDING_PPM;
        _setParams(marketId, m, params, insuranceFeeShare_);
        uint256 index = _index(m);
        uint256 quoteReserve = baseReserve.mulWadDown(index);
        if (quoteReserve == 0 || quoteReserve > MAX_RESERVE) revert ParameterOutOfBounds("quoteReserve", quoteReserve);
        // Casts: both reserves are <= MAX_RESERVE < 2^128.
        m.baseReserve = uint128(baseReserve);
        m.quoteReserve = uint128(quoteReserve);
        m.lastIndexPrice = index.toUint128();
        Observation memory start = Observation(uint32(block.timestamp), 0, 0);
        m.accumulator = start;
        // Every ring slot starts as a true observation (zero sums at listing time), so later writes
        // are nonzero-to-nonzero and the ring never reads uninitialised data.
        for (uint256 i; i < OBSERVATIONS; ++i) {
            m.observations[i] = start;
        }
        _setFundingParams(
            marketId,
            m,
            FundingParams({
                maxFundingRate: DEFAULT_MAX_FUNDING_RATE,
                maxRateVelocity: DEFAULT_MAX_RATE_VELOCITY,
                baselineRate: 0,
                smoothingTau: DEFAULT_SMOOTHING_TAU,
                fundingPeriodHours: DEFAULT_FUNDING_PERIOD_HOURS
            })
        );
        symbolOf[marketId] = symbol;
        emit MarketListed(marketId, symbol, params.oracle, baseReserve, quoteReserve);
    }

    /// @notice Change a market's parameters within the hard bounds; accrues the market first.
    function setMarketParams(uint32 marketId, MarketParams calldata params, uint64 insuranceFeeShare)
        external
        onlyOwner
    {
        Market storage m = _market(marketId);
        // Accrue at the index that priced the interval (the last one recorded), without reading the feed:
        // replacing a stale or broken feed must not depend on that feed.
        _update(m, m.lastIndexPrice);
        _setParams(marketId, m, params, insuranceFeeShare);
    }

    /// @notice Change a market's funding parameters within the hard bounds; accrues funding first
    ///         at the old parameters, then clamps the applied and target rates to the new cap.
    function setFundingParams(uint32 marketId, FundingParams calldata params) external onlyOwner {
        Market storage m = _market(marketId);
        _update(m, m.lastIndexPrice); // as in setMarketParams: governance does not depend on the feed
        _setFundingParams(marketId, m, params);
    }

    /// @inheritdoc IClearingHouse
    function setSkewFunding(uint32 marketId, uint256 ratePpm) external onlyOwner {
        Market storage m = _market(marketId);
        _update(m, m.lastIndexPrice); // as in setMarketParams: the old target keeps the interval it priced
        _bound("skewFundingPpm", ratePpm, 0, MAX_SKEW_FUNDING_PPM);
        // Cast: ratePpm <= MAX_SKEW_FUNDING_PPM < 2^16.
        m.skewFundingPpm = uint16(ratePpm);
        emit SkewFundingSet(marketId, ratePpm);
    }

    // ------------------------------------------------------------------ funding

    /// @inheritdoc IClearingHouse
    function pokeFunding(uint32 marketId) external nonReentrant {
        Market storage m = _market(marketId);
        _update(m, _index(m));
    }

    /// @inheritdoc IClearingHouse
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
        )
    {
        Market storage m = _market(marketId);
        FundingParams memory f = m.fundingParams;
        FundingState memory fs = m.funding;
        (appliedRate,) = FundingMath.evolve(
            fs.rate, fs.target, block.timestamp - m.accumulator.timestamp, f.smoothingTau, f.maxRateVelocity
        );
        (markTwap, indexTwap) = _twaps(m);
        (premium, targetRate) = _target(f, markTwap, indexTwap, _skewTerm(m));
        (projected1h,) = FundingMath.evolve(appliedRate, targetRate, 1 hours, f.smoothingTau, f.maxRateVelocity);
        (projected8h,) = FundingMath.evolve(appliedRate, targetRate, 8 hours, f.smoothingTau, f.maxRateVelocity);
    }

    /// @inheritdoc IClearingHouse
    function fundingParams(uint32 marketId) external view returns (FundingParams memory) {
        return _market(marketId).fundingParams;
    }

    /// @inheritdoc IClearingHouse
    function skewFunding(uint32 marketId) external view returns (uint256 ratePpm, int256 term) {
        Market storage m = _market(marketId);
        return (m.skewFundingPpm, _skewTerm(m));
    }

    // ------------------------------------------------------------------ trading

    /// @inheritdoc IClearingHouse
    function openPosition(uint32 subaccount, uint32 marketId, int256 baseAmount, uint256 quoteLimit, uint256 deadline)
        external
        nonReentrant
        returns (int256, int256, uint256)
    {
        return _trade(msg.sender, subaccount, marketId, baseAmount, quoteLimit, deadline);
    }

    /// @inheritdoc IClearingHouse
    function openPositionFor(
        address owner,
        uint32 subaccount,
        uint32 marketId,
        int256 baseAmount,
        uint256 quoteLimit,
        uint256 deadline
    ) external nonReentrant returns (int256, int256, uint256) {
        if (msg.sender != owner && !vault.isOperator(owner, msg.sender)) revert NotOwnerOrOperator(msg.sender, owner);
        return _trade(owner, subaccount, marketId, baseAmount, quoteLimit, deadline);
    }

    /// @inheritdoc IClearingHouse
    function closePosition(uint32 subaccount, uint32 marketId, uint256 quoteLimit, uint256 deadline)
        external
        nonReentrant
        returns (int256, int256, uint256)
    {
        Position storage p = _positions[marketId][msg.sender][subaccount];
        int256 size = p.size - p.auctioned; // what is in an auction is the auction's to close
        if (size == 0) revert NoPosition(msg.sender, subaccount, marketId);
        return _trade(msg.sender, subaccount, marketId, -size, quoteLimit, deadline);
    }

    // ------------------------------------------------------------------ liquidation hooks

    /// @inheritdoc IClearingHouse
    function markForAuction(address owner, uint32 subaccount, uint32 marketId, int256 slice)
        external
        onlyLiquidationEngine
    {
        _market(marketId);
        Position storage p = _positions[marketId][owner][subaccount];
        int256 available = p.size - p.auctioned;
        if (slice == 0 || (slice > 0) != (available > 0) || slice.abs() > available.abs()) {
            revert InvalidAuctionSlice(slice, available);
        }
        p.auctioned = (int256(p.auctioned) + slice).toInt128();
    }

    /// @inheritdoc IClearingHouse
    function settleAuctionFill(
        address owner,
        uint32 subaccount,
        uint32 marketId,
        int256 base,
        uint256 price,
        address taker,
        uint32 takerSubaccount
    ) external onlyLiquidationEngine nonReentrant {
        Market storage m = _market(marketId);
        uint256 index = _index(m);
        _update(m, index);
        // The notional changes hands at `price`: what the owner receives rounds down and what it pays
        // rounds up; the taker the other way; the wei between them stays with the pool.
        uint256 notional = base.abs().mulWadDown(price);
        uint256 notionalUp = base.abs().mulWadUp(price);
        int256 ownerQuote = base > 0 ? notional.toInt256() : -notionalUp.toInt256();
        int256 takerQuote = base > 0 ? -notionalUp.toInt256() : notional.toInt256();
        _auctionSettle(owner, subaccount, marketId, m, -base, ownerQuote, true);
        (IVault.AccountState memory acct, bool reducing) =
            _auctionSettle(taker, takerSubaccount, marketId, m, base, takerQuote, false);
        if (acct.pauseLevel >= PAUSE_NO_TRADING) revert Paused(acct.pauseLevel);
        if (!reducing) _checkInitialMargin(taker, takerSubaccount, acct, marketId, index);
    }

    /// @inheritdoc IClearingHouse
    function backstopClose(address owner, uint32 subaccount, uint32 marketId, int256 base, uint256 limitPrice)
        external
        onlyLiquidationEngine
        nonReentrant
        returns (int256 quoteFlow)
    {
        Market storage m = _market(marketId);
        uint256 index = _index(m);
        _update(m, index);
        uint256 x = m.baseReserve;
        uint256 y = m.quoteReserve;
        _checkLiquidity(marketId, -base, x);
        (quoteFlow, x, y) = VAmmMath.swap(x, y, -base);
        // The price may go no further than the auction's own worst price, nor outside the band (the engine
        // sized `base` to fit; checked here on the swap's own rounding).
        uint256 band = index.mulWadDown(m.maxSpread);
        uint256 priceAfter = VAmmMath.price(x, y);
        if (base > 0 ? priceAfter < (limitPrice > index - band ? limitPrice : index - band)
                : priceAfter > (limitPrice < index + band ? limitPrice : index + band)) {
            revert PriceBandExceeded(marketId, priceAfter, index, m.maxSpread);
        }
        // Casts: as in a trade.
        m.baseReserve = x.toUint128();
        m.quoteReserve = y.toUint128();
        _auctionSettle(owner, subaccount, marketId, m, -base, quoteFlow, true);
    }

    /// @inheritdoc IClearingHouse
    function releaseFromAuction(address owner, uint32 subaccount, uint32 marketId, int256 slice)
        external
        onlyLiquidationEngine
    {
        _market(marketId);
        Position storage p = _positions[marketId][owner][subaccount];
        int256 auctioned = p.auctioned;
        if (slice == 0 || (slice > 0) != (auctioned > 0) || slice.abs() > auctioned.abs()) {
            revert InvalidAuctionSlice(slice, auctioned);
        }
        p.auctioned = (auctioned - slice).toInt128();
    }

    /// @dev Apply `baseDelta` at `quoteFlow` to one account's position, settle its funding and PnL against
    ///      the pool, move open interest (never capped: a fill moves existing interest between traders
    ///      and a backstop only shrinks it). Releases auctioned size when the account is the auction's.
    function _auctionSettle(
        address owner,
        uint32 subaccount,
        uint32 marketId,
        Market storage m,
        int256 baseDelta,
        int256 quoteFlow,
        bool fromAuction
    ) internal returns (IVault.AccountState memory acct, bool reducing) {
        Position storage p = _positions[marketId][owner][subaccount];
        int256 size = p.size;
        int256 cumulativeFunding = m.funding.cumulativeFunding;
        int256 funding = size == 0 ? int256(0) : size.sMulWadUp(cumulativeFunding - p.lastCumulativeFunding);
        (int256 newSize, int256 newOpenNotional, int256 realized) =
            VAmmMath.applyTrade(size, p.openNotional, baseDelta, quoteFlow);
        reducing = (size > 0 && newSize >= 0 && newSize < size) || (size < 0 && newSize <= 0 && newSize > size);
        int256 auctioned = p.auctioned;
        if (fromAuction) {
            // The auctioned account: the base leaves the auctioned part (the engine passes at most it,
            // and never nothing: a zero fill is refused on either side, like a zero slice at the kick).
            if (baseDelta == 0 || baseDelta.abs() > auctioned.abs() || (baseDelta > 0) == (auctioned > 0)) {
                revert InvalidAuctionSlice(baseDelta, auctioned);
            }
            auctioned += baseDelta;
            p.auctioned = auctioned.toInt128();
        } else if (auctioned != 0) {
            // A taker with its own auction in this market may not cut into it, nor leave its free part
            // dust: the rule `_trade` applies, or its own auction's last fill could never settle.
            if (auctioned > 0 ? newSize < auctioned : newSize > auctioned) {
                revert PositionInAuction(owner, subaccount, marketId, auctioned);
            }
            int256 free = newSize - auctioned;
            if (free != 0 && free.abs() < m.minPositionSize) {
                revert BelowMinPositionSize(marketId, free, m.minPositionSize);
            }
        }
        if (newSize != 0 && newSize.abs() < m.minPositionSize) {
            revert BelowMinPositionSize(marketId, newSize, m.minPositionSize);
        }
        _moveAggregates(m, p, newSize, newOpenNotional, cumulativeFunding);
        p.size = newSize.toInt128();
        p.openNotional = newOpenNotional.toInt128();
        p.lastCumulativeFunding = cumulativeFunding.toInt128();
        int256 delta = realized - funding;
        acct = vault.settleTrade(owner, subaccount, marketId, newSize != 0, delta, -delta, 0);
        _moveOpenInterest(m, size, newSize);
        emit PositionChanged(
            owner, subaccount, marketId, baseDelta, quoteFlow, 0, realized, funding, newSize, newOpenNotional,
            VAmmMath.price(m.baseReserve, m.quoteReserve)
        );
    }

    /// @dev Replace a position's contribution to its market's aggregates (call before writing `p`).
    ///      The funding basis of a position is floor(size x lastCumulativeFunding), computed from its
    ///      stored values, so removing it later subtracts exactly what was added.
    function _moveAggregates(Market storage m, Position storage p, int256 newSize, int256 newOpenNotional, int256 cum)
        internal
    {
        int256 oldSize = p.size;
        m.sumOpenNotional = (int256(m.sumOpenNotional) + newOpenNotional - p.openNotional).toInt128();
        m.sumFundingBasis = (
            int256(m.sumFundingBasis) + newSize.sMulWadDown(cum) - oldSize.sMulWadDown(p.lastCumulativeFunding)
        ).toInt128();
    }

    /// @dev Moves the long/short open interest for one position going from `oldSize` to `newSize`.
    function _moveOpenInterest(Market storage m, int256 oldSize, int256 newSize)
        internal
        returns (uint256 longOi, uint256 shortOi)
    {
        longOi = m.longOpenInterest;
        shortOi = m.shortOpenInterest;
        longOi = longOi + (newSize > 0 ? uint256(newSize) : 0) - (oldSize > 0 ? uint256(oldSize) : 0);
        shortOi = shortOi + (newSize < 0 ? uint256(-newSize) : 0) - (oldSize < 0 ? uint256(-oldSize) : 0);
        // Casts: each side is a sum of int128 sizes, checked by SafeCast.
        m.longOpenInterest = longOi.toUint128();
        m.shortOpenInterest = shortOi.toUint128();
    }

    function _checkInitialMargin(
        address owner,
        uint32 subaccount,
        IVault.AccountState memory acct,
        uint32 marketId,
        uint256 index
    ) internal view {
        MarginSummary memory s = _marginSummary(owner, subaccount, acct.openMarkets, marketId, index);
        int256 free = WadMath.min(acct.collateral - s.pendingFunding, acct.collateral + s.unrealizedPnl - s.pendingFunding)
            - s.initial.toInt256();
        if (free < 0) revert InsufficientMargin(owner, subaccount, free);
    }

    // ------------------------------------------------------------------ views

    /// @inheritdoc IClearingHouse
    function position(address owner, uint32 subaccount, uint32 marketId)
        external
        view
        returns (int256 size, int256 openNotional, int256 pendingFunding)
    {
        Position storage p = _positions[marketId][owner][subaccount];
        size = p.size;
        openNotional = p.openNotional;
        if (size != 0) {
            pendingFunding = size.sMulWadUp(_cumulativeFundingNow(_markets[marketId]) - p.lastCumulativeFunding);
        }
    }

    /// @inheritdoc IClearingHouse
    function tradersPnl() external view returns (int256 pnl, uint256 netExposure) {
        uint32 count = _marketCount;
        for (uint32 id = 1; id <= count; ++id) {
            Market storage m = _markets[id];
            // Cast: each side is below 2^128.
            int256 net = int256(uint256(m.longOpenInterest)) - int256(uint256(m.shortOpenInterest));
            if (net == 0 && m.sumOpenNotional == 0 && m.sumFundingBasis == 0) continue;
            uint256 index = _index(m);
            // Traders' unrealized PnL at the index minus the funding they owe, from aggregates.
            pnl += net.sMulWadDown(index) - m.sumOpenNotional - (net.sMulWadDown(_cumulativeFundingNow(m)) - m.sumFundingBasis);
            netExposure += net.abs().mulWadUp(index);
        }
    }

    /// @inheritdoc IClearingHouse
    function tradersExitPnl()
        external
        view
        returns (int256 pnl, uint256 netExposure, uint256 suspendedNotional, uint32 suspendedMarket)
    {
        uint32 count = _marketCount;
        for (uint32 id = 1; id <= count; ++id) {
            Market storage m = _markets[id];
            uint256 longOi = m.longOpenInterest;
            uint256 shortOi = m.shortOpenInterest;
            // Cast: each side is below 2^128.
            int256 net = int256(longOi) - int256(shortOi);
            if (longOi == 0 && shortOi == 0 && m.sumOpenNotional == 0 && m.sumFundingBasis == 0) continue;
            uint256 x = m.baseReserve;
            uint256 y = m.quoteReserve;
            pnl += VAmmMath.exitValue(x, y, net) - m.sumOpenNotional
                - (net.sMulWadDown(_cumulativeFundingNow(m)) - m.sumFundingBasis);
            uint256 spot = VAmmMath.price(x, y);
            netExposure += net.abs().mulWadUp(spot);
            if (longOi == 0 && shortOi == 0) continue;
            (bool ok, uint256 index) = OracleLib.tryReadWad(m.oracle, m.heartbeat, 10 ** m.oracleScaleExp);
            if (ok) {
                uint64 maxSpread = m.maxSpread;
                uint256 dist = spot > index ? spot - index : index - spot;
                uint256 last = m.lastIndexPrice;
                uint256 jump = index > last ? index - last : last - index;
                // Untrusted while the vAMM is outside its band now; while the index has moved more than the
                // band since the market last accrued (a gap no block has seen yet, even one traded away in
                // the gap's own block); and for a TWAP window after a block found a gap.
                ok = dist <= index.mulWadDown(maxSpread) && jump <= last.mulWadDown(maxSpread)
                    && block.timestamp >= uint256(m.lastDislocation) + m.twapWindow;
            }
            if (!ok) {
                suspendedNotional += (longOi + shortOi).mulWadUp(spot);
                if (suspendedMarket == 0) suspendedMarket = id;
            }
        }
    }

    /// @inheritdoc IClearingHouse
    function liquidationInputs(address owner, uint32 subaccount, uint32 marketId)
        external
        view
        returns (int256 available, uint256 mmr, uint256 minPositionSize, uint256 index)
    {
        Position storage p = _positions[marketId][owner][subaccount];
        available = int256(p.size) - p.auctioned;
        // Only listed markets hold positions: nothing free, nothing read (and no revert from the feed).
        if (available == 0) return (0, 0, 0, 0);
        Market storage m = _market(marketId);
        return (available, m.mmr, m.minPositionSize, _index(m));
    }

    /// @inheritdoc IClearingHouse
    function auctionedSize(address owner, uint32 subaccount, uint32 marketId) external view returns (int256) {
        return _positions[marketId][owner][subaccount].auctioned;
    }

    /// @inheritdoc IClearingHouse
    function quote(uint32 marketId, int256 baseAmount) external view returns (int256 quoteAmount, uint256 priceAfter) {
        Market storage m = _market(marketId);
        if (baseAmount == 0) revert ZeroSize();
        uint256 x = m.baseReserve;
        uint256 y = m.quoteReserve;
        _checkLiquidity(marketId, baseAmount, x);
        (quoteAmount, x, y) = VAmmMath.swap(x, y, baseAmount);
        priceAfter = VAmmMath.price(x, y);
    }

    /// @inheritdoc IClearingHouse
    function marginSummary(address owner, uint32 subaccount, uint256 openMarkets)
        external
        view
        returns (MarginSummary memory s)
    {
        return _marginSummary(owner, subaccount, openMarkets, 0, 0);
    }

    /// @inheritdoc IClearingHouse
    function markPrice(uint32 marketId) external view returns (uint256 markTwap) {
        (markTwap,) = _twaps(_market(marketId));
    }

    /// @inheritdoc IClearingHouse
    function indexPrice(uint32 marketId) external view returns (uint256) {
        return _index(_market(marketId));
    }

    /// @inheritdoc IClearingHouse
    function spotPrice(uint32 marketId) external view returns (uint256) {
        Market storage m = _market(marketId);
        return VAmmMath.price(m.baseReserve, m.quoteReserve);
    }

    /// @inheritdoc IClearingHouse
    function twaps(uint32 marketId) external view returns (uint256 markTwap, uint256 indexTwap) {
        return _twaps(_market(marketId));
    }

    /// @inheritdoc IClearingHouse
    function marketCount() external view returns (uint32) {
        return _marketCount;
    }

    /// @inheritdoc IClearingHouse
    function marketParams(uint32 marketId) external view returns (MarketParams memory p) {
        Market storage m = _market(marketId);
        p = MarketParams({
            oracle: m.oracle,
            heartbeat: m.heartbeat,
            twapWindow: m.twapWindow,
            imr: m.imr,
            mmr: m.mmr,
            takerFee: m.takerFee,
            maxSpread: m.maxSpread,
            maxOiPoolRatio: m.maxOiPoolRatio,
            maxOpenInterest: m.maxOpenInterest,
            minPositionSize: m.minPositionSize
        });
    }

    /// @inheritdoc IClearingHouse
    function insuranceFeeShare(uint32 marketId) external view returns (uint256) {
        return _market(marketId).insuranceFeeShare;
    }

    /// @inheritdoc IClearingHouse
    function marketState(uint32 marketId) external view returns (MarketState memory s) {
        Market storage m = _market(marketId);
        s = MarketState({
            baseReserve: m.baseReserve,
            quoteReserve: m.quoteReserve,
            spotPrice: VAmmMath.price(m.baseReserve, m.quoteReserve),
            longOpenInterest: m.longOpenInterest,
            shortOpenInterest: m.shortOpenInterest,
            cumulativeFunding: _cumulativeFundingNow(m),
            fundingRate: m.funding.rate,
            targetRate: m.funding.target,
            lastIndexPrice: m.lastIndexPrice,
            lastUpdate: m.accumulator.timestamp,
            lastDislocation: m.lastDislocation
        });
    }

    // ------------------------------------------------------------------ trade internals

    struct TradeResult {
        int256 quote; // [wad] signed quote flow to the trader
        uint256 fee; // [wad]
        int256 realizedPnl; // [wad]
        int256 funding; // [wad] settled on this position, positive = paid by the trader
        int256 newSize; // [wad base]
        int256 newOpenNotional; // [wad]
        uint256 priceAfter; // [wad]
        bool reducing; // the trade only reduces or closes the position
    }

    function _trade(
        address owner,
        uint32 subaccount,
        uint32 marketId,
        int256 baseAmount,
        uint256 quoteLimit,
        uint256 deadline
    ) internal returns (int256, int256, uint256) {
        if (block.timestamp > deadline) revert DeadlinePassed(deadline, block.timestamp);
        if (baseAmount == 0) revert ZeroSize();
        Market storage m = _market(marketId);
        uint256 index = _index(m);
        _update(m, index);

        Position storage p = _positions[marketId][owner][subaccount];
        TradeResult memory r;
        int256 size = p.size;
        int256 cumulativeFunding = m.funding.cumulativeFunding;
        if (size != 0) r.funding = size.sMulWadUp(cumulativeFunding - p.lastCumulativeFunding);

        // Reducing: the trade moves the position toward zero without crossing it.
        r.reducing = size != 0 && (size > 0) != (baseAmount > 0) && baseAmount.abs() <= size.abs();

        // vAMM swap and price band. The band keeps new risk from pushing the vAMM away from the index;
        // a reduce or close is never blocked by it (the trader's own slippage limit bounds its price), so
        // the winning side of a dislocation can always take its profit while the oracle is valid.
        {
            uint256 x = m.baseReserve;
            uint256 y = m.quoteReserve;
            _checkLiquidity(marketId, baseAmount, x);
            uint256 priceBefore = VAmmMath.price(x, y);
            (r.quote, x, y) = VAmmMath.swap(x, y, baseAmount);
            r.priceAfter = VAmmMath.price(x, y);
            if (!r.reducing) _checkPriceBand(marketId, m.maxSpread, index, priceBefore, r.priceAfter);
            // Casts: reserves stay below MAX_RESERVE... x grows only on sells, bounded by SafeCast.
            m.baseReserve = x.toUint128();
            m.quoteReserve = y.toUint128();
        }

        // Slippage (fee excluded).
        if (baseAmount > 0 ? uint256(-r.quote) > quoteLimit : uint256(r.quote) < quoteLimit) {
            revert SlippageExceeded(r.quote, quoteLimit);
        }

        (r.newSize, r.newOpenNotional, r.realizedPnl) = VAmmMath.applyTrade(size, p.openNotional, baseAmount, r.quote);
        if (r.newSize != 0 && r.newSize.abs() < m.minPositionSize) {
            revert BelowMinPositionSize(marketId, r.newSize, m.minPositionSize);
        }
        {
            int256 auctioned = p.auctioned;
            if (auctioned != 0) {
                if (auctioned > 0 ? r.newSize < auctioned : r.newSize > auctioned) {
                    revert PositionInAuction(owner, subaccount, marketId, auctioned);
                }
                // The free part alone must not be dust: otherwise the auction's last fill, which leaves
                // only the free part, could never settle.
                int256 free = r.newSize - auctioned;
                if (free != 0 && free.abs() < m.minPositionSize) {
                    revert BelowMinPositionSize(marketId, free, m.minPositionSize);
                }
            }
        }
        _moveAggregates(m, p, r.newSize, r.newOpenNotional, cumulativeFunding);
        p.size = r.newSize.toInt128();
        p.openNotional = r.newOpenNotional.toInt128();
        p.lastCumulativeFunding = cumulativeFunding.toInt128();

        // Fee: rounded up; the insurance share rounded down, the pool gets the rest.
        r.fee = r.quote.abs().mulWadUp(m.takerFee);
        uint256 toInsurance = r.fee.mulWadDown(m.insuranceFeeShare);

        IVault.AccountState memory acct = vault.settleTrade(
            owner,
            subaccount,
            marketId,
            r.newSize != 0,
            r.realizedPnl - r.funding - r.fee.toInt256(),
            r.funding - r.realizedPnl + (r.fee - toInsurance).toInt256(),
            toInsurance
        );

        if (acct.pauseLevel >= PAUSE_NO_TRADING || (acct.pauseLevel == PAUSE_NO_NEW_RISK && !r.reducing)) {
            revert Paused(acct.pauseLevel);
        }
        _updateOpenInterest(marketId, m, size, r.newSize, index, acct.poolBalance);
        if (!r.reducing) {
            MarginSummary memory s = _marginSummary(owner, subaccount, acct.openMarkets, marketId, index);
            int256 free = WadMath.min(acct.collateral - s.pendingFunding, acct.collateral + s.unrealizedPnl - s.pendingFunding)
                - s.initial.toInt256();
            if (free < 0) revert InsufficientMargin(owner, subaccount, free);
        }

        emit PositionChanged(
            owner,
            subaccount,
            marketId,
            baseAmount,
            r.quote,
            r.fee,
            r.realizedPnl,
            r.funding,
            r.newSize,
            r.newOpenNotional,
            r.priceAfter
        );
        return (baseAmount, r.quote, r.fee);
    }

    function _checkLiquidity(uint32 marketId, int256 baseAmount, uint256 x) internal pure {
        // Cast: baseAmount > 0 on this branch.
        if (baseAmount > 0 && uint256(baseAmount) >= x) revert InsufficientLiquidity(marketId, baseAmount, x);
    }

    /// @dev Reverts when the price after is outside the band and further from the index than before.
    function _checkPriceBand(uint32 marketId, uint256 maxSpread, uint256 index, uint256 before, uint256 afterPrice)
        internal
        pure
    {
        uint256 distAfter = afterPrice > index ? afterPrice - index : index - afterPrice;
        if (distAfter > index.mulWadDown(maxSpread)) {
            uint256 distBefore = before > index ? before - index : index - before;
            if (distAfter > distBefore) revert PriceBandExceeded(marketId, afterPrice, index, maxSpread);
        }
    }

    /// @dev Moves the long/short open interest and checks the caps on the side that grows.
    function _updateOpenInterest(
        uint32 marketId,
        Market storage m,
        int256 oldSize,
        int256 newSize,
        uint256 index,
        int256 poolBalance
    ) internal {
        (uint256 longOi, uint256 shortOi) = _moveOpenInterest(m, oldSize, newSize);
        // Caps on the side that grows (the writes above revert with the trade if a cap fails).
        if (newSize > 0 && newSize > oldSize) _checkOiCap(marketId, m, longOi, index, poolBalance);
        if (newSize < 0 && newSize < oldSize) _checkOiCap(marketId, m, shortOi, index, poolBalance);
    }

    function _checkOiCap(uint32 marketId, Market storage m, uint256 oi, uint256 index, int256 poolBalance)
        internal
        view
    {
        uint256 absCap = m.maxOpenInterest;
        if (oi > absCap) revert OpenInterestCapExceeded(marketId, oi, absCap);
        uint256 pool = poolBalance > 0 ? uint256(poolBalance) : 0;
        uint256 notionalCap = pool.mulWadDown(m.maxOiPoolRatio);
        uint256 notional = oi.mulWadUp(index);
        // Reported in base units so both caps read alike: the base the pool-ratio cap allows.
        if (notional > notionalCap) revert OpenInterestCapExceeded(marketId, oi, notionalCap.divWadDown(index));
    }

    /// @dev The account's margin summary. `knownMarket`/`knownIndex` reuse a price already read.
    function _marginSummary(
        address owner,
        uint32 subaccount,
        uint256 openMarkets,
        uint32 knownMarket,
        uint256 knownIndex
    ) internal view returns (MarginSummary memory s) {
        while (openMarkets != 0) {
            uint256 bit = openMarkets & (~openMarkets + 1); // lowest set bit
            openMarkets ^= bit;
            uint32 marketId = _bitToMarket(bit);
            Market storage m = _markets[marketId];
            Position storage p = _positions[marketId][owner][subaccount];
            int256 size = p.size;
            uint256 index = marketId == knownMarket ? knownIndex : _index(m);
            s.unrealizedPnl += size.sMulWadDown(index) - p.openNotional;
            s.pendingFunding += size.sMulWadUp(_cumulativeFundingNow(m) - p.lastCumulativeFunding);
            // The free part owes initial and maintenance margin; the auctioned part keeps backing at
            // maintenance (counted in `initial`, so it cannot be withdrawn while the auction runs) but is
            // not what `kick` tests. PnL and funding run on the whole position.
            int256 auctioned = p.auctioned;
            uint256 notional = (size - auctioned).abs().mulWadUp(index);
            s.initial += notional.mulWadUp(m.imr);
            s.maintenance += notional.mulWadUp(m.mmr);
            if (auctioned != 0) {
                // The auctioned part is backed by enough to cover its worst fill: the larger of the
                // maintenance ratio and the auction's maximum discount (parameters of two modules, read here).
                uint256 auctionedNotional = auctioned.abs().mulWadUp(index);
                uint256 ratio = ILiquidationEngine(liquidationEngine).auctionParams(marketId).maxDiscount;
                uint256 backing = auctionedNotional.mulWadUp(ratio > m.mmr ? ratio : m.mmr);
                s.auctionedNotional += auctionedNotional;
                s.auctionedMaintenance += backing;
                s.initial += backing;
            }
        }
    }

    function _bitToMarket(uint256 bit) internal pure returns (uint32 id) {
        // bit is a power of two below 2^128; binary search for its position.
        uint256 pos;
        if (bit >= 1 << 64) { bit >>= 64; pos += 64; }
        if (bit >= 1 << 32) { bit >>= 32; pos += 32; }
        if (bit >= 1 << 16) { bit >>= 16; pos += 16; }
        if (bit >= 1 << 8) { bit >>= 8; pos += 8; }
        if (bit >= 1 << 4) { bit >>= 4; pos += 4; }
        if (bit >= 1 << 2) { bit >>= 2; pos += 2; }
        if (bit >= 1 << 1) { pos += 1; }
        // Cast: pos < 128.
        return uint32(pos + 1);
    }

    // ------------------------------------------------------------------ market internals

    /// @dev A market is listed iff its oracle is set: `listMarket` sets it (never to zero, `_setParams`)
    ///      for ids 1..`_marketCount` only, and nothing clears it. Reading slot 0 here instead of
    ///      `_marketCount` warms the slot the caller reads next (the oracle), one cold read fewer.
    function _market(uint32 marketId) internal view returns (Market storage m) {
        m = _markets[marketId];
        if (m.oracle == address(0)) revert UnknownMarket(marketId);
    }

    function _index(Market storage m) internal view returns (uint256) {
        return OracleLib.readWad(m.oracle, m.heartbeat, 10 ** m.oracleScaleExp);
    }

    /// @dev Once per block: extend the TWAP sums with the prices that held since the last update
    ///      (vAMM price before this block's first trade, index as last observed), move the applied
    ///      funding rate toward its target and accrue the funding index over the interval (at the
    ///      index that held during it), record the new index, and at each new quarter-window write
    ///      a ring observation and re-sample the funding target from the TWAPs.
    function _update(Market storage m, uint256 index) internal {
        Observation memory acc = m.accumulator;
        if (acc.timestamp == block.timestamp) return;
        uint256 dt = block.timestamp - acc.timestamp;
        uint256 lastIndex = m.lastIndexPrice;
        uint256 spot = VAmmMath.price(m.baseReserve, m.quoteReserve);
        bool newObservation;
        {
            uint256 quarter = m.twapWindow / OBSERVATIONS_PER_WINDOW;
            newObservation = block.timestamp / quarter != acc.timestamp / quarter;
        }
        unchecked {
            // Wrapping by design (see Observation); truncation to 112 bits is the modulo.
            acc.markCumulative = uint112(uint256(acc.markCumulative) + spot * dt);
            acc.indexCumulative = uint112(uint256(acc.indexCumulative) + lastIndex * dt);
        }
        // Cast: timestamps fit 32 bits until 2106.
        acc.timestamp = uint32(block.timestamp);
        m.accumulator = acc;
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
        if (fs.rate == 0 && fs.target == 0 && !newObservation) return;
        FundingParams memory f = m.fundingParams;
        if (fs.rate != 0 || fs.target != 0) {
            (int256 rate, int256 area) = FundingMath.evolve(fs.rate, fs.target, dt, f.smoothingTau, f.maxRateVelocity);
            fs.rate = rate.toInt64();
            fs.cumulativeFunding = (int256(fs.cumulativeFunding) + _fundingAccrual(area, lastIndex)).toInt112();
        }
        if (newObservation) {
            fs.observationHead = uint8((fs.observationHead + 1) % OBSERVATIONS);
            m.observations[fs.observationHead] = acc;
            (uint256 markTwap, uint256 indexTwap) = _twapsFrom(m, acc, fs.observationHead);
            (int256 premium, int256 target) = _target(f, markTwap, indexTwap, _skewTerm(m));
            fs.target = target.toInt64();
            emit FundingSampled(
                _idOf(m), premium, target, fs.rate, fs.cumulativeFunding, markTwap, indexTwap
            );
        }
        m.funding = fs;
    }

    /// @dev Funding per base for a rate area [wad/h * s] at `indexPrice`, rounded down. The index's
    ///      rounding direction cannot favour anyone: every settlement is trader <-> pool and the
    ///      per-position amount owed is rounded up (docs/funding.md).
    function _fundingAccrual(int256 area, uint256 indexPrice) internal pure returns (int256) {
        return area.sMulDivDown(indexPrice, 1 hours * WadMath.WAD);
    }

    /// @dev The market's funding index accrued to now (what `_update` would make it), for views.
    function _cumulativeFundingNow(Market storage m) internal view returns (int256 cf) {
        FundingState memory fs = m.funding;
        cf = fs.cumulativeFunding;
        if (fs.rate == 0 && fs.target == 0) return cf;
        uint256 last = m.accumulator.timestamp;
        if (block.timestamp == last) return cf;
        FundingParams memory f = m.fundingParams;
        (, int256 area) = FundingMath.evolve(fs.rate, fs.target, block.timestamp - last, f.smoothingTau, f.maxRateVelocity);
        cf += _fundingAccrual(area, m.lastIndexPrice);
    }

    /// @dev premium = (mark - index) / index (truncated); target = clamp(premium / period + baseline + skew term).
    function _target(FundingParams memory f, uint256 markTwap, uint256 indexTwap, int256 skewTerm)
        internal
        pure
        returns (int256 premium, int256 target)
    {
        premium = (markTwap.toInt256() - indexTwap.toInt256()) * int256(WadMath.WAD) / indexTwap.toInt256();
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
        return net * int256(WadMath.WAD) * int256(ppm) / (int256(uint256(m.baseReserve)) * 1e6);
    }

    /// @dev Market id from its storage slot is not recoverable cheaply; markets store their id.
    function _idOf(Market storage m) internal view returns (uint32) {
        return m.id;
    }

    /// @dev Mark and index TWAPs over [anchor, now] for views: the accumulator extended to now.
    function _twaps(Market storage m) internal view returns (uint256 markTwap, uint256 indexTwap) {
        Observation memory acc = m.accumulator;
        uint256 dt = block.timestamp - acc.timestamp;
        unchecked {
            acc.markCumulative = uint112(uint256(acc.markCumulative) + VAmmMath.price(m.baseReserve, m.quoteReserve) * dt);
            acc.indexCumulative = uint112(uint256(acc.indexCumulative) + uint256(m.lastIndexPrice) * dt);
        }
        acc.timestamp = uint32(block.timestamp);
        return _twapsFrom(m, acc, m.funding.observationHead);
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

    function _setFundingParams(uint32 marketId, Market storage m, FundingParams memory p) internal {
        _bound("maxFundingRate", p.maxFundingRate, 0, MAX_FUNDING_RATE);
        _bound("maxRateVelocity", p.maxRateVelocity, MIN_RATE_VELOCITY, MAX_RATE_VELOCITY);
        _bound("smoothingTau", p.smoothingTau, MIN_SMOOTHING_TAU, MAX_SMOOTHING_TAU);
        _bound("fundingPeriodHours", p.fundingPeriodHours, 1, MAX_FUNDING_PERIOD_HOURS);
        _bound("baselineRate", WadMath.abs(p.baselineRate), 0, p.maxFundingRate);
        m.fundingParams = p;
        FundingState memory fs = m.funding;
        // Casts: clamped to maxFundingRate <= 1e16, within int64.
        fs.rate = int64(FundingMath.clamp(fs.rate, p.maxFundingRate));
        fs.target = int64(FundingMath.clamp(fs.target, p.maxFundingRate));
        m.funding = fs;
        emit FundingParamsSet(marketId, p);
    }

    function _setParams(uint32 marketId, Market storage m, MarketParams calldata p, uint64 insuranceShare) internal {
        if (p.oracle == address(0)) revert ZeroAddress();
        _bound("heartbeat", p.heartbeat, MIN_HEARTBEAT, MAX_HEARTBEAT);
        _bound("twapWindow", p.twapWindow, MIN_TWAP_WINDOW, MAX_TWAP_WINDOW);
        _bound("mmr", p.mmr, MIN_MMR, MAX_MMR);
        _bound("imr", p.imr, uint256(p.mmr) + 1, MAX_IMR);
        _bound("takerFee", p.takerFee, 0, MAX_TAKER_FEE);
        _bound("maxSpread", p.maxSpread, MIN_MAX_SPREAD, MAX_MAX_SPREAD);
        _bound("maxOiPoolRatio", p.maxOiPoolRatio, 1, MAX_OI_POOL_RATIO);
        // Every position is at most a side's open interest, which is at most this cap (a lowered cap
        // leaves positions at most the old one): so every size a position can reach fits an auction's
        // int96 slice, and every position can be liquidated.
        _bound("maxOpenInterest", p.maxOpenInterest, 1, uint256(uint96(type(int96).max)));
        _bound("minPositionSize", p.minPositionSize, 1, p.maxOpenInterest);
        _bound("insuranceFeeShare", insuranceShare, 0, MAX_INSURANCE_FEE_SHARE);
        uint256 scale = OracleLib.scaleOf(p.oracle);
        uint8 scaleExp;
        while (scale > 1) {
            scale /= 10;
            ++scaleExp;
        }
        m.oracle = p.oracle;
        m.heartbeat = p.heartbeat;
        m.twapWindow = p.twapWindow;
        m.oracleScaleExp = scaleExp;
        m.imr = p.imr;
        m.mmr = p.mmr;
        m.takerFee = p.takerFee;
        m.maxSpread = p.maxSpread;
        m.maxOiPoolRatio = p.maxOiPoolRatio;
        m.maxOpenInterest = p.maxOpenInterest;
        m.minPositionSize = p.minPositionSize;
        m.insuranceFeeShare = insuranceShare;
        emit MarketParamsSet(marketId, p);
    }

    function _bound(bytes32 name, uint256 value, uint256 lo, uint256 hi) internal pure {
        if (value < lo || value > hi) revert ParameterOutOfBounds(name, value);
    }
}
