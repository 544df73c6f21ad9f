// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @notice The Chainlink price-feed read interface that vPerp's oracle adapter consumes.
interface AggregatorV3Interface {
    function decimals() external view returns (uint8);
    function description() external view returns (string memory);
    function version() external view returns (uint256);
    function latestRoundData()
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound);
}
