// SPDX-License-Identifier: BUSL-1.1
pragma solidity 0.8.28;

import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";

/// @title GovernanceTimelock
/// @notice OpenZeppelin's TimelockController as it is, so the project builds it (Ape compiles only
///         `contracts/`). Deployed with the shipped 48 h delay, the RiskGovernor as its only proposer and a
///         canceller, an open executor role (address(0)), and no admin once the roles are granted.
contract GovernanceTimelock is TimelockController {
    constructor(uint256 minDelay, address[] memory proposers, address[] memory executors, address admin)
        TimelockController(minDelay, proposers, executors, admin)
    {}
}
