// SPDX-License-Identifier: BUSL-1.1
pragma solidity 0.8.28;

import {IClearingHouse} from "../interfaces/IClearingHouse.sol";
import {WAD, WadMath} from "../libraries/WadMath.sol";
import {ClearingHouseMargin} from "./ClearingHouseMargin.sol";

/// @title ClearingHouseTradeRules
/// @notice The rules a vAMM trade passes besides margin, one function each: the stale-peg rule (`_checkPeg`), the
///         price band (`_checkPriceBand`), the minimum position size (`_checkMinPositionSize`), the fee and its
///         insurance share (`_tradeFee`) and the open-interest caps on the side that grows (`_updateOpenInterest`,
///         `_checkOiCap`). `ClearingHouse._trade` calls them in its order (docs/design.md, docs/pool.md "The
///         stale-peg rule"). Inherited by the ClearingHouse only.
abstract contract ClearingHouseTradeRules is ClearingHouseMargin {
    using WadMath for uint256;
    using WadMath for int256;

    /// @dev The stale-peg rule (`pegToleranceBps` != 0): a trade in the direction the next repeg will reward reverts
    ///      while the peg, the curve's price at zero net position x y / (x + net)^2 (AmmController._peg, the same
    ///      roundings: floor twice), is further than the tolerance from the index: a buy while the peg is below the
    ///      index by more than floor(index x bps / 1e4), a sell while it is above by more. That holds reduces too:
    ///      closing one leg of a hedge (a short bought back at a stale low peg, its long twin sold after the repeg)
    ///      is the same stale-price buy as opening a long. The other direction always trades (it pays the trader
    ///      the stale price's disadvantage), and anyone may `repeg` first (permissionless). No trade moves the peg,
    ///      so it is read before the swap. Checked arithmetic without a 512-bit product: x + net is unchanged by
    ///      trades and at least half the base reserve a sync or repeg set (AmmController keeps x >= 2 |net short|),
    ///      so at least MIN_BASE_RESERVE / 2, while x y <= MAX_RESERVE^2 = 1e72: x y / (x + net) x 1e18 < 2^256;
    ///      x + net <= 0 (unreachable) reads as a peg of 0, as in AmmController._peg, which no buy passes.
    ///      `baseAmount` 0 (a delayed order, through the router): either direction beyond the tolerance reverts, so an
    ///      order executes only at a peg within the tolerance of the live index; a market with delayed orders on
    ///      always has a tolerance (ClearingHouseConfigurator: `PegToleranceRequired`).
    ///      808 gas on a trade when on (measured); when off, a warm slot-0 read (+212..+288 in the gas table).
    function _checkPeg(uint32 marketId, Market storage m, uint256 x, uint256 y, uint256 index, int256 baseAmount)
        internal
        view
    {
        uint256 tol = m.pegToleranceBps;
        if (tol == 0) return;
        // Casts: reserves and OI sides are below 2^128; x0 > 0 is cast only where positive.
        int256 x0 = int256(x) + int256(uint256(m.longOpenInterest)) - int256(uint256(m.shortOpenInterest));
        uint256 peg = x0 > 0 ? x * y / uint256(x0) * WAD / uint256(x0) : 0;
        uint256 band = index * tol / 1e4;
        if ((baseAmount >= 0 && index > peg + band) || (baseAmount <= 0 && peg > index + band)) {
            revert IClearingHouse.PegStale(marketId, peg, index);
        }
    }

    /// @dev Reverts when the price after is outside the band and further from the index than before.
    function _checkPriceBand(uint32 marketId, uint256 maxSpread, uint256 index, uint256 before, uint256 afterPrice)
        internal
        pure
    {
        uint256 distAfter = afterPrice > index ? afterPrice - index : index - afterPrice;
        if (distAfter > index.mulWadDown(maxSpread)) {
            uint256 distBefore = before > index ? before - index : index - before;
            if (distAfter > distBefore) revert IClearingHouse.PriceBandExceeded(marketId, afterPrice, index, maxSpread);
        }
    }

    /// @dev A position left open is at least the market's minimum size (`BelowMinPositionSize`); closing to zero
    ///      always passes. A position's free part beside an auction meets the same minimum in
    ///      `ClearingHouseSettlement._checkAuctionedPart`, and a taker's new size in `_auctionSettle`.
    function _checkMinPositionSize(Market storage m, uint32 marketId, int256 newSize) internal view {
        if (newSize != 0 && newSize.abs() < m.minPositionSize) {
            revert IClearingHouse.BelowMinPositionSize(marketId, newSize, m.minPositionSize);
        }
    }

    /// @dev The taker fee on a trade's quote, rounded up (the trader pays the wei), and the insurance fund's share
    ///      of it, rounded down; the pool gets the rest.
    function _tradeFee(Market storage m, int256 quote) internal view returns (uint256 fee, uint256 toInsurance) {
        fee = quote.abs().mulWadUp(m.takerFee);
        toInsurance = fee.mulWadDown(m.insuranceFeeShare);
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
        if (oi > absCap) revert IClearingHouse.OpenInterestCapExceeded(marketId, oi, absCap);
        uint256 pool = poolBalance > 0 ? uint256(poolBalance) : 0;
        uint256 notionalCap = pool.mulWadDown(m.maxOiPoolRatio);
        uint256 notional = oi.mulWadUp(index);
        // Reported in base units so both caps read alike: the base the pool-ratio cap allows.
        if (notional > notionalCap) revert IClearingHouse.OpenInterestCapExceeded(marketId, oi, notionalCap.divWadDown(index));
    }
}
