// SPDX-License-Identifier: BUSL-1.1
pragma solidity 0.8.28;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

import {IPerpReader} from "./IPerpReader.sol";
import {IVault} from "../interfaces/IVault.sol";
import {IClearingHouse} from "../interfaces/IClearingHouse.sol";
import {ILiquidationEngine} from "../interfaces/ILiquidationEngine.sol";
import {AggregatorV3Interface} from "../interfaces/AggregatorV3Interface.sol";
import {WAD, WadMath} from "../libraries/WadMath.sol";
import {VAmmMath} from "../libraries/VAmmMath.sol";

/// @title PerpReader
/// @notice Periphery views over the deployed modules (see `IPerpReader`). Stateless: it only calls the
///         modules' public views, so it can be redeployed at will and never holds money or rights.
/// @dev Kept out of the ClearingHouse, whose runtime code is close to EIP-170's limit.
contract PerpReader is IPerpReader {
    using WadMath for uint256;
    using WadMath for int256;

    /// @inheritdoc IPerpReader
    uint256 public constant NO_LIQUIDATION_PRICE = 0;
    /// @inheritdoc IPerpReader
    uint256 public constant MAX_PRICE = type(uint128).max;
    /// @dev Feed prices `liquidationPrice` evaluates exactly beyond the linear solve (see IPerpReader).
    uint256 internal constant MAX_STEPS = 8;
    /// @dev Bound on the rounding of h(x) against its line: h_line - 3 < h <= h_line.
    int256 internal constant ROUNDING = 3;
    uint256 internal constant WAD2 = 1e36;

    IVault public immutable vault;
    IClearingHouse public immutable clearingHouse;
    ILiquidationEngine public immutable liquidationEngine;

    /// @dev h(x) = rest + floor(size x) - ceil(ceil(free x) mmr): the account's value minus its maintenance
    ///      requirement as a function of one market's index x [wad].
    struct Line {
        int256 rest; // [wad] collateral + other markets' PnL - all funding owed - openNotional - other maintenance
        int256 size; // [wad base]
        uint256 free; // [wad base] |size - auctioned|
        uint256 mmr; // [wad]
    }

    /// @dev What a trade of b base meets in `ClearingHouse._trade`, read once.
    struct TradeCheck {
        bool isLong;
        uint256 x; // [wad] base reserve
        uint256 y; // [wad] quote reserve
        uint256 index; // [wad]
        uint256 band; // [wad] index x maxSpread (rounded down, as the ClearingHouse does)
        uint256 distBefore; // [wad] |spot - index|
        uint256 oi; // [wad base] open interest of the side the trade grows
        uint256 maxOi; // [wad base]
        int256 pool; // [wad] pool balance before the trade
        uint256 ratio; // [wad] maxOiPoolRatio
        uint256 takerFee; // [wad]
        uint256 insuranceShare; // [wad]
    }

    constructor(IVault vault_, IClearingHouse clearingHouse_, ILiquidationEngine liquidationEngine_) {
        if (address(vault_) == address(0) || address(clearingHouse_) == address(0)
                || address(liquidationEngine_) == address(0)) revert ZeroAddress();
        vault = vault_;
        clearingHouse = clearingHouse_;
        liquidationEngine = liquidationEngine_;
    }

    // ------------------------------------------------------------------ accounts

    /// @inheritdoc IPerpReader
    function withdrawable(address owner, uint32 subaccount) external view returns (uint256 amount, uint256 amountWad) {
        if (owner == address(0)) revert ZeroAddress();
        int256 coll = vault.collateral(owner, subaccount);
        int256 free = vault.freeCollateral(owner, subaccount);
        int256 available = free < coll ? free : coll;
        if (available <= 0) return (0, 0);
        uint256 scale = vault.tokenScale();
        // Cast: available > 0. Whole token units: the WAD below one unit stays.
        amountWad = uint256(available) - uint256(available) % scale;
        amount = amountWad / scale;
    }

    /// @inheritdoc IPerpReader
    function liquidationPrice(address owner, uint32 subaccount, uint32 marketId) external view returns (uint256) {
        if (owner == address(0)) revert ZeroAddress();
        _checkMarket(marketId);
        IClearingHouse ch = clearingHouse;
        (int256 size, int256 openNotional,) = ch.position(owner, subaccount, marketId);
        if (size == 0) return NO_LIQUIDATION_PRICE;
        IClearingHouse.MarketParams memory p = ch.marketParams(marketId);
        int256 rest;
        {
            (int256 value, uint256 maintenance,,) = vault.liquidationState(owner, subaccount);
            // This market's own terms at the current index, exactly as the Vault summed them.
            IClearingHouse.MarginSummary memory own = ch.marginSummary(owner, subaccount, uint256(1) << (marketId - 1));
            // Casts: requirements are far below 2^255 (sizes and prices < 2^128, ratios <= 1).
            rest = value - own.unrealizedPnl - openNotional - (int256(maintenance) - int256(own.maintenance));
        }
        Line memory l = Line({
            rest: rest,
            size: size,
            free: (size - ch.auctionedSize(owner, subaccount, marketId)).abs(),
            mmr: p.mmr
        });
        uint256 unit = 10 ** (18 - uint256(AggregatorV3Interface(p.oracle).decimals()));
        return size > 0 ? _longThreshold(l, unit) : _shortThreshold(l, unit);
    }

    // ------------------------------------------------------------------ markets

    /// @inheritdoc IPerpReader
    function maxTradeSize(uint32 marketId, bool isLong) external view returns (uint256) {
        _checkMarket(marketId);
        return _maxTradeSize(marketId, isLong, clearingHouse.indexPrice(marketId), clearingHouse.marketState(marketId),
            clearingHouse.marketParams(marketId));
    }

    /// @inheritdoc IPerpReader
    function marketSummary(uint32 marketId) external view returns (MarketSummary memory s) {
        _checkMarket(marketId);
        IClearingHouse ch = clearingHouse;
        s.marketId = marketId;
        s.symbol = ch.symbolOf(marketId);
        s.state = ch.marketState(marketId);
        s.params = ch.marketParams(marketId);
        s.fundingParams = ch.fundingParams(marketId);
        s.auctionParams = liquidationEngine.auctionParams(marketId);
        s.insuranceFeeShare = ch.insuranceFeeShare(marketId);
        s.spotPrice = s.state.spotPrice;
        (s.appliedRate, s.targetRate, s.premium, s.markTwap, s.indexTwap, s.projected1h, s.projected8h) =
            ch.fundingState(marketId);
        s.poolBalance = vault.poolBalance();
        s.pauseLevel = vault.pauseLevel();
        // Cast: poolBalance > 0 on this branch.
        s.oiNotionalCap = s.poolBalance > 0 ? uint256(s.poolBalance).mulWadDown(s.params.maxOiPoolRatio) : 0;
        try ch.indexPrice(marketId) returns (uint256 index) {
            s.indexValid = true;
            s.indexPrice = index;
            s.maxLong = _maxTradeSize(marketId, true, index, s.state, s.params);
            s.maxShort = _maxTradeSize(marketId, false, index, s.state, s.params);
        } catch {}
    }

    // ------------------------------------------------------------------ internals: liquidation price

    /// @dev h(x) exactly as `Vault.isLiquidatable` would compute value - maintenance at index x.
    function _health(Line memory l, uint256 x) internal pure returns (int256) {
        // Cast: the requirement is below 2^255 (x <= MAX_PRICE, free < 2^127).
        return l.rest + l.size.sMulWadDown(x) - int256(l.free.mulWadUp(x).mulWadUp(l.mmr));
    }

    /// @dev Long: h rises with x. Its line h_line(x) = rest + k x / WAD^2, k = size WAD - free mmr > 0, is
    ///      >= 3 (so h > 0) from hi = ceil((3 - rest) WAD^2 / k) up. Walk the feed's grid down from below hi
    ///      to the first price with h < 0 (any price below the line's root has one).
    function _longThreshold(Line memory l, uint256 unit) internal pure returns (uint256) {
        // Casts: size > 0; free <= size and mmr < WAD, so k > 0.
        uint256 k = uint256(l.size) * WAD - l.free * l.mmr;
        if (l.rest >= ROUNDING) {
            // Even at x -> 0 the line stays >= 3: no positive index liquidates the account.
            return NO_LIQUIDATION_PRICE;
        }
        uint256 hi = Math.mulDiv(uint256(ROUNDING - l.rest), WAD2, k, Math.Rounding.Ceil);
        uint256 g = hi - 1 < MAX_PRICE ? hi - 1 : MAX_PRICE;
        g -= g % unit;
        for (uint256 i; i < MAX_STEPS && g != 0; ++i) {
            if (_health(l, g) < 0) return g;
            g -= unit;
        }
        // Only for positions too small for 8 feed units to span the rounding band: the next price down,
        // unverified; every price above it was shown safe (the early side).
        return g;
    }

    /// @dev Short: h falls as x rises. Its line is >= 3 up to lo = floor((rest - 3) WAD^2 / k'), k' = |size|
    ///      WAD + free mmr. Walk the feed's grid up from the first price above lo to the first with h < 0.
    function _shortThreshold(Line memory l, uint256 unit) internal pure returns (uint256) {
        uint256 k = l.size.abs() * WAD + l.free * l.mmr;
        uint256 g = unit;
        if (l.rest >= ROUNDING) {
            // Cast: rest >= 3.
            uint256 lo = Math.mulDiv(uint256(l.rest - ROUNDING), WAD2, k);
            if (lo >= MAX_PRICE) return NO_LIQUIDATION_PRICE;
            g = (lo / unit + 1) * unit;
        }
        for (uint256 i; i < MAX_STEPS; ++i) {
            if (g > MAX_PRICE) return NO_LIQUIDATION_PRICE;
            if (_health(l, g) < 0) return g;
            g += unit;
        }
        // As for a long: the next price up, unverified; every price below it was shown safe.
        return g > MAX_PRICE ? NO_LIQUIDATION_PRICE : g;
    }

    // ------------------------------------------------------------------ internals: trade size

    function _maxTradeSize(
        uint32 marketId,
        bool isLong,
        uint256 index,
        IClearingHouse.MarketState memory st,
        IClearingHouse.MarketParams memory p
    ) internal view returns (uint256) {
        uint256 spot = VAmmMath.price(st.baseReserve, st.quoteReserve);
        TradeCheck memory t = TradeCheck({
            isLong: isLong,
            x: st.baseReserve,
            y: st.quoteReserve,
            index: index,
            band: index.mulWadDown(p.maxSpread),
            distBefore: spot > index ? spot - index : index - spot,
            oi: isLong ? st.longOpenInterest : st.shortOpenInterest,
            maxOi: p.maxOpenInterest,
            pool: vault.poolBalance(),
            ratio: p.maxOiPoolRatio,
            takerFee: p.takerFee,
            insuranceShare: clearingHouse.insuranceFeeShare(marketId)
        });

        // Upper end: the absolute cap; a buy must leave base in the curve.
        uint256 hi = t.maxOi > t.oi ? t.maxOi - t.oi : 0;
        if (isLong && hi >= t.x) hi = t.x - 1;
        if (hi == 0) return 0;
        uint256 guess = _bandGuess(t, hi);
        // The pool-ratio cap, with the fee of the trade at the guess credited to the pool.
        guess = _min(guess, _poolCapRoom(t, t.pool));
        if (guess != 0) guess = _min(guess, _poolCapRoom(t, t.pool + _poolFee(t, _min(guess, hi))));
        return _largestFit(t, _min(guess, hi), hi);
    }

    /// @dev Near the largest b the band allows (`hi` when it allows any): a first guess for the search.
    function _bandGuess(TradeCheck memory t, uint256 hi) internal pure returns (uint256 guess) {
        guess = hi;
        uint256 index = t.index;
        bool isLong = t.isLong;
        // The band: the price after may go to index +- max(band, distance before) (further only back toward
        // the index), so solve x' y' = x y for it: x'^2 = x y / limit.
        uint256 reach = t.band > t.distBefore ? t.band : t.distBefore;
        // A buy's limit is above the index, a sell's below it (none when the band reaches zero). A limit so
        // low that x y / limit overflows leaves the search to find the answer from `hi`.
        uint256 limit = isLong ? index + reach : (reach < index ? index - reach : 0);
        // Reserves are <= 1e36 (ClearingHouse bound), so x y < 2^240 cannot overflow.
        if (limit != 0 && t.x * t.y / limit < type(uint256).max / WAD) {
            uint256 x1Squared = Math.mulDiv(t.x * t.y, WAD, limit);
            if (isLong) {
                uint256 x1 = Math.sqrt(x1Squared, Math.Rounding.Ceil);
                guess = x1 < t.x ? t.x - x1 : 0;
            } else {
                uint256 x1 = Math.sqrt(x1Squared);
                guess = x1 > t.x ? x1 - t.x : 0;
            }
        }
    }

    /// @dev Base the pool-ratio cap leaves with the pool at `pool`: oi + b <= floor(cap WAD / index).
    function _poolCapRoom(TradeCheck memory t, int256 pool) internal pure returns (uint256) {
        // Cast: pool > 0 on this branch.
        uint256 cap = pool > 0 ? uint256(pool).mulWadDown(t.ratio) : 0;
        uint256 most = Math.mulDiv(cap, WAD, t.index);
        return most > t.oi ? most - t.oi : 0;
    }

    /// @dev What a trade of b credits the pool: its fee less the insurance share (`ClearingHouse._trade`).
    function _poolFee(TradeCheck memory t, uint256 b) internal pure returns (int256) {
        if (b == 0) return 0;
        uint256 q = t.isLong ? t.y.mulDivUp(b, t.x - b) : t.y.mulDivDown(b, t.x + b);
        uint256 fee = q.mulWadUp(t.takerFee);
        // Cast: fee < 2^128.
        return int256(fee - fee.mulWadDown(t.insuranceShare));
    }

    /// @dev Whether a trade of b base passes every check `ClearingHouse._trade` makes of the market (not of
    ///      the account): liquidity, price band, the absolute OI cap and the pool-ratio cap.
    function _fits(TradeCheck memory t, uint256 b) internal pure returns (bool) {
        if (b == 0) return true;
        uint256 x1;
        uint256 y1;
        if (t.isLong) {
            if (b >= t.x) return false;
            x1 = t.x - b;
            y1 = t.y + t.y.mulDivUp(b, x1);
        } else {
            x1 = t.x + b;
            y1 = t.y - t.y.mulDivDown(b, x1);
        }
        uint256 priceAfter = VAmmMath.price(x1, y1);
        uint256 distAfter = priceAfter > t.index ? priceAfter - t.index : t.index - priceAfter;
        if (distAfter > t.band && distAfter > t.distBefore) return false;
        uint256 oi = t.oi + b;
        if (oi > t.maxOi) return false;
        int256 pool = t.pool + _poolFee(t, b);
        // Cast: pool > 0 on this branch.
        uint256 cap = pool > 0 ? uint256(pool).mulWadDown(t.ratio) : 0;
        return oi.mulWadUp(t.index) <= cap;
    }

    /// @dev The b in [0, hi] with _fits(b) and not _fits(b + 1) (or b = hi), searched from `guess`: gallop
    ///      away from it until the answer is bracketed, then bisect. A guess a few wei off costs a few calls.
    function _largestFit(TradeCheck memory t, uint256 guess, uint256 hi) internal pure returns (uint256) {
        uint256 lo = 0;
        uint256 up = 0;
        uint256 step = 1;
        if (_fits(t, guess)) {
            lo = guess;
            while (true) {
                if (lo == hi) return hi;
                up = hi - lo > step ? lo + step : hi;
                if (!_fits(t, up)) break;
                lo = up;
                step <<= 1;
            }
        } else {
            up = guess;
            while (true) {
                lo = up > step ? up - step : 0;
                if (_fits(t, lo)) break;
                up = lo;
                step <<= 1;
            }
        }
        while (up - lo > 1) {
            uint256 mid = lo + (up - lo) / 2;
            if (_fits(t, mid)) lo = mid;
            else up = mid;
        }
        return lo;
    }

    // ------------------------------------------------------------------ helpers

    function _checkMarket(uint32 marketId) internal view {
        if (marketId == 0 || marketId > clearingHouse.marketCount()) revert UnknownMarket(marketId);
    }

    function _min(uint256 a, uint256 b) internal pure returns (uint256) {
        return a < b ? a : b;
    }
}
