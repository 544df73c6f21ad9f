"""Shared helpers for the trading unit tests (tests/test_trading_*.py).

Everything here is an independent Python statement of the formulas in docs/design.md and IClearingHouse, written
from the conventions (not from the Solidity), so the tests can compute expected values to the wei:

    buy  b base:  quoteIn  = ceil(y * b / (x - b)),  reserves (x - b, y + quoteIn)
    sell b base:  quoteOut = floor(y * b / (x + b)), reserves (x + b, y - quoteOut)
    price = floor(y * 1e18 / x)
    fee = ceil(|quote| * takerFee / 1e18); insurance part = floor(fee * share / 1e18); pool gets the rest
    requirement = ceil(ceil(|size| * index / 1e18) * ratio / 1e18)
    unrealized PnL = floor(size * index / 1e18) - openNotional
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import ape
from ape.exceptions import CustomError
from eth_abi import decode as abi_decode
from eth_utils import keccak

from helpers.reverts import revert_data
from vperp.units import WAD, funding_off_params
MAX_UINT = 2**256 - 1
ZERO = "0x" + "00" * 20  # the zero address

ETH_ID = 1
BTC_ID = 2
ETH_X0 = 10_000 * WAD
ETH_Y0 = 30_000_000 * WAD
BTC_X0 = 500 * WAD
BTC_Y0 = 30_000_000 * WAD
ETH_INDEX = 3000 * WAD
BTC_INDEX = 60_000 * WAD

TAKER_FEE = 10**15  # 0.1 %
INSURANCE_SHARE = 2 * 10**17  # 20 %
IMR = 10**17
MMR = 5 * 10**16
MAX_SPREAD = 10**17
POOL_SEED = 10_000_000 * WAD
INSURANCE_SEED = 100_000 * WAD  # DeployConfig.insurance_seed: bad debt falls on the fund before the pool
HEARTBEAT = 86_400
TWAP_WINDOW = 900
QUARTER = TWAP_WINDOW // 4


# ---------------------------------------------------------------------------- integer math


def ceil_div(a: int, b: int) -> int:
    """ceil(a / b) for b > 0 and any sign of a."""
    return -((-a) // b)


def price(x: int, y: int) -> int:
    return y * WAD // x


def swap(x: int, y: int, base: int) -> tuple[int, int, int]:
    """(signed quote flow to the trader, x after, y after)."""
    if base > 0:
        x1 = x - base
        q = ceil_div(y * base, x1)
        return -q, x1, y + q
    b = -base
    x1 = x + b
    q = y * b // x1
    return q, x1, y - q


def fee_of(quote: int, taker_fee: int = TAKER_FEE) -> int:
    return ceil_div(abs(quote) * taker_fee, WAD)


def insurance_part(fee: int, share: int = INSURANCE_SHARE) -> int:
    return fee * share // WAD


def notional_up(size: int, index: int) -> int:
    return ceil_div(abs(size) * index, WAD)


def requirement(size: int, index: int, ratio: int) -> int:
    return ceil_div(notional_up(size, index) * ratio, WAD)


def upnl(size: int, open_notional: int, index: int) -> int:
    return (size * index) // WAD - open_notional


def exit_value(x: int, y: int, net: int) -> int:
    """What closing a net position of `net` base on the curve (x, y) pays the traders (VAmmMath.exitValue):
    a net long's quote for selling it, minus a net short's for buying it back; rounded as the swap rounds."""
    if net == 0:
        return 0
    if net > 0:
        return y * net // (x + net)
    return -ceil_div(y * -net, x + net)


def apply_trade(size: int, open_notional: int, base: int, quote: int) -> tuple[int, int, int]:
    """(new size, new open notional, realized PnL) per the documented pro-rata rules:
    increase: basis += cost; reduce: removed basis = ceil(on * |base| / |size|), realized = quote - removed;
    flip: closing quote = floor(quote * |size| / |base|), realized = closing - on, new basis = -(quote - closing)."""
    new_size = size + base
    if size == 0 or (size > 0) == (base > 0):
        return new_size, open_notional - quote, 0
    if abs(base) <= abs(size):
        removed = ceil_div(open_notional * abs(base), abs(size))
        return new_size, open_notional - removed, quote - removed
    closing = (quote * abs(size)) // abs(base)
    return new_size, -(quote - closing), closing - open_notional


@dataclass
class Amm:
    """A Python copy of one market's virtual reserves, advanced trade by trade."""

    x: int
    y: int

    def trade(self, base: int) -> int:
        q, self.x, self.y = swap(self.x, self.y, base)
        return q

    def peek(self, base: int) -> tuple[int, int]:
        q, x1, y1 = swap(self.x, self.y, base)
        return q, price(x1, y1)

    @property
    def price(self) -> int:
        return price(self.x, self.y)


def eth_amm() -> Amm:
    return Amm(ETH_X0, ETH_Y0)


def btc_amm() -> Amm:
    return Amm(BTC_X0, BTC_Y0)


def wad(x) -> int:
    from decimal import Decimal

    return int(Decimal(str(x)) * WAD)


# ---------------------------------------------------------------------------- chain helpers


def deadline(seconds: int = 3600) -> int:
    return ape.chain.pending_timestamp + seconds


