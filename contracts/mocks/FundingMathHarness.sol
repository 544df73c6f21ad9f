// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {FundingMath} from "../libraries/FundingMath.sol";

/// @notice Test-only: exposes FundingMath for differential tests against vperp.funding.
contract FundingMathHarness {
    function expNegWad(uint256 x) external pure returns (uint256) {
        return FundingMath.expNegWad(x);
    }

    function evolve(int256 r0, int256 target, uint256 dt, uint256 tau, uint256 v)
        external
        pure
        returns (int256 r, int256 area)
    {
        return FundingMath.evolve(r0, target, dt, tau, v);
    }
}
