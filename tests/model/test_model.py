"""Properties of the reference model alone (vperp.model), no chain: fast, run on every commit.

The differential fuzz (tests/model/test_differential.py) proves the model equals the contracts; this file
proves the model (hence the contracts) has the properties of docs/design.md (margin, trading), docs/funding.md
and invariants 1-3, 5-7 (docs/specification.md) ask for:
money is only moved (never created), fees split exactly, funding is zero-sum with rounding in the
pool's favour, a failed action changes nothing, the funding rate respects its clamp and velocity,
and the model agrees with the independent formulas of tests/helpers/trading.py.
"""
from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.trading import apply_trade as h_apply_trade
from helpers.trading import fee_of, insurance_part, notional_up, requirement, upnl
from helpers.trading import price as h_price
from helpers.trading import swap as h_swap
from vperp.config import lagging_peg_config, plain_config
from vperp.funding import evolve
from vperp.model import WAD, Cancelled, Model, ModelRevert, Redone, apply_trade, vamm_price, vamm_swap
from vperp.units import FUNDING_WINDOW_HOURS

T0 = 1_800_000_000
OWNERS = ("alice", "bob", "carol")
MAX_UINT = 2**256 - 1
SCALE = 10**12  # 6-decimal collateral

NAV_WEI = 4  # rounding a trade may move the pool's NAV by, beyond its fee [wei]

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def fresh() -> Model:
    return Model.from_config(lagging_peg_config(), T0)


def snapshot(m: Model):
    return copy.deepcopy(m.__dict__)


def buy_any(base):
    return MAX_UINT if base > 0 else 0


# ---------------------------------------------------------------------------- random sequences

def _open():
    # A fresh strategy object per use: `one_of` merges identical ones, and opens should be common.
    return st.tuples(st.just("open"), st.sampled_from(OWNERS), st.sampled_from([0, 1]), st.sampled_from([1, 2]),
                     st.sampled_from([1, -1]), st.one_of(st.integers(10**4, 10**7), st.integers(1, 10**8)))


_time = st.tuples(st.just("time"), st.integers(1, 6 * 3600))
actions = st.one_of(
    _open(), _open(), _open(), st.tuples(st.just("time"), st.integers(60, 3 * 3600)),
    st.tuples(st.just("deposit"), st.sampled_from(OWNERS), st.sampled_from([0, 1]), st.integers(0, 10**12)),
    st.tuples(st.just("close"), st.sampled_from(OWNERS), st.sampled_from([0, 1]), st.sampled_from([1, 2])),
    st.tuples(st.just("withdraw"), st.sampled_from(OWNERS), st.sampled_from([0, 1]), st.integers(0, 10**12)),
    st.tuples(st.just("transfer"), st.sampled_from(OWNERS), st.sampled_from([0, 1]), st.sampled_from([0, 1]),
              st.integers(0, 10**24)),
    st.tuples(st.just("oracle"), st.sampled_from([1, 2]), st.integers(-800, 800)),
    _time,
    st.tuples(st.just("poke"), st.sampled_from([1, 2])),
)


