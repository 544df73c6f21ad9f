// SPDX-License-Identifier: BUSL-1.1
pragma solidity 0.8.28;

/// @dev The fixed-point unit of every price, size, ratio and quote amount on chain: 1e18. Its one home; modules
///      import it with the library (`import {WAD, WadMath} from ...`).
uint256 constant WAD = 1e18;

/// @title WadMath
/// @notice 18-decimal fixed-point arithmetic with the rounding direction in every name.
/// @dev Unsigned: `Down` truncates, `Up` rounds away from zero. Signed (`s` prefix): `Down` rounds
///      toward negative infinity (floor), `Up` toward positive infinity (ceil). Callers pick the
///      direction that favours the protocol: what a user receives rounds down, what a user owes
///      rounds up. Products use checked arithmetic: an overflow reverts instead of wrapping, and the
///      protocol's hard bounds (reserves, sizes, prices < 2^128) keep every product below 2^256.
library WadMath {
    function mulWadDown(uint256 x, uint256 y) internal pure returns (uint256) {
        return x * y / WAD;
    }

    function mulWadUp(uint256 x, uint256 y) internal pure returns (uint256) {
        return divUp(x * y, WAD);
    }

    function divWadDown(uint256 x, uint256 y) internal pure returns (uint256) {
        return x * WAD / y;
    }

    function divWadUp(uint256 x, uint256 y) internal pure returns (uint256) {
        return divUp(x * WAD, y);
    }

    function mulDivDown(uint256 x, uint256 y, uint256 d) internal pure returns (uint256) {
        return x * y / d;
    }

    function mulDivUp(uint256 x, uint256 y, uint256 d) internal pure returns (uint256) {
        return divUp(x * y, d);
    }

    /// @dev ceil(x / d) for d > 0 (division by zero reverts like `/`).
    function divUp(uint256 x, uint256 d) internal pure returns (uint256) {
        uint256 q = x / d;
        return q * d == x ? q : q + 1;
    }

    /// @notice floor(x * y / WAD) for a signed x.
    function sMulWadDown(int256 x, uint256 y) internal pure returns (int256) {
        return sMulDivDown(x, y, WAD);
    }

    /// @notice ceil(x * y / WAD) for a signed x.
    function sMulWadUp(int256 x, uint256 y) internal pure returns (int256) {
        return sMulDivUp(x, y, WAD);
    }

    /// @notice floor(x * y / WAD) for signed x and y.
    function sMulWadDown(int256 x, int256 y) internal pure returns (int256) {
        // x * y = (-x) * |y| for y < 0: the same floor, on the flipped sign of x.
        return y >= 0 ? sMulDivDown(x, abs(y), WAD) : sMulDivDown(-x, abs(y), WAD);
    }

    /// @notice ceil(x * y / WAD) for signed x and y.
    function sMulWadUp(int256 x, int256 y) internal pure returns (int256) {
        return y >= 0 ? sMulDivUp(x, abs(y), WAD) : sMulDivUp(-x, abs(y), WAD);
    }

    /// @notice floor(x * y / d): toward negative infinity.
    function sMulDivDown(int256 x, uint256 y, uint256 d) internal pure returns (int256) {
        if (x >= 0) return toInt(mulDivDown(uint256(x), y, d));
        return -toInt(mulDivUp(abs(x), y, d));
    }

    /// @notice ceil(x * y / d): toward positive infinity.
    function sMulDivUp(int256 x, uint256 y, uint256 d) internal pure returns (int256) {
        if (x >= 0) return toInt(mulDivUp(uint256(x), y, d));
        return -toInt(mulDivDown(abs(x), y, d));
    }

    function abs(int256 x) internal pure returns (uint256) {
        // Cast: -type(int256).min overflows and reverts under checked arithmetic, as it should.
        return x >= 0 ? uint256(x) : uint256(-x);
    }

    /// @dev Checked uint256 -> int256 (reverts above type(int256).max).
    function toInt(uint256 x) internal pure returns (int256) {
        require(x <= uint256(type(int256).max), CastOverflow(x));
        return int256(x);
    }

    function min(int256 a, int256 b) internal pure returns (int256) {
        return a < b ? a : b;
    }

    error CastOverflow(uint256 value);
}
