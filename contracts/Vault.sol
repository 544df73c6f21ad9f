// SPDX-License-Identifier: BUSL-1.1
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {IVault} from "./interfaces/IVault.sol";
import {IClearingHouse} from "./interfaces/IClearingHouse.sol";
import {WadMath} from "./libraries/WadMath.sol";
import {Bounds} from "./libraries/Bounds.sol";
import {MarginMath} from "./libraries/MarginMath.sol";
import {PAUSE_NO_TRADING, PAUSE_WITHDRAW_ONLY} from "./interfaces/IErrors.sol";

/// @title Vault
/// @notice Holds every token in vPerp and keeps the ledger: account margin, the liquidity pool's
///         balance and the insurance fund. Internal accounting never reads `balanceOf` except to
///         measure what a deposit actually received.
/// @dev Positions live in the ClearingHouse; the Vault asks it for an account's margin summary
///      (one call, O(markets the account holds)). An account's collateral and its bitmap of open
///      markets share one storage slot, so a trade touches one Vault slot per account.
contract Vault is IVault, Ownable2Step, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using SafeCast for uint256;
    using SafeCast for int256;

    /// @dev One slot per account.
    struct Account {
        int128 collateral; // [wad] settled margin
        uint128 openMarkets; // bitmap, bit (marketId - 1) set while a position is open
    }

    bytes32 internal constant MODULE_CLEARING_HOUSE = "clearingHouse";
    bytes32 internal constant MODULE_LIQUIDATION = "liquidationEngine";
    bytes32 internal constant MODULE_POOL = "liquidityPool";
    /// @notice Most markets one account may hold positions in at once (`TooManyOpenMarkets`).
    /// @dev Each market an account holds costs every margin check on it (its trades, withdrawals, kicks)
    ///      about 8 cold reads and the funding math; 16 keeps the worst account near 530k gas a trade.
    uint256 public constant MAX_OPEN_MARKETS = 16;
    /// @notice Hard bound on a builder fee approval [wad of |quote|]: 10 bps.
    uint256 public constant MAX_BUILDER_FEE_RATE = 0.001e18;

    /// @notice The collateral token (one per deployment).
    IERC20 public immutable collateralToken;
    /// @notice 10^(18 - token decimals): token units -> WAD multiplier.
    uint256 public immutable tokenScale;

    mapping(address owner => mapping(uint32 subaccount => Account)) internal _accounts;
    /// @inheritdoc IVault
    mapping(address owner => mapping(address operator => bool)) public isOperator;

    int128 internal _poolBalance; // [wad] the liquidity pool's claim, counterparty of all traders
    uint128 internal _insuranceFund; // [wad]
    /// @dev The liquidation engine's bad-debt estimates, per account and summed [wad].
    mapping(address owner => mapping(uint32 subaccount => uint256)) internal _shortfall;
    uint256 internal _pendingBadDebt; // [wad]

    /// @notice The clearing house, the only module that may settle trades (wired once).
    /// @dev Shares a slot with `pauseLevel`: every trade's settlement reads both.
    address public clearingHouse;
    /// @inheritdoc IVault
    uint8 public pauseLevel;

    /// @notice May raise the pause level (the owner may set any level).
    address public guardian;
    /// @notice The liquidation engine, the only module that may charge liquidation costs (wired once).
    address public liquidationEngine;
    /// @notice The ERC-4626 liquidity pool that owns `poolBalance`, the only module that may withdraw it.
    address public liquidityPool;

    /// @inheritdoc IVault
    mapping(address owner => mapping(address builder => uint256)) public builderFeeApproval;
    /// @inheritdoc IVault
    mapping(address builder => uint256) public builderFees;

    constructor(IERC20 collateralToken_, address owner_) Ownable(owner_) {
        if (address(collateralToken_) == address(0)) revert ZeroAddress();
        uint8 dec = IERC20Metadata(address(collateralToken_)).decimals();
        if (dec > 18) revert UnsupportedDecimals(dec);
        collateralToken = collateralToken_;
        tokenScale = 10 ** (18 - dec);
        guardian = owner_;
        emit GuardianSet(owner_);
    }

    modifier onlyClearingHouse() {
        if (msg.sender != clearingHouse) revert UnauthorizedModule(msg.sender);
        _;
    }

    /// @dev For the module hooks, which make no outward call: refuse to run while a Vault entry point is
    ///      mid-call (a token hook re-entering through a module), without the cost of taking the lock.
    modifier notEntered() {
        if (_reentrancyGuardEntered()) revert ReentrancyGuardReentrantCall();
        _;
    }

    // ------------------------------------------------------------------ user actions

    /// @inheritdoc IVault
    function deposit(uint32 subaccount, uint256 amount) external nonReentrant {
        _deposit(msg.sender, subaccount, amount);
    }

    /// @inheritdoc IVault
    function depositFor(address owner, uint32 subaccount, uint256 amount) external nonReentrant {
        if (owner == address(0)) revert ZeroAddress();
        _deposit(owner, subaccount, amount);
    }

    /// @inheritdoc IVault
    function withdraw(uint32 subaccount, uint256 amount) external nonReentrant {
        _withdraw(msg.sender, subaccount, amount);
    }

    /// @inheritdoc IVault
    function withdrawFor(address owner, uint32 subaccount, uint256 amount) external nonReentrant {
        _checkActor(owner);
        _withdraw(owner, subaccount, amount);
    }

    /// @inheritdoc IVault
    function transferMargin(uint32 fromSub, uint32 toSub, uint256 amountWad) external nonReentrant {
        _transferMargin(msg.sender, fromSub, toSub, amountWad);
    }

    /// @inheritdoc IVault
    function transferMarginFor(address owner, uint32 fromSub, uint32 toSub, uint256 amountWad) external nonReentrant {
        _checkActor(owner);
        _transferMargin(owner, fromSub, toSub, amountWad);
    }

    /// @inheritdoc IVault
    function setOperator(address operator, bool approved) external nonReentrant {
        if (operator == address(0)) revert ZeroAddress();
        isOperator[msg.sender][operator] = approved;
        emit OperatorSet(msg.sender, operator, approved);
    }

    /// @inheritdoc IVault
    function approveBuilderFee(address builder, uint256 maxFeeRate) external nonReentrant {
        if (builder == address(0)) revert ZeroAddress();
        Bounds.check("maxBuilderFeeRate", maxFeeRate, 0, MAX_BUILDER_FEE_RATE);
        builderFeeApproval[msg.sender][builder] = maxFeeRate;
        emit BuilderFeeApproved(msg.sender, builder, maxFeeRate);
    }

    /// @inheritdoc IVault
    function claimBuilderFees(address to) external nonReentrant returns (uint256 amount) {
        if (to == address(0)) revert ZeroAddress();
        uint256 balance = builderFees[msg.sender];
        amount = balance / tokenScale;
        if (amount == 0) revert NoBuilderFees(msg.sender, balance);
        uint256 amountWad = amount * tokenScale;
        builderFees[msg.sender] = balance - amountWad;
        emit BuilderFeesClaimed(msg.sender, to, amount, amountWad);
        collateralToken.safeTransfer(to, amount);
    }

    /// @inheritdoc IVault
    function fundPool(uint256 amount) external nonReentrant {
        uint256 amountWad = _toWad(amount);
        _checkNotPaused(PAUSE_WITHDRAW_ONLY);
        _poolBalance = _addChecked(_poolBalance, amountWad, amount);
        _pull(amount);
        emit PoolFunded(msg.sender, amount, amountWad);
    }

    /// @inheritdoc IVault
    function creditPoolDeposit(uint256 amount) external nonReentrant {
        if (msg.sender != liquidityPool) revert UnauthorizedModule(msg.sender);
        uint256 amountWad = _toWad(amount);
        _checkNotPaused(PAUSE_WITHDRAW_ONLY);
        _poolBalance = _addChecked(_poolBalance, amountWad, amount);
        emit PoolFunded(msg.sender, amount, amountWad);
    }

    /// @inheritdoc IVault
    function fundInsurance(uint256 amount) external nonReentrant {
        uint256 amountWad = _toWad(amount);
        _checkNotPaused(PAUSE_WITHDRAW_ONLY);
        uint256 sum = uint256(_insuranceFund) + amountWad;
        if (sum > uint256(uint128(type(int128).max))) revert AmountTooLarge(amount);
        // Cast: sum <= int128.max (checked above).
        _insuranceFund = uint128(sum);
        _pull(amount);
        emit InsuranceFunded(msg.sender, amount, amountWad);
    }

    // ------------------------------------------------------------------ governance

    /// @notice Wire the clearing house in. Once only: the ledger's only writer cannot be swapped.
    function setClearingHouse(address clearingHouse_) external onlyOwner nonReentrant {
        if (clearingHouse_ == address(0)) revert ZeroAddress();
        if (clearingHouse != address(0)) revert ModuleAlreadySet(clearingHouse);
        clearingHouse = clearingHouse_;
        emit ModuleSet(MODULE_CLEARING_HOUSE, clearingHouse_);
    }

    /// @notice Wire the liquidation engine in. Once only.
    function setLiquidationEngine(address engine) external onlyOwner nonReentrant {
        if (engine == address(0)) revert ZeroAddress();
        if (liquidationEngine != address(0)) revert ModuleAlreadySet(liquidationEngine);
        liquidationEngine = engine;
        emit ModuleSet(MODULE_LIQUIDATION, engine);
    }

    /// @notice Wire the liquidity pool in. Once only.
    function setLiquidityPool(address pool) external onlyOwner nonReentrant {
        if (pool == address(0)) revert ZeroAddress();
        if (liquidityPool != address(0)) revert ModuleAlreadySet(liquidityPool);
        liquidityPool = pool;
        emit ModuleSet(MODULE_POOL, pool);
    }

    /// @notice Set the guardian (may be the zero address to have none).
    function setGuardian(address guardian_) external onlyOwner nonReentrant {
        guardian = guardian_;
        emit GuardianSet(guardian_);
    }

    /// @notice Set the pause level. The guardian may only raise it; the owner may set any level.
    function setPauseLevel(uint8 level) external nonReentrant {
        if (level > PAUSE_WITHDRAW_ONLY) revert InvalidPauseLevel(level);
        bool isOwner = msg.sender == owner();
        if (!isOwner && !(msg.sender == guardian && level >= pauseLevel)) revert NotGuardian(msg.sender);
        pauseLevel = level;
        emit PauseLevelSet(msg.sender, level);
    }

    // ------------------------------------------------------------------ module ledger

    /// @inheritdoc IVault
    function settleTrade(
        address owner,
        uint32 subaccount,
        uint32 marketId,
        bool holdsPosition,
        int256 collateralDelta,
        int256 poolDelta,
        uint256 insuranceDelta
    ) external onlyClearingHouse notEntered returns (AccountState memory state) {
        int256 insuranceDeltaSigned = insuranceDelta.toInt256();
        if (collateralDelta + poolDelta + insuranceDeltaSigned != 0) {
            revert UnbalancedSettlement(collateralDelta, poolDelta, insuranceDeltaSigned);
        }
        Account storage account = _accounts[owner][subaccount];
        uint256 bit = uint256(1) << (marketId - 1);
        uint256 markets = account.openMarkets;
        if (holdsPosition) {
            uint256 others = markets & ~bit;
            if (subaccount != 0 && others != 0) {
                revert IsolatedSubaccountInUse(owner, subaccount, _lowestMarket(others), marketId);
            }
            if (markets & bit == 0 && _countAtLeast(markets, MAX_OPEN_MARKETS)) {
                revert TooManyOpenMarkets(owner, subaccount, MAX_OPEN_MARKETS);
            }
            markets |= bit;
        } else {
            markets &= ~bit;
        }
        int256 newCollateral = account.collateral + collateralDelta;
        // Casts: openMarkets only has bits below 128 (the clearing house lists at most 128 markets);
        // collateral is range-checked by SafeCast.
        account.collateral = newCollateral.toInt128();
        account.openMarkets = uint128(markets);
        int256 newPool = _poolBalance + poolDelta;
        _poolBalance = newPool.toInt128();
        if (insuranceDelta != 0) _insuranceFund += insuranceDelta.toUint128();
        state = AccountState(newCollateral, markets, newPool, pauseLevel);
    }

    /// @inheritdoc IVault
    function chargeBuilderFee(address owner, uint32 subaccount, address builder, uint256 feeRate, uint256 amountWad)
        external
        onlyClearingHouse
        notEntered
        returns (int256 newCollateral)
    {
        uint256 approved = builderFeeApproval[owner][builder];
        if (feeRate > approved) revert BuilderFeeNotApproved(owner, builder, feeRate, approved);
        Account storage account = _accounts[owner][subaccount];
        int256 coll = account.collateral;
        newCollateral = coll - amountWad.toInt256();
        if (newCollateral < 0) revert InsufficientCollateral(owner, subaccount, coll, amountWad);
        // Cast: 0 <= newCollateral <= coll, an int128.
        account.collateral = int128(newCollateral);
        // The clearing house then checks the account after the fee against maintenance (and an increase
        // against initial) on the margin summary it computes anyway.
        builderFees[builder] += amountWad;
        emit BuilderFeePaid(owner, subaccount, builder, amountWad);
    }

    /// @inheritdoc IVault
    function withdrawPool(uint256 amount, address to) external nonReentrant {
        if (msg.sender != liquidityPool) revert UnauthorizedModule(msg.sender);
        if (to == address(0)) revert ZeroAddress();
        uint256 amountWad = _toWad(amount);
        int256 balance = _poolBalance;
        // Cast: amountWad <= int128.max (checked by _toWad).
        if (balance < int256(amountWad)) revert InsufficientPoolCash(balance, amountWad);
        _poolBalance = int128(balance - int256(amountWad));
        collateralToken.safeTransfer(to, amount);
    }

    /// @inheritdoc IVault
    function chargeLiquidation(
        address owner,
        uint32 subaccount,
        address keeper,
        uint256 keeperReward,
        uint256 penalty,
        uint256 bounty,
        uint256 shortfall
    ) external notEntered {
        if (msg.sender != liquidationEngine) revert UnauthorizedModule(msg.sender);
        // A kick's pause check, here rather than by a separate `pauseLevel` call from the engine (-1.2k gas a kick).
        _checkNotPaused(PAUSE_NO_TRADING);
        int128 reward = keeperReward.toInt256().toInt128();
        _accounts[owner][subaccount].collateral -= reward + penalty.toInt256().toInt128();
        if (penalty != 0 || bounty != 0) {
            // The bounty comes out of the fund after the penalty went in (the engine pays one only to a keeper the
            // account pays nothing, and then the penalty is nothing too). A redo's tip reads neither.
            uint256 insurance = _insuranceFund + penalty;
            if (bounty > insurance) revert InsufficientInsurance(insurance, bounty);
            _insuranceFund = (insurance - bounty).toUint128();
        }
        // Cast: bounty <= the insurance fund < 2^128, and the sum is range-checked.
        _accounts[keeper][0].collateral += (int256(reward) + int256(bounty)).toInt128();
        emit LiquidationCharged(owner, subaccount, keeper, keeperReward, penalty);
        if (bounty != 0) emit KeeperBounty(keeper, bounty);
        _setShortfall(owner, subaccount, shortfall);
    }

    /// @inheritdoc IVault
    function recordShortfall(address owner, uint32 subaccount, uint256 shortfall) external notEntered {
        if (msg.sender != liquidationEngine) revert UnauthorizedModule(msg.sender);
        _setShortfall(owner, subaccount, shortfall);
    }

    /// @inheritdoc IVault
    function resolveBadDebt(address owner, uint32 subaccount)
        external
        nonReentrant
        returns (uint256 fromInsurance, uint256 fromPool)
    {
        Account storage account = _accounts[owner][subaccount];
        int256 coll = account.collateral;
        if (coll >= 0 || account.openMarkets != 0) revert NoBadDebt(owner, subaccount, coll, account.openMarkets);
        return _resolveBadDebt(owner, subaccount, account, coll);
    }

    /// @inheritdoc IVault
    function tryResolveBadDebt(address owner, uint32 subaccount)
        external
        nonReentrant
        returns (bool resolved, uint256 shortfall)
    {
        // Permissionless as `resolveBadDebt`: it pays only a debt that exists, as that one does (no sender check, which
        // would cost every take a cold read of the engine's address).
        Account storage account = _accounts[owner][subaccount];
        int256 coll = account.collateral;
        if (coll < 0 && account.openMarkets == 0) {
            _resolveBadDebt(owner, subaccount, account, coll);
            return (true, 0);
        }
        return (false, _shortfall[owner][subaccount]);
    }

    /// @dev The loss waterfall of an account with no position and collateral `coll` < 0.
    function _resolveBadDebt(address owner, uint32 subaccount, Account storage account, int256 coll)
        internal
        returns (uint256 fromInsurance, uint256 fromPool)
    {
        // Cast: coll < 0 and >= int128.min.
        uint256 debt = uint256(-coll);
        uint256 insurance = _insuranceFund;
        fromInsurance = debt < insurance ? debt : insurance;
        fromPool = debt - fromInsurance;
        // Casts: both parts <= debt < 2^127.
        _insuranceFund = uint128(insurance - fromInsurance);
        _poolBalance -= int128(int256(fromPool));
        account.collateral = 0;
        // The estimate has become the real thing: the set-aside is released as the debt is paid.
        if (_shortfall[owner][subaccount] != 0) _setShortfall(owner, subaccount, 0);
        emit BadDebt(owner, subaccount, debt, fromInsurance, fromPool);
    }

    // ------------------------------------------------------------------ views

    /// @inheritdoc IVault
    function collateral(address owner, uint32 subaccount) external view returns (int256) {
        return _accounts[owner][subaccount].collateral;
    }

    /// @inheritdoc IVault
    function accountValue(address owner, uint32 subaccount) external view returns (int256 value) {
        (value,,,) = _health(owner, subaccount, _accounts[owner][subaccount]);
    }

    /// @inheritdoc IVault
    function freeCollateral(address owner, uint32 subaccount) external view returns (int256 free) {
        (, free,,) = _health(owner, subaccount, _accounts[owner][subaccount]);
    }

    /// @inheritdoc IVault
    function marginRequirements(address owner, uint32 subaccount)
        external
        view
        returns (uint256 initial, uint256 maintenance)
    {
        (,, initial, maintenance) = _health(owner, subaccount, _accounts[owner][subaccount]);
    }

    /// @inheritdoc IVault
    function isLiquidatable(address owner, uint32 subaccount) external view returns (bool) {
        (int256 value,,, uint256 maintenance) = _health(owner, subaccount, _accounts[owner][subaccount]);
        // Cast: maintenance is a sum of rounded-up notionals bounded by 2^128 * 2^64.
        return value < int256(maintenance);
    }

    /// @inheritdoc IVault
    function health(address owner, uint32 subaccount)
        external
        view
        returns (int256 value, int256 free, uint256 initial, uint256 maintenance)
    {
        return _health(owner, subaccount, _accounts[owner][subaccount]);
    }

    /// @inheritdoc IVault
    function liquidationState(address owner, uint32 subaccount)
        external
        view
        returns (int256 value, uint256 maintenance, uint256 auctionedNotional, uint256 auctionedMaintenance)
    {
        Account storage account = _accounts[owner][subaccount];
        value = account.collateral;
        uint256 markets = account.openMarkets;
        if (markets == 0) return (value, 0, 0, 0);
        IClearingHouse.MarginSummary memory s =
            IClearingHouse(clearingHouse).marginSummary(owner, subaccount, markets);
        return (MarginMath.accountValue(value, s), s.maintenance, s.auctionedNotional, s.auctionedMaintenance);
    }

    /// @inheritdoc IVault
    function pendingBadDebt() external view returns (uint256) {
        return _pendingBadDebt;
    }

    /// @inheritdoc IVault
    function shortfallOf(address owner, uint32 subaccount) external view returns (uint256) {
        return _shortfall[owner][subaccount];
    }

    /// @inheritdoc IVault
    function insuranceFund() external view returns (uint256) {
        return _insuranceFund;
    }

    /// @inheritdoc IVault
    function poolBalance() external view returns (int256) {
        return _poolBalance;
    }

    /// @inheritdoc IVault
    function openMarkets(address owner, uint32 subaccount) external view returns (uint256) {
        return _accounts[owner][subaccount].openMarkets;
    }

    /// @notice Convert token units to WAD (exact: multiplication by 10^(18 - decimals)).
    function toWad(uint256 amount) external view returns (uint256) {
        return amount * tokenScale;
    }

    // ------------------------------------------------------------------ internals

    function _deposit(address owner, uint32 subaccount, uint256 amount) internal {
        uint256 amountWad = _toWad(amount);
        _checkNotPaused(PAUSE_WITHDRAW_ONLY);
        Account storage account = _accounts[owner][subaccount];
        account.collateral = _addChecked(account.collateral, amountWad, amount);
        _creditShortfall(owner, subaccount, amountWad);
        emit Deposit(msg.sender, owner, subaccount, amount, amountWad);
        _pull(amount);
    }

    function _withdraw(address owner, uint32 subaccount, uint256 amount) internal {
        Account storage account = _accounts[owner][subaccount];
        // type(uint256).max asks for everything free (IVault.withdraw); any other amount is taken as given.
        if (amount == type(uint256).max) amount = _withdrawableUnits(owner, subaccount, account);
        uint256 amountWad = _toWad(amount);
        account.collateral -= amountWad.toInt256().toInt128();
        _checkWithdrawable(owner, subaccount, account, amountWad);
        emit Withdraw(msg.sender, owner, subaccount, amount, amountWad);
        collateralToken.safeTransfer(owner, amount);
    }

    /// @dev Whole token units of min(freeCollateral, collateral): the most a withdrawal may debit and still pass
    ///      `_checkWithdrawable` (a debit lowers both by the same WAD). Reverts when that minimum is negative;
    ///      returns 0 (then `_toWad` reverts `ZeroAmount`) when it is below one token unit.
    function _withdrawableUnits(address owner, uint32 subaccount, Account storage account)
        internal
        view
        returns (uint256)
    {
        int256 available = account.collateral;
        if (account.openMarkets != 0) {
            (, int256 free,,) = _health(owner, subaccount, account);
            if (free < available) available = free;
        }
        if (available < 0) revert InsufficientFreeCollateral(owner, subaccount, available);
        // Cast: available >= 0.
        return uint256(available) / tokenScale;
    }

    /// @dev After a debit: settled collateral must stay >= 0 and free collateral >= 0.
    function _checkWithdrawable(address owner, uint32 subaccount, Account storage account, uint256 amountWad)
        internal
        view
    {
        int256 coll = account.collateral;
        if (coll < 0) revert InsufficientCollateral(owner, subaccount, coll + int256(amountWad), amountWad);
        if (account.openMarkets != 0) {
            (, int256 free,,) = _health(owner, subaccount, account);
            if (free < 0) revert InsufficientFreeCollateral(owner, subaccount, free);
        }
    }

    /// @dev (accountValue, freeCollateral, initial, maintenance) of an account, WAD.
    function _health(address owner, uint32 subaccount, Account storage account)
        internal
        view
        returns (int256 value, int256 free, uint256 initial, uint256 maintenance)
    {
        int256 coll = account.collateral;
        uint256 markets = account.openMarkets;
        if (markets == 0) return (coll, coll, 0, 0);
        IClearingHouse.MarginSummary memory s =
            IClearingHouse(clearingHouse).marginSummary(owner, subaccount, markets);
        value = MarginMath.accountValue(coll, s);
        free = MarginMath.freeCollateral(coll, value, s);
        initial = s.initial;
        maintenance = s.maintenance;
    }

    /// @dev Pull `amount` from msg.sender after the ledger was credited; the balance delta must match.
    function _pull(uint256 amount) internal {
        uint256 before = collateralToken.balanceOf(address(this));
        collateralToken.safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = collateralToken.balanceOf(address(this)) - before;
        if (received != amount) revert TransferAmountMismatch(amount, received);
    }

    function _transferMargin(address owner, uint32 fromSub, uint32 toSub, uint256 amountWad) internal {
        if (amountWad == 0) revert ZeroAmount();
        if (amountWad > uint256(uint128(type(int128).max))) revert AmountTooLarge(amountWad);
        if (fromSub == toSub) revert SameSubaccount(fromSub);
        _checkNotPaused(PAUSE_WITHDRAW_ONLY);
        Account storage from = _accounts[owner][fromSub];
        // Cast: amountWad <= int128.max (checked above).
        from.collateral -= int128(int256(amountWad));
        _checkWithdrawable(owner, fromSub, from, amountWad);
        Account storage to = _accounts[owner][toSub];
        to.collateral = _addChecked(to.collateral, amountWad, amountWad);
        _creditShortfall(owner, toSub, amountWad);
        emit MarginTransferred(msg.sender, owner, fromSub, toSub, amountWad);
    }

    /// @dev `balance + amountWad` as int128, or the named `AmountTooLarge(amount)` if the slot would overflow.
    function _addChecked(int128 balance, uint256 amountWad, uint256 amount) internal pure returns (int128) {
        // Casts: amountWad <= int128.max was checked by the caller, so the int256 sum cannot overflow.
        int256 sum = int256(balance) + int256(amountWad);
        if (sum > type(int128).max) revert AmountTooLarge(amount);
        return int128(sum);
    }

    function _toWad(uint256 amount) internal view returns (uint256) {
        if (amount == 0) revert ZeroAmount();
        if (amount > uint256(uint128(type(int128).max)) / tokenScale) revert AmountTooLarge(amount);
        return amount * tokenScale;
    }

    function _checkActor(address owner) internal view {
        if (msg.sender != owner && !isOperator[owner][msg.sender]) revert NotOwnerOrOperator(msg.sender, owner);
    }

    function _checkNotPaused(uint8 blockingLevel) internal view {
        uint8 level = pauseLevel;
        if (level >= blockingLevel) revert Paused(level);
    }

    /// @dev Collateral credited to an account in liquidation pays its expected bad debt one for one (the
    ///      estimate is the worst fill's deficit, and the worst fill does not depend on the collateral), so
    ///      the set-aside shrinks at once: it cannot stand stale for a depositor to buy into and release.
    function _creditShortfall(address owner, uint32 subaccount, uint256 amountWad) internal {
        uint256 shortfall = _shortfall[owner][subaccount];
        if (shortfall != 0) _setShortfall(owner, subaccount, shortfall > amountWad ? shortfall - amountWad : 0);
    }

    /// @dev Unchanged, nothing is written or emitted (a kick of an account above water records 0 over 0: -4.3k gas).
    function _setShortfall(address owner, uint32 subaccount, uint256 shortfall) internal {
        uint256 old = _shortfall[owner][subaccount];
        if (shortfall == old) return;
        uint256 total = _pendingBadDebt - old + shortfall;
        _shortfall[owner][subaccount] = shortfall;
        _pendingBadDebt = total;
        emit ShortfallRecorded(owner, subaccount, shortfall, total);
    }

    /// @dev Whether `markets` has at least `n` bits set (stops counting at `n`).
    function _countAtLeast(uint256 markets, uint256 n) internal pure returns (bool) {
        for (uint256 i; i < n; ++i) {
            if (markets == 0) return false;
            markets &= markets - 1; // clear the lowest set bit
        }
        return true;
    }

    function _lowestMarket(uint256 markets) internal pure returns (uint32 id) {
        // Only reached on a revert path; a plain scan is clearer than bit tricks.
        while (markets & 1 == 0) {
            markets >>= 1;
            id++;
        }
        return id + 1;
    }
}
