// SPDX-License-Identifier: BUSL-1.1
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IErrors} from "./IErrors.sol";

/// @title IVault
/// @notice Custody of all real money in vPerp and the ledger of who owns it: trader margin per
///         account `(owner, subaccount)`, the liquidity pool's balance (the counterparty of every
///         trader) and the insurance fund. Amounts in token units at the edges (`deposit`,
///         `withdraw`); everything internal is WAD (18 decimals).
interface IVault is IErrors {
    // ------------------------------------------------------------------ errors

    /// @notice An amount of zero was given where a positive amount is required.
    error ZeroAmount();
    /// @notice `caller` is neither `owner` nor an operator `owner` approved.
    error NotOwnerOrOperator(address caller, address owner);
    /// @notice The action would leave the account with negative free collateral.
    error InsufficientFreeCollateral(address owner, uint32 subaccount, int256 freeCollateral);
    /// @notice The action would take the account's settled collateral below zero.
    error InsufficientCollateral(address owner, uint32 subaccount, int256 collateral, uint256 amountWad);
    /// @notice The token moved a different amount than asked (fee-on-transfer or rebasing collateral).
    error TransferAmountMismatch(uint256 expected, uint256 received);
    /// @notice The collateral token has more than 18 decimals.
    error UnsupportedDecimals(uint8 decimals);
    /// @notice `transferMargin` from a sub-account to itself.
    error SameSubaccount(uint32 subaccount);
    /// @notice A privileged ledger call came from an address that is not the named module.
    error UnauthorizedModule(address caller);
    /// @notice A one-time wiring was already done.
    error ModuleAlreadySet(address module);
    /// @notice An isolated sub-account already holds a position in another market.
    error IsolatedSubaccountInUse(address owner, uint32 subaccount, uint32 heldMarketId, uint32 marketId);
    /// @notice An amount does not fit the ledger's 128-bit slots.
    error AmountTooLarge(uint256 amount);
    /// @notice Pause level outside 0..3.
    error InvalidPauseLevel(uint8 level);
    /// @notice Caller is neither the guardian nor the owner.
    error NotGuardian(address caller);
    /// @notice A ledger movement from a module does not sum to zero.
    error UnbalancedSettlement(int256 collateralDelta, int256 poolDelta, int256 insuranceDelta);
    /// @notice The pool asked for more cash than its balance holds.
    error InsufficientPoolCash(int256 poolBalance, uint256 amountWad);
    /// @notice `resolveBadDebt` on an account that still holds positions or whose collateral is not negative.
    error NoBadDebt(address owner, uint32 subaccount, int256 collateral, uint256 openMarkets);
    /// @notice The insurance fund holds less than a bounty asks for.
    error InsufficientInsurance(uint256 insuranceFund, uint256 amount);
    /// @notice A trade would give the account a position in more than `maxOpenMarkets` markets.
    error TooManyOpenMarkets(address owner, uint32 subaccount, uint256 maxOpenMarkets);
    /// @notice A trade asked `builder` for `feeRate` while `owner` approved it for at most `approved`.
    error BuilderFeeNotApproved(address owner, address builder, uint256 feeRate, uint256 approved);
    /// @notice `claimBuilderFees` with less than one token unit accrued (`balanceWad` stays).
    error NoBuilderFees(address builder, uint256 balanceWad);

    // ------------------------------------------------------------------ events

