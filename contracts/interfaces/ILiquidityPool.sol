// SPDX-License-Identifier: BUSL-1.1
pragma solidity 0.8.28;

import {IERC4626} from "@openzeppelin/contracts/interfaces/IERC4626.sol";
import {IClearingHouse} from "./IClearingHouse.sol";
import {IErrors} from "./IErrors.sol";
import {IVault} from "./IVault.sol";

/// @title ILiquidityPool
/// @notice The ERC-4626 liquidity pool's additions: two-step withdrawals and the reserve rule (docs/pool.md).
interface ILiquidityPool is IERC4626, IErrors {
    struct PoolParams {
        uint32 withdrawCooldown; // [s] between `requestWithdraw` and the first moment it can execute
        uint32 withdrawWindow; // [s] how long after the cooldown the request stays valid
        uint64 reserveFactor; // [wad] assets kept >= reserveFactor x sum |net OI notional|
    }

    struct WithdrawRequest {
        uint128 shares; // shares still redeemable under this request
        uint64 unlockAt; // [s] first timestamp it can execute
    }

    /// @notice Zero shares where a positive amount is required, or a deposit worth less than one share.
    error ZeroShares();
    /// @notice A deposit's token moved `received` units into the Vault instead of `expected` (a fee-on-transfer
    ///         or rebasing collateral); nothing is credited or minted.
    error TransferAmountMismatch(uint256 expected, uint256 received);
    /// @notice Zero assets where a positive amount is required, or a redemption worth less than one
    ///         token unit.
    error ZeroAssets();
    /// @notice `requestWithdraw` for more shares than the caller holds.
    error SharesExceedBalance(uint256 shares, uint256 balance);
    /// @notice A withdrawal without a request.
    error NoWithdrawRequest(address owner);
    /// @notice A withdrawal before the request's cooldown ended.
    error CooldownNotPassed(uint256 unlockAt, uint256 timestamp);
    /// @notice A withdrawal after the request's window closed.
    error WithdrawWindowExpired(uint256 expiredAt, uint256 timestamp);
    /// @notice A withdrawal of more shares than requested.
    error ExceedsRequest(uint256 shares, uint256 requested);
    /// @notice The withdrawal would take the pool's assets below the reserve that backs open interest.
    error PoolReserveLocked(int256 assetsAfter, uint256 reserve);
    /// @notice The withdrawal asks for more than the pool's cash in the Vault.
    error InsufficientPoolCash(int256 poolBalance, uint256 amountWad);
    /// @notice LP deposits and withdrawals wait while markets whose index cannot be trusted now (a stale or
    ///         invalid feed, or a vAMM outside its band around the index after a gap) carry open interest of
    ///         `suspendedNotional` [wad], more than `tolerance` [wad]: accounts there may be heading for bad
    ///         debt that no keeper has been able to record yet. `marketId` is the lowest such market.
    error LpFlowsSuspended(uint32 marketId, uint256 suspendedNotional, uint256 tolerance);

    /// @notice `owner` asked to withdraw `shares`, executable from `unlockAt` for the window.
    event WithdrawRequested(address indexed owner, uint256 shares, uint64 unlockAt);
    /// @notice Pool parameters set.
    event PoolParamsSet(PoolParams params);

    /// @notice Start a withdrawal of `shares` (replaces any earlier request).
    /// @return unlockAt first timestamp at which `withdraw`/`redeem` may execute it
    function requestWithdraw(uint256 shares) external returns (uint64 unlockAt);

    /// @notice Whether LP deposits and withdrawals are suspended now, and by which market (see
    ///         `LpFlowsSuspended`); `max*` report 0 while they are.
    function lpFlowsSuspended() external view returns (bool suspended, uint32 marketId);

    /// @notice The part of the recorded bad-debt estimates the insurance fund cannot cover [wad]: what NAV
    ///         sets aside for liquidations in progress.
    function uncoveredBadDebt() external view returns (uint256);

    /// @notice Pool value [wad], may be negative (`totalAssets` floors it at zero): cash minus the traders' PnL
    ///         at vAMM exit net of funding, minus the uncovered bad-debt estimate.
    function navWad() external view returns (int256);

    /// @notice The assets a deposit or mint is priced on, in token units: NAV before the bad-debt
    ///         set-aside (cash - traders' exit PnL). The set-aside assumes the worst fill and is released
    ///         as auctions settle; a depositor pays as if none were coming, so it cannot buy shares cheap
    ///         ahead of the release, while a leaver is paid net of it. Never below `totalAssets`.
    function depositAssets() external view returns (uint256);

    /// @notice Assets the pool must keep [wad]: reserveFactor x the sum over markets of |net OI| x vAMM price.
    function reserveRequired() external view returns (uint256);

    /// @notice Assets LPs may withdraw now in total without breaching the reserve or the cash [token units].
    function withdrawableAssets() external view returns (uint256);

    /// @notice `owner`'s pending withdrawal request.
    function withdrawRequest(address owner) external view returns (WithdrawRequest memory);

    /// @notice The pool's parameters (cooldown, window, reserve factor).
    function poolParams() external view returns (PoolParams memory);

    /// @notice The Vault that holds the pool's cash, and the ClearingHouse whose traders it values.
    function vault() external view returns (IVault);
    function clearingHouse() external view returns (IClearingHouse);

    /// @notice 10^(18 - the asset's decimals): token units -> WAD.
    function tokenScale() external view returns (uint256);

    /// @notice LP flows wait while untrusted-index open interest exceeds this share of the pool's cash [wad].
    function SUSPENSION_TOLERANCE() external view returns (uint256);
}
