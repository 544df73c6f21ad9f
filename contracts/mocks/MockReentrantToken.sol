// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @notice Test-only token that, once armed, calls `target` with `data` in the middle of a transfer
///         (the shape of an ERC-777 hook) and records whether that inner call succeeded.
contract MockReentrantToken is ERC20 {
    address public target;
    bytes public data;
    bool public armed;
    bool public lastCallSucceeded;
    bytes public lastRevertData;

    constructor() ERC20("Reentrant Token", "REE") {}

    function decimals() public pure override returns (uint8) {
        return 6;
    }

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function arm(address target_, bytes calldata data_) external {
        target = target_;
        data = data_;
        armed = true;
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        if (armed && from != address(0) && to != address(0)) {
            armed = false;
            (bool ok, bytes memory ret) = target.call(data);
            lastCallSucceeded = ok;
            lastRevertData = ret;
        }
    }
}