    /// @notice `amount` token units (`amountWad` internal) credited to `(owner, subaccount)` by `caller`.
    event Deposit(address indexed caller, address indexed owner, uint32 indexed subaccount, uint256 amount, uint256 amountWad);
    /// @notice `amount` token units (`amountWad` internal) paid out of `(owner, subaccount)` to `owner`.
    event Withdraw(address indexed caller, address indexed owner, uint32 indexed subaccount, uint256 amount, uint256 amountWad);
    /// @notice Margin moved between two sub-accounts of one owner.
    event MarginTransferred(address indexed caller, address indexed owner, uint32 fromSubaccount, uint32 toSubaccount, uint256 amountWad);
    /// @notice `owner` approved or revoked `operator`.
    event OperatorSet(address indexed owner, address indexed operator, bool approved);
    /// @notice The pause level changed.
    event PauseLevelSet(address indexed by, uint8 level);
    /// @notice The guardian changed.
    event GuardianSet(address indexed guardian);
    /// @notice A module (clearing house, liquidation engine, liquidity pool) was wired in, once.
    event ModuleSet(bytes32 indexed name, address module);
    /// @notice Liquidation costs taken from `(owner, subaccount)`: `keeperReward` credited to the
    ///         keeper's cross account, `penalty` to the insurance fund.
    event LiquidationCharged(
        address indexed owner, uint32 indexed subaccount, address indexed keeper, uint256 keeperReward, uint256 penalty
    );
    /// @notice An account with no position left ended with negative collateral `amount`: the insurance
    ///         fund paid `fromInsurance`, the liquidity pool `fromPool`; the account is reset to zero.
    event BadDebt(address indexed owner, uint32 indexed subaccount, uint256 amount, uint256 fromInsurance, uint256 fromPool);
    /// @notice Tokens credited to the liquidity pool's balance by `from` (seed or donation).
    event PoolFunded(address indexed from, uint256 amount, uint256 amountWad);
    /// @notice Tokens credited to the insurance fund by `from`.
    event InsuranceFunded(address indexed from, uint256 amount, uint256 amountWad);
    /// @notice The insurance fund paid `amount` to `keeper`'s cross account for kicking an account that
    ///         could pay it nothing (under water after the worst fill).
    event KeeperBounty(address indexed keeper, uint256 amount);
    /// @notice The liquidation engine's estimate of the bad debt `(owner, subaccount)` will leave changed to
    ///         `shortfall`; `total` is the sum over all accounts (what the pool's NAV sets aside beyond
    ///         the insurance fund).
    event ShortfallRecorded(address indexed owner, uint32 indexed subaccount, uint256 shortfall, uint256 total);
    /// @notice `owner` approved `builder` to charge its trades at most `maxFeeRate` [wad of |quote|]; 0 revokes.
    event BuilderFeeApproved(address indexed owner, address indexed builder, uint256 maxFeeRate);
    /// @notice A trade of `(owner, subaccount)` paid `amountWad` of builder fee to `builder`'s balance.
    event BuilderFeePaid(address indexed owner, uint32 indexed subaccount, address indexed builder, uint256 amountWad);
    /// @notice `builder` claimed `amount` token units (`amountWad`) of its accrued fees, paid to `to`.
    event BuilderFeesClaimed(address indexed builder, address indexed to, uint256 amount, uint256 amountWad);

    // ------------------------------------------------------------------ user actions

    /// @notice Deposit `amount` token units into the caller's sub-account `subaccount`.
    /// @dev Credits the balance delta the vault observed; reverts if it differs from `amount`.
    function deposit(uint32 subaccount, uint256 amount) external;

    /// @notice Deposit `amount` token units from the caller into `(owner, subaccount)`.
    function depositFor(address owner, uint32 subaccount, uint256 amount) external;

    /// @notice Withdraw `amount` token units from `(msg.sender, subaccount)` to `msg.sender`;
    ///         `amount = type(uint256).max` withdraws everything free: floor(min(freeCollateral, collateral)
    ///         / 10^(18 - decimals)) token units, computed at execution (`PerpReader.withdrawable` says how much
    ///         beforehand). Less than one token unit of WAD stays in the account; the `Withdraw` event carries
    ///         the amount actually paid.
    /// @dev Operators may not withdraw: funds only ever leave to the owner. Must leave free
    ///      collateral >= 0 (initial margin, unrealized profit excluded). Open at every pause level.
    ///      The max case reverts `InsufficientFreeCollateral(owner, subaccount, min(free, collateral))` when
    ///      that minimum is negative and `ZeroAmount` when it is below one token unit.
    function withdraw(uint32 subaccount, uint256 amount) external;

    /// @notice Withdraw on behalf of `owner` (caller must be owner or operator); tokens go to `owner`.
    ///         `type(uint256).max` withdraws everything free, as in `withdraw`.
    function withdrawFor(address owner, uint32 subaccount, uint256 amount) external;

    /// @notice Move `amountWad` of margin between two of the caller's sub-accounts.
    function transferMargin(uint32 fromSub, uint32 toSub, uint256 amountWad) external;

    /// @notice `transferMargin` for `owner` by the owner or an approved operator.
    function transferMarginFor(address owner, uint32 fromSub, uint32 toSub, uint256 amountWad) external;

    /// @notice Approve or revoke `operator` to trade and move margin for all of the caller's accounts.
    function setOperator(address operator, bool approved) external;

    /// @notice Approve `builder` (a front end, a bot) to attach a fee of at most `maxFeeRate` [wad of the
    ///         trade's |quote|] to the caller's trades, all sub-accounts; 0 revokes. At most
    ///         `MAX_BUILDER_FEE_RATE` (10 bps, `ParameterOutOfBounds("maxBuilderFeeRate", v)`).
    /// @dev The fee is paid only on trades the owner itself sends through `ClearingHouse.openPositionWithBuilder`
    ///      naming `builder` and a rate; the approval is the cap, never a charge on its own.
    function approveBuilderFee(address builder, uint256 maxFeeRate) external;

