// SPDX-License-Identifier: BUSL-1.1
pragma solidity 0.8.28;

import {WadMath} from "./WadMath.sol";

/// @title VAmmMath
/// @notice Constant-product pricing on virtual reserves and position accounting.
/// @dev Formulas (mirrored to the wei by `vperp.model`):
///      buy b base:  quoteIn  = ceil(y * b / (x - b)), reserves (x - b, y + quoteIn)
///      sell b base: quoteOut = floor(y * b / (x + b)), reserves (x + b, y - quoteOut)
///      Both round against the trader, so k = x * y never decreases.
library VAmmMath {
    using WadMath for uint256;
    using WadMath for int256;

    /// @notice Swap `base` (signed; > 0 buys) against reserves (x, y).
    /// @return quote signed quote flow to the trader (negative = paid)
    /// @return x1 base reserve after
    /// @return y1 quote reserve after
    function swap(uint256 x, uint256 y, int256 base) internal pure returns (int256 quote, uint256 x1, uint256 y1) {
        if (base > 0) {
            // Cast: base > 0.
            uint256 b = uint256(base);
            // Callers check b < x first (InsufficientLiquidity); this subtraction would revert otherwise.
            x1 = x - b;
            uint256 quoteIn = y.mulDivUp(b, x1);
            y1 = y + quoteIn;
            quote = -WadMath.toInt(quoteIn);
        } else {
            uint256 b = WadMath.abs(base);
            x1 = x + b;
            uint256 quoteOut = y.mulDivDown(b, x1);
            y1 = y - quoteOut;
            quote = WadMath.toInt(quoteOut);
        }
    }

    /// @notice What closing a net position of `net` base against the curve (x, y) pays the traders [wad]:
    ///         a net long's quote for selling it (>= 0), minus a net short's quote for buying it back (< 0);
    ///         rounded as `swap` rounds (against the traders). Only the curve and `net` enter, so a trade,
    ///         which moves the reserves and `net` along the curve, changes it by exactly its own quote flow.
    /// @dev A net short needs `x > |net|`, which holds on any curve reached by trades (a short's sale
    ///      adds to x what it adds to |net|) and by depth syncs (AmmController keeps x >= 2 |net short|).
    ///      Were it ever not to hold, the buy-back would be unbounded; 0 is returned then, the choice that
    ///      cannot inflate the pool's NAV with a debt nobody could pay.
    function exitValue(uint256 x, uint256 y, int256 net) internal pure returns (int256) {
        if (net == 0) return 0;
        if (net > 0) return WadMath.toInt(y.mulDivDown(uint256(net), x + uint256(net)));
        uint256 n = WadMath.abs(net);
        if (n >= x) return 0;
        return -WadMath.toInt(y.mulDivUp(n, x - n));
    }

    /// @notice vAMM price y / x in WAD, rounded down.
    function price(uint256 x, uint256 y) internal pure returns (uint256) {
        return y.divWadDown(x);
    }

    /// @notice Apply a trade (`base`, `quote` flow to the trader) to a position (`size`, `openNotional`).
    /// @dev Increase: the whole quote cost joins the basis. Reduce: the removed basis is pro rata,
    ///      rounded up (toward +inf), so the realized PnL = quote - removed rounds down. Flip: the
    ///      closing part of the quote is pro rata, rounded down, realized against the whole basis;
    ///      the rest opens the new position. In every case realized + new basis == old basis + cost
    ///      exactly: rounding only decides when a wei is realized, never creates one.
    function applyTrade(int256 size, int256 openNotional, int256 base, int256 quote)
        internal
        pure
        returns (int256 newSize, int256 newOpenNotional, int256 realizedPnl)
    {
        newSize = size + base;
        if (size == 0 || (size > 0) == (base > 0)) {
            return (newSize, openNotional - quote, 0);
        }
        uint256 absSize = WadMath.abs(size);
        uint256 absBase = WadMath.abs(base);
        if (absBase <= absSize) {
            int256 removed = openNotional.sMulDivUp(absBase, absSize);
            return (newSize, openNotional - removed, quote - removed);
        }
        int256 closingQuote = quote.sMulDivDown(absSize, absBase);
        return (newSize, -(quote - closingQuote), closingQuote - openNotional);
    }
}
