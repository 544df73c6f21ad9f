// SPDX-License-Identifier: BUSL-1.1
pragma solidity 0.8.28;

/// @title IErrors
/// @notice The errors every module shares, declared once: each module's interface inherits them, and the
///         `Bounds` library reverts with this declaration, so each appears once in every ABI with one selector.
interface IErrors {
    /// @notice The zero address was given where an address is required.
    error ZeroAddress();
    /// @notice The protocol is paused at `level`, which blocks this action (levels: docs/governance.md).
    error Paused(uint8 level);
    /// @notice A governed parameter is outside its hard bounds; `name` says which and `value` what was given.
    error ParameterOutOfBounds(bytes32 name, uint256 value);
}