class Ledger:
    """Runs actions on a model and tracks what must be conserved."""

    def __init__(self):
        self.m = fresh()
        self.t = T0
        self.net_in = self.m.token_balance * SCALE  # every WAD that entered the Vault, net
        self.trades: list = []
        for owner in OWNERS:  # start every account with 50k of margin so most trades can happen
            for sub in (0, 1):
                self.net_in += self.m.deposit(owner, sub, 50_000 * 10**6, self.t)

    def run(self, action) -> None:
        m, kind = self.m, action[0]
        self.t += 1
        before = snapshot(m)
        try:
            if kind == "deposit":
                self.net_in += m.deposit(action[1], action[2], action[3], self.t)
            elif kind == "withdraw":
                self.net_in -= m.withdraw(action[1], action[2], action[3], self.t)
            elif kind == "transfer":
                m.transfer_margin(action[1], action[2], action[3], action[4], self.t)
            elif kind == "open":
                _, owner, sub, mid, sign, ppb = action
                base = sign * (m.markets[mid].x * ppb // 10**9)
                self._trade(lambda: m.open_position(owner, sub, mid, base, buy_any(base), self.t, self.t))
            elif kind == "close":
                _, owner, sub, mid = action
                size = m.position(owner, sub, mid, self.t)[0]
                self._trade(lambda: m.close_position(owner, sub, mid, buy_any(-size), self.t, self.t))
            elif kind == "oracle":
                mk = m.markets[action[1]]
                m.set_answer(action[1], mk.answer * (10_000 + action[2]) // 10_000, self.t)
            elif kind == "time":
                self.t += action[1]
            elif kind == "poke":
                m.poke_funding(action[1], self.t)
        except ModelRevert:
            # A failed action is atomic: nothing at all changed (TWAP/funding update included).
            assert snapshot(m) == before, f"{action} reverted but changed the model"

    def _trade(self, fn) -> None:
        m = self.m
        pool0, ins0 = m.pool_balance(), m.insurance_fund()
        nav0 = m.pool_nav(self.t)
        r = fn()
        self.trades.append(r)
        # The pool values traders at their vAMM exit: a trade moves the exit value and the open notionals
        # by the same quote flow, so NAV moves by the pool's part of the fee only, up to the rounding of
        # the swap, the exit values and the funding basis (a few wei).
        drift = m.pool_nav(self.t) - nav0 - (r.fee - r.to_insurance)
        assert -NAV_WEI <= drift <= NAV_WEI, f"a trade moved NAV by {drift} wei beyond its fee"
        # Fee split: insurance gets floor(fee x share), the pool the rest; realized PnL and funding
        # move between the trader and the pool only.
        assert m.insurance_fund() - ins0 == r.to_insurance
        assert m.pool_balance() - pool0 == r.funding - r.realized_pnl + r.fee - r.to_insurance

    def check(self) -> None:
        m = self.m
        # Money is only moved: collateral + pool + insurance == net deposits, to the wei, and the
        # Vault's tokens cover every claim exactly (no bad debt is possible without liquidations).
        assert m.total_claims() == self.net_in
        assert m.token_balance * SCALE == self.net_in
        for mid, mk in m.markets.items():
            sizes = [p.size for (k_mid, _, _), p in m.positions.items() if k_mid == mid]
            assert mk.long_open_interest == sum(s for s in sizes if s > 0)
            assert mk.short_open_interest == -sum(s for s in sizes if s < 0)
            assert abs(mk.rate) <= mk.funding_params.max_funding_rate
            assert abs(mk.target) <= mk.funding_params.max_funding_rate
            for (k_mid, _, _), p in m.positions.items():
                if k_mid == mid:
                    assert p.size == 0 or abs(p.size) >= mk.min_position_size


@FAST
@given(st.lists(actions, min_size=5, max_size=40))
def test_random_sequences_conserve_money_and_aggregates(seq):
    led = Ledger()
    for a in seq:
        led.run(a)
        led.check()


def _flatten(m: Model, t: int, mid: int, owner, sub: int) -> None:
    """Close a position whatever the state: re-point the index at the vAMM price (so the trade is
    inside the price band) and close in halves when one trade would move the price too far."""
    mk = m.markets[mid]
    while (size := m.position(owner, sub, mid, t)[0]) != 0:
        m.set_index(mid, max(mk.spot // mk.oracle_scale, 1) * mk.oracle_scale, t)
        chunk = -size
        while True:
            try:
                m.open_position(owner, sub, mid, chunk, buy_any(chunk), t, t)
                break
            except ModelRevert as e:
                assert e.name == "PriceBandExceeded", e
                half = chunk // 2 if chunk > 0 else -((-chunk) // 2)
                if abs(size + half) < mk.min_position_size or abs(half) < mk.min_position_size:
                    raise
                chunk = half


@FAST
@given(st.lists(actions, min_size=5, max_size=40))
def test_closing_everything_returns_every_wei_to_traders_pool_and_insurance(seq):
    led = Ledger()
    for a in seq:
        led.run(a)
    m = led.m
    led.t += 1
    for (mid, owner, sub), p in list(m.positions.items()):
        if p.size:
            # Reducing is never blocked by margin (docs/design.md#accounts-and-margin), even for an account under
            # water.
            _flatten(m, led.t, mid, owner, sub)
    assert all(p.size == 0 for p in m.positions.values())
    assert all(mk.long_open_interest == mk.short_open_interest == 0 for mk in m.markets.values())
    assert all(a.open_markets == 0 for a in m.accounts.values())
    assert m.total_claims() == led.net_in
    # With no position left, all positive collateral is withdrawable (invariant 9, docs/specification.md).
    for (owner, sub), acct in list(m.accounts.items()):
        if acct.collateral >= SCALE:
            led.net_in -= m.withdraw(owner, sub, acct.collateral // SCALE, led.t)
        assert acct.collateral < SCALE
    assert m.total_claims() == led.net_in == m.token_balance * SCALE


# ---------------------------------------------------------------------------- funding


def _skewed_market(long_size, short_size, hours=6):
    """Alice long `long_size` ETH, Bob short `short_size` ETH, premium sampled, `hours` of accrual.

    T0 is the first second of an hour: of the pokes every 900 s, the last (T0 + 3602) is the first block of the
    next hour, which samples the skew (the target is re-sampled once an hour); the rate moves from then on."""
    m = fresh()
    t = T0
    assert T0 % 3600 == 0
    for who in ("alice", "bob"):
        m.deposit(who, 0, 10**12, t)
    t += 1
    m.open_position("alice", 0, 1, long_size, MAX_UINT, t, t)
    t += 1
    m.open_position("bob", 0, 1, -short_size, 0, t, t)
    for _ in range(4):  # sample the premium: the vAMM is skewed long, so the rate turns positive
        t += 900
        m.poke_funding(1, t)
    t += hours * 3600
    return m, t


@pytest.mark.parametrize(
    "long_size, short_size",
    [(100 * WAD, 40 * WAD), (30 * WAD, 20 * WAD + 1), (50 * WAD, WAD),  # net long: positive rate
     (40 * WAD, 100 * WAD), (20 * WAD + 1, 30 * WAD), (WAD, 50 * WAD)],  # net short: negative rate
)
def test_funding_is_zero_sum_with_rounding_in_the_pools_favour(long_size, short_size):
    m, t = _skewed_market(long_size, short_size)
    sign = 1 if long_size > short_size else -1
    # the sampled target, and the rate in force now: the update that sampled the target moved the rate toward
    # the old one (0), so the stored rate is still 0; the hours since moved it toward the new target
    assert m.markets[1].target * sign > 0
    assert m.funding_state(1, t)[0] * sign > 0
    pa = m.position("alice", 0, 1, t)[2]
    pb = m.position("bob", 0, 1, t)[2]
    assert pa * sign > 0 > pb * sign  # longs pay a positive rate, shorts a negative one
    cf_now = m._cumulative_funding_now(m.markets[1], t)
    exact_num = sum(p.size * (cf_now - p.last_cumulative_funding) for p in m.positions.values())
    # Traders together owe at least the exact amount (each owed amount rounds up) and at most one
    # wei per position more: the pool never pays for rounding.
    assert exact_num <= (pa + pb) * WAD < exact_num + 2 * WAD
    # Settling both positions: what the traders pay in funding is exactly what the pool receives.
    pool0, coll0 = m.pool_balance(), m.collateral("alice", 0) + m.collateral("bob", 0)
    ra = m.close_position("alice", 0, 1, 0, t, t)
    rb = m.close_position("bob", 0, 1, MAX_UINT, t, t)
    assert (ra.funding, rb.funding) == (pa, pb)
    pool_delta = m.pool_balance() - pool0
    traders_delta = m.collateral("alice", 0) + m.collateral("bob", 0) - coll0
    ins_delta = ra.to_insurance + rb.to_insurance
    assert traders_delta + pool_delta + ins_delta == 0
    funding_to_pool = pool_delta - (ra.fee - ra.to_insurance + rb.fee - rb.to_insurance) + ra.realized_pnl + rb.realized_pnl
    assert funding_to_pool == pa + pb
    # The rate's sign follows the skew, so the larger side pays: the pool receives the imbalance.
    assert pa + pb > 0


@pytest.mark.parametrize("size, delta", [(-3, -1), (3, -1), (-3, 1), (3, 1), (-(10**18) - 7, -(10**17) - 3)])
def test_owed_funding_rounds_up_for_every_sign(size, delta):
    """A position owes ceil(size x (cf_now - cf_last) / 1e18) whatever the signs (docs/design.md#units-and-rounding:
    what a user owes rounds up). WadMath.sMulWadUp(int256,int256) rounds down when its second factor is negative."""
    from vperp.model import s_mul_wad_up
    exact = size * delta
    got = s_mul_wad_up(size, delta)
    assert got * WAD >= exact > (got - 1) * WAD


def test_rate_obeys_clamp_and_velocity_on_every_update():
    m, t = _skewed_market(400 * WAD, WAD, hours=0)
    mk = m.markets[1]
    f = mk.funding_params
    prev_rate, prev_t = mk.rate, mk.accumulator.timestamp
    for dt in (1, 60, 900, 3600, 7 * 3600, 86_400):
        t += dt
        m.set_index(1, 3000 * WAD, t)  # keep the feed fresh (24 h heartbeat)
        m.poke_funding(1, t)
        assert abs(mk.rate) <= f.max_funding_rate
        assert abs(mk.rate - prev_rate) <= f.max_rate_velocity * (t - prev_t) // 3600
        prev_rate, prev_t = mk.rate, t
    assert mk.target == f.max_funding_rate  # a ~8 % premium over 24 h exceeds the 0.1 %/h cap


def test_two_pokes_in_one_block_equal_one():
    m, t = _skewed_market(100 * WAD, 40 * WAD, hours=0)
    t += 3600
    once = copy.deepcopy(m)
    once.poke_funding(1, t)
    m.poke_funding(1, t)
    m.poke_funding(1, t)
    assert m.__dict__ == once.__dict__


def test_lazy_accrual_view_equals_poke():
    m, t = _skewed_market(100 * WAD, 40 * WAD, hours=3)
    view = m.market_state(1, t)
    m.poke_funding(1, t)
    assert m.market_state(1, t)[5] == view[5]  # cumulative funding: view == accrued
    applied = m.funding_state(1, t)[0]
    assert applied == m.markets[1].rate


def test_fundingstate_projections_follow_the_kernel():
    """fundingState's target is clamp(premium / 24 + the skew term of the mean skew over the funding window), the
    projections follow the kernel toward it. The window: the market is younger than the funding window, so from the
    listing (T0): no skew for 1 s, Alice's 100 ETH long for 1 s, then the 60 ETH net long for the 7,200 s since;
    the rest of the window (W hours less those 7,202 s) is padded at premium 0 and skew 0 (mark and index at the
    last index). The mean is of the skew in bps as each block found it (truncated), so it is not the exact
    instantaneous term that `skewFunding` reports."""
    m, t = _skewed_market(100 * WAD, 40 * WAD, hours=1)
    applied, target, premium, mark, index, p1, p8 = m.funding_state(1, t)
    f = m.markets[1].funding_params
    assert premium == (mark - index) * WAD // index > 0
    mk = m.markets[1]
    x0 = plain_config().markets[0].base_reserve * WAD  # ETH's listed base reserve
    assert mk.x == x0 - 100 * WAD + 40 * WAD
    assert (mk.long_open_interest, mk.short_open_interest) == (100 * WAD, 40 * WAD)
    skew = (mk.long_open_interest - mk.short_open_interest) * WAD * mk.skew_funding_ppm // (mk.x * 10**6)
    assert skew > 0 and m.skew_funding(1) == (2_000, skew)  # the instantaneous term, exact
    window = FUNDING_WINDOW_HOURS * 3600
    span = t - T0
    assert span == 7_202 < window  # the funding window reaches back to the listing: padded to the whole window
    # the TWAPs, recomputed from the trades: the listing price for 1 s, Alice's price for 1 s, the price after
    # Bob's trade since, and the padding at the last index (the feed's 3,000 throughout)
    y0 = 3000 * x0  # listed at 3,000
    _, xa, ya = vamm_swap(x0, y0, 100 * WAD)
    _, xb, yb = vamm_swap(xa, ya, -40 * WAD)
    assert (xb, yb) == (mk.x, mk.y)
    index_price = 3000 * WAD
    assert mk.last_index_price == index_price
    pad = (window - span) * index_price
    mark_sum = vamm_price(x0, y0) * 1 + vamm_price(xa, ya) * 1 + vamm_price(xb, yb) * (t - (T0 + 2))
    assert (mark, index) == ((mark_sum + pad) // window, (index_price * span + pad) // window)
    assert 0 < mark - index <= (vamm_price(xa, ya) - index_price) * span // window  # diluted by the padding
    # the mean skew term, recomputed from the trades: bps as each block found the market, times the seconds it held
    bps_long = 100 * 10**4 * WAD // (x0 - 100 * WAD)  # after Alice's trade (T0 + 1), found by Bob's block (T0 + 2)
    bps_net = 60 * 10**4 * WAD // (x0 - 60 * WAD)  # after Bob's trade, found by every later block
    assert (bps_long, bps_net) == (101, 60)
    area = 0 * 1 + bps_long * 1 + bps_net * (t - (T0 + 2))  # the padding adds no skew
    mean_term = area * 2_000 * 10**8 // window
    assert 0 < mean_term != skew
    assert mean_term < area * 2_000 * 10**8 // span  # what the unpadded span (the rule before) gave
    assert target == min(premium // 24 + mean_term, f.max_funding_rate) < f.max_funding_rate
    assert p1 == evolve(applied, target, 3600, f.smoothing_tau, f.max_rate_velocity)[0]
    assert p8 == evolve(applied, target, 8 * 3600, f.smoothing_tau, f.max_rate_velocity)[0]


# ---------------------------------------------------------------------------- trading


@FAST
@given(st.integers(1, 3 * 10**5), st.sampled_from([1, 2]), st.sampled_from([1, -1]))
def test_open_then_close_in_one_block_never_gains(ppb, mid, sign):
    """Invariant 3 (docs/specification.md): a round trip at a constant index costs at least the two fees."""
    m = fresh()
    m.deposit("alice", 0, 10**12, T0)
    base = sign * max(m.markets[mid].min_position_size, m.markets[mid].x * ppb // 10**7)
    c0, k0 = m.collateral("alice", 0), m.markets[mid].x * m.markets[mid].y
    r1 = m.open_position("alice", 0, mid, base, buy_any(base), T0 + 1, T0 + 1)
    k1 = m.markets[mid].x * m.markets[mid].y
    r2 = m.close_position("alice", 0, mid, buy_any(-base), T0 + 1, T0 + 1)
    k2 = m.markets[mid].x * m.markets[mid].y
    assert k0 <= k1 <= k2  # rounding against the trader: the curve never loses value
    assert m.collateral("alice", 0) - c0 == r2.realized_pnl - r1.fee - r2.fee
    assert r2.realized_pnl <= 0
    assert m.collateral("alice", 0) <= c0 - r1.fee - r2.fee


def test_unrealized_profit_is_not_withdrawable():
    m = fresh()
    m.deposit("alice", 0, 10_000 * 10**6, T0)
    m.open_position("alice", 0, 1, 10 * WAD, MAX_UINT, T0 + 1, T0 + 1)
    m.set_index(1, 3300 * WAD, T0 + 2)  # +10 %: about +3000 of unrealized profit
    value = m.account_value("alice", 0, T0 + 2)
    free = m.free_collateral("alice", 0, T0 + 2)
    initial, _ = m.margin_requirements("alice", 0, T0 + 2)
    assert value > m.collateral("alice", 0)
    assert free == m.collateral("alice", 0) - m.position("alice", 0, 1, T0 + 2)[2] - initial
    with pytest.raises(ModelRevert) as e:
        m.withdraw("alice", 0, free // SCALE + 1, T0 + 3)
    assert e.value.name == "InsufficientFreeCollateral"
    m.withdraw("alice", 0, free // SCALE, T0 + 3)


def test_reducing_is_allowed_below_initial_margin_but_increasing_is_not():
    m = fresh()
    m.deposit("alice", 0, 1_000 * 10**6, T0)
    m.open_position("alice", 0, 1, 3 * WAD, MAX_UINT, T0 + 1, T0 + 1)  # ~9000 notional, 10 % IMR
    m.set_index(1, 2800 * WAD, T0 + 2)
    assert m.free_collateral("alice", 0, T0 + 2) < 0
    with pytest.raises(ModelRevert) as e:
        m.open_position("alice", 0, 1, WAD // 10, MAX_UINT, T0 + 3, T0 + 3)
    assert e.value.name == "InsufficientMargin"
    m.open_position("alice", 0, 1, -WAD, 0, T0 + 3, T0 + 3)  # reduce: allowed


def test_isolated_subaccount_holds_one_market():
    m = fresh()
    m.deposit("alice", 1, 100_000 * 10**6, T0)
    m.open_position("alice", 1, 1, WAD, MAX_UINT, T0 + 1, T0 + 1)
    with pytest.raises(ModelRevert) as e:
        m.open_position("alice", 1, 2, WAD // 100, MAX_UINT, T0 + 2, T0 + 2)
    assert (e.value.name, e.value.error_args) == ("IsolatedSubaccountInUse", ("alice", 1, 1, 2))


def test_stale_oracle_blocks_trading_and_health_views():
    m = fresh()
    m.deposit("alice", 0, 100_000 * 10**6, T0)
    m.open_position("alice", 0, 1, WAD, MAX_UINT, T0 + 1, T0 + 1)
    late = T0 + 86_400 + 1
    for fn in (lambda: m.open_position("alice", 0, 1, WAD, MAX_UINT, late, late),
               lambda: m.account_value("alice", 0, late), lambda: m.poke_funding(1, late)):
        with pytest.raises(ModelRevert) as e:
            fn()
        assert e.value.name == "StaleOracle"
    m.set_index(1, 3000 * WAD, late)
    assert m.account_value("alice", 0, late) > 0


# ---------------------------------------------------------------------------- formulas


@FAST
@given(
    x=st.integers(10**18, 10**30),
    y=st.integers(10**18, 10**33),
    base=st.integers(-(10**29), 10**29).filter(bool),
    size=st.integers(-(10**24), 10**24),
    on=st.integers(-(10**30), 10**30),
    index=st.integers(1, 10**24),
)
def test_model_formulas_equal_the_independent_helpers(x, y, base, size, on, index):
    """vperp.model vs tests/helpers/trading.py (written from docs/design.md and IClearingHouse, not the Solidity)."""
    if base < x:
        assert vamm_swap(x, y, base) == h_swap(x, y, base)
        assert vamm_price(x, y) == h_price(x, y)
    q = -abs(base) if base > 0 else abs(base)
    assert apply_trade(size, on, base, q) == h_apply_trade(size, on, base, q)
    m = fresh()
    mk = m.markets[1]
    fee = fee_of(q, mk.taker_fee)
    assert fee == -((-abs(q) * mk.taker_fee) // WAD)
    assert insurance_part(fee, mk.insurance_fee_share) == fee * mk.insurance_fee_share // WAD
    # Margin summary of a single position at `index` matches the helpers' requirement/PnL formulas.
    if size:
        m.positions[(1, "z", 0)] = type(m._position(1, "z", 0))(size, on, 0)
        s = m._margin_summary("z", 0, 1, T0, 1, index)
        assert s.unrealized_pnl == upnl(size, on, index)
        assert s.initial == requirement(size, index, mk.imr)
        assert s.maintenance == requirement(size, index, mk.mmr)
        assert notional_up(size, index) * WAD >= abs(size) * index


def test_hand_values_first_eth_buy():
    """Buying 1 ETH from (10_000, 30_000_000): the same figures as tests/clearinghouse/test_trading_open.py."""
    m = fresh()
    m.deposit("alice", 0, 10_000 * 10**6, T0)
    r = m.open_position("alice", 0, 1, WAD, MAX_UINT, T0 + 1, T0 + 1)
    assert r.quote == -3000300030003000300031
    assert r.fee == 3000300030003000301
    assert m.position("alice", 0, 1, T0 + 1) == (WAD, 3000300030003000300031, 0)


# ---------------------------------------------------------------------------- the value-leak fixes (a4f1999)


def _kicked(drop_bps=1000, deposit=10_000, size=30 * WAD):
    """Alice long `size` ETH on 10k of margin, the index `drop_bps` lower, kicked by the keeper."""
    m = fresh()
    m.deposit("alice", 0, deposit * 10**6, T0)
    m.open_position("alice", 0, 1, size, MAX_UINT, T0 + 1, T0 + 1)
    m.set_index(1, 3000 * WAD * (10_000 - drop_bps) // 10_000, T0 + 2)
    auction_id, s = m.kick("alice", 0, 1, "keeper", T0 + 3)
    return m, auction_id, s


def test_default_insurance_seed_is_100k():
    m = fresh()
    assert m.insurance_fund() == 100_000 * WAD
    assert m.token_balance == (10_000_000 + 100_000) * 10**6


@pytest.mark.parametrize("max_discount", [None, 8 * 10**16])
def test_auctioned_part_keeps_backing_for_its_worst_fill(max_discount):
    """MarginSummary: the auctioned part owes its backing, notional x max(mmr, maxDiscount) (enough for
    its worst fill), inside `initial`, not inside `maintenance`; an account in auction may withdraw no
    more than leaves its value above that backing. Default parameters: mmr (5 %) > maxDiscount (2 %);
    then a maxDiscount of 8 % above mmr."""
    m, _, s = _kicked(drop_bps=750)
    if max_discount is not None:
        from dataclasses import replace
        m.auction_params[1] = replace(m.auction_params[1], max_discount=max_discount)
    t = T0 + 4
    p = m.positions[(1, "alice", 0)]
    assert p.auctioned == s.size and s.restores  # a partial slice: a free part remains
    mk = m.markets[1]
    index = m.index_price(1, t)
    summary = m.margin_summary("alice", 0, 1, t)
    a_notional = -((-abs(p.auctioned) * index) // WAD)
    ratio = max(mk.mmr, m.auction_params[1].max_discount)
    assert ratio == (mk.mmr if max_discount is None else max_discount)
    backing = -((-a_notional * ratio) // WAD)
    free_notional = -((-abs(p.size - p.auctioned) * index) // WAD)
    assert (summary.auctioned_notional, summary.auctioned_maintenance) == (a_notional, backing)
    assert summary.maintenance == -((-free_notional * mk.mmr) // WAD)
    assert summary.initial == -((-free_notional * mk.imr) // WAD) + backing
    value, maintenance, an, am = m.liquidation_state("alice", 0, t)
    assert (maintenance, an, am) == (summary.maintenance, a_notional, backing)
    # Whatever it may withdraw, the auctioned part's backing stays behind.
    m.deposit("alice", 0, 5_000 * 10**6, t)
    free = m.free_collateral("alice", 0, t)
    assert free > 0
    with pytest.raises(ModelRevert) as e:
        m.withdraw("alice", 0, free // SCALE + 1, t)
    assert e.value.name == "InsufficientFreeCollateral"
    m.withdraw("alice", 0, free // SCALE, t)
    value, _, _, am = m.liquidation_state("alice", 0, t)
    assert value >= am


def test_reducing_trade_skips_the_price_band():
    """A reduce or close moving the vAMM away from the index and out of its band goes through; the same
    trade opening new risk is refused (PriceBandExceeded)."""
    m = fresh()
    m.deposit("alice", 0, 10**12, T0)
    m.deposit("bob", 0, 10**12, T0)
    m.open_position("alice", 0, 1, 200 * WAD, MAX_UINT, T0 + 1, T0 + 1)
    mk = m.markets[1]
    # The index 9.9 % above the vAMM: selling 200 ETH takes the price further below it, past the 10 % band.
    m.set_index(1, mk.spot * 1099 // 1000 // mk.oracle_scale * mk.oracle_scale, T0 + 2)
    with pytest.raises(ModelRevert) as e:
        m.open_position("bob", 0, 1, -200 * WAD, 0, T0 + 3, T0 + 3)
    assert e.value.name == "PriceBandExceeded"
    with pytest.raises(ModelRevert) as e:  # a flip is not a reduce
        m.open_position("alice", 0, 1, -201 * WAD, 0, T0 + 3, T0 + 3)
    assert e.value.name == "PriceBandExceeded"
    r = m.close_position("alice", 0, 1, 0, T0 + 3, T0 + 3)
    assert r.new_size == 0 and abs(r.price_after - m.index_price(1, T0 + 3)) > m.index_price(1, T0 + 3) // 10


def test_at_most_16_open_markets():
    base = plain_config().markets[0]
    from dataclasses import replace
    cfg = plain_config().with_markets(*[replace(base, symbol=f"M{i}") for i in range(17)])
    m = Model.from_config(cfg, T0)
    m.deposit("alice", 0, 10**12, T0)
    for mid in range(1, 17):
        m.open_position("alice", 0, mid, WAD, MAX_UINT, T0 + 1, T0 + 1)
    assert bin(m.open_markets("alice", 0)).count("1") == 16
    with pytest.raises(ModelRevert) as e:
        m.open_position("alice", 0, 17, WAD, MAX_UINT, T0 + 2, T0 + 2)
    assert (e.value.name, e.value.error_args) == ("TooManyOpenMarkets", ("alice", 0, 16))
    m.open_position("alice", 0, 16, WAD, MAX_UINT, T0 + 2, T0 + 2)  # a held market: no new bit
    m.close_position("alice", 0, 3, 0, T0 + 2, T0 + 2)
    m.open_position("alice", 0, 17, WAD, MAX_UINT, T0 + 2, T0 + 2)


def test_kick_costs_are_capped_at_the_room_after_the_worst_fill():
    """Under water after the worst fill: no keeper reward, no penalty, the shortfall recorded; the pool's
    NAV sets aside what the insurance fund cannot cover. The keeper of such an account gets a bounty from
    the insurance fund instead (499a26b): ceil(chip x slice notional), at most maxKeeperReward and the
    fund, reported in the Kick event's keeperReward and kickPreview."""
    m = fresh()
    m.deposit("alice", 0, 10_000 * 10**6, T0)
    m.open_position("alice", 0, 1, 30 * WAD, MAX_UINT, T0 + 1, T0 + 1)
    m.set_index(1, 3000 * WAD * 87 // 100, T0 + 2)
    preview = m.kick_preview("alice", 0, 1, T0 + 3)
    insurance, keeper = m.insurance_fund(), m.collateral("keeper", 0)
    _, s = m.kick("alice", 0, 1, "keeper", T0 + 3)
    value, _, an, _ = m.liquidation_state("alice", 0, T0 + 3)
    room = value - (-((-an * m._auction_params_of(1).max_discount) // WAD))
    assert (s.keeper_reward, s.penalty) == (0, 0) and room < 0
    lp = m.liquidation_params
    bounty = min(-((-s.notional * lp.chip) // WAD), lp.max_keeper_reward, insurance)
    assert s.bounty == bounty > 0 and preview == (s.size, s.notional, bounty, 0)
    assert m.insurance_fund() == insurance - bounty and m.collateral("keeper", 0) == keeper + bounty
    assert m.keeper_bounties == [("keeper", bounty)]
    assert s.shortfall == -room == m.shortfall_of("alice", 0) == m.pending_bad_debt()
    assert m.shortfall_log[-1] == ("alice", 0, s.shortfall, s.shortfall)
    assert m.uncovered_bad_debt() == max(0, s.shortfall - m.insurance_fund())
    # A healthy-enough account pays both in full, records no shortfall, and its keeper gets no bounty.
    m2, _, s2 = _kicked(drop_bps=750)
    assert s2.keeper_reward > 0 and s2.penalty > 0 and s2.shortfall == 0 and s2.bounty == 0
    assert m2.keeper_bounties == []


def test_redo_of_a_recovered_account_cancels_and_cancel_needs_recovery():
    m, auction_id, s = _kicked(drop_bps=700)
    t = T0 + 4
    value, maintenance, _, am = m.liquidation_state("alice", 0, t)
    with pytest.raises(ModelRevert) as e:
        m.cancel(auction_id, t)
    target = -((-(maintenance + am) * m.liquidation_params.target_health) // WAD)  # targetHealth x, rounded up
    assert (e.value.name, e.value.error_args) == ("AuctionStillNeeded", (auction_id, value, target))
    m.deposit("alice", 0, 10_000 * 10**6, t)
    t += 1801
    m.set_index(1, 2790 * WAD, t)  # keep the feed fresh, the index where it was
    keeper_before = m.collateral("keeper", 0)
    r = m.redo(auction_id, "keeper", t)
    assert r == Cancelled(s.size, *m.liquidation_state("alice", 0, t)[:1], r.requirement)
    assert m.collateral("keeper", 0) == keeper_before  # unpaid
    assert m.auctioned_size("alice", 0, 1) == 0 and m.live_notional == 0
    with pytest.raises(ModelRevert) as e:
        m.cancel(auction_id, t)
    assert e.value.name == "AuctionFinished"


def test_redo_tip_capped_and_shortfall_refreshed_by_takes():
    m, auction_id, s = _kicked(drop_bps=1300)
    t = T0 + 3 + 1801
    m.set_index(1, 2610 * WAD, t)
    r = m.redo(auction_id, "keeper", t)
    assert isinstance(r, Redone) and r.tip == 0
    m.deposit("bob", 0, 10**12, t)
    size = m.auctions[auction_id].size
    m.take(auction_id, size // 2, MAX_UINT, "bob", 0, t + 1)
    value, _, an, _ = m.liquidation_state("alice", 0, t + 1)
    assert m.shortfall_of("alice", 0) == max(0, -(value - (-((-an * 2 * 10**16) // WAD))))
    m.take(auction_id, MAX_UINT, MAX_UINT, "bob", 0, t + 2)
    owner, sub, debt, from_insurance, from_pool = m.bad_debt[-1]
    assert (owner, sub) == ("alice", 0) and from_pool == 0 and debt <= s.shortfall
    assert m.shortfall_of("alice", 0) == m.pending_bad_debt() == 0


def _move_spot(m: Model, who: str, mid: int, price: int, t: int) -> None:
    """`who` trades market `mid` so that its vAMM price lands at about `price` (any limit)."""
    mk = m.markets[mid]
    import math
    x1 = math.isqrt(mk.x * mk.y * WAD // price)
    base = mk.x - x1  # > 0: buy (the price rises), < 0: sell
    m.open_position(who, 0, mid, base, buy_any(base), t, t)


def _expired_thrice(m: Model, t: int, index: int):
    """Alice 600 ETH long (two buys, the index meeting the vAMM between them) on 400k, the index down to
    `index`, kicked whole, three redos at that index: ready for the backstop. Returns (auction_id, t)."""
    m.deposit("alice", 0, 400_000 * 10**6, T0)
    m.open_position("alice", 0, 1, 300 * WAD, MAX_UINT, T0 + 1, T0 + 1)
    mk = m.markets[1]
    m.set_index(1, mk.spot // mk.oracle_scale * mk.oracle_scale, T0 + 2)  # the band moves with the index
    m.open_position("alice", 0, 1, 300 * WAD, MAX_UINT, T0 + 2, T0 + 2)
    t = max(t, T0 + 3)
    m.set_index(1, index, t)
    auction_id, s = m.kick("alice", 0, 1, "keeper", t)
    assert s.size == 600 * WAD
    for _ in range(3):
        t += 1801
        m.set_index(1, index, t)
        m.redo(auction_id, "keeper", t)
    return auction_id, t + 1801


def test_backstop_closes_no_worse_than_the_auctions_full_discount():
    """After three redos at 2400, Bob's sale brings the vAMM into the band (Alice is still under water):
    the backstop sells only down to the auction's price at its full discount (and the remainder may not be
    dust), then is blocked until the vAMM moves back up."""
    m = fresh()
    m.deposit("bob", 0, 10**12, T0)
    auction_id, t = _expired_thrice(m, T0 + 3, 2400 * WAD)
    mk = m.markets[1]
    m.set_index(1, 2400 * WAD, t)
    _move_spot(m, "bob", 1, 2450 * WAD, t)
    index = m.index_price(1, t)
    known, value, _, requirement = m._recovery("alice", 0, t)
    assert known and value < 0  # under water: no recovery
    worst = Model._auction_price(1, index, m._auction_params_of(1).max_discount)
    closed, quote = m.backstop(auction_id, t)
    left = m.auctions[auction_id].size
    assert 0 < closed < 600 * WAD and left == 600 * WAD - closed >= mk.min_position_size
    assert worst <= mk.spot < worst + worst // 10**11  # down to the auction's worst price, not past it
    assert m.live_notional == -((-left * m.auctions[auction_id].start_index) // WAD)
    with pytest.raises(ModelRevert) as e:
        m.backstop(auction_id, t + 1)
    assert (e.value.name, e.value.error_args) == ("BackstopBlocked", (auction_id, mk.spot, index))
    m.set_index(1, 2400 * WAD, t + 2)
    _move_spot(m, "bob", 1, 2450 * WAD, t + 2)  # Bob buys part of his short back
    closed2, _ = m.backstop(auction_id, t + 2)
    assert closed2 > 0


def test_backstop_cancels_a_recovered_accounts_auction():
    """Rule: after the expiry and redo checks, backstop reads the owner's health as redo does; an account
    at or above targetHealth x (free maintenance + auctioned backing) has its auction cancelled (the
    AuctionCancelled fields returned, nothing closed, the vAMM untouched, the estimate cleared). With a
    stale feed of another market it holds, its health is unknown and the backstop goes ahead."""
    for stale_elsewhere in (False, True):
        m = fresh()
        m.deposit("alice", 0, 100_000 * 10**6, T0)
        if stale_elsewhere:
            m.open_position("alice", 0, 2, WAD // 10, MAX_UINT, T0, T0)
        auction_id, t = _expired_thrice(m, T0 + 3, 2400 * WAD)
        with pytest.raises(ModelRevert) as e:  # the checks before: redos remaining, not expired
            m.backstop(auction_id, t - 1801)
        assert e.value.name == "AuctionNotExpired"
        mk = m.markets[1]
        m.set_index(1, mk.spot // mk.oracle_scale * mk.oracle_scale, t)  # the index meets the vAMM: Alice is back
        if stale_elsewhere:
            m.set_answer(2, 0, t)  # BTC's feed answers nothing: Alice's health cannot be read
        value, maintenance, _, am = m.liquidation_state("alice", 0, t) if not stale_elsewhere else (None,) * 4
        x0, y0, size = mk.x, mk.y, m.auctions[auction_id].size
        r = m.backstop(auction_id, t)
        if stale_elsewhere:  # unknown health: the backstop closes what fits
            assert isinstance(r, tuple) and r[0] > 0 and (mk.x, mk.y) != (x0, y0)
            continue
        target = -((-(maintenance + am) * m.liquidation_params.target_health) // WAD)
        assert value >= target
        assert r == Cancelled(size, value, target)
        assert (mk.x, mk.y) == (x0, y0) and m.auctions[auction_id].size == 0 and m.live_notional == 0
        assert m.auctioned_size("alice", 0, 1) == 0 and m.shortfall_of("alice", 0) == m.pending_bad_debt() == 0
        with pytest.raises(ModelRevert) as e:
            m.backstop(auction_id, t)
        assert e.value.name == "AuctionFinished"


@FAST
@given(x=st.integers(10**20, 10**24), price=st.integers(10**17, 10**23), edge_move=st.integers(-(10**18) // 2, 10**18 // 2),
       base=st.integers(-(10**24), 10**24).filter(bool))
def test_backstop_fit_stops_at_the_edge(x, price, edge_move, base):
    """_backstopFit's close never takes the price past the edge (below it selling, above it buying)."""
    mk = fresh().markets[1]
    y = x * price // WAD
    edge = max(price + price * edge_move // WAD, 1)
    fit = Model._backstop_fit(mk, x, y, base, edge)
    assert fit == 0 or ((fit > 0) == (base > 0) and abs(fit) <= abs(base))
    left = abs(base) - abs(fit)
    assert fit == 0 or left == 0 or left >= mk.min_position_size
    if fit == 0:
        return
    after = vamm_price(*vamm_swap(x, y, -fit)[1:])
    assert after >= edge if base > 0 else after <= edge


@FAST
@given(x=st.integers(10**20, 10**24), price=st.integers(10**17, 10**23), net=st.integers(-(10**23), 10**23),
       base=st.integers(-(10**23), 10**23).filter(bool))
def test_a_trade_moves_the_exit_value_by_its_quote(x, price, net, base):
    """VAmmMath.exitValue: a trade moves the curve and the net position together, so the net position's
    exit value changes by the trade's own quote flow, up to the rounding of the swaps (a few wei)."""
    from vperp.model import exit_value
    y = x * price // WAD
    if abs(net) * 2 >= x or base >= x // 2 or abs(net + base) * 2 >= x:
        return
    quote, x1, y1 = vamm_swap(x, y, base)
    diff = exit_value(x1, y1, net + base) - exit_value(x, y, net) + quote
    # The curve only gains from rounding, so the traders' side can only lose: at most a few wei per
    # unit of price (the exact identity holds on the exact curve).
    assert -(2 + price // WAD) <= diff <= 2


def _peg_of(x: int, y: int, net: int) -> int:
    """The curve's price at zero net position, x y / (x + net)^2 [wad], rounded down twice (AmmController._peg)."""
    z = x + net
    return (x * y // z) * WAD // z


def test_sync_depth_interval_step_and_cost():
    """Once per depthInterval; a deepening step of at most min(maxDepthChange, takerFee/maxSpread), price kept;
    the net's exit change is charged back through the funding index with the fee, so the cost to the pool is
    <= 0 and NAV moves by exactly -cost."""
    from vperp.model import exit_value
    m = fresh()
    m.deposit("alice", 0, 10**12, T0)
    m.open_position("alice", 0, 1, 300 * WAD, MAX_UINT, T0 + 1, T0 + 1)
    m.pool_deposit("lp", 5_000_000 * 10**6, "lp", T0 + 1)  # NAV up by half: the target is 1.5x the depth
    t = T0 + 2
    mk = m.markets[1]
    x0, y0, net = mk.x, mk.y, mk.long_open_interest - mk.short_open_interest
    nav0, f0 = m.pool_nav(t), m._cumulative_funding_now(mk, t)
    x1, y1, cost, total = m.sync_depth(1, t)
    p = m.amm_params[1]
    step = min(mk.taker_fee * WAD // mk.max_spread, p.max_depth_change)
    assert y0 < y1 <= y0 + y0 * step // WAD and x1 == -((-x0 * y1) // y0)
    exit_change, charge = m.last_depth_charge[1]
    assert exit_change == exit_value(x1, y1, net) - exit_value(x0, y0, net) > 0
    assert charge == -((-exit_change * (WAD + mk.taker_fee)) // net)
    assert mk.cumulative_funding == f0 + charge
    assert cost == exit_change - ((net * (f0 + charge)) // WAD - (net * f0) // WAD) == total < 0
    assert m.pool_nav(t) == nav0 - cost
    assert m.last_depth_sync[1] == t and m.depth_cost[1] == total
    with pytest.raises(ModelRevert) as e:
        m.sync_depth(1, t + 3599)
    assert (e.value.name, e.value.error_args) == ("DepthSyncTooSoon", (t + 3600, t + 3599))
    m.sync_depth(1, t + 3600)


@pytest.mark.parametrize("side", [1, -1], ids=["net long", "net short"])
def test_sync_depth_charge_bound_binds_a_large_net_position(side):
    """Under a large net position the third budget term, floor(floor(|net| y0 / x0) floor(f / 2)), binds before
    the step: the exit change stays within it and the charge per base within f / 2 (1 + f) of the price."""
    m = fresh()
    m.deposit("alice", 0, 10**13, T0)
    for i in range(4):  # a large net position, the index following the vAMM so the band never binds
        mk = m.markets[1]
        m.set_index(1, mk.spot // mk.oracle_scale * mk.oracle_scale, T0 + 1 + i)
        m.open_position("alice", 0, 1, side * 400 * WAD, MAX_UINT if side > 0 else 0, T0 + 1 + i, T0 + 1 + i)
    m.pool_deposit("lp", 20_000_000 * 10**6, "lp", T0 + 5)
    t = T0 + 6
    mk = m.markets[1]
    m.set_index(1, mk.spot // mk.oracle_scale * mk.oracle_scale, t)
    x0, y0, p0 = mk.x, mk.y, mk.spot
    net = mk.long_open_interest - mk.short_open_interest
    f = mk.taker_fee
    by_charge = (abs(net) * y0 // x0) * (f // 2) // WAD
    x1, y1, cost, _ = m.sync_depth(1, t)
    exit_change, charge = m.last_depth_charge[1]
    assert y1 < y0 + y0 * (f * WAD // mk.max_spread) // WAD  # the budget, not the step, binds
    assert by_charge - by_charge // 1000 <= exit_change <= by_charge + 2
    assert abs(charge) <= p0 * (f // 2) // WAD * (WAD + f) // WAD + 1 and (charge > 0) == (side > 0)
    assert cost <= 0


def test_lp_flows_wait_while_a_gap_is_open():
    m = fresh()
    m.deposit("alice", 0, 10**12, T0)
    m.open_position("alice", 0, 1, 100 * WAD, MAX_UINT, T0 + 1, T0 + 1)
    m.pool_request_withdraw("deployer", 10**6, T0 + 1)
    t = T0 + 1 + 86_400
    m.set_index(1, 3000 * WAD, t)
    assert m.lp_flows_suspended(t) == (False, 0)
    assert m.pool_max_deposit(t) == (INT128 - m.pool_balance()) // SCALE
    m.set_index(1, 3500 * WAD, t)  # the vAMM is now far outside its band: a gap
    long_oi = m.markets[1].long_open_interest
    notional = -((-long_oi * m.markets[1].spot) // WAD)
    tolerance = m.pool_balance() // 1000
    assert notional > tolerance
    assert m.lp_flows_suspended(t) == (True, 1)
    assert m.traders_exit_pnl(t)[2:] == (notional, 1)
    assert m.pool_max_deposit(t) == m.pool_max_redeem("deployer", t) == m.pool_max_withdraw("deployer", t) == 0
    for fn in (lambda: m.pool_deposit("lp", 10**6, "lp", t), lambda: m.pool_redeem("deployer", 10**6, t),
               lambda: m.pool_withdraw("deployer", 1, t)):
        with pytest.raises(ModelRevert) as e:
            fn()
        assert (e.value.name, e.value.error_args) == ("LpFlowsSuspended", (1, notional, tolerance))
    with pytest.raises(ModelRevert) as e:  # the named argument checks come first
        m.pool_deposit("lp", 0, "lp", t)
    assert e.value.name == "ZeroAssets"
    # A stale feed is a gap too; the exit valuation itself never reverts.
    late = t + 86_401
    assert m.lp_flows_suspended(late)[0] and m.pool_total_assets(late) > 0


def test_pool_views_are_exact():
    """maxRedeem is 0 when its shares would be worth nothing; maxDeposit is the ledger's room."""
    m = fresh()
    t = T0 + 1
    assert m.pool_max_deposit(t) == (INT128 - m.pool_balance()) // SCALE
    with pytest.raises(ModelRevert) as e:
        m.pool_deposit("lp", m.pool_max_deposit(t) + 1, "lp", t)
    assert e.value.name == "ERC4626ExceededMaxDeposit"
    m.pool_request_withdraw("deployer", 1, t)
    t += 86_400
    assert m.pool_preview_redeem(1, t) == 0 and m.pool_max_redeem("deployer", t) == 0
    with pytest.raises(ModelRevert) as e:
        m.pool_redeem("deployer", 1, t)
    assert e.value.name == "ZeroAssets"
    # Room in the ledger that buys no share: maxDeposit (and maxMint) are 0, and a deposit of it is refused.
    m.fund_pool((INT128 - m.pool_balance()) // SCALE - 1)  # cash donated up to one token unit of room
    room = (INT128 - m.pool_balance()) // SCALE
    assert room >= 1 and m.pool_preview_deposit(room, t) == 0
    assert m.pool_max_deposit(t) == m.pool_max_mint(t) == 0
    with pytest.raises(ModelRevert) as e:
        m.pool_deposit("lp", room, "lp", t)
    assert e.value.name == "ZeroShares"


INT128 = 2**127 - 1


# ---------------------------------------------------------------------------- the reviewer's leaks (e592bf4)


def test_lp_flows_wait_a_twap_window_after_a_dislocated_block():
    """Rule 1 (as ClearingHouse now has it, 07c60a4): `_accrue` (the first touch of a market in a block,
    before any trade of it) records lastDislocation = the block's time when it finds an index gap: the
    vAMM within floor(lastIndex x maxSpread) of the last recorded index and further than floor(index x
    maxSpread) from the new one; marketState reports it last. A market with open interest is untrusted
    (LP flows wait) while its vAMM is outside the band, while the index is more than the band away from
    the last recorded one (a gap no block has accrued), and until lastDislocation + twapWindow, so a trade
    back into the band does not end the wait. setFundingParams / setMarketParams accrue at the last
    recorded index (the feed is not read) and the band in force; a vAMM pushed out of its band at a steady
    index (a reduce may do that) is no gap."""
    m = fresh()
    m.deposit("alice", 0, 10**12, T0)
    m.deposit("bob", 0, 10**13, T0)
    m.open_position("alice", 0, 1, 100 * WAD, MAX_UINT, T0 + 1, T0 + 1)
    mk = m.markets[1]
    assert m.market_state(1, T0 + 1)[-1] == mk.last_dislocation == 0
    t = T0 + 2
    gap_index = mk.spot * 88 // 100 // mk.oracle_scale * mk.oracle_scale  # 12 % below the vAMM: a gap
    m.set_index(1, gap_index, t)
    assert m.lp_flows_suspended(t) == (True, 1) and mk.last_dislocation == 0  # the band now; nothing recorded
    # Governance accrues at the last recorded index, near the vAMM: no dislocation, the feed not read.
    m.set_funding_params(1, mk.funding_params, t)
    assert mk.last_dislocation == 0 and mk.last_index_price != gap_index and mk.accumulator.timestamp == t
    # Next block: Bob's sale brings the vAMM back to the index; the block found the gap first.
    t += 1
    _move_spot(m, "bob", 1, gap_index, t)
    band = gap_index * mk.max_spread // WAD
    assert abs(mk.spot - gap_index) <= band and mk.last_dislocation == t and mk.last_index_price == gap_index
    assert m.market_state(1, t)[-1] == t
    long_oi, short_oi = mk.long_open_interest, mk.short_open_interest
    for late in (t, t + mk.twap_window - 1):
        m.set_index(1, gap_index, late)
        v = m.traders_exit_pnl(late)
        assert v[2:] == (-((-(long_oi + short_oi) * mk.spot) // WAD), 1) and m.lp_flows_suspended(late) == (True, 1)
        assert m.pool_max_deposit(late) == m.pool_max_mint(late) == 0
        with pytest.raises(ModelRevert) as e:
            m.pool_deposit("lp", 10**6, "lp", late)
        assert e.value.name == "LpFlowsSuspended"
        mk = m.markets[1]  # a reverted action restores the model's state from a copy
    m.poke_funding(1, t + 1)  # a block that finds the vAMM in its band records nothing
    assert mk.last_dislocation == t
    assert m.lp_flows_suspended(t + mk.twap_window) == (False, 0)
    m.pool_deposit("lp", 10**6, "lp", t + mk.twap_window)
    last = t
    # A gap no block has accrued: the index 12 % away from the last recorded one, the vAMM moved there by
    # nobody (the index jumps back and forth within one block): untrusted until a block accrues it.
    t += mk.twap_window + 1
    near = mk.spot // mk.oracle_scale * mk.oracle_scale
    m.set_index(1, near, t)
    m.poke_funding(1, t)
    assert mk.last_dislocation == last and not m.lp_flows_suspended(t)[0]
    m.set_index(1, near * 112 // 100 // mk.oracle_scale * mk.oracle_scale, t + 1)
    assert m.lp_flows_suspended(t + 1)[0]  # the band now, and the jump
    m.set_index(1, near, t + 1)
    assert not m.lp_flows_suspended(t + 1)[0]
    # setMarketParams: accrued first, at the last index and the 10 % band; then a 1 % band. The vAMM is 1.5 %
    # from the index: outside the new band, but it was outside around the last index too: no gap recorded,
    # flows wait only while it is out.
    t += 2
    m.set_index(1, near * 1015 // 1000 // mk.oracle_scale * mk.oracle_scale, t)
    m.poke_funding(1, t)
    m.set_market_params(1, t + 1, max_spread=10**16)
    assert mk.last_dislocation == last and mk.max_spread == 10**16 and mk.accumulator.timestamp == t + 1
    with pytest.raises(ModelRevert) as e:  # a bound refused: nothing changes
        m.set_market_params(1, t + 2, max_spread=10**15)
    assert (e.value.name, e.value.error_args) == ("ParameterOutOfBounds", ("maxSpread", 10**15))
    mk = m.markets[1]
    assert mk.accumulator.timestamp == t + 1 and mk.max_spread == 10**16
    m.poke_funding(1, t + 2)
    assert mk.last_dislocation == last and m.lp_flows_suspended(t + 2)[0]
    _move_spot(m, "bob", 1, m.index_price(1, t + 3), t + 3)  # back in the band: flows open at once
    assert mk.last_dislocation == last and not m.lp_flows_suspended(t + 3)[0]
    # A 1.5 % index move from there is a gap (in the band around the old index, out around the new one).
    m.set_index(1, m.index_price(1, t + 3) * 985 // 1000 // mk.oracle_scale * mk.oracle_scale, t + 4)
    m.poke_funding(1, t + 4)
    assert mk.last_dislocation == t + 4


def test_collateral_credited_lowers_the_shortfall_estimate_one_for_one():
    """Rule 2: a deposit (or depositFor) to an account, or a margin transfer into it, lowers its shortfall
    estimate by the WAD credited, floored at 0, through recordShortfall's path (a ShortfallRecorded event,
    the sum updated); nothing is recorded while the estimate is 0."""
    m, _, s = _kicked(drop_bps=1300)
    t = T0 + 4
    shortfall = m.shortfall_of("alice", 0)
    assert shortfall == s.shortfall > 3 * SCALE
    n = len(m.shortfall_log)
    m.deposit("alice", 0, 1, t)  # one token unit
    assert m.shortfall_of("alice", 0) == m.pending_bad_debt() == shortfall - SCALE
    assert m.shortfall_log[n:] == [("alice", 0, shortfall - SCALE, shortfall - SCALE)]
    m.deposit("alice", 1, 10**12, t)  # sub 1 has no estimate: nothing recorded
    assert len(m.shortfall_log) == n + 1
    m.transfer_margin("alice", 1, 0, shortfall - 2 * SCALE, t)
    assert m.shortfall_of("alice", 0) == SCALE and m.shortfall_log[-1] == ("alice", 0, SCALE, SCALE)
    m.deposit_for("alice", 0, 5, t)  # more than the rest: floor 0
    assert m.shortfall_of("alice", 0) == m.pending_bad_debt() == 0 and m.shortfall_log[-1] == ("alice", 0, 0, 0)
    assert len(m.shortfall_log) == n + 3
    m.deposit("alice", 0, 5, t)
    assert len(m.shortfall_log) == n + 3
    with pytest.raises(ModelRevert) as e:
        m.deposit_for("0x" + "00" * 20, 0, 5, t)
    assert e.value.name == "ZeroAddress"
    # The ledger slot's bound is named (AmountTooLarge), as in Vault._addChecked.
    big = (2**127 - 1) // SCALE
    m.deposit("carol", 0, big, t)
    with pytest.raises(ModelRevert) as e:
        m.deposit("carol", 0, big, t)
    assert (e.value.name, e.value.error_args) == ("AmountTooLarge", (big,))
    with pytest.raises(ModelRevert) as e:
        m.transfer_margin("carol", 0, 1, 2**127, t)
    assert (e.value.name, e.value.error_args) == ("AmountTooLarge", (2**127,))


def _uninsured() -> Model:
    from dataclasses import replace
    return Model.from_config(replace(lagging_peg_config(), insurance_seed=0), T0)


def test_deposits_priced_before_the_set_aside_redemptions_after():
    """Rule 3: depositAssets = max(0, poolBalance - tradersExitPnl) / tokenScale, the NAV before the
    uncovered bad-debt set-aside; previewDeposit = mulDiv(assets, supply + 1e6, depositAssets + 1, floor),
    previewMint = mulDiv(shares, depositAssets + 1, supply + 1e6, ceil); deposit and mint use them, maxMint
    = previewDeposit(maxDeposit); redemptions and convertTo* stay on totalAssets. A depositor ahead of the
    set-aside's release (here: the owner's top-up) gains nothing from it."""
    m = _uninsured()
    m.deposit("alice", 0, 10_000 * 10**6, T0)
    m.open_position("alice", 0, 1, 30 * WAD, MAX_UINT, T0 + 1, T0 + 1)
    m.set_index(1, 3000 * WAD * 87 // 100, T0 + 2)
    m.kick("alice", 0, 1, "keeper", T0 + 3)
    # Bob's sale brings the vAMM back into the band; LP flows wait a TWAP window after that block.
    m.deposit("bob", 0, 10**12, T0 + 4)
    _move_spot(m, "bob", 1, m.index_price(1, T0 + 4), T0 + 4)
    t = T0 + 4 + m.markets[1].twap_window
    assert m.lp_flows_suspended(t - 1)[0] and not m.lp_flows_suspended(t)[0]
    # (the insurance fund holds only the insurance part of Alice's fee)
    assert m.uncovered_bad_debt() == m.shortfall_of("alice", 0) - m.insurance_fund() > 10 * SCALE
    pnl = m.traders_exit_pnl(t)[0]
    deposit_assets = (m.pool_balance() - pnl) // SCALE
    assert m.pool_deposit_assets(t) == deposit_assets
    assert m.pool_total_assets(t) == (m.pool_balance() - pnl - m.uncovered_bad_debt()) // SCALE < deposit_assets
    supply = m.pool_supply
    paid = 10**12
    shares = paid * (supply + 10**6) // (deposit_assets + 1)
    assert m.pool_preview_deposit(paid, t) == shares < m.pool_convert_to_shares(paid, t)
    assert m.pool_max_mint(t) == m.pool_max_deposit(t) * (supply + 10**6) // (deposit_assets + 1)
    assert m.pool_deposit("lp", paid, "lp", t) == shares
    want = 10**15
    cost = -(-want * (m.pool_deposit_assets(t) + 1) // (m.pool_supply + 10**6))
    assert m.pool_preview_mint(want, t) == cost
    balance = m.pool_balance()
    assert m.pool_mint("lp2", want, "lp2", t) == cost and m.pool_balance() == balance + cost * SCALE
    assert m.pool_balance_of("lp2") == want
    with pytest.raises(ModelRevert) as e:
        m.pool_mint("lp2", m.pool_max_mint(t) + 1, "lp2", t)
    assert (e.value.name, e.value.error_args) == ("ERC4626ExceededMaxMint", ("lp2", m.pool_max_mint(t) + 1,
                                                                              m.pool_max_mint(t)))
    with pytest.raises(ModelRevert) as e:
        m.pool_mint("lp2", 0, "lp2", t)
    assert e.value.name == "ZeroShares"
    # The release: Alice tops up, her estimate falls to 0, the set-aside goes; the depositors' shares are
    # worth no more than they paid (they were priced as if no set-aside were coming).
    m.deposit("alice", 0, 10**11, t + 1)
    assert m.uncovered_bad_debt() == 0
    assert m.pool_convert_to_assets(shares, t + 1) <= paid
    assert m.pool_convert_to_assets(want, t + 1) <= cost
    assert m.pool_preview_redeem(shares, t + 1) == m.pool_convert_to_assets(shares, t + 1)


@pytest.mark.parametrize("side", [1, -1])
def test_repeg_books_and_bounds_the_exact_exit_value_change(side):
    """Rule 5: repeg moves the peg P = x y / (x + net)^2 toward the index by at most
    divWadDown(mulDiv(budget, x, x + net), n) (budget = max(NAV, 0) x maxRepegCost, n = |net|), the quote reserve
    alone changing by dy = floor(floor(move (x + net) / x) (x + net) / 1e18); the booked cost is
    exitValue(x, y1, net) - exitValue(x, y0, net), accumulated in repegCost; the pool's NAV moves by exactly -cost,
    and |cost| stays within the budget to the exit value's own rounding (a wei), for a net short as for a net long."""
    from dataclasses import replace
    from vperp.model import exit_value
    m = fresh()
    m.deposit("alice", 0, 10**13, T0)
    m.open_position("alice", 0, 1, side * 400 * WAD, buy_any(side), T0 + 1, T0 + 1)
    mk = m.markets[1]
    t = T0 + 2
    m.set_index(1, mk.spot * (100 + 8 * side) // 100 // mk.oracle_scale * mk.oracle_scale, t)
    for _ in range(4):
        t += 450
        m.set_index(1, m.index_price(1, t - 450), t)
        m.poke_funding(1, t)
    m.amm_params[1] = p = replace(m.amm_params[1], max_repeg_cost=10**14)
    x, y0, price0 = mk.x, mk.y, mk.spot
    net = mk.long_open_interest - mk.short_open_interest
    assert (net > 0) == (side > 0)
    z = x + net
    peg0 = _peg_of(x, y0, net)
    index = m.index_price(1, t)
    assert side * (index - peg0) * 100 > 2 * peg0  # beyond the threshold, in the net side's favour
    nav0 = m.pool_nav(t)
    budget = nav0 * p.max_repeg_cost // WAD
    n = abs(net)
    by_cost = budget * x // z * WAD // n
    assert by_cost < peg0 * p.max_repeg_step // WAD  # the cost bound binds
    price1, cost = m.repeg(1, t)
    assert mk.x == x and mk.y == y0 + side * ((by_cost * z // x) * z // WAD)
    assert price1 == mk.y * WAD // x and (price1 > price0) == (side > 0)
    peg1 = m.peg_price(1)
    # Toward the index by the cost bound: never further up (the peg rounds down), a wei further down at most.
    assert by_cost - 2 <= side * (peg1 - peg0) <= by_cost + (side < 0)
    assert cost == exit_value(x, mk.y, net) - exit_value(x, y0, net) == m.repeg_cost[1]
    assert m.pool_nav(t) == nav0 - cost
    assert budget - budget // 100 <= cost <= budget + 1  # the index moved in the net side's favour: a cost


# ---------------------------------------------------------------- a depth shrink under a net position


@settings(max_examples=400, deadline=None)
@given(st.integers(10**20, 10**26), st.integers(10**17, 10**23), st.integers(1, 10**4), st.sampled_from([1, -1]),
       st.integers(0, 10**16), st.integers(0, 10**4))
def test_a_shrink_under_a_net_position_keeps_the_peg_and_stays_within_its_budget(x_zero_skew, price, skew_bps, side,
                                                                                  fee, cut_bps):
    """AmmController._shrinkFloor and _shrinkKeepingPeg (the model's mirror) over reserves from 100 to 1e8 base,
    prices from 0.1 to 1e5, a net position up to half the zero-skew base reserve on either side, a taker fee up
    to 1 % and any target between the floor and today's depth: the peg x y / (x + net)^2 never rises and falls by
    its roundings only (a few wei); the new reserves are positive and a net short's base reserve stays at twice its size or more;
    at the floor the net position's exit value moves by at most the budget (|net| x price x f / 2) plus a wei
    per 1e18 of base (the closed form's roundings)."""
    n = max(1, x_zero_skew * skew_bps // 10**4 // 2)
    net = side * n
    x0 = x_zero_skew - net  # a long took base out of the curve, a short put it in
    y0 = x_zero_skew * price // WAD * x_zero_skew // x0  # the curve through the zero-skew point at `price`
    if x0 <= 0 or y0 <= 0 or (side < 0 and x0 < 2 * n):
        return
    budget = (n * y0 // x0) * (fee // 2) // WAD
    floor = Model._shrink_floor(x0, y0, net, budget)
    if floor >= y0:  # the budget allows no shrink (e.g. a zero fee); the contract keeps y0
        return
    scaled = floor + (y0 - floor) * cut_bps // 10**4
    x1, y1 = Model._shrink_keeping_peg(x0, y0, net, scaled)
    assert x1 > 0 and y1 > 0
    if side < 0:
        assert x1 >= 2 * n
    peg0 = Model._peg(x0, y0, net)
    peg1 = Model._peg(x1, y1, net)
    # Rounding only: Z1, Y1 and y1 are each floored (a wei of Z1 is WAD / Z1 of the peg), and the peg twice.
    assert 0 <= peg0 - peg1 <= 3 + 2 * WAD // (x1 + net), (peg0, peg1)
    if scaled == floor:
        from vperp.model import exit_value
        change = exit_value(x1, y1, net) - exit_value(x0, y0, net)
        assert change <= budget + n // WAD + 2, (change, budget)
