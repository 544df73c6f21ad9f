// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @notice Test-only: an account that makes calls (with value) and refuses every ETH sent to it.
contract MockEtherRejecter {
    error CallFailed(bytes reason);

    function act(address target, bytes calldata data) external payable returns (bytes memory ret) {
        bool ok;
        (ok, ret) = target.call{value: msg.value}(data);
        if (!ok) revert CallFailed(ret);
    }
}
