"""The reference model: `Model` (its state, construction from a deployment config, the mock feeds), composed of
one mixin per contract."""
from __future__ import annotations

import copy
from dataclasses import replace
from decimal import Decimal
from typing import Any, Hashable

from ..config import default_config, DeployConfig, wad
from ..units import (
    DEFAULT_POOL_RESERVE_FACTOR, DEFAULT_POOL_WITHDRAW_COOLDOWN, DEFAULT_POOL_WITHDRAW_WINDOW, DEFAULT_SKEW_FUNDING_PPM,
    listing_funding_cap,
)
from .amm_controller import AmmControllerMirror
from .base import FUNDING_OBSERVATIONS, INT128_MAX, ModelRevert, OBSERVATIONS, ZERO_ADDRESS
from .clearing_house import ClearingHouseMirror
from .liquidation_engine import LiquidationEngineMirror
from .liquidity_pool import LiquidityPoolMirror
from .state import (
    _atomic, Account, AmmParams, Auction, AuctionParams, FundingParams, LiquidationParams, Market, Observation, Position,
    WithdrawRequest,
)
from .vault import VaultMirror
from .wad_math import mul_wad_down


class Model(VaultMirror, ClearingHouseMirror, LiquidationEngineMirror, LiquidityPoolMirror, AmmControllerMirror):
    """The reference model. Build it with :meth:`from_config`."""

    def __init__(self, token_decimals: int = 6):
        if token_decimals > 18:
            raise ModelRevert("UnsupportedDecimals", token_decimals)
        self.token_scale = 10 ** (18 - token_decimals)
        self.accounts: dict[tuple[Hashable, int], Account] = {}
        self.positions: dict[tuple[int, Hashable, int], Position] = {}
        self.markets: dict[int, Market] = {}
        self.pool_balance_wad = 0
        self.insurance_fund_wad = 0
        self.token_balance = 0  # token units held by the Vault
        self.pause_level = 0
        # Vault: builder fees. Approvals (owner, builder) -> max rate [wad], accrued balances per builder
        # [wad], and every BuilderFeePaid (owner, sub, builder, amountWad) in order.
        self.builder_approvals: dict[tuple[Hashable, Hashable], int] = {}
        self.builder_fees_wad: dict[Hashable, int] = {}
        self.builder_fee_log: list[tuple[Hashable, int, Hashable, int]] = []
        # LiquidationEngine
        self.liquidation_params = LiquidationParams()
        self.auction_params: dict[int, AuctionParams] = {}
        self.auctions: dict[int, Auction] = {}
        self.auction_count = 0
        self.live_notional = 0
        self.bad_debt: list[tuple[Hashable, int, int, int, int]] = []  # (owner, sub, debt, fromInsurance, fromPool)
        self.keeper_bounties: list[tuple[Hashable, int]] = []  # (keeper, amount): every KeeperBounty, in order
        # Vault: the liquidation engine's bad-debt estimates, per account and summed, and every
        # ShortfallRecorded event (owner, sub, shortfall, total) in order.
        self.shortfalls: dict[tuple[Hashable, int], int] = {}
        self.pending_bad_debt_wad = 0
        self.shortfall_log: list[tuple[Hashable, int, int, int]] = []
        # LiquidityPool (ERC-4626 shares; its assets are the Vault's pool balance net of the traders' side)
        self.pool_supply = 0
        self.pool_shares: dict[Hashable, int] = {}
        self.pool_requests: dict[Hashable, WithdrawRequest] = {}
        self.pool_cooldown = DEFAULT_POOL_WITHDRAW_COOLDOWN
        self.pool_window = DEFAULT_POOL_WITHDRAW_WINDOW
        self.pool_reserve_factor = DEFAULT_POOL_RESERVE_FACTOR
        # AmmController
        self.amm_params: dict[int, AmmParams] = {}
        self.last_repeg: dict[int, int] = {}
        self.peg_window: dict[int, tuple[int, int]] = {}  # guarded market -> (peg, start), AmmController._pegWindow
        self.concentration: dict[int, tuple[int, int]] = {}  # market -> (range, amplification), AmmController
        self.repeg_cost: dict[int, int] = {}
        self.last_depth_sync: dict[int, int] = {}
        self.depth_cost: dict[int, int] = {}
        self.last_depth_charge: dict[int, tuple[int, int]] = {}  # (exitChange, chargePerBase): DepthCharged

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_config(
        cls,
        config: DeployConfig | None = None,
        timestamp: int = 0,
        *,
        listed_at: dict[int, int] | None = None,
        oracle_updated_at: dict[int, int] | None = None,
        oracles: dict[int, Any] | None = None,
        deployer: Hashable = "deployer",
        skew_funding_at: dict[int, int] | None = None,
        funding_params_at: dict[int, int] | None = None,
    ) -> "Model":
        """The state `vperp.deploy(deployer, config)` leaves: markets listed in order (ids from 1) at
        `listed_at[id]` (default `timestamp`), mock feeds stamped at `oracle_updated_at[id]`, each
        market's auction parameters set, the pool seeded by `deployer`'s LP deposit and the insurance
        seed granted. `oracles[id]` names each feed (its address on chain); a non-default skew term is set at
        `skew_funding_at[id]` (default the listing time: the setter accrues, so the time matters to the TWAPs), and a
        non-default funding period or time constant at `funding_params_at[id]` (the same default; `setFundingParams`
        accrues too)."""
        config = config or default_config()
        model = cls(config.collateral_decimals)
        for i, mc in enumerate(config.markets, start=1):
            t_list = (listed_at or {}).get(i, timestamp)
            t_oracle = (oracle_updated_at or {}).get(i, t_list)
            answer = int(Decimal(str(mc.price)) * 10**mc.oracle_decimals)
            model.list_market(
                symbol=mc.symbol,
                oracle=(oracles or {}).get(i, mc.symbol),
                oracle_decimals=mc.oracle_decimals,
                answer=answer,
                answer_updated_at=t_oracle,
                heartbeat=mc.heartbeat,
                twap_window=mc.twap_window,
                imr=wad(mc.imr),
                mmr=wad(mc.mmr),
                taker_fee=wad(mc.taker_fee),
                max_spread=wad(mc.max_spread),
                max_oi_pool_ratio=wad(mc.max_oi_pool_ratio),
                max_open_interest=wad(mc.max_open_interest),
                min_position_size=wad(mc.min_position_size),
                insurance_fee_share=wad(mc.insurance_fee_share),
                base_reserve=wad(mc.base_reserve),
                timestamp=t_list,
            )
            model.auction_params[i] = AuctionParams(*mc.to_auction_params())
            model.amm_params[i] = AmmParams(*mc.to_amm_params())
            if mc.to_concentration() is not None:
                model.set_concentration(i, *mc.to_concentration())
            if mc.skew_funding_ppm() != DEFAULT_SKEW_FUNDING_PPM:  # deploy() sets it after listing
                model.set_skew_funding(i, mc.skew_funding_ppm(), (skew_funding_at or {}).get(i, t_list))
            if mc.peg_tolerance_bps:  # deploy() sets it after listing (nothing accrues)
                model.set_peg_tolerance(i, mc.peg_tolerance_bps)
            listed = model.markets[i].funding_params
            if (mc.funding_cap_wad(), mc.funding_period_hours, mc.funding_smoothing_tau) != (
                    listed.max_funding_rate, listed.funding_period_hours, listed.smoothing_tau):  # deploy() sets them next
                model.set_funding_params(i, replace(listed, max_funding_rate=mc.funding_cap_wad(),
                                                    smoothing_tau=mc.funding_smoothing_tau,
                                                    funding_period_hours=mc.funding_period_hours),
                                         (funding_params_at or {}).get(i, t_list))
            if mc.delayed_orders:  # deploy() turns them on last, after the router (nothing accrues)
                model.set_delayed_orders(i, True)
        if config.pool_seed:
            # deploy() seeds the pool with an LP deposit by the deployer, who holds the shares.
            seed = int(Decimal(str(config.pool_seed)) * 10**config.collateral_decimals)
            model.pool_deposit(deployer, seed, deployer, timestamp)
        if config.insurance_seed:
            model.fund_insurance(int(Decimal(str(config.insurance_seed)) * 10**config.collateral_decimals))
        return model

    def list_market(self, *, symbol, oracle, oracle_decimals, answer, answer_updated_at, heartbeat, twap_window,
                    imr, mmr, taker_fee, max_spread, max_oi_pool_ratio, max_open_interest, min_position_size,
                    insurance_fee_share, base_reserve, timestamp) -> int:
        """ClearingHouse.listMarket (parameter bounds are not re-checked here)."""
        market_id = len(self.markets) + 1
        start = Observation(timestamp, 0, 0)
        m = Market(
            id=market_id, symbol=symbol, oracle=oracle, oracle_decimals=oracle_decimals, heartbeat=heartbeat,
            twap_window=twap_window, imr=imr, mmr=mmr, taker_fee=taker_fee, max_spread=max_spread,
            max_oi_pool_ratio=max_oi_pool_ratio, max_open_interest=max_open_interest,
            min_position_size=min_position_size, insurance_fee_share=insurance_fee_share,
            x=base_reserve, y=0, answer=answer, answer_updated_at=answer_updated_at, last_index_price=0,
            accumulator=copy.copy(start),
            # Every ring slot starts as a true observation at listing time (as the contract does).
            observations=[copy.copy(start) for _ in range(OBSERVATIONS)],
            hourly=[copy.copy(start) for _ in range(FUNDING_OBSERVATIONS)],
            hourly_skew=[0] * FUNDING_OBSERVATIONS,
            skew_funding_ppm=DEFAULT_SKEW_FUNDING_PPM,
            funding_params=FundingParams(max_funding_rate=listing_funding_cap(taker_fee)),
        )
        index = self._index(m, timestamp)
        m.y = mul_wad_down(base_reserve, index)
        m.last_index_price = index
        self.markets[market_id] = m
        return market_id

    # ------------------------------------------------------------------ helpers

    def _account(self, owner, sub: int) -> Account:
        return self.accounts.setdefault((owner, sub), Account())

    def _position(self, market_id: int, owner, sub: int) -> Position:
        return self.positions.get((market_id, owner, sub)) or Position()

    def _market(self, market_id: int) -> Market:
        if market_id not in self.markets:
            raise ModelRevert("UnknownMarket", market_id)
        return self.markets[market_id]

    def _index(self, m: Market, timestamp: int) -> int:
        """OracleLib.readRound's price: positive answer, not older than the heartbeat, scaled to WAD."""
        if m.answer <= 0:
            raise ModelRevert("InvalidOraclePrice", m.oracle, m.answer)
        if m.answer_updated_at + m.heartbeat < timestamp:
            raise ModelRevert("StaleOracle", m.oracle, m.answer_updated_at, m.heartbeat)
        return m.answer * m.oracle_scale

    def _to_wad(self, amount: int) -> int:
        if amount == 0:
            raise ModelRevert("ZeroAmount")
        if amount > INT128_MAX // self.token_scale:
            raise ModelRevert("AmountTooLarge", amount)
        return amount * self.token_scale

    def _check_not_paused(self, blocking_level: int) -> None:
        if self.pause_level >= blocking_level:
            raise ModelRevert("Paused", self.pause_level)

    @staticmethod
    def _add_checked(balance: int, amount_wad: int, amount: int) -> int:
        """Vault._addChecked: `balance + amountWad` as int128, or AmountTooLarge(amount)."""
        total = balance + amount_wad
        if total > INT128_MAX:
            raise ModelRevert("AmountTooLarge", amount)
        return total

    @staticmethod
    def _sub_int128(balance: int, amount_wad: int) -> int:
        """An int128 slot debited under checked arithmetic: Panic(0x11) below int128.min."""
        total = balance - amount_wad
        if total < -(2**127):
            raise ModelRevert("Panic", 0x11)
        return total

    @staticmethod
    def _is_zero_address(a) -> bool:
        return a is None or str(a).lower() == ZERO_ADDRESS

    def _credit_shortfall(self, owner, sub: int, amount_wad: int) -> None:
        """Vault._creditShortfall: collateral credited to an account in liquidation pays its expected bad
        debt one for one (floor 0), through recordShortfall's path (a ShortfallRecorded event); nothing
        happens while the estimate is 0."""
        shortfall = self.shortfall_of(owner, sub)
        if shortfall != 0:
            self._set_shortfall(owner, sub, shortfall - amount_wad if shortfall > amount_wad else 0)

    # ------------------------------------------------------------------ oracle (mock feed)

    @_atomic
    def set_answer(self, market_id: int, answer: int, timestamp: int) -> None:
        """MockAggregator.updateAnswer(answer) in a block at `timestamp`."""
        m = self.markets[market_id]
        m.answer = answer
        m.answer_updated_at = timestamp

    def set_index(self, market_id: int, price_wad: int, timestamp: int) -> None:
        """Move the index to `price_wad` (must be representable in the feed's decimals)."""
        m = self.markets[market_id]
        answer, rest = divmod(price_wad, m.oracle_scale)
        if rest:
            raise ValueError(f"{price_wad} not representable with {m.oracle_decimals} feed decimals")
        self.set_answer(market_id, answer, timestamp)
