// SPDX-License-Identifier: BUSL-1.1
pragma solidity 0.8.28;

import {IErrors} from "../interfaces/IErrors.sol";

/// @title Bounds
/// @notice The one check of a governed parameter against its hard bounds, shared by every module.
/// @dev Every setter checks each field with `check` before it writes anything, so a value out of bounds
///      reverts with the field's name and changes nothing. The error is the one declaration every module's
///      interface inherits (`IErrors`), so it appears once in each ABI and decodes the same whichever module
///      raised it.
library Bounds {
    /// @notice Revert with `ParameterOutOfBounds(name, value)` unless lo <= value <= hi (both inclusive).
    function check(bytes32 name, uint256 value, uint256 lo, uint256 hi) internal pure {
        if (value < lo || value > hi) revert IErrors.ParameterOutOfBounds(name, value);
    }
}
