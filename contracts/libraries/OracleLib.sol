// SPDX-License-Identifier: BUSL-1.1
pragma solidity 0.8.28;

import {AggregatorV3Interface} from "../interfaces/AggregatorV3Interface.sol";

/// @title OracleLib
/// @notice Reads a Chainlink-compatible feed and returns a validated WAD price.
/// @dev Rejects answers that are not positive and answers older than the feed's heartbeat; scales
///      the feed's decimals to 18 exactly (feeds with more than 18 decimals are refused at listing).
///      There is no "last good price" fallback: a stale index stops every action that needs it,
///      which is the only choice that cannot be gamed (docs/design.md#accounts-and-margin says what stays open).
library OracleLib {
    /// @notice The feed answered `answer`, which is not a positive price.
    error InvalidOraclePrice(address feed, int256 answer);
    /// @notice The feed's last update at `updatedAt` is older than `heartbeat` seconds.
    error StaleOracle(address feed, uint256 updatedAt, uint256 heartbeat);
    /// @notice The feed has more than 18 decimals.
    error UnsupportedOracleDecimals(address feed, uint8 decimals);

    /// @notice Validated price of `feed` in WAD and the time of its round (`updatedAt`, as the feed reports
    ///         it): the moment from which the feed has reported this price.
    /// @param scale 10^(18 - feed decimals), computed once at listing by `scaleOf`.
    function readRound(address feed, uint256 heartbeat, uint256 scale)
        internal
        view
        returns (uint256 price, uint256 updatedAt)
    {
        int256 answer;
        (, answer,, updatedAt,) = AggregatorV3Interface(feed).latestRoundData();
        if (answer <= 0) revert InvalidOraclePrice(feed, answer);
        // updatedAt in the future (clock skew on a test chain) counts as fresh.
        if (updatedAt + heartbeat < block.timestamp) revert StaleOracle(feed, updatedAt, heartbeat);
        // Cast: answer > 0 was checked above.
        price = uint256(answer) * scale;
    }

    /// @notice `readRound` that never reverts on what a feed answers: `ok` false (and zeros) when the feed
    ///         reverts, answers a non-positive price or one of 2^128 wad or more (no market can hold it), or is
    ///         stale. For views that must answer whatever the feed does. (A feed with no code, or one that
    ///         returns fewer bytes than the interface, still reverts: listing checks the feed's decimals.)
    function tryReadRound(address feed, uint256 heartbeat, uint256 scale)
        internal
        view
        returns (bool ok, uint256 price, uint256 updatedAt)
    {
        try AggregatorV3Interface(feed).latestRoundData() returns (uint80, int256 answer, uint256, uint256 at, uint80) {
            // Written so that no answer or time overflows: a time in the future counts as fresh, as in readRound.
            if (answer <= 0 || uint256(answer) > type(uint128).max / scale
                    || (at < block.timestamp && block.timestamp - at > heartbeat)) {
                return (false, 0, 0);
            }
            // Cast: answer > 0 was checked above.
            return (true, uint256(answer) * scale, at);
        } catch {
            return (false, 0, 0);
        }
    }

    /// @notice 10^(18 - decimals) for `feed`; reverts above 18 decimals.
    function scaleOf(address feed) internal view returns (uint256) {
        uint8 dec = AggregatorV3Interface(feed).decimals();
        if (dec > 18) revert UnsupportedOracleDecimals(feed, dec);
        return 10 ** (18 - dec);
    }
}
