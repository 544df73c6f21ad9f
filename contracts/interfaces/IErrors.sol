// SPDX-License-Identifier: BUSL-1.1
pragma solidity 0.8.28;

// The Vault's pause levels, one home for every module that acts on them (docs/governance.md): 0 none; from 1 no
// position may add risk; from 2 no trade and no liquidation; at 3 only withdrawals (deposits, margin moves and
// the pool's deposits refused). `Paused(level)` names the level that blocked an action.
uint8 constant PAUSE_NO_NEW_RISK = 1;
uint8 constant PAUSE_NO_TRADING = 2;
uint8 constant PAUSE_WITHDRAW_ONLY = 3;

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
