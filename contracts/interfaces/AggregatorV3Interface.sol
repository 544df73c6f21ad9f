// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @notice The Chainlink price-feed read interface that vPerp's oracle adapter consumes.
interface AggregatorV3Interface {
    function decimals() external view returns (uint8);
    function description() external view returns (string memory);
    function version() external view returns (uint256);
    /// @notice A past round's data (the order router reads the first round after an order's commit).
    function getRoundData(uint80 roundId)
        external
        view
        returns (uint80, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound);
    function latestRoundData()
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound);
}