    /// @notice Pay the caller's accrued builder fees to `to`: floor(balance / 10^(18 - decimals)) token units;
    ///         the WAD rest stays. Open at every pause level, as withdrawals are.
    /// @return amount token units paid
    function claimBuilderFees(address to) external returns (uint256 amount);

    /// @notice The most `builder` may charge `owner`'s trades [wad of |quote|] (0: not approved).
    function builderFeeApproval(address owner, address builder) external view returns (uint256);

    /// @notice Builder fees accrued to `builder` and not yet claimed, WAD.
    function builderFees(address builder) external view returns (uint256);

    // ------------------------------------------------------------------ views

    /// @notice Settled collateral of an account, WAD (may be negative only transiently, before bad debt settles).
    function collateral(address owner, uint32 subaccount) external view returns (int256);

    /// @notice collateral + unrealized PnL at the index - pending funding, WAD.
    function accountValue(address owner, uint32 subaccount) external view returns (int256);

    /// @notice min(collateral - pendingFunding, accountValue) - initial requirement, WAD.
    function freeCollateral(address owner, uint32 subaccount) external view returns (int256);

    /// @notice Initial and maintenance margin requirements at the index, WAD (rounded up).
    function marginRequirements(address owner, uint32 subaccount) external view returns (uint256 initial, uint256 maintenance);

    /// @notice True iff accountValue < maintenance requirement.
    function isLiquidatable(address owner, uint32 subaccount) external view returns (bool);

    /// @notice Insurance fund balance, WAD.
    function insuranceFund() external view returns (uint256);

    /// @notice The liquidity pool's settled balance in the vault, WAD (the traders' counterparty).
    function poolBalance() external view returns (int256);

    /// @notice Bitmap of the markets `(owner, subaccount)` holds a position in (bit `marketId - 1`).
    function openMarkets(address owner, uint32 subaccount) external view returns (uint256);

    /// @notice Whether `operator` may act for `owner`.
    function isOperator(address owner, address operator) external view returns (bool);

    /// @notice The current pause level (0 none, 1 no new risk, 2 no trading, 3 withdrawals only).
    function pauseLevel() external view returns (uint8);

    /// @notice Who may raise the pause level (never lower it) besides the owner.
    function guardian() external view returns (address);

    /// @notice The collateral token every balance is kept in (fixed at construction).
    function collateralToken() external view returns (IERC20);

    /// @notice 10^(18 - the token's decimals): token units -> WAD.
    function tokenScale() external view returns (uint256);

    /// @notice `amount` token units in WAD (exact).
    function toWad(uint256 amount) external view returns (uint256);

    /// @notice The modules wired to the ledger (set once by the owner).
    function clearingHouse() external view returns (address);
    function liquidationEngine() external view returns (address);
    function liquidityPool() external view returns (address);

    /// @notice Most markets one account may hold positions in at once (`TooManyOpenMarkets`).
    function MAX_OPEN_MARKETS() external view returns (uint256);

    /// @notice The highest builder fee rate an account may approve [wad of notional].
    function MAX_BUILDER_FEE_RATE() external view returns (uint256);

    // ------------------------------------------------------------------ module ledger

    /// @notice Result of a ledger settlement, returned to the module so it can run its checks.
    struct AccountState {
        int256 collateral; // [wad] settled collateral after the settlement
        uint256 openMarkets; // bitmap after the settlement
        int256 poolBalance; // [wad] pool balance after the settlement
        uint8 pauseLevel;
    }

    /// @notice All of an account's health figures in one call [wad]: the four margin views together.
    function health(address owner, uint32 subaccount)
        external
        view
        returns (int256 accountValue, int256 freeCollateral, uint256 initial, uint256 maintenance);

    /// @notice Credit `amount` token units to the liquidity pool's balance (the pool's deposits; otherwise a donation).
    function fundPool(uint256 amount) external;

    /// @notice Liquidity-pool only: credit `amount` token units to the pool's balance that the pool has just moved
    ///         from a depositor straight into the Vault (it checks the Vault received exactly `amount`): an LP
    ///         deposit without the pool holding, approving and re-sending the tokens. Emits `PoolFunded`.
    function creditPoolDeposit(uint256 amount) external;

    /// @notice Credit `amount` token units to the insurance fund.
    function fundInsurance(uint256 amount) external;

