"""Exact-integer mirror of contracts/libraries/FundingMath.sol (the funding rate's motion).

Every operation is the contract's, wei for wei: Solidity's signed `/` truncates toward zero, so
`tdiv` is used wherever the contract divides a signed value. See FundingMath.sol for the model:
dr/dt = clamp((T - r) / tau, -v, +v), solved in closed form.
"""
from __future__ import annotations

from .units import HOUR, WAD
LN2_WAD = 693_147_180_559_945_309
EXP_TERMS = 18


def tdiv(a: int, b: int) -> int:
    """Integer division truncating toward zero (Solidity semantics)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def exp_neg_wad(x: int) -> int:
    """floor-ish e^(-x/1e18) * 1e18, term by term exactly as the contract computes it."""
    assert x >= 0
    if x >= 42 * WAD:
        return 0
    k = x // LN2_WAD
    r = x - k * LN2_WAD
    term, pos, neg = WAD, WAD, 0
    for n in range(1, EXP_TERMS + 1):
        term = term * r // (n * WAD)
        if n % 2 == 1:
            neg += term
        else:
            pos += term
    return (pos - neg) >> k


def evolve(r0: int, target: int, dt: int, tau: int, v: int) -> tuple[int, int]:
    """(rate after dt, integral of the rate over dt [wad/h * s])."""
    if dt == 0:
        return r0, 0
    d0 = target - r0
    if d0 == 0:
        return r0, r0 * dt
    sign = 1 if d0 > 0 else -1
    gap = abs(d0)
    max_move = v * dt // HOUR
    v_tau = v * tau // HOUR
    dt_w = dt * WAD
    r1 = r0
    lin_w = 0
    area = 0
    if gap > v_tau:
        t1_w = (gap - v_tau) * HOUR * WAD // v
        if t1_w >= dt_w:
            r = r0 + sign * max_move
            return r, tdiv((r0 + r) * dt, 2)
        r1 = target - sign * v_tau
        lin_w = t1_w
        area = tdiv((r0 + r1) * t1_w, 2 * WAD)
    u_w = dt_w - lin_w
    d1 = target - r1
    e = exp_neg_wad(u_w // tau)
    r = target - tdiv(d1 * e, WAD)
    area += tdiv(target * u_w, WAD) - tdiv(d1 * tau * (WAD - e), WAD)
    if abs(r - r0) > max_move:
        r = r0 + sign * max_move
    return r, area


def clamp(x: int, cap: int) -> int:
    return max(-cap, min(cap, x))
