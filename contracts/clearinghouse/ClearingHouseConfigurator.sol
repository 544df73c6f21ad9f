// SPDX-License-Identifier: BUSL-1.1
pragma solidity 0.8.28;

import {IErrors} from "../interfaces/IErrors.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {IClearingHouse} from "../interfaces/IClearingHouse.sol";
import {WadMath} from "../libraries/WadMath.sol";
import {OracleLib} from "../libraries/OracleLib.sol";
import {FundingMath} from "../libraries/FundingMath.sol";
import {VAmmMath} from "../libraries/VAmmMath.sol";
import {IVault} from "../interfaces/IVault.sol";
import {ClearingHouseSettlement} from "./ClearingHouseSettlement.sol";
import {Bounds} from "../libraries/Bounds.sol";

/// @title ClearingHouseConfigurator
/// @notice Listing and market parameters: `listMarket`, `setMarketParams`, `setFundingParams`,
///         `setSkewFunding`, and the AMM controller's `setReserves`; and one view, `fundingState` (read only, by a
///         static call: ClearingHouse._configureView). The ClearingHouse declares these functions
///         (its ABI is unchanged), checks `onlyOwner` for the governance ones, and forwards the call here by
///         `delegatecall`, so this code runs on the ClearingHouse's storage and emits from its address. They are
///         the rare calls (governance, depth syncs and repegs); moving their bounds and setup code out keeps the
///         ClearingHouse under the EIP-170 size limit with room for trading rules, at about 2,700 gas more per
///         call.
/// @dev Deployed by the ClearingHouse's constructor, which makes the ClearingHouse this contract's owner:
///      a direct call (not through the ClearingHouse) fails `onlyOwner` unless it comes from the
///      ClearingHouse, which never calls it directly; and a direct call could only touch this contract's own
///      storage, which nothing reads.
contract ClearingHouseConfigurator is ClearingHouseSettlement, ReentrancyGuardTransient {
    using WadMath for uint256;
    using WadMath for int256;
    using SafeCast for uint256;
    using SafeCast for int256;

    // Hard bounds of the market and funding parameters (docs/governance.md lists them).
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
    uint256 internal constant MAX_FUNDING_RATE = 0.01e18; // 1 %/h
    /// @notice A market's funding cap is at most its taker fee spread over this many hours (cap x 6 <= fee), or over
    ///         FUNDING_CAP_FEE_HOURS_FAST (9) while its smoothing time constant is under SLOW_SMOOTHING_TAU (12 h); its
    ///         rate velocity at least a quarter of the cap per hour (RATE_VELOCITY_CAP_DIVISOR); a listing's cap is
    ///         the fee / 9, at most DEFAULT_MAX_FUNDING_RATE. Funding follows the day-long mean premium, so a position
    ///         flipped between sides about daily is paid the rate its own previous side built, by the pool; a flip
    ///         costs a taker fee on twice the size. Within these bounds the flips collect at most 0.79 of their fees
    ///         whatever the time constant, premium, flip interval and the flip's minute within the hour
    ///         (`vperp.funding_compare.oscillation_k`; 0.77 under 12 h), so the pool, which keeps 80 % of the fee at
    ///         the shipped insurance share, gains. A slower velocity would stretch the rate's turn past the flip, so it
    ///         is bounded too. Both setters check it: neither a lower fee, a higher cap, a faster time constant nor a
    ///         slower velocity can reopen it (docs/security.md "Fixed: the funding oscillation").
    uint256 internal constant FUNDING_CAP_FEE_HOURS = 6;
    uint256 internal constant FUNDING_CAP_FEE_HOURS_FAST = 9;
    uint256 internal constant SLOW_SMOOTHING_TAU = 12 hours;
    uint256 internal constant RATE_VELOCITY_CAP_DIVISOR = 4;
    uint256 internal constant MIN_RATE_VELOCITY = 1e10;
    uint256 internal constant MAX_RATE_VELOCITY = 0.1e18;
    uint256 internal constant MIN_SMOOTHING_TAU = 60;
    uint256 internal constant MAX_SMOOTHING_TAU = 7 days;
    uint256 internal constant MAX_FUNDING_PERIOD_HOURS = 720;
    uint256 internal constant MAX_SKEW_FUNDING_PPM = 10_000; // 1 %/h at a skew of the whole base reserve
    uint256 internal constant MAX_PEG_TOLERANCE_BPS = 500; // 5 %: a peg further than that from the index is stale

    constructor(IVault vault_) Ownable(msg.sender) ClearingHouseSettlement(vault_) {}

    /// @notice IClearingHouse.setReserves: the AMM controller sets `marketId`'s virtual reserves (depth sync or
    ///         repeg), after accruing the market to now, and adds `fundingCharge` to its funding index.
    /// @dev The reentrancy lock is the ClearingHouse's (transient storage is shared under `delegatecall`). A
    ///      direct call reads this contract's own `ammController`, which is never set, and fails.
    function setReserves(uint32 marketId, uint256 baseReserve, uint256 quoteReserve, int256 fundingCharge)
        external
        nonReentrant
    {
        if (msg.sender != ammController) revert IClearingHouse.UnauthorizedModule(msg.sender);
        Market storage m = _market(marketId);
        // Accrue first: the TWAP sums and funding up to now use the reserves that held until now.
        {
            (uint256 index, uint256 since) = _round(m);
            _accrue(m, index, since);
        }
        // Written out rather than `Bounds.check` (same rule, both ends inclusive): this runs on every depth sync
        // and repeg, and with the library call there each cost 46 gas more (measured with `./run.sh gas`).
        if (baseReserve < MIN_BASE_RESERVE || baseReserve > MAX_RESERVE) {
            revert IErrors.ParameterOutOfBounds("baseReserve", baseReserve);
        }
        if (quoteReserve == 0 || quoteReserve > MAX_RESERVE) revert IErrors.ParameterOutOfBounds("quoteReserve", quoteReserve);
        // Casts: both <= MAX_RESERVE < 2^128.
        m.baseReserve = uint128(baseReserve);
        m.quoteReserve = uint128(quoteReserve);
        if (fundingCharge != 0) {
            m.funding.cumulativeFunding = (int256(m.funding.cumulativeFunding) + fundingCharge).toInt104();
        }
        emit IClearingHouse.ReservesSet(marketId, baseReserve, quoteReserve);
    }

    /// @notice IClearingHouse.backstopClose: the liquidation engine closes `base` of an auctioned position on the
    ///         vAMM, no further than `limitPrice` nor outside the band around the index.
    /// @dev The reentrancy lock is the ClearingHouse's (transient storage is shared under `delegatecall`). A
    ///      direct call reads this contract's own `liquidationEngine`, which is never set, and fails.
    function backstopClose(address owner, uint32 subaccount, uint32 marketId, int256 base, uint256 limitPrice)
        external
        nonReentrant
        returns (int256 quoteFlow)
    {
        if (msg.sender != liquidationEngine) revert IClearingHouse.UnauthorizedModule(msg.sender);
        Market storage m = _market(marketId);
        (uint256 index, uint256 since) = _round(m);
        _accrue(m, index, since);
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
            revert IClearingHouse.PriceBandExceeded(marketId, priceAfter, index, m.maxSpread);
        }
        // Casts: as in a trade.
        m.baseReserve = x.toUint128();
        m.quoteReserve = y.toUint128();
        // Execution price for the event: the quote the account received or paid per base, rounded down.
        _auctionSettle(
            owner, subaccount, marketId, m, -base, quoteFlow, IClearingHouse.SettlementCause.Backstop, quoteFlow.abs().divWadDown(base.abs())
        );
    }

    /// @notice List a market whose vAMM starts at the oracle's price with `baseReserve` virtual base.
    /// @param insuranceFeeShare_ share of the taker fee paid to the insurance fund [wad]
    function listMarket(bytes32 symbol, IClearingHouse.MarketParams calldata params, uint64 insuranceFeeShare_, uint256 baseReserve)
        external
        onlyOwner
        returns (uint32 marketId)
    {
        if (_marketCount >= MAX_MARKETS) revert IClearingHouse.TooManyMarkets(MAX_MARKETS);
        Bounds.check("baseReserve", baseReserve, MIN_BASE_RESERVE, MAX_RESERVE);
        marketId = ++_marketCount;
        Market storage m = _markets[marketId];
        // Cast: marketId <= MAX_MARKETS = 128.
        m.id = uint8(marketId);
        m.skewFundingPpm = DEFAULT_SKEW_FUNDING_PPM;
        _setParams(marketId, m, params, insuranceFeeShare_);
        uint256 index = _index(m);
        uint256 quoteReserve = baseReserve.mulWadDown(index);
        Bounds.check("quoteReserve", quoteReserve, 1, MAX_RESERVE);
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
        // The same for the hourly slots: each matches the listing hour until a later hour overwrites it.
        for (uint256 i; i < FUNDING_OBSERVATIONS; ++i) {
            m.hourly[i] = start;
        }
        _setFundingParams(
            marketId,
            m,
            IClearingHouse.FundingParams({
                // Cast: at most DEFAULT_MAX_FUNDING_RATE, a uint64. Rounded down: the cap stays within the fee's rule.
                maxFundingRate: uint64(Math.min(DEFAULT_MAX_FUNDING_RATE, params.takerFee / _capFeeHours(DEFAULT_SMOOTHING_TAU))),
                maxRateVelocity: DEFAULT_MAX_RATE_VELOCITY,
                baselineRate: 0,
                smoothingTau: DEFAULT_SMOOTHING_TAU,
                fundingPeriodHours: DEFAULT_FUNDING_PERIOD_HOURS
            })
        );
        _symbolOf[marketId] = symbol;
        emit IClearingHouse.MarketListed(marketId, symbol, params.oracle, baseReserve, quoteReserve);
    }

    /// @notice Change a market's parameters within the hard bounds; accrues the market first.
    function setMarketParams(uint32 marketId, IClearingHouse.MarketParams calldata params, uint64 insuranceFeeShare)
        external
        onlyOwner
    {
        Market storage m = _market(marketId);
        // Accrue the whole interval at the last recorded index, without reading the feed: replacing a stale or
        // broken feed must not depend on that feed.
        _accrue(m, m.lastIndexPrice, block.timestamp);
        _setParams(marketId, m, params, insuranceFeeShare);
    }

    /// @notice Change a market's funding parameters within the hard bounds; accrues funding first
    ///         at the old parameters, then clamps the applied and target rates to the new cap.
    function setFundingParams(uint32 marketId, IClearingHouse.FundingParams calldata params) external onlyOwner {
        Market storage m = _market(marketId);
        _accrue(m, m.lastIndexPrice, block.timestamp); // as in setMarketParams: governance does not depend on the feed
        _setFundingParams(marketId, m, params);
    }

    /// @notice Set a market's skew funding rate [ppm per hour of a whole base reserve of skew], within bounds;
    ///         accrues the market first.
    function setSkewFunding(uint32 marketId, uint256 ratePpm) external onlyOwner {
        Market storage m = _market(marketId);
        _accrue(m, m.lastIndexPrice, block.timestamp); // as in setMarketParams: the old target keeps the interval it priced
        Bounds.check("skewFundingPpm", ratePpm, 0, MAX_SKEW_FUNDING_PPM);
        // Cast: ratePpm <= MAX_SKEW_FUNDING_PPM < 2^16.
        m.skewFundingPpm = uint16(ratePpm);
        emit IClearingHouse.SkewFundingSet(marketId, ratePpm);
    }

    /// @notice Set how far from the index a market's peg may be for an increase to trade [bps]; 0 turns the rule
    ///         off (docs/pool.md "The stale-peg rule"). Nothing accrues: the rule reads no time.
    function setPegTolerance(uint32 marketId, uint256 bps) external onlyOwner {
        Market storage m = _market(marketId);
        Bounds.check("pegToleranceBps", bps, 0, MAX_PEG_TOLERANCE_BPS);
        if (bps == 0 && m.delayedOrders) revert IClearingHouse.PegToleranceRequired(marketId);
        // Cast: bps <= MAX_PEG_TOLERANCE_BPS < 2^16.
        _markets[marketId].pegToleranceBps = uint16(bps);
        emit IClearingHouse.PegToleranceSet(marketId, bps);
    }

    /// @notice Set the order router: the one caller that may trade in a market with delayed orders on. A new router
    ///         takes over at once; orders committed to the old one can no longer execute there (their owners cancel
    ///         them for their keeper fees).
    function setOrderRouter(address router) external onlyOwner {
        if (router == address(0)) revert IErrors.ZeroAddress();
        orderRouter = router;
        emit IClearingHouse.OrderRouterSet(router);
    }

    /// @notice Turn delayed orders on or off for a market (docs/orders.md). While on, every trade in it, opens
    ///         and closes alike, comes from the order router, which executes an order only after an oracle round
    ///         newer than the order, and only at a peg within the stale-peg tolerance of the index in either
    ///         direction. Liquidations are not trades and are unaffected. Turning it on needs a router
    ///         (`NoOrderRouter`) and a peg tolerance (`PegToleranceRequired`; `setPegTolerance(id, 0)` is refused
    ///         while it is on). Nothing accrues: the rule reads no time.
    function setDelayedOrders(uint32 marketId, bool on) external onlyOwner {
        Market storage m = _market(marketId);
        if (on && orderRouter == address(0)) revert IClearingHouse.NoOrderRouter();
        // An order must meet a fresh peg, and "fresh" is the stale-peg rule's tolerance (ClearingHouseTradeRules._checkPeg).
        if (on && m.pegToleranceBps == 0) revert IClearingHouse.PegToleranceRequired(marketId);
        m.delayedOrders = on;
        emit IClearingHouse.DelayedOrdersSet(marketId, on);
    }

    /// @notice IClearingHouse.fundingState, computed here for the ClearingHouse: it reaches this function by a static
    ///         call to itself that delegate-calls here (ClearingHouse._configureView), so it reads the ClearingHouse's
    ///         storage and can write nothing.
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
        IClearingHouse.FundingParams memory f = m.fundingParams;
        FundingState memory fs = m.funding;
        uint256 last = m.accumulator.timestamp;
        {
            (, uint256 index, uint256 since) = _tryRound(m);
            (premium, targetRate, markTwap, indexTwap) =
                _sampleNow(m, fs, _indexArea(last, m.lastIndexPrice, index, since), f);
        }
        (appliedRate,) = _evolveSince(fs.rate, fs.target, targetRate, last, f);
        (projected1h,) = FundingMath.evolve(appliedRate, targetRate, 1 hours, f.smoothingTau, f.maxRateVelocity);
        (projected8h,) = FundingMath.evolve(appliedRate, targetRate, 8 hours, f.smoothingTau, f.maxRateVelocity);
    }

    /// @notice The hours of funding at its cap a market's taker fee must cover, at time constant `tau` [s]
    ///         (FUNDING_CAP_FEE_HOURS).
    function _capFeeHours(uint256 tau) internal pure returns (uint256) {
        return tau < SLOW_SMOOTHING_TAU ? FUNDING_CAP_FEE_HOURS_FAST : FUNDING_CAP_FEE_HOURS;
    }

    function _setFundingParams(uint32 marketId, Market storage m, IClearingHouse.FundingParams memory p) internal {
        // The fee's rule (FUNDING_CAP_FEE_HOURS, at the new time constant) is the tighter bound for every fee up to
        // MAX_TAKER_FEE; the hard bound stays, as the rates' width argument (int56) rests on it. Rounded down.
        Bounds.check("maxFundingRate", p.maxFundingRate, 0, Math.min(MAX_FUNDING_RATE, m.takerFee / _capFeeHours(p.smoothingTau)));
        // At least a quarter of the cap per hour (RATE_VELOCITY_CAP_DIVISOR, rounded down: a wei of slack at most).
        Bounds.check(
            "maxRateVelocity", p.maxRateVelocity, Math.max(MIN_RATE_VELOCITY, p.maxFundingRate / RATE_VELOCITY_CAP_DIVISOR), MAX_RATE_VELOCITY
        );
        Bounds.check("smoothingTau", p.smoothingTau, MIN_SMOOTHING_TAU, MAX_SMOOTHING_TAU);
        Bounds.check("fundingPeriodHours", p.fundingPeriodHours, 1, MAX_FUNDING_PERIOD_HOURS);
        Bounds.check("baselineRate", WadMath.abs(p.baselineRate), 0, p.maxFundingRate);
        m.fundingParams = p;
        FundingState memory fs = m.funding;
        // Casts: clamped to maxFundingRate <= 1e16, within int56.
        fs.rate = int56(FundingMath.clamp(fs.rate, p.maxFundingRate));
        fs.target = int56(FundingMath.clamp(fs.target, p.maxFundingRate));
        m.funding = fs;
        emit IClearingHouse.FundingParamsSet(marketId, p);
    }

    function _setParams(uint32 marketId, Market storage m, IClearingHouse.MarketParams calldata p, uint64 insuranceShare) internal {
        if (p.oracle == address(0)) revert IErrors.ZeroAddress();
        Bounds.check("heartbeat", p.heartbeat, MIN_HEARTBEAT, MAX_HEARTBEAT);
        Bounds.check("twapWindow", p.twapWindow, MIN_TWAP_WINDOW, MAX_TWAP_WINDOW);
        Bounds.check("mmr", p.mmr, MIN_MMR, MAX_MMR);
        Bounds.check("imr", p.imr, uint256(p.mmr) + 1, MAX_IMR);
        // At least six (or nine) hours of the market's funding cap (FUNDING_CAP_FEE_HOURS; the cap is 0 until the
        // listing sets it, after this check).
        IClearingHouse.FundingParams memory f = m.fundingParams;
        Bounds.check("takerFee", p.takerFee, uint256(f.maxFundingRate) * _capFeeHours(f.smoothingTau), MAX_TAKER_FEE);
        Bounds.check("maxSpread", p.maxSpread, MIN_MAX_SPREAD, MAX_MAX_SPREAD);
        Bounds.check("maxOiPoolRatio", p.maxOiPoolRatio, 1, MAX_OI_POOL_RATIO);
        // Every position is at most a side's open interest, which is at most this cap (a lowered cap
        // leaves positions at most the old one): so every size a position can reach fits an auction's
        // int96 slice, and every position can be liquidated.
        Bounds.check("maxOpenInterest", p.maxOpenInterest, 1, uint256(uint96(type(int96).max)));
        Bounds.check("minPositionSize", p.minPositionSize, 1, p.maxOpenInterest);
        Bounds.check("insuranceFeeShare", insuranceShare, 0, MAX_INSURANCE_FEE_SHARE);
        uint256 scale = OracleLib.scaleOf(p.oracle);
        uint8 scaleExp;
        while (scale > 1) {
            scale /= 10;
            ++scaleExp;
        }
        m.oracle = p.oracle;
        // Cast: heartbeat <= MAX_HEARTBEAT = 172,800 < 2^24.
        m.heartbeat = uint24(p.heartbeat);
        // Cast: twapWindow <= MAX_TWAP_WINDOW = 14,400 < 2^16.
        m.twapWindow = uint16(p.twapWindow);
        m.oracleScaleExp = scaleExp;
        m.imr = p.imr;
        m.mmr = p.mmr;
        m.takerFee = p.takerFee;
        m.maxSpread = p.maxSpread;
        m.maxOiPoolRatio = p.maxOiPoolRatio;
        m.maxOpenInterest = p.maxOpenInterest;
        m.minPositionSize = p.minPositionSize;
        m.insuranceFeeShare = insuranceShare;
        emit IClearingHouse.MarketParamsSet(marketId, p);
        emit IClearingHouse.InsuranceFeeShareSet(marketId, insuranceShare);
    }
}
