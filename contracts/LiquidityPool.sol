// SPDX-License-Identifier: BUSL-1.1
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC4626} from "@openzeppelin/contracts/token/ERC20/extensions/ERC4626.sol";
import {IERC4626} from "@openzeppelin/contracts/interfaces/IERC4626.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {IVault} from "./interfaces/IVault.sol";
import {IClearingHouse} from "./interfaces/IClearingHouse.sol";
import {ILiquidityPool} from "./interfaces/ILiquidityPool.sol";
import {WadMath} from "./libraries/WadMath.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {Bounds} from "./libraries/Bounds.sol";
import {PAUSE_WITHDRAW_ONLY} from "./interfaces/IErrors.sol";

/// @title LiquidityPool
/// @notice One ERC-4626 pool backing every market: LPs deposit the collateral token once and are the
///         counterparty of all traders in all markets. Its assets are its cash in the Vault
///         (`Vault.poolBalance`: deposits, fees, realized PnL, funding, bad debt paid) minus what the
///         traders would realize closing every position against the vAMMs now, net of the funding they owe
///         (`ClearingHouse.tradersExitPnl`), minus the bad debt that liquidations in progress are expected
///         to leave beyond the insurance fund.
/// @dev Why the vAMM exit and not the index: a trade moves a market's exit value and its open notionals
///      by the same quote flow, so no trade sequence, in one transaction or over many blocks, moves the
///      share price except by the fees it pays; at the index, the slippage a trader pays counts as pool
///      profit although the trader gets it back unwinding (an LP could pump, redeem and unwind). The index
///      still guards LP flows: they wait while a market with open interest has a stale feed, a vAMM
///      outside its band, or an index gap the market has not accrued yet, and for a TWAP window after a
///      block found a gap (see `ClearingHouse.tradersExitPnl`), so keepers can record the bad debt first.
///      Deposits are priced before the bad-debt set-aside, withdrawals after it (`depositAssets`).
///      Inflation-attack resistance: OpenZeppelin's virtual shares with a 6-decimal offset. Withdrawals are
///      two-step (request, cooldown, window) and may not take the pool below
///      `reserveFactor x sum |net open interest| x vAMM price`.
contract LiquidityPool is ILiquidityPool, ERC4626, Ownable2Step, ReentrancyGuardTransient {
    using WadMath for uint256;

    uint256 internal constant MAX_RESERVE_FACTOR = 1e18;
    uint256 internal constant MAX_COOLDOWN = 30 days;
    uint256 internal constant MIN_WINDOW = 1 hours;
    uint256 internal constant MAX_WINDOW = 30 days;
    /// @notice Open interest in markets with an untrusted index that LP flows tolerate, as a share of the
    ///         pool's cash [wad]: 0.1 %.
    uint256 public constant SUSPENSION_TOLERANCE = 0.001e18;

    IVault public immutable vault;
    IClearingHouse public immutable clearingHouse;
    /// @notice 10^(18 - asset decimals).
    uint256 public immutable tokenScale;

    PoolParams internal _params;
    mapping(address owner => WithdrawRequest) internal _requests;

    /// @dev The traders' side as `ClearingHouse.tradersExitPnl` reports it.
    struct Valuation {
        int256 pnl; // [wad]
        uint256 exposure; // [wad]
        uint256 suspendedNotional; // [wad]
        uint32 suspendedMarket;
    }

    constructor(IERC20 asset_, IVault vault_, IClearingHouse clearingHouse_, address owner_)
        ERC4626(asset_)
        ERC20("vPerp Liquidity", "vLP")
        Ownable(owner_)
    {
        if (address(vault_) == address(0) || address(clearingHouse_) == address(0)) revert ZeroAddress();
        vault = vault_;
        clearingHouse = clearingHouse_;
        tokenScale = 10 ** (18 - IERC20Metadata(address(asset_)).decimals());
        _setParams(PoolParams({withdrawCooldown: 1 days, withdrawWindow: 2 days, reserveFactor: 0.2e18}));
    }

    // ------------------------------------------------------------------ governance

    /// @notice Set cooldown, window and reserve factor, within hard bounds.
    function setPoolParams(PoolParams calldata p) external onlyOwner {
        _setParams(p);
    }

    function _setParams(PoolParams memory p) internal {
        Bounds.check("withdrawCooldown", p.withdrawCooldown, 0, MAX_COOLDOWN);
        Bounds.check("withdrawWindow", p.withdrawWindow, MIN_WINDOW, MAX_WINDOW);
        Bounds.check("reserveFactor", p.reserveFactor, 0, MAX_RESERVE_FACTOR);
        _params = p;
        emit PoolParamsSet(p);
    }

    // ------------------------------------------------------------------ LP actions

    /// @inheritdoc ILiquidityPool
    function requestWithdraw(uint256 shares) external returns (uint64 unlockAt) {
        if (shares == 0) revert ZeroShares();
        uint256 balance = balanceOf(msg.sender);
        if (shares > balance) revert SharesExceedBalance(shares, balance);
        // Cast: timestamps fit 64 bits.
        unlockAt = uint64(block.timestamp + _params.withdrawCooldown);
        // Cast: shares <= balance <= total supply < 2^128 for any realistic token supply x 1e6.
        _requests[msg.sender] = WithdrawRequest({shares: uint128(shares), unlockAt: unlockAt});
        emit WithdrawRequested(msg.sender, shares, unlockAt);
    }

    /// @inheritdoc ERC4626
    function deposit(uint256 assets, address receiver)
        public
        override(ERC4626, IERC4626)
        nonReentrant
        returns (uint256 shares)
    {
        if (assets == 0) revert ZeroAssets();
        _checkDepositsOpen();
        // The Vault's pool balance, read once: nothing before `_deposit` moves it.
        Valuation memory v = _valuation();
        int256 cash = vault.poolBalance();
        _checkFlowsOpen(v, cash);
        shares = _previewDeposit(assets, _depositAssets(v, cash));
        // A deposit too small to buy one share would be a gift to the other LPs.
        if (shares == 0) revert ZeroShares();
        // The named reasons are checked; what is left is the ledger's size limit (ERC4626ExceededMaxDeposit). Flows
        // are open and `assets` buys a share, so `maxDeposit(receiver)` is the room itself (the room buys at least
        // as many shares): the full figure is computed only for the error.
        if (assets > _depositRoom(cash)) revert ERC4626ExceededMaxDeposit(receiver, assets, _maxDeposit(v, cash));
        _deposit(_msgSender(), receiver, assets, shares);
    }

    /// @inheritdoc ERC4626
    function mint(uint256 shares, address receiver) public override(ERC4626, IERC4626) nonReentrant returns (uint256) {
        if (shares == 0) revert ZeroShares();
        _checkDepositsOpen();
        // ERC-4626's mint with the Vault's pool balance read once: nothing before `_deposit` moves it.
        Valuation memory v = _valuation();
        int256 cash = vault.poolBalance();
        _checkFlowsOpen(v, cash);
        uint256 value = _depositAssets(v, cash);
        uint256 maxShares = _previewDeposit(_maxDeposit(v, cash), value); // maxMint(receiver)
        if (shares > maxShares) revert ERC4626ExceededMaxMint(receiver, shares, maxShares);
        uint256 assets = _previewMint(shares, value);
        _deposit(_msgSender(), receiver, assets, shares);
        return assets;
    }

    /// @inheritdoc ERC4626
    function withdraw(uint256 assets, address receiver, address owner) public override(ERC4626, IERC4626) nonReentrant returns (uint256) {
        if (assets == 0) revert ZeroAssets();
        // ERC-4626's withdraw with the Vault's figures read once: nothing before `_withdraw` moves them.
        Valuation memory v = _valuation();
        int256 cash = vault.poolBalance();
        uint256 uncovered = uncoveredBadDebt();
        _checkFlowsOpen(v, cash);
        uint256 shares = _toShares(assets, _totalAssets(v, cash, uncovered), Math.Rounding.Ceil); // previewWithdraw
        _checkWithdrawal(owner, shares, assets, v, cash, uncovered);
        uint256 maxAssets = _maxWithdraw(owner, v, cash, uncovered);
        if (assets > maxAssets) revert ERC4626ExceededMaxWithdraw(owner, assets, maxAssets);
        _withdraw(_msgSender(), receiver, owner, assets, shares);
        return shares;
    }

    /// @inheritdoc ERC4626
    function redeem(uint256 shares, address receiver, address owner) public override(ERC4626, IERC4626) nonReentrant returns (uint256) {
        if (shares == 0) revert ZeroShares();
        // ERC-4626's redeem with the Vault's figures read once: nothing before `_withdraw` moves them.
        Valuation memory v = _valuation();
        int256 cash = vault.poolBalance();
        uint256 uncovered = uncoveredBadDebt();
        _checkFlowsOpen(v, cash);
        uint256 assets = _toAssets(shares, _totalAssets(v, cash, uncovered), Math.Rounding.Floor); // previewRedeem
        _checkWithdrawal(owner, shares, assets, v, cash, uncovered);
        // Shares worth less than one token unit: burning them for nothing is refused, not silently done.
        if (assets == 0) revert ZeroAssets();
        uint256 maxShares = _maxRedeem(owner, v, cash, uncovered);
        if (shares > maxShares) revert ERC4626ExceededMaxRedeem(owner, shares, maxShares);
        _withdraw(_msgSender(), receiver, owner, assets, shares);
        return assets;
    }

    // ------------------------------------------------------------------ views

    /// @inheritdoc ILiquidityPool
    function navWad() public view returns (int256) {
        // Cast: the estimate is a sum of int128-bounded debts.
        return vault.poolBalance() - _valuation().pnl - int256(uncoveredBadDebt());
    }

    /// @inheritdoc ILiquidityPool
    function uncoveredBadDebt() public view returns (uint256) {
        uint256 pending = vault.pendingBadDebt();
        uint256 insurance = vault.insuranceFund();
        return pending > insurance ? pending - insurance : 0;
    }

    /// @inheritdoc ILiquidityPool
    function lpFlowsSuspended() public view returns (bool suspended, uint32 marketId) {
        Valuation memory v = _valuation();
        (suspended,) = _suspended(v, vault.poolBalance());
        marketId = suspended ? v.suspendedMarket : 0;
    }

    /// @notice NAV in token units, rounded down, floored at zero. Never reverts (EIP-4626). Redemptions and
    ///         withdrawals are priced on it; deposits and mints on `depositAssets` (see there).
    function totalAssets() public view override(ERC4626, IERC4626) returns (uint256) {
        int256 nav = navWad();
        // Cast: nav > 0 on this branch.
        return nav <= 0 ? 0 : uint256(nav) / tokenScale;
    }

    /// @inheritdoc ILiquidityPool
    function depositAssets() public view returns (uint256) {
        int256 value = vault.poolBalance() - _valuation().pnl;
        // Cast: value > 0 on this branch.
        return value <= 0 ? 0 : uint256(value) / tokenScale;
    }

    /// @inheritdoc ERC4626
    /// @dev Priced on `depositAssets`, rounded down (never more shares than the deposit buys).
    function previewDeposit(uint256 assets) public view override(ERC4626, IERC4626) returns (uint256) {
        return _previewDeposit(assets, depositAssets());
    }

    /// @inheritdoc ERC4626
    /// @dev Priced on `depositAssets`, rounded up (never fewer assets than the shares cost).
    function previewMint(uint256 shares) public view override(ERC4626, IERC4626) returns (uint256) {
        return _previewMint(shares, depositAssets());
    }

    /// @inheritdoc ILiquidityPool
    function reserveRequired() public view returns (uint256) {
        return _valuation().exposure.mulWadUp(_params.reserveFactor);
    }

    /// @inheritdoc ILiquidityPool
    function withdrawableAssets() public view returns (uint256) {
        return _withdrawable(_valuation(), vault.poolBalance(), uncoveredBadDebt());
    }

    /// @inheritdoc ERC4626
    /// @dev Exactly what `withdraw` accepts now: 0 while LP flows are suspended or `owner` has no matured
    ///      request; else the request's value, within the pool's withdrawable assets.
    function maxWithdraw(address owner) public view override(ERC4626, IERC4626) returns (uint256) {
        return _maxWithdraw(owner, _valuation(), vault.poolBalance(), uncoveredBadDebt());
    }

    /// @inheritdoc ERC4626
    /// @dev Exactly what `redeem` accepts now: as `maxWithdraw`, in shares, and 0 when those shares would
    ///      be worth less than one token unit (which `redeem` refuses with `ZeroAssets`).
    function maxRedeem(address owner) public view override(ERC4626, IERC4626) returns (uint256) {
        return _maxRedeem(owner, _valuation(), vault.poolBalance(), uncoveredBadDebt());
    }

    /// @inheritdoc ERC4626
    /// @dev 0 while the Vault is paused at level 3 (where `fundPool` reverts) or LP flows are suspended;
    ///      otherwise the room left in the pool's int128 ledger line, in token units (0 when that room
    ///      would buy no share).
    function maxDeposit(address) public view override(ERC4626, IERC4626) returns (uint256) {
        if (vault.pauseLevel() >= PAUSE_WITHDRAW_ONLY) return 0;
        return _maxDeposit(_valuation(), vault.poolBalance());
    }

    /// @inheritdoc ERC4626
    function maxMint(address receiver) public view override(ERC4626, IERC4626) returns (uint256) {
        return previewDeposit(maxDeposit(receiver));
    }

    /// @inheritdoc ILiquidityPool
    function withdrawRequest(address owner) external view returns (WithdrawRequest memory) {
        return _requests[owner];
    }

    /// @inheritdoc ILiquidityPool
    function poolParams() external view returns (PoolParams memory) {
        return _params;
    }

    // ------------------------------------------------------------------ internals

    /// @dev The named reason first (the ERC-4626 max check would only say "exceeded").
    function _checkDepositsOpen() internal view {
        uint8 level = vault.pauseLevel();
        if (level >= PAUSE_WITHDRAW_ONLY) revert Paused(level);
    }

    function _valuation() internal view returns (Valuation memory v) {
        (v.pnl, v.exposure, v.suspendedNotional, v.suspendedMarket) = clearingHouse.tradersExitPnl();
    }

    // The internals below take what they need of the Vault as arguments: `cash` is `vault.poolBalance()` and
    // `uncovered` is `uncoveredBadDebt()`, read once per call by the entry point or public view using them
    // (each is a warm external call; nothing between the reads and the Vault call that pays or credits
    // the pool moves them). `v` is `_valuation()`.

    /// @dev Whether `v`'s untrusted-index open interest exceeds the tolerance, and the tolerance [wad].
    function _suspended(Valuation memory v, int256 cash) internal pure returns (bool, uint256 tolerance) {
        // Cast: cash > 0 on this branch.
        tolerance = cash > 0 ? uint256(cash).mulWadDown(SUSPENSION_TOLERANCE) : 0;
        return (v.suspendedNotional > tolerance, tolerance);
    }

    /// @dev LP flows wait while an untrusted index carries open interest (see `LpFlowsSuspended`).
    function _checkFlowsOpen(Valuation memory v, int256 cash) internal pure {
        (bool suspended, uint256 tolerance) = _suspended(v, cash);
        if (suspended) revert LpFlowsSuspended(v.suspendedMarket, v.suspendedNotional, tolerance);
    }

    /// @dev `totalAssets()`.
    function _totalAssets(Valuation memory v, int256 cash, uint256 uncovered) internal view returns (uint256) {
        // Cast: the estimate is a sum of int128-bounded debts.
        int256 nav = cash - v.pnl - int256(uncovered);
        // Cast: nav > 0 on this branch.
        return nav <= 0 ? 0 : uint256(nav) / tokenScale;
    }

    /// @dev `depositAssets()`.
    function _depositAssets(Valuation memory v, int256 cash) internal view returns (uint256) {
        int256 value = cash - v.pnl;
        // Cast: value > 0 on this branch.
        return value <= 0 ? 0 : uint256(value) / tokenScale;
    }

    /// @dev ERC-4626's `_convertToShares` at total assets `total`.
    function _toShares(uint256 assets, uint256 total, Math.Rounding rounding) internal view returns (uint256) {
        return Math.mulDiv(assets, totalSupply() + 10 ** _decimalsOffset(), total + 1, rounding);
    }

    /// @dev ERC-4626's `_convertToAssets` at total assets `total`.
    function _toAssets(uint256 shares, uint256 total, Math.Rounding rounding) internal view returns (uint256) {
        return Math.mulDiv(shares, total + 1, totalSupply() + 10 ** _decimalsOffset(), rounding);
    }

    /// @dev `previewDeposit(assets)` with `depositAssets()` = `value`.
    function _previewDeposit(uint256 assets, uint256 value) internal view returns (uint256) {
        return _toShares(assets, value, Math.Rounding.Floor);
    }

    /// @dev `previewMint(shares)` with `depositAssets()` = `value`.
    function _previewMint(uint256 shares, uint256 value) internal view returns (uint256) {
        return _toAssets(shares, value, Math.Rounding.Ceil);
    }

    /// @dev `withdrawableAssets()`.
    function _withdrawable(Valuation memory v, int256 cash, uint256 uncovered) internal view returns (uint256) {
        // Casts: every term is int128-bounded.
        int256 free = cash - v.pnl - int256(uncovered) - int256(v.exposure.mulWadUp(_params.reserveFactor));
        int256 limit = free < cash ? free : cash; // never more cash than the Vault holds for the pool
        // Cast: limit > 0 on this branch.
        return limit <= 0 ? 0 : uint256(limit) / tokenScale;
    }

    /// @dev `maxWithdraw(owner)`.
    function _maxWithdraw(address owner, Valuation memory v, int256 cash, uint256 uncovered)
        internal
        view
        returns (uint256)
    {
        (bool suspended,) = _suspended(v, cash);
        if (suspended) return 0;
        uint256 byShares = _toAssets(_redeemable(owner), _totalAssets(v, cash, uncovered), Math.Rounding.Floor);
        uint256 pool = _withdrawable(v, cash, uncovered);
        return byShares < pool ? byShares : pool;
    }

    /// @dev `maxRedeem(owner)`.
    function _maxRedeem(address owner, Valuation memory v, int256 cash, uint256 uncovered)
        internal
        view
        returns (uint256)
    {
        (bool suspended,) = _suspended(v, cash);
        if (suspended) return 0;
        uint256 total = _totalAssets(v, cash, uncovered);
        uint256 byShares = _redeemable(owner);
        uint256 byPool = _toShares(_withdrawable(v, cash, uncovered), total, Math.Rounding.Floor);
        uint256 shares = byShares < byPool ? byShares : byPool;
        return shares != 0 && _toAssets(shares, total, Math.Rounding.Floor) == 0 ? 0 : shares;
    }

    /// @dev `maxDeposit(receiver)` once the Vault's pause level is known to allow deposits.
    function _maxDeposit(Valuation memory v, int256 cash) internal view returns (uint256) {
        (bool suspended,) = _suspended(v, cash);
        if (suspended) return 0;
        uint256 room = _depositRoom(cash);
        // Room that buys no share would be refused (ZeroShares): nothing can be deposited then.
        return room != 0 && _previewDeposit(room, _depositAssets(v, cash)) == 0 ? 0 : room;
    }

    /// @dev What the Vault's ledger can still take for the pool [token units]: its int128 bound on the pool's
    ///      balance and on one amount.
    function _depositRoom(int256 cash) internal view returns (uint256 room) {
        // Cast: cash <= int128.max, so the room is non-negative and below 2^128.
        room = uint256(int256(type(int128).max) - cash) / tokenScale;
        uint256 perCall = uint256(uint128(type(int128).max)) / tokenScale; // the Vault's per-amount bound
        if (perCall < room) room = perCall;
    }

    function _decimalsOffset() internal pure override returns (uint8) {
        return 6;
    }

    /// @dev Shares `owner` may redeem now: its request, inside its window, within its balance.
    function _redeemable(address owner) internal view returns (uint256) {
        WithdrawRequest memory r = _requests[owner];
        if (r.shares == 0 || block.timestamp < r.unlockAt || block.timestamp > uint256(r.unlockAt) + _params.withdrawWindow) {
            return 0;
        }
        uint256 balance = balanceOf(owner);
        return r.shares < balance ? r.shares : balance;
    }

    /// @dev Named reasons first (the ERC-4626 max checks that follow would only say "exceeded").
    function _checkWithdrawal(
        address owner,
        uint256 shares,
        uint256 assets,
        Valuation memory v,
        int256 cash,
        uint256 uncovered
    ) internal view {
        WithdrawRequest memory r = _requests[owner];
        if (r.shares == 0) revert NoWithdrawRequest(owner);
        if (block.timestamp < r.unlockAt) revert CooldownNotPassed(r.unlockAt, block.timestamp);
        uint256 expiry = uint256(r.unlockAt) + _params.withdrawWindow;
        if (block.timestamp > expiry) revert WithdrawWindowExpired(expiry, block.timestamp);
        if (shares > r.shares) revert ExceedsRequest(shares, r.shares);
        // Casts: every term is int128-bounded (assets by the request's shares' value).
        int256 after_ = cash - v.pnl - int256(uncovered) - int256(assets * tokenScale);
        uint256 reserve = v.exposure.mulWadUp(_params.reserveFactor);
        if (after_ < int256(reserve)) revert PoolReserveLocked(after_, reserve);
        if (int256(assets * tokenScale) > cash) revert InsufficientPoolCash(cash, assets * tokenScale);
    }

    /// @dev Shares moving away shrink the sender's request to its new balance: a request is for shares
    ///      held through the cooldown, so passing shares between addresses cannot keep a window open.
    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        if (from != address(0) && to != address(0)) {
            uint256 balance = balanceOf(from);
            // Cast: balance < request < 2^128 on this branch.
            if (_requests[from].shares > balance) _requests[from].shares = uint128(balance);
        }
    }

    /// @dev Deposit: the assets go from the depositor straight to the Vault (spending the depositor's allowance
    ///      to this pool, as ERC-4626 has it), checked to arrive in full, and the Vault credits the pool's balance;
    ///      then the shares are minted. Same order and events as ERC-4626's `_deposit`, without the tokens
    ///      passing through the pool (one transfer and one approval fewer).
    function _deposit(address caller, address receiver, uint256 assets, uint256 shares) internal override {
        IERC20 token = IERC20(asset());
        uint256 before = token.balanceOf(address(vault));
        SafeERC20.safeTransferFrom(token, caller, address(vault), assets);
        uint256 received = token.balanceOf(address(vault)) - before;
        if (received != assets) revert TransferAmountMismatch(assets, received);
        vault.creditPoolDeposit(assets);
        _mint(receiver, shares);
        emit Deposit(caller, receiver, assets, shares);
    }

    /// @dev Withdraw: shares burn here, the Vault pays the receiver out of the pool's balance.
    function _withdraw(address caller, address receiver, address owner, uint256 assets, uint256 shares)
        internal
        override
    {
        if (caller != owner) _spendAllowance(owner, caller, shares);
        // The request is consumed here, after ERC-4626's max checks (which read it) have passed.
        // Cast: shares <= maxRedeem <= request < 2^128.
        _requests[owner].shares -= uint128(shares);
        _burn(owner, shares);
        vault.withdrawPool(assets, receiver);
        emit Withdraw(caller, receiver, owner, assets, shares);
    }
}
