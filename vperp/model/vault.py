"""Mirror of Vault: the `VaultMirror` part of `Model`."""
from __future__ import annotations

from ..units import PAUSE_NO_TRADING, PAUSE_WITHDRAW_ONLY
from .base import INT128_MAX, MAX_BUILDER_FEE_RATE, MAX_OPEN_MARKETS, ModelRevert, UINT256_MAX
from .state import _atomic, Account
from .wad_math import _int128, _uint128, account_value, excess_over_maintenance


class VaultMirror:
    """The Vault part of `Model` (a mixin: every method runs on the one Model state)."""

    # ------------------------------------------------------------------ Vault actions

    @_atomic
    def fund_pool(self, amount: int) -> None:
        """Vault.fundPool (the liquidity pool's deposits and mints)."""
        amount_wad = self._to_wad(amount)
        self._check_not_paused(PAUSE_WITHDRAW_ONLY)
        self.pool_balance_wad = self._add_checked(self.pool_balance_wad, amount_wad, amount)
        self.token_balance += amount

    @_atomic
    def fund_insurance(self, amount: int) -> None:
        amount_wad = self._to_wad(amount)
        self._check_not_paused(PAUSE_WITHDRAW_ONLY)
        self.insurance_fund_wad = self._add_checked(self.insurance_fund_wad, amount_wad, amount)
        self.token_balance += amount

    @_atomic
    def deposit(self, owner, sub: int, amount: int, timestamp: int | None = None) -> int:
        """Vault.deposit (token units) to (owner, sub); returns the WAD credited. In order: the collateral
        is credited (AmountTooLarge past int128), the account's shortfall estimate lowered by the same
        WAD (floor 0; a ShortfallRecorded event when it was nonzero), the Deposit event, the token pull."""
        amount_wad = self._to_wad(amount)
        self._check_not_paused(PAUSE_WITHDRAW_ONLY)
        acct = self._account(owner, sub)
        acct.collateral = self._add_checked(acct.collateral, amount_wad, amount)
        self._credit_shortfall(owner, sub, amount_wad)
        self.token_balance += amount
        return amount_wad

    @_atomic
    def deposit_for(self, owner, sub: int, amount: int, timestamp: int | None = None) -> int:
        """Vault.depositFor: as `deposit`, to `owner`'s account (ZeroAddress for the zero address first)."""
        if self._is_zero_address(owner):
            raise ModelRevert("ZeroAddress")
        return self.deposit(owner, sub, amount, timestamp)

    @_atomic
    def withdraw(self, owner, sub: int, amount: int, timestamp: int) -> int:
        """Vault.withdraw (token units) at `timestamp`; returns the WAD debited. `amount = 2**256 - 1`
        withdraws everything free (Vault._withdrawableUnits): floor(min(free, collateral) / token scale)
        units, InsufficientFreeCollateral when that minimum is negative, ZeroAmount when below one unit."""
        if amount == UINT256_MAX:
            amount = self.withdrawable_units(owner, sub, timestamp)
        amount_wad = self._to_wad(amount)
        acct = self._account(owner, sub)
        acct.collateral = self._sub_int128(acct.collateral, amount_wad)
        self._check_withdrawable(owner, sub, acct, amount_wad, timestamp)
        self.token_balance -= amount
        return amount_wad

    @_atomic
    def approve_builder_fee(self, owner, builder, max_fee_rate: int) -> None:
        """Vault.approveBuilderFee by `owner`: ZeroAddress, then ParameterOutOfBounds past 10 bps."""
        if self._is_zero_address(builder):
            raise ModelRevert("ZeroAddress")
        if max_fee_rate > MAX_BUILDER_FEE_RATE:
            raise ModelRevert("ParameterOutOfBounds", "maxBuilderFeeRate", max_fee_rate)
        self.builder_approvals[(owner, builder)] = max_fee_rate

    def builder_fee_approval(self, owner, builder) -> int:
        return self.builder_approvals.get((owner, builder), 0)

    def builder_fees(self, builder) -> int:
        """Vault.builderFees: accrued, unclaimed [wad]."""
        return self.builder_fees_wad.get(builder, 0)

    @_atomic
    def claim_builder_fees(self, builder, to) -> tuple[int, int]:
        """Vault.claimBuilderFees by `builder`: (token units paid, WAD debited); the WAD rest stays. Open at
        every pause level."""
        if self._is_zero_address(to):
            raise ModelRevert("ZeroAddress")
        balance = self.builder_fees(builder)
        amount = balance // self.token_scale
        if amount == 0:
            raise ModelRevert("NoBuilderFees", builder, balance)
        self.builder_fees_wad[builder] = balance - amount * self.token_scale
        self.token_balance -= amount
        return amount, amount * self.token_scale

    def _charge_builder_fee(self, owner, sub: int, builder, fee_rate: int, amount_wad: int, timestamp: int) -> Account:
        """Vault.chargeBuilderFee (inside a trade: approval, collateral >= 0 after the fee), then the
        ClearingHouse's check on its margin summary: value after the fee >= maintenance (free and auctioned
        parts) when the account holds positions (an increase is checked at initial after this, in `_trade`)."""
        approved = self.builder_fee_approval(owner, builder)
        if fee_rate > approved:
            raise ModelRevert("BuilderFeeNotApproved", owner, builder, fee_rate, approved)
        acct = self._account(owner, sub)
        coll = acct.collateral
        if coll - amount_wad < 0:
            raise ModelRevert("InsufficientCollateral", owner, sub, coll, amount_wad)
        acct.collateral = coll - amount_wad
        if acct.open_markets:
            s = self._margin_summary(owner, sub, acct.open_markets, timestamp)
            excess = excess_over_maintenance(acct.collateral, s)
            if excess < 0:
                raise ModelRevert("BuilderFeeBelowMaintenance", owner, sub, excess)
        self.builder_fees_wad[builder] = self.builder_fees(builder) + amount_wad
        self.builder_fee_log.append((owner, sub, builder, amount_wad))
        return acct

    @_atomic
    def transfer_margin(self, owner, from_sub: int, to_sub: int, amount_wad: int, timestamp: int) -> int:
        """Vault.transferMargin (WAD) between two sub-accounts of `owner`; returns the WAD moved. Checks:
        ZeroAmount, AmountTooLarge (past int128), SameSubaccount, Paused; the source is debited and
        checked as a withdrawal; the destination credited (AmountTooLarge past int128) and its shortfall
        estimate lowered by the same WAD (floor 0; a ShortfallRecorded event when it was nonzero); then
        MarginTransferred."""
        if amount_wad == 0:
            raise ModelRevert("ZeroAmount")
        if amount_wad > INT128_MAX:
            raise ModelRevert("AmountTooLarge", amount_wad)
        if from_sub == to_sub:
            raise ModelRevert("SameSubaccount", from_sub)
        self._check_not_paused(PAUSE_WITHDRAW_ONLY)
        src = self._account(owner, from_sub)
        src.collateral = self._sub_int128(src.collateral, amount_wad)
        self._check_withdrawable(owner, from_sub, src, amount_wad, timestamp)
        dst = self._account(owner, to_sub)
        dst.collateral = self._add_checked(dst.collateral, amount_wad, amount_wad)
        self._credit_shortfall(owner, to_sub, amount_wad)
        return amount_wad

    def withdrawable_units(self, owner, sub: int, timestamp: int) -> int:
        """Vault._withdrawableUnits: whole token units of min(free, collateral); InsufficientFreeCollateral
        (with that minimum) when it is negative."""
        acct = self.accounts.get((owner, sub)) or Account()
        available = acct.collateral
        if acct.open_markets != 0:
            available = min(available, self._health(owner, sub, timestamp)[1])
        if available < 0:
            raise ModelRevert("InsufficientFreeCollateral", owner, sub, available)
        return available // self.token_scale

    def _check_withdrawable(self, owner, sub, acct: Account, amount_wad: int, timestamp: int) -> None:
        coll = acct.collateral
        if coll < 0:
            raise ModelRevert("InsufficientCollateral", owner, sub, coll + amount_wad, amount_wad)
        if acct.open_markets != 0:
            _, free, _, _ = self._health(owner, sub, timestamp)
            if free < 0:
                raise ModelRevert("InsufficientFreeCollateral", owner, sub, free)

    def _settle_trade(self, owner, sub: int, market_id: int, holds_position: bool, collateral_delta: int,
                      pool_delta: int, insurance_delta: int) -> Account:
        """Vault.settleTrade."""
        if collateral_delta + pool_delta + insurance_delta != 0:
            raise ModelRevert("UnbalancedSettlement", collateral_delta, pool_delta, insurance_delta)
        acct = self._account(owner, sub)
        bit = 1 << (market_id - 1)
        markets = acct.open_markets
        if holds_position:
            others = markets & ~bit
            if sub != 0 and others != 0:
                lowest = (others & -others).bit_length()
                raise ModelRevert("IsolatedSubaccountInUse", owner, sub, lowest, market_id)
            if markets & bit == 0 and bin(markets).count("1") >= MAX_OPEN_MARKETS:
                raise ModelRevert("TooManyOpenMarkets", owner, sub, MAX_OPEN_MARKETS)
            markets |= bit
        else:
            markets &= ~bit
        acct.collateral = _int128(acct.collateral + collateral_delta)
        acct.open_markets = markets
        self.pool_balance_wad = _int128(self.pool_balance_wad + pool_delta)
        if insurance_delta:
            self.insurance_fund_wad = _uint128(self.insurance_fund_wad + insurance_delta)
        return acct

    # ------------------------------------------------------------------ views (Vault)

    def collateral(self, owner, sub: int) -> int:
        return (self.accounts.get((owner, sub)) or Account()).collateral

    def open_markets(self, owner, sub: int) -> int:
        return (self.accounts.get((owner, sub)) or Account()).open_markets

    def account_value(self, owner, sub: int, timestamp: int) -> int:
        return self._health(owner, sub, timestamp)[0]

    def free_collateral(self, owner, sub: int, timestamp: int) -> int:
        return self._health(owner, sub, timestamp)[1]

    def margin_requirements(self, owner, sub: int, timestamp: int) -> tuple[int, int]:
        return self._health(owner, sub, timestamp)[2:]

    def is_liquidatable(self, owner, sub: int, timestamp: int) -> bool:
        value, _, _, maintenance = self._health(owner, sub, timestamp)
        return value < maintenance

    def pool_balance(self) -> int:
        return self.pool_balance_wad

    def insurance_fund(self) -> int:
        return self.insurance_fund_wad

    def liquidation_state(self, owner, sub: int, timestamp: int) -> tuple[int, int, int, int]:
        """Vault.liquidationState: (accountValue, maintenance of the free parts, auctioned notional,
        auctioned parts' maintenance), what the liquidation engine reads in one call."""
        acct = self.accounts.get((owner, sub)) or Account()
        if acct.open_markets == 0:
            return acct.collateral, 0, 0, 0
        s = self._margin_summary(owner, sub, acct.open_markets, timestamp)
        return account_value(acct.collateral, s), s.maintenance, s.auctioned_notional, s.auctioned_maintenance

    def shortfall_of(self, owner, sub: int) -> int:
        return self.shortfalls.get((owner, sub), 0)

    def pending_bad_debt(self) -> int:
        return self.pending_bad_debt_wad

    # ------------------------------------------------------------------ Vault: loss waterfall

    @_atomic
    def resolve_bad_debt(self, owner, sub: int) -> tuple[int, int]:
        """Vault.resolveBadDebt (permissionless): a closed account's negative collateral is paid by
        the insurance fund, then the pool; returns (fromInsurance, fromPool)."""
        return self._resolve_bad_debt(owner, sub)

    def _resolve_bad_debt(self, owner, sub: int) -> tuple[int, int]:
        acct = self._account(owner, sub)
        if acct.collateral >= 0 or acct.open_markets != 0:
            raise ModelRevert("NoBadDebt", owner, sub, acct.collateral, acct.open_markets)
        debt = -acct.collateral
        from_insurance = min(debt, self.insurance_fund_wad)
        from_pool = debt - from_insurance
        self.insurance_fund_wad -= from_insurance
        self.pool_balance_wad = _int128(self.pool_balance_wad - from_pool)
        acct.collateral = 0
        # The estimate has become the real thing: the set-aside is released as the debt is paid.
        if self.shortfall_of(owner, sub) != 0:
            self._set_shortfall(owner, sub, 0)
        self.bad_debt.append((owner, sub, debt, from_insurance, from_pool))
        return from_insurance, from_pool

    def _set_shortfall(self, owner, sub: int, shortfall: int) -> None:
        """Vault._setShortfall (recordShortfall's path): an unchanged estimate writes and emits nothing; a changed one
        is written with the new total and a ShortfallRecorded event."""
        old = self.shortfall_of(owner, sub)
        if shortfall == old:
            return
        total = self.pending_bad_debt_wad - old + shortfall
        self.shortfalls[(owner, sub)] = shortfall
        self.pending_bad_debt_wad = total
        self.shortfall_log.append((owner, sub, shortfall, total))

    def _charge_liquidation(self, owner, sub: int, keeper, keeper_reward: int, penalty: int, bounty: int,
                            shortfall: int) -> None:
        """Vault.chargeLiquidation, a kick's or a redo's costs in one call. In order: Paused from level 2; the reward
        and the penalty debited from the account; the penalty into the insurance fund, then the bounty out of it
        (InsufficientInsurance beyond it; a KeeperBounty event, logged in `keeper_bounties`); reward + bounty
        credited to the keeper's cross account; the shortfall recorded (`_set_shortfall`)."""
        self._check_not_paused(PAUSE_NO_TRADING)
        acct = self._account(owner, sub)
        acct.collateral = _int128(acct.collateral - (keeper_reward + penalty))
        if penalty or bounty:
            insurance = self.insurance_fund_wad + penalty
            if bounty > insurance:
                raise ModelRevert("InsufficientInsurance", insurance, bounty)
            self.insurance_fund_wad = _uint128(insurance - bounty)
        keeper_acct = self._account(keeper, 0)
        if keeper_acct.collateral + _int128(keeper_reward + bounty) > INT128_MAX:
            raise ModelRevert("Panic", 0x11)
        keeper_acct.collateral += keeper_reward + bounty
        if bounty:
            self.keeper_bounties.append((keeper, bounty))
        self._set_shortfall(owner, sub, shortfall)
