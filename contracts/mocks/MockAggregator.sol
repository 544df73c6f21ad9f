// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AggregatorV3Interface} from "../interfaces/AggregatorV3Interface.sol";

/// @notice Test-only price feed following Chainlink's MockV3Aggregator conventions:
///         `updateAnswer(int256)` stamps the current block time; `updateRoundData` sets any time.
contract MockAggregator is AggregatorV3Interface {
    uint8 public immutable decimals;
    int256 public latestAnswer;
    uint256 public latestTimestamp;
    uint256 public latestRound;
    string public description;
    /// @dev Every round's answer and time, for `getRoundData`.
    mapping(uint256 round => int256) internal _answers;
    mapping(uint256 round => uint256) internal _timestamps;

    constructor(uint8 decimals_, int256 initialAnswer, string memory description_) {
        decimals = decimals_;
        description = description_;
        updateAnswer(initialAnswer);
    }

    function version() external pure returns (uint256) {
        return 0;
    }

    function updateAnswer(int256 answer) public {
        latestAnswer = answer;
        latestTimestamp = block.timestamp;
        latestRound++;
        _answers[latestRound] = answer;
        _timestamps[latestRound] = block.timestamp;
    }

    function updateRoundData(uint80 roundId, int256 answer, uint256 timestamp, uint256) external {
        latestRound = roundId;
        latestAnswer = answer;
        latestTimestamp = timestamp;
        _answers[roundId] = answer;
        _timestamps[roundId] = timestamp;
    }

    /// @notice As Chainlink's aggregators: a round never written reverts.
    function getRoundData(uint80 roundId) external view returns (uint80, int256, uint256, uint256, uint80) {
        uint256 at = _timestamps[roundId];
        require(at != 0, "No data present");
        return (roundId, _answers[roundId], at, at, roundId);
    }

    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80) {
        // Cast: rounds are counted from 1 and stay far below 2^80.
        uint80 round = uint80(latestRound);
        return (round, latestAnswer, latestTimestamp, latestTimestamp, round);
    }
}