def trade(ch, who, market_id: int, base: int, sub: int = 0, limit: int | None = None, dl: int | None = None):
    """openPosition with a permissive limit by default (buy: pay anything; sell: accept anything)."""
    if limit is None:
        limit = MAX_UINT if base > 0 else 0
    return ch.openPosition(sub, market_id, base, limit, dl if dl is not None else deadline(), sender=who)


def position_changed(ch, receipt):
    logs = ch.PositionChanged.from_receipt(receipt)
    assert len(logs) == 1, logs
    return logs[0]


def market_state(ch, market_id: int):
    return ch.marketState(market_id)


def snapshot(system, owners, subs=(0,), markets=None) -> dict:
    """Everything a reverted trade must leave untouched."""
    ch, vault = system.clearing_house, system.vault
    markets = markets or [m.id for m in system.markets.values()]
    snap = {"pool": vault.poolBalance(), "insurance": vault.insuranceFund(),
            "token_balance": system.collateral.balanceOf(vault)}
    for mid in markets:
        s = ch.marketState(mid)
        snap[("market", mid)] = (s.baseReserve, s.quoteReserve, s.longOpenInterest, s.shortOpenInterest)
    for o in owners:
        for sub in subs:
            snap[("collateral", o.address, sub)] = vault.collateral(o, sub)
            snap[("openMarkets", o.address, sub)] = vault.openMarkets(o, sub)
            for mid in markets:
                size, on, _ = ch.position(o, sub, mid)
                snap[("position", o.address, sub, mid)] = (size, on)
    return snap


def _error_signature(error_cls) -> tuple[bytes, list[str], list[str]]:
    abi = error_cls.abi
    types = [i.canonical_type for i in abi.inputs]
    names = [i.name for i in abi.inputs]
    sig = f"{abi.name}({','.join(types)})"
    return keccak(text=sig)[:4], types, names


@contextmanager
def expect_revert(error_cls, **inputs):
    """Strict `ape.reverts`: the revert must be exactly `error_cls` (matched by name, or by selector when
    Ape could not decode it, e.g. a Vault error bubbling up through the ClearingHouse) and every given
    input must be present and equal. (Plain `ape.reverts(X)` accepts any undecoded revert.)"""
    with ape.reverts() as info:
        yield info
    exc = info.value
    selector, types, names = _error_signature(error_cls)
    if isinstance(exc, CustomError):
        assert exc.abi.name == error_cls.abi.name, f"expected {error_cls.abi.name}, got {exc.abi.name}: {exc}"
        actual = dict(exc.inputs)
    else:
        try:
            data = revert_data(exc)
        except AssertionError as e:
            raise AssertionError(f"expected {error_cls.abi.name}, got {exc!r}") from e
        assert data[:4] == selector, f"expected {error_cls.abi.name} selector {selector.hex()}, got {data[:4].hex()}"
        actual = dict(zip(names, abi_decode(types, data[4:])))
    for key, want in inputs.items():
        assert key in actual, f"{error_cls.abi.name} has no input {key!r} (has {list(actual)})"
        got = actual[key]
        if isinstance(want, str) and want.startswith("0x") or hasattr(want, "address"):
            want = str(getattr(want, "address", want)).lower()
            got = str(got).lower()
        elif isinstance(want, bytes):
            got = bytes(got)
        assert got == want, f"{error_cls.abi.name}.{key}: expected {want!r}, got {got!r}"


def funded_crowd(accounts, deployer, n: int = 12) -> list:
    """accounts[4..] and, past the configured test accounts, generated ones: `n` accounts with gas money.
    Accounts generated by an earlier module stay in `accounts`, but the gas money that module gave them
    was rolled back with its chain state, so every account that needs it is topped up."""
    out = [accounts[i] for i in range(4, len(accounts))][:n]
    while len(out) < n:
        out.append(accounts.generate_test_account())
    for a in out:
        if a.balance < 10**19:
            deployer.transfer(a, 10**20)
    return out


def b32(name: str) -> bytes:
    """A market symbol or parameter name as the contracts' bytes32 (right-padded with zeros)."""
    return name.encode().ljust(32, b"\0")


def funding_off(system, *market_ids: int) -> None:
    """Funding off in `market_ids` (every listed market when none is given): maxFundingRate 0, and with it
    the baseline 0 (bounded by the cap), the other funding parameters kept. The applied rate stays 0, so
    health and PnL have no time term; the funding index moves only by depth charges. The one helper for it on
    ape; the fast tier (pyrevm, another call API) sets the same parameters: both take them from
    `vperp.units.funding_off_params`."""
    ch = system.clearing_house
    for mid in market_ids or [m.id for m in system.markets.values()]:
        ch.setFundingParams(mid, funding_off_params(ch.fundingParams(mid)), sender=system.deployer)


def prepare_actors(system, accounts, upto: int = 8) -> None:
    """Funding off in every market (`funding_off`) and collateral minted (1e9 units) and approved to the Vault
    for accounts[1..upto-1]: the setting of the liquidation tests and of the trading and AMM tests that
    expect no time term."""
    funding_off(system)
    for a in list(accounts)[1:upto]:
        system.collateral.mint(a, 10**9 * 10**6, sender=a)
        system.collateral.approve(system.vault, MAX_UINT, sender=a)
