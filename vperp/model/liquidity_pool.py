"""Mirror of LiquidityPool (ERC-4626): the `LiquidityPoolMirror` part of `Model`."""
from __future__ import annotations

from ..units import PAUSE_WITHDRAW_ONLY
from .base import INT128_MAX, ModelRevert, SUSPENSION_TOLERANCE
from .state import _atomic, Market, POOL_OFFSET, WithdrawRequest
from .wad_math import exit_value, mul_wad_down, mul_wad_up, s_mul_wad_down


class LiquidityPoolMirror:
    """The LiquidityPool (ERC-4626) part of `Model` (a mixin: every method runs on the one Model state)."""

    # ------------------------------------------------------------------ LiquidityPool (ERC-4626)

    # A valuation is ClearingHouse.tradersExitPnl's answer, (pnl, netExposure, suspendedNotional,
    # suspendedMarket), read once per pool call, as the pool reads it.

    def _try_index(self, m: Market, timestamp: int) -> int | None:
        """OracleLib.tryReadRound: the index, or None for a non-positive answer, one of 2^128 wad or more, or a stale
        one (never raises)."""
        if m.answer <= 0 or m.answer > (2**128 - 1) // m.oracle_scale or m.answer_updated_at + m.heartbeat < timestamp:
            return None
        return m.answer * m.oracle_scale

    def traders_exit_pnl(self, timestamp: int) -> tuple[int, int, int, int]:
        """ClearingHouse.tradersExitPnl (never reverts): per market with open interest or aggregates,
        pnl += exitValue(x, y, net) - sumOpenNotional - (net x cfNow (floor) - sumFundingBasis) and
        netExposure += |net| x spot (up); a market with open interest whose index cannot be trusted now
        adds (long + short) x spot (up) to suspendedNotional, and the first such id is suspendedMarket:
        its feed is invalid or stale; or its spot is further from the index than index x maxSpread
        (down); or the index is further from the last recorded one than lastIndex x maxSpread (down), a
        gap no block has accrued yet; or a block found a gap (see `_accrue`) less than a TWAP window ago
        (timestamp < lastDislocation + twapWindow: a trade back into the band does not end the wait)."""
        pnl = exposure = suspended = 0
        suspended_market = 0
        for market_id in sorted(self.markets):
            m = self.markets[market_id]
            long_oi, short_oi = m.long_open_interest, m.short_open_interest
            net = long_oi - short_oi
            if long_oi == 0 and short_oi == 0 and m.sum_open_notional == 0 and m.sum_funding_basis == 0:
                continue
            cf = self._cumulative_funding_now(m, timestamp)
            pnl += exit_value(m.x, m.y, net) - m.sum_open_notional - (s_mul_wad_down(net, cf) - m.sum_funding_basis)
            spot = m.spot
            exposure += mul_wad_up(abs(net), spot)
            if long_oi == 0 and short_oi == 0:
                continue
            index = self._try_index(m, timestamp)
            last = m.last_index_price
            if (index is None or abs(spot - index) > mul_wad_down(index, m.max_spread)
                    or abs(index - last) > mul_wad_down(last, m.max_spread)
                    or timestamp < m.last_dislocation + m.twap_window):
                suspended += mul_wad_up(long_oi + short_oi, spot)
                if suspended_market == 0:
                    suspended_market = market_id
        return pnl, exposure, suspended, suspended_market

    def uncovered_bad_debt(self) -> int:
        """LiquidityPool.uncoveredBadDebt: the recorded shortfalls beyond the insurance fund."""
        return max(0, self.pending_bad_debt_wad - self.insurance_fund_wad)

    def _nav(self, v: tuple) -> int:
        return self.pool_balance_wad - v[0] - self.uncovered_bad_debt()

    def pool_nav(self, timestamp: int) -> int:
        """LiquidityPool.navWad: cash - traders' PnL at vAMM exit net of funding - uncovered bad debt."""
        return self._nav(self.traders_exit_pnl(timestamp))

    def _total_assets(self, v: tuple) -> int:
        nav = self._nav(v)
        return 0 if nav <= 0 else nav // self.token_scale

    def pool_total_assets(self, timestamp: int) -> int:
        """LiquidityPool.totalAssets: NAV in token units (floor, floored at 0); redemptions, withdrawals
        and convertTo* are priced on it."""
        return self._total_assets(self.traders_exit_pnl(timestamp))

    def _deposit_assets(self, v: tuple) -> int:
        value = self.pool_balance_wad - v[0]
        return 0 if value <= 0 else value // self.token_scale

    def pool_deposit_assets(self, timestamp: int) -> int:
        """LiquidityPool.depositAssets: what deposits and mints are priced on, in token units (floor,
        floored at 0): the NAV before the bad-debt set-aside, pool balance - traders' exit PnL. Never
        below totalAssets."""
        return self._deposit_assets(self.traders_exit_pnl(timestamp))

    def _preview_deposit(self, assets: int, v: tuple) -> int:
        """mulDiv(assets, totalSupply + 1e6, depositAssets + 1), rounded down."""
        return assets * (self.pool_supply + POOL_OFFSET) // (self._deposit_assets(v) + 1)

    def _preview_mint(self, shares: int, v: tuple) -> int:
        """mulDiv(shares, depositAssets + 1, totalSupply + 1e6), rounded up."""
        return -(-shares * (self._deposit_assets(v) + 1) // (self.pool_supply + POOL_OFFSET))

    def pool_preview_deposit(self, assets: int, timestamp: int) -> int:
        return self._preview_deposit(assets, self.traders_exit_pnl(timestamp))

    def pool_preview_mint(self, shares: int, timestamp: int) -> int:
        return self._preview_mint(shares, self.traders_exit_pnl(timestamp))

    def pool_convert_to_shares(self, assets: int, timestamp: int) -> int:
        """ERC4626.convertToShares: on totalAssets (after the set-aside), rounded down."""
        return self._to_shares(assets, self.pool_total_assets(timestamp))

    def pool_convert_to_assets(self, shares: int, timestamp: int) -> int:
        """ERC4626.convertToAssets: on totalAssets (after the set-aside), rounded down."""
        return self._to_assets(shares, self.pool_total_assets(timestamp))

    def pool_reserve_required(self, timestamp: int) -> int:
        """LiquidityPool.reserveRequired: reserveFactor x sum |net OI| x vAMM price."""
        return mul_wad_up(self.traders_exit_pnl(timestamp)[1], self.pool_reserve_factor)

    def pool_balance_of(self, owner) -> int:
        return self.pool_shares.get(owner, 0)

    def _suspended(self, v: tuple) -> tuple[bool, int]:
        """LiquidityPool._suspended: (untrusted-index notional > tolerance, tolerance = 0.1 % of cash)."""
        cash = self.pool_balance_wad
        tolerance = mul_wad_down(cash, SUSPENSION_TOLERANCE) if cash > 0 else 0
        return v[2] > tolerance, tolerance

    def lp_flows_suspended(self, timestamp: int) -> tuple[bool, int]:
        v = self.traders_exit_pnl(timestamp)
        suspended, _ = self._suspended(v)
        return suspended, v[3] if suspended else 0

    def _check_flows_open(self, v: tuple) -> None:
        suspended, tolerance = self._suspended(v)
        if suspended:
            raise ModelRevert("LpFlowsSuspended", v[3], v[2], tolerance)

    def _withdrawable_assets(self, v: tuple) -> int:
        cash = self.pool_balance_wad
        free = cash - v[0] - self.uncovered_bad_debt() - mul_wad_up(v[1], self.pool_reserve_factor)
        limit = min(free, cash)
        return 0 if limit <= 0 else limit // self.token_scale

    def pool_withdrawable_assets(self, timestamp: int) -> int:
        return self._withdrawable_assets(self.traders_exit_pnl(timestamp))

    def _redeemable(self, owner, timestamp: int) -> int:
        r = self.pool_requests.get(owner) or WithdrawRequest()
        if r.shares == 0 or timestamp < r.unlock_at or timestamp > r.unlock_at + self.pool_window:
            return 0
        return min(r.shares, self.pool_balance_of(owner))

    def _to_shares(self, assets: int, total: int, up: bool = False) -> int:
        n, d = assets * (self.pool_supply + POOL_OFFSET), total + 1
        return -(-n // d) if up else n // d

    def _to_assets(self, shares: int, total: int, up: bool = False) -> int:
        n, d = shares * (total + 1), self.pool_supply + POOL_OFFSET
        return -(-n // d) if up else n // d

    def pool_max_redeem(self, owner, timestamp: int) -> int:
        return self._max_redeem(owner, self.traders_exit_pnl(timestamp), timestamp)

    def _max_redeem(self, owner, v: tuple, timestamp: int) -> int:
        """0 while flows are suspended; min(redeemable, shares of the withdrawable assets), and 0 when
        those shares are worth less than one token unit (redeem refuses them with ZeroAssets)."""
        if self._suspended(v)[0]:
            return 0
        total = self._total_assets(v)
        shares = min(self._redeemable(owner, timestamp), self._to_shares(self._withdrawable_assets(v), total))
        return 0 if shares != 0 and self._to_assets(shares, total) == 0 else shares

    def pool_max_withdraw(self, owner, timestamp: int) -> int:
        return self._max_withdraw(owner, self.traders_exit_pnl(timestamp), timestamp)

    def _max_withdraw(self, owner, v: tuple, timestamp: int) -> int:
        if self._suspended(v)[0]:
            return 0
        by_shares = self._to_assets(self._redeemable(owner, timestamp), self._total_assets(v))
        return min(by_shares, self._withdrawable_assets(v))

    def pool_max_deposit(self, timestamp: int) -> int:
        return self._max_deposit(self.traders_exit_pnl(timestamp))

    def _max_deposit(self, v: tuple) -> int:
        """0 at pause level 3 or while flows are suspended; else the room in the pool's int128 ledger
        line and the Vault's per-amount bound, in token units, and 0 when that room buys no share
        (previewDeposit(room) == 0, which deposit refuses with ZeroShares)."""
        if self.pause_level >= PAUSE_WITHDRAW_ONLY or self._suspended(v)[0]:
            return 0
        room = min((INT128_MAX - self.pool_balance_wad) // self.token_scale, INT128_MAX // self.token_scale)
        return 0 if room != 0 and self._preview_deposit(room, v) == 0 else room

    def pool_max_mint(self, timestamp: int) -> int:
        """LiquidityPool.maxMint = previewDeposit(maxDeposit) (priced on depositAssets)."""
        return self._max_mint(self.traders_exit_pnl(timestamp))

    def _max_mint(self, v: tuple) -> int:
        return self._preview_deposit(self._max_deposit(v), v)

    def pool_preview_redeem(self, shares: int, timestamp: int) -> int:
        return self._to_assets(shares, self._total_assets(self.traders_exit_pnl(timestamp)))

    @_atomic
    def pool_deposit(self, caller, assets: int, receiver, timestamp: int) -> int:
        """LiquidityPool.deposit (the caller's tokens go on to the Vault's pool balance); returns shares,
        previewDeposit(assets): priced on depositAssets (the NAV before the bad-debt set-aside).
        Checks: ZeroAssets, Paused (level 3), LpFlowsSuspended, ZeroShares, ERC4626ExceededMaxDeposit."""
        if assets == 0:
            raise ModelRevert("ZeroAssets")
        if self.pause_level >= PAUSE_WITHDRAW_ONLY:
            raise ModelRevert("Paused", self.pause_level)
        v = self.traders_exit_pnl(timestamp)  # read once, after the pause check, as the contract does
        self._check_flows_open(v)
        shares = self._preview_deposit(assets, v)
        if shares == 0:
            raise ModelRevert("ZeroShares")
        max_assets = self._max_deposit(v)
        if assets > max_assets:
            raise ModelRevert("ERC4626ExceededMaxDeposit", receiver, assets, max_assets)
        self.fund_pool(assets)
        self.pool_supply += shares
        self.pool_shares[receiver] = self.pool_balance_of(receiver) + shares
        return shares

    @_atomic
    def pool_mint(self, caller, shares: int, receiver, timestamp: int) -> int:
        """LiquidityPool.mint: returns the assets paid, previewMint(shares) (priced on depositAssets,
        rounded up). Checks: ZeroShares, Paused (level 3), LpFlowsSuspended, then OpenZeppelin's
        ERC4626ExceededMaxMint against maxMint = previewDeposit(maxDeposit); the assets go on to the
        Vault's pool balance (Vault.fundPool)."""
        if shares == 0:
            raise ModelRevert("ZeroShares")
        if self.pause_level >= PAUSE_WITHDRAW_ONLY:
            raise ModelRevert("Paused", self.pause_level)
        v = self.traders_exit_pnl(timestamp)  # read once, after the pause check, as the contract does
        self._check_flows_open(v)
        max_shares = self._max_mint(v)
        if shares > max_shares:
            raise ModelRevert("ERC4626ExceededMaxMint", receiver, shares, max_shares)
        assets = self._preview_mint(shares, v)
        self.fund_pool(assets)
        self.pool_supply += shares
        self.pool_shares[receiver] = self.pool_balance_of(receiver) + shares
        return assets

    @_atomic
    def pool_request_withdraw(self, owner, shares: int, timestamp: int) -> int:
        if shares == 0:
            raise ModelRevert("ZeroShares")
        balance = self.pool_balance_of(owner)
        if shares > balance:
            raise ModelRevert("SharesExceedBalance", shares, balance)
        unlock_at = timestamp + self.pool_cooldown
        self.pool_requests[owner] = WithdrawRequest(shares, unlock_at)
        return unlock_at

    def _check_withdrawal(self, owner, shares, assets, v: tuple, timestamp) -> None:
        r = self.pool_requests.get(owner) or WithdrawRequest()
        if r.shares == 0:
            raise ModelRevert("NoWithdrawRequest", owner)
        if timestamp < r.unlock_at:
            raise ModelRevert("CooldownNotPassed", r.unlock_at, timestamp)
        expiry = r.unlock_at + self.pool_window
        if timestamp > expiry:
            raise ModelRevert("WithdrawWindowExpired", expiry, timestamp)
        if shares > r.shares:
            raise ModelRevert("ExceedsRequest", shares, r.shares)
        after = self.pool_balance_wad - v[0] - self.uncovered_bad_debt() - assets * self.token_scale
        reserve = mul_wad_up(v[1], self.pool_reserve_factor)
        if after < reserve:
            raise ModelRevert("PoolReserveLocked", after, reserve)
        if assets * self.token_scale > self.pool_balance_wad:
            raise ModelRevert("InsufficientPoolCash", self.pool_balance_wad, assets * self.token_scale)

    def _pool_pay_out(self, owner, shares: int, assets: int) -> None:
        self.pool_requests[owner].shares -= shares
        self.pool_shares[owner] -= shares
        self.pool_supply -= shares
        amount_wad = self._to_wad(assets)
        if self.pool_balance_wad < amount_wad:
            raise ModelRevert("InsufficientPoolCash", self.pool_balance_wad, amount_wad)
        self.pool_balance_wad -= amount_wad
        self.token_balance -= assets

    @_atomic
    def pool_redeem(self, owner, shares: int, timestamp: int) -> int:
        """LiquidityPool.redeem(shares, owner, owner) by the owner; returns the assets paid.
        Checks: ZeroShares, LpFlowsSuspended, the request's checks, ZeroAssets, ERC4626ExceededMaxRedeem."""
        v = self.traders_exit_pnl(timestamp)
        if shares == 0:
            raise ModelRevert("ZeroShares")
        self._check_flows_open(v)
        total = self._total_assets(v)
        assets = self._to_assets(shares, total)
        self._check_withdrawal(owner, shares, assets, v, timestamp)
        if assets == 0:
            raise ModelRevert("ZeroAssets")
        limit = self._max_redeem(owner, v, timestamp)
        if shares > limit:
            raise ModelRevert("ERC4626ExceededMaxRedeem", owner, shares, limit)
        self._pool_pay_out(owner, shares, assets)
        return assets

    @_atomic
    def pool_withdraw(self, owner, assets: int, timestamp: int) -> int:
        """LiquidityPool.withdraw(assets, owner, owner) by the owner; returns the shares burnt.
        Checks: ZeroAssets, LpFlowsSuspended, the request's checks, ERC4626ExceededMaxWithdraw."""
        v = self.traders_exit_pnl(timestamp)
        if assets == 0:
            raise ModelRevert("ZeroAssets")
        self._check_flows_open(v)
        total = self._total_assets(v)
        shares = self._to_shares(assets, total, up=True)
        self._check_withdrawal(owner, shares, assets, v, timestamp)
        limit = self._max_withdraw(owner, v, timestamp)
        if assets > limit:
            raise ModelRevert("ERC4626ExceededMaxWithdraw", owner, assets, limit)
        self._pool_pay_out(owner, shares, assets)
        return shares
