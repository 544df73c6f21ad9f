// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @notice Test-only: runs several calls in one transaction (so in one block), as one sender.
contract BatchCaller {
    error CallFailed(uint256 index, bytes reason);

    function batch(address[] calldata targets, bytes[] calldata data) external returns (bytes[] memory results) {
        results = new bytes[](targets.length);
        for (uint256 i; i < targets.length; ++i) {
            (bool ok, bytes memory ret) = targets[i].call(data[i]);
            if (!ok) revert CallFailed(i, ret);
            results[i] = ret;
        }
    }

    function approve(address token, address spender, uint256 amount) external {
        (bool ok,) = token.call(abi.encodeWithSignature("approve(address,uint256)", spender, amount));
        require(ok);
    }
}
