// SPDX-License-Identifier: BUSL-1.1
pragma solidity 0.8.28;

import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {IClearingHouse} from "../interfaces/IClearingHouse.sol";
import {IVault} from "../interfaces/IVault.sol";
import {ILiquidationEngine} from "../interfaces/ILiquidationEngine.sol";
import {WadMath} from "../libraries/WadMath.sol";
import {MarginMath} from "../libraries/MarginMath.sol";
import {ClearingHouseSettlement} from "./ClearingHouseSettlement.sol";

/// @title ClearingHouseMargin
/// @notice An account's margin across the markets it holds: `_marginSummary` (unrealized PnL, pending funding,
///         initial and maintenance requirements, the auctioned part's backing, each market at its live index) and
///         the initial-margin check a trade that adds risk must pass (`_checkInitialMargin`, `_checkInitial`). The
///         Vault's views and the liquidation engine read the same summary (`marginSummary`). Inherited by the
///         ClearingHouse only (docs/design.md "Accounts and margin").
abstract contract ClearingHouseMargin is ClearingHouseSettlement {
    using WadMath for uint256;
    using WadMath for int256;
    using SafeCast for uint256;
    using SafeCast for int256;

    function _checkInitialMargin(
        address owner,
        uint32 subaccount,
        IVault.AccountState memory acct,
        uint32 marketId,
        uint256 index
    ) internal view {
        _checkInitial(owner, subaccount, acct, _marginSummary(owner, subaccount, acct.openMarkets, marketId, index));
    }

    /// @dev Initial margin on a summary already computed: free collateral (`MarginMath.freeCollateral`, the formula
    ///      the Vault's withdrawal check uses) >= 0.
    function _checkInitial(address owner, uint32 subaccount, IVault.AccountState memory acct, IClearingHouse.MarginSummary memory s)
        internal
        pure
    {
        int256 free = MarginMath.freeCollateral(acct.collateral, MarginMath.accountValue(acct.collateral, s), s);
        if (free < 0) revert IClearingHouse.InsufficientMargin(owner, subaccount, free);
    }

    /// @dev A builder fee (`openPositionWithBuilder`) must leave the account at or above maintenance, free and
    ///      auctioned parts together, on the summary taken after the fee was charged:
    ///      collateral + PnL - pending funding - maintenance >= 0 (`BuilderFeeBelowMaintenance`).
    function _checkBuilderFeeMaintenance(
        address owner,
        uint32 subaccount,
        IVault.AccountState memory acct,
        IClearingHouse.MarginSummary memory s
    ) internal pure {
        int256 excess = _excessOverMaintenance(acct, s);
        if (excess < 0) revert IClearingHouse.BuilderFeeBelowMaintenance(owner, subaccount, excess);
    }

    /// @dev A reduce or close (no builder fee) that filled worse than the index, or that leaves no position, must
    ///      leave the account at or above maintenance, free and auctioned parts together, on the summary taken after
    ///      the trade (with no position left: collateral >= 0). `ReduceBelowMaintenance` otherwise. Without it a
    ///      partner could push the vAMM to the edge of the band and the account close into it for more than it
    ///      holds, the partner buying back what it sold; the loss past the account's value would be paid by the
    ///      insurance fund and the pool (docs/security.md, "the reduce into a pushed vAMM").
    function _checkReduce(
        address owner,
        uint32 subaccount,
        IVault.AccountState memory acct,
        uint32 marketId,
        uint256 index
    ) internal view {
        int256 excess =
            _excessOverMaintenance(acct, _marginSummary(owner, subaccount, acct.openMarkets, marketId, index));
        if (excess < 0) revert IClearingHouse.ReduceBelowMaintenance(owner, subaccount, excess);
    }

    /// @dev collateral + PnL - pending funding - maintenance (free and auctioned parts), on summary `s`.
    function _excessOverMaintenance(IVault.AccountState memory acct, IClearingHouse.MarginSummary memory s)
        internal
        pure
        returns (int256)
    {
        return MarginMath.accountValue(acct.collateral, s) - (s.maintenance + s.auctionedMaintenance).toInt256();
    }

    /// @dev The account's margin summary. `knownMarket`/`knownIndex` reuse a price already read.
    function _marginSummary(
        address owner,
        uint32 subaccount,
        uint256 openMarkets,
        uint32 knownMarket,
        uint256 knownIndex
    ) internal view returns (IClearingHouse.MarginSummary memory s) {
        while (openMarkets != 0) {
            uint256 bit = openMarkets & (~openMarkets + 1); // lowest set bit
            openMarkets ^= bit;
            uint32 marketId = _bitToMarket(bit);
            Market storage m = _markets[marketId];
            Position storage p = _positions[marketId][owner][subaccount];
            int256 size = p.size;
            // The known market accrued in this transaction, so its funding needs no round time.
            (uint256 index, uint256 since) = marketId == knownMarket ? (knownIndex, block.timestamp) : _round(m);
            s.unrealizedPnl += size.sMulWadDown(index) - p.openNotional;
            s.pendingFunding += size.sMulWadUp(_cumulativeFundingNow(m, index, since) - p.lastCumulativeFunding);
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
}
