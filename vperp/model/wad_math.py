"""Mirrors of WadMath, VAmmMath and MarginMath: the exact integer arithmetic (rounding in every name) the contracts
use."""
from __future__ import annotations

import math

from ..units import WAD
from .base import INT128_MAX, ModelRevert, UINT128_MAX, UINT256_MAX


def mul_wad_down(x: int, y: int) -> int:
    return x * y // WAD


def mul_wad_up(x: int, y: int) -> int:
    return -((-x * y) // WAD)


def div_wad_up(x: int, y: int) -> int:
    return -((-x * WAD) // y)


def div_wad_down(x: int, y: int) -> int:
    return x * WAD // y


def mul_div_up(x: int, y: int, d: int) -> int:
    return -((-x * y) // d)


def s_mul_div_down(x: int, y: int, d: int) -> int:
    """floor(x * y / d) (toward -inf), y, d >= 0: Python's // is already a floor."""
    return x * y // d


def s_mul_div_up(x: int, y: int, d: int) -> int:
    """ceil(x * y / d) (toward +inf)."""
    return -((-x * y) // d)


def s_mul_wad_down(x: int, y: int) -> int:
    """floor(x * y / WAD) for signed x and y (the contract's sign dispatch is a plain floor)."""
    return x * y // WAD


def s_mul_wad_up(x: int, y: int) -> int:
    """ceil(x * y / WAD) for signed x and y."""
    return -((-x * y) // WAD)


def vamm_price(x: int, y: int) -> int:
    return y * WAD // x


def vamm_swap(x: int, y: int, base: int) -> tuple[int, int, int]:
    """VAmmMath.swap: (signed quote flow to the trader, x after, y after)."""
    if base > 0:
        x1 = x - base
        quote_in = mul_div_up(y, base, x1)
        return -quote_in, x1, y + quote_in
    b = -base
    x1 = x + b
    quote_out = y * b // x1
    return quote_out, x1, y - quote_out


def exit_value(x: int, y: int, net: int) -> int:
    """VAmmMath.exitValue: what closing a net position of `net` base on the curve (x, y) pays the
    traders, rounded as `swap` rounds (a net long's sale rounds down, a net short's buy-back up); 0 when
    a net short is at least the base reserve (unreachable; the choice that cannot inflate NAV)."""
    if net == 0:
        return 0
    if net > 0:
        return y * net // (x + net)
    n = -net
    if n >= x:
        return 0
    return -mul_div_up(y, n, x - n)


def _checked(v: int) -> int:
    """A uint256 product under checked arithmetic: Panic(0x11) past 2^256 - 1."""
    if v > UINT256_MAX:
        raise ModelRevert("Panic", 0x11)
    return v


def edge_reserve(x: int, y: int, price: int) -> int:
    """LiquidationEngine._edgeReserve: floor(sqrt(x y / price)) in WAD, the base reserve at which the
    curve through (x, y) has `price`: sqrt(q x 1e18) when that fits 256 bits, else sqrt(q) x 1e9."""
    q = x * y // price  # Math.mulDiv: full precision, floor
    return math.isqrt(q * WAD) if q <= UINT256_MAX // WAD else math.isqrt(q) * 10**9


def apply_trade(size: int, open_notional: int, base: int, quote: int) -> tuple[int, int, int]:
    """VAmmMath.applyTrade: (new size, new open notional, realized PnL)."""
    new_size = size + base
    if size == 0 or (size > 0) == (base > 0):
        return new_size, open_notional - quote, 0
    abs_size, abs_base = abs(size), abs(base)
    if abs_base <= abs_size:
        removed = s_mul_div_up(open_notional, abs_base, abs_size)
        return new_size, open_notional - removed, quote - removed
    closing = s_mul_div_down(quote, abs_size, abs_base)
    return new_size, -(quote - closing), closing - open_notional


def _int128(v: int) -> int:
    if not -(2**127) <= v <= INT128_MAX:
        raise ModelRevert("SafeCastOverflowedIntDowncast", 128, v)
    return v


def _uint128(v: int) -> int:
    if not 0 <= v <= UINT128_MAX:
        raise ModelRevert("SafeCastOverflowedUintDowncast", 128, v)
    return v


def _wrap_i32(v: int) -> int:
    """v modulo 2^32 as an int32 (Solidity's truncating int256 -> int32 conversion)."""
    return (v + 2**31) % 2**32 - 2**31


def _int_n(v: int, bits: int) -> int:
    if not -(2 ** (bits - 1)) <= v <= 2 ** (bits - 1) - 1:
        raise ModelRevert("SafeCastOverflowedIntDowncast", bits, v)
    return v


# ------------------------------------------------------------------ MarginMath


def account_value(collateral: int, s) -> int:
    """MarginMath.accountValue: collateral + unrealized PnL - pending funding (`s`: a MarginSummary)."""
    return collateral + (s.unrealized_pnl - s.pending_funding)


def excess_over_maintenance(collateral: int, s) -> int:
    """ClearingHouseMargin._excessOverMaintenance: account value - maintenance, free and auctioned parts."""
    return account_value(collateral, s) - (s.maintenance + s.auctioned_maintenance)


def free_collateral(collateral: int, value: int, s) -> int:
    """MarginMath.freeCollateral: min(collateral - pending funding, account value) - initial."""
    return min(collateral - s.pending_funding, value) - s.initial
