// SPDX-License-Identifier: BUSL-1.1
pragma solidity 0.8.28;

import {IClearingHouse} from "../interfaces/IClearingHouse.sol";
import {WadMath} from "./WadMath.sol";

/// @title MarginMath
/// @notice The account-level margin formulas, one copy for the two modules that apply them: the Vault (withdrawals,
///         margin transfers, the liquidation state) and the ClearingHouse (a trade's initial-margin check, a
///         builder fee's maintenance check). Both take the ClearingHouse's `MarginSummary` of the account's markets
///         and its settled collateral [wad]. Internal and pure: compiled into each caller, no call.
library MarginMath {
    /// @notice Account value: collateral + unrealized PnL (at the index) - pending funding.
    function accountValue(int256 collateral, IClearingHouse.MarginSummary memory s) internal pure returns (int256) {
        return collateral + (s.unrealizedPnl - s.pendingFunding);
    }

    /// @notice Free collateral: min(collateral - pending funding, account value) - initial margin, on the account
    ///         value `value` already computed (`accountValue`). Unrealized profit never counts as free (the min),
    ///         unrealized loss and funding owed always do.
    /// @dev Cast: `initial` is a sum of per-market products of sizes and prices below 2^128 and ratios <= 1, far
    ///      below 2^255.
    function freeCollateral(int256 collateral, int256 value, IClearingHouse.MarginSummary memory s)
        internal
        pure
        returns (int256)
    {
        return WadMath.min(collateral - s.pendingFunding, value) - int256(s.initial);
    }
}
