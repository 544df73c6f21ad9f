// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {FundingMath} from "../libraries/FundingMath.sol";

/// @notice Test-only: FundingMath.expNegWad next to a frozen copy of its checked-arithmetic version
///         (as of 4ce1f7b), so tests can show the two agree bit for bit and measure what the cut saves.
contract ExpNegWadHarness {
    uint256 internal constant WAD = 1e18;
    uint256 internal constant LN2_WAD = 693_147_180_559_945_309;
    uint256 internal constant EXP_TERMS = 18;

    /// @notice The library's current expNegWad.
    function expNegWad(uint256 x) external pure returns (uint256) {
        return FundingMath.expNegWad(x);
    }

    /// @notice The reference: expNegWad before the unchecked cut, unchanged.
    function expNegWadReference(uint256 x) public pure returns (uint256) {
        if (x >= 42e18) return 0;
        uint256 k = x / LN2_WAD;
        uint256 r = x - k * LN2_WAD;
        uint256 term = WAD;
        uint256 pos = WAD;
        uint256 neg;
        for (uint256 n = 1; n <= EXP_TERMS; ++n) {
            term = term * r / (n * WAD);
            if (n % 2 == 1) neg += term;
            else pos += term;
        }
        return (pos - neg) >> k;
    }

    /// @notice Both results for each input and the gas of one evaluation of each (gasleft around the
    ///         call, call overhead included on both sides alike).
    function compare(uint256[] calldata xs)
        external
        view
        returns (uint256[] memory current, uint256[] memory checked, uint256 gasCurrent, uint256 gasChecked)
    {
        current = new uint256[](xs.length);
        checked = new uint256[](xs.length);
        for (uint256 i; i < xs.length; ++i) {
            uint256 g = gasleft();
            current[i] = this.expNegWad(xs[i]);
            gasCurrent += g - gasleft();
            g = gasleft();
            checked[i] = this.expNegWadReference(xs[i]);
            gasChecked += g - gasleft();
        }
    }
}