    /// @notice Liquidity-pool only: pay `amount` token units of the pool's balance to `to` (LP withdrawals).
    function withdrawPool(uint256 amount, address to) external;

    /// @notice Liquidation-engine only, the costs of a kick or a redo in one call: move `keeperReward` from
    ///         `(owner, subaccount)` to the keeper's cross account and `penalty` to the insurance fund, then pay
    ///         `bounty` from the insurance fund to the keeper's cross account (the bounty for kicking an account that
    ///         can pay its keeper nothing; reverts `InsufficientInsurance` beyond the fund), then record `shortfall`
    ///         as the account's bad-debt estimate (as `recordShortfall`). Reverts `Paused` from pause level 2 (no
    ///         trading). The engine caps the reward and the penalty at what the account can pay after the worst
    ///         fill its auctions allow, so they never create bad debt at an unchanged index. Emits
    ///         `LiquidationCharged`, then `KeeperBounty` when a bounty is paid, then `ShortfallRecorded` when the
    ///         estimate changes.
    function chargeLiquidation(
        address owner,
        uint32 subaccount,
        address keeper,
        uint256 keeperReward,
        uint256 penalty,
        uint256 bounty,
        uint256 shortfall
    ) external;

    /// @notice Liquidation-engine only: record the engine's estimate of the bad debt the account's
    ///         auctions will leave (0 when its equity covers the worst fill). Lowered one for one by any
    ///         collateral credited to the account (deposit, margin transfer), cleared when its bad debt
    ///         is resolved. An unchanged estimate writes and emits nothing.
    function recordShortfall(address owner, uint32 subaccount, uint256 shortfall) external;

    /// @notice Sum of the recorded shortfall estimates over all accounts in liquidation, WAD. The pool's
    ///         NAV sets aside the part the insurance fund cannot cover, so LP flows are priced as if the
    ///         coming bad debt were already paid.
    function pendingBadDebt() external view returns (uint256);

    /// @notice The recorded shortfall estimate of one account, WAD.
    function shortfallOf(address owner, uint32 subaccount) external view returns (uint256);

    /// @notice What the liquidation engine reads in one call [wad]: account value, the maintenance
    ///         requirement of the free parts (what `kick` tests), and the notional and maintenance
    ///         requirement of the parts in auction.
    function liquidationState(address owner, uint32 subaccount)
        external
        view
        returns (int256 value, uint256 maintenance, uint256 auctionedNotional, uint256 auctionedMaintenance);

    /// @notice Loss waterfall, permissionless: an account with no open position and negative collateral
    ///         is reset to zero, the debt paid by the insurance fund first and the liquidity pool for the rest.
    /// @return fromInsurance [wad] paid by the insurance fund
    /// @return fromPool [wad] paid by the pool
    function resolveBadDebt(address owner, uint32 subaccount) external returns (uint256 fromInsurance, uint256 fromPool);

    /// @notice `resolveBadDebt` that does not revert when there is none, permissionless like it: when the account
    ///         holds no position and its collateral is negative, the loss waterfall (its `BadDebt` event) and
    ///         `resolved` true; otherwise nothing changes and `shortfall` is the account's estimate (`shortfallOf`).
    ///         The liquidation engine's step after a fill or a backstop: one call for what it asked in two or three
    ///         (open markets, then collateral or estimate, then the waterfall).
    function tryResolveBadDebt(address owner, uint32 subaccount) external returns (bool resolved, uint256 shortfall);

    /// @notice Clearing-house only: apply a trade's ledger movements to `(owner, subaccount)` and
    ///         record whether the account holds a position in `marketId` afterwards.
    /// @dev `collateralDelta + poolDelta + insuranceDelta` must be zero: money only moves.
    function settleTrade(
        address owner,
        uint32 subaccount,
        uint32 marketId,
        bool holdsPosition,
        int256 collateralDelta,
        int256 poolDelta,
        uint256 insuranceDelta
    ) external returns (AccountState memory);

    /// @notice Clearing-house only, inside a trade: move `amountWad` from `(owner, subaccount)`'s collateral to
    ///         `builder`'s fee balance. Reverts `BuilderFeeNotApproved` when `feeRate` exceeds `owner`'s
    ///         approval of `builder`, `InsufficientCollateral` when the collateral would go negative. The
    ///         clearing house then checks the account after the fee: maintenance
    ///         (`IClearingHouse.BuilderFeeBelowMaintenance`), and initial margin for an increase.
    /// @return newCollateral [wad] the account's settled collateral after the fee
    function chargeBuilderFee(address owner, uint32 subaccount, address builder, uint256 feeRate, uint256 amountWad)
        external
        returns (int256 newCollateral);
}
