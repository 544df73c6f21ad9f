"""Builder fees (issue 14 item 6): a front end or bot attaches a builder and a fee rate to a trade
(`ClearingHouse.openPositionWithBuilder`), capped by the rate the trader approved for that builder
(`Vault.approveBuilderFee`), paid from the trader's collateral to the builder's balance in the Vault on top of
the protocol fee, claimed by the builder (`Vault.claimBuilderFees`).

Every chain action runs on a fresh deployment with the reference model (vperp.model) in lockstep at explicit
block times: fees, balances and errors are compared to the wei. The attacker's tests show what a builder or a
malicious front end cannot do: take more than the approved rate, charge another owner, charge through an
operator, or gain anything from a fee it pays itself.
"""
from __future__ import annotations

import copy

import ape
import pytest

from helpers.chain_harness import deployment_model
from helpers.trading import ceil_div, expect_revert
from vperp import deploy
from vperp.config import lagging_peg_config
from vperp.model import MAX_BUILDER_FEE_RATE, Model, ModelRevert

from vperp.units import WAD
MAX_UINT = 2**256 - 1
ZERO = "0x" + "00" * 20
ETH = 1
BPS = 10**14  # one basis point of |quote| [wad]


# ---------------------------------------------------------------------------- environment


class Env:
    """A deployment and its model, advanced together one block at a time."""

    def __init__(self, system, model: Model, chain, t: int):
        self.system, self.model, self.chain, self.t = system, model, chain, t
        self.ch, self.vault, self.usdc = system.clearing_house, system.vault, system.collateral
        self.scale = system.token_scale

    def at(self) -> int:
        """The next block's time (one second after the last block, whoever mined it), set on the chain."""
        self.t = max(self.t, self.chain.blocks.head.timestamp) + 1
        self.chain.pending_timestamp = self.t
        return self.t

    def deposit(self, who, units: int, sub: int = 0):
        self.usdc.mint(who, units, sender=who)
        self.usdc.approve(self.vault, units, sender=who)
        t = self.at()
        self.vault.deposit(sub, units, sender=who)
        self.model.deposit(who.address, sub, units, t)

    def approve(self, who, builder, rate: int):
        self.at()
        receipt = self.vault.approveBuilderFee(builder, rate, sender=who)
        self.model.approve_builder_fee(who.address, _addr(builder), rate)
        return receipt

    def trade(self, who, base: int, builder=None, rate: int = 0, sub: int = 0):
        """openPositionWithBuilder (or openPosition without a builder) on both; returns (receipt, result)."""
        t = self.at()
        limit = MAX_UINT if base > 0 else 0
        if builder is None:
            receipt = self.ch.openPosition(sub, ETH, base, limit, t + 60, sender=who)
        else:
            receipt = self.ch.openPositionWithBuilder(sub, ETH, base, limit, t + 60, builder, rate, sender=who)
        result = self.model.open_position(who.address, sub, ETH, base, limit, t, t + 60,
                                          builder=None if builder is None else _addr(builder), builder_fee_rate=rate)
        return receipt, result

    def trade_reverts(self, error, who, base: int, via, rate: int, sub: int = 0, **inputs):
        """The same trade refused on both with `error`, and nothing changed on either."""
        t = self.at()
        limit = MAX_UINT if base > 0 else 0
        before_chain, before_model = self.state(who), copy.deepcopy(self.model.__dict__)
        with pytest.raises(ModelRevert) as e:
            self.model.open_position(who.address, sub, ETH, base, limit, t, t + 60, builder=_addr(via),
                                     builder_fee_rate=rate)
        assert e.value.name == error.abi.name, e.value
        with expect_revert(error, **inputs):
            self.ch.openPositionWithBuilder(sub, ETH, base, limit, t + 60, via, rate, sender=who)
        assert self.state(who) == before_chain
        assert self.model.__dict__ == before_model
        return e.value

    def state(self, *owners, builders=()) -> dict:
        ch, vault = self.ch, self.vault
        s = ch.marketState(ETH)
        out = {"pool": vault.poolBalance(), "insurance": vault.insuranceFund(),
               "tokens": self.usdc.balanceOf(vault), "reserves": (s.baseReserve, s.quoteReserve)}
        for o in owners:
            out[("coll", o.address)] = vault.collateral(o, 0)
            out[("pos", o.address)] = tuple(ch.position(o, 0, ETH))[:2]
        for b in builders:
            out[("builder", _addr(b))] = vault.builderFees(b)
        return out

    def check_model(self, *owners, builders=()):
        """Every balance the feature touches equals the model's, and the Vault's tokens cover them exactly."""
        vault, m = self.vault, self.model
        assert vault.poolBalance() == m.pool_balance_wad
        assert vault.insuranceFund() == m.insurance_fund_wad
        for o in owners:
            assert vault.collateral(o, 0) == m.collateral(o.address, 0)
        for b in builders:
            assert vault.builderFees(b) == m.builder_fees(_addr(b))
        assert self.usdc.balanceOf(vault) == m.token_balance
        assert m.token_balance * self.scale == m.total_claims()  # conservation, builder balances included


def _addr(a) -> str:
    return getattr(a, "address", a)


@pytest.fixture(scope="module")
def base_env(accounts, chain):
    deployer = accounts[0]
    chain.pending_timestamp = chain.pending_timestamp + 10
    system = deploy(deployer, lagging_peg_config())
    ch = system.clearing_house
    model = deployment_model(system, deployer)
    t = chain.blocks.head.timestamp
    return system, model, t


@pytest.fixture
def env(base_env, chain):
    system, model, t = base_env
    return Env(system, copy.deepcopy(model), chain, max(t, chain.blocks.head.timestamp))


@pytest.fixture
def trader(accounts):
    return accounts[1]


@pytest.fixture
def builder(accounts):
    return accounts[2]


@pytest.fixture
def other(accounts):
    return accounts[3]


def _paid(vault, receipt) -> list:
    return list(vault.BuilderFeePaid.from_receipt(receipt))


# ---------------------------------------------------------------------------- approvals


def test_approve_revoke_and_bounds(env, trader, builder, other):
    vault = env.vault
    assert vault.MAX_BUILDER_FEE_RATE() == MAX_BUILDER_FEE_RATE == 10 * BPS
    assert vault.builderFeeApproval(trader, builder) == 0
    receipt = env.approve(trader, builder, 5 * BPS)
    (log,) = vault.BuilderFeeApproved.from_receipt(receipt)
    assert (log.owner, log.builder, log.maxFeeRate) == (trader.address, builder.address, 5 * BPS)
    assert vault.builderFeeApproval(trader, builder) == 5 * BPS
    assert vault.builderFeeApproval(other, builder) == 0  # per owner
    assert vault.builderFeeApproval(trader, other) == 0  # per builder
    env.approve(trader, builder, MAX_BUILDER_FEE_RATE)  # the bound itself is allowed
    assert vault.builderFeeApproval(trader, builder) == MAX_BUILDER_FEE_RATE
    # Out of bounds and the zero address: named errors, nothing changes (chain and model).
    with expect_revert(vault.ParameterOutOfBounds, value=MAX_BUILDER_FEE_RATE + 1):
        vault.approveBuilderFee(builder, MAX_BUILDER_FEE_RATE + 1, sender=trader)
    with pytest.raises(ModelRevert, match="ParameterOutOfBounds"):
        env.model.approve_builder_fee(trader.address, builder.address, MAX_BUILDER_FEE_RATE + 1)
    with expect_revert(vault.ZeroAddress):
        vault.approveBuilderFee("0x" + "00" * 20, BPS, sender=trader)
    with pytest.raises(ModelRevert, match="ZeroAddress"):
        env.model.approve_builder_fee(trader.address, None, BPS)
    assert vault.builderFeeApproval(trader, builder) == MAX_BUILDER_FEE_RATE
    assert env.model.builder_fee_approval(trader.address, builder.address) == MAX_BUILDER_FEE_RATE
    # 0 revokes.
    receipt = env.approve(trader, builder, 0)
    assert vault.BuilderFeeApproved.from_receipt(receipt)[0].maxFeeRate == 0
    assert vault.builderFeeApproval(trader, builder) == 0


# ---------------------------------------------------------------------------- charging


def test_trade_with_builder_pays_the_exact_fee_on_top_of_the_protocol_fee(env, trader, builder):
    env.deposit(trader, 50_000 * 10**6)
    env.approve(trader, builder, 5 * BPS)
    before = env.state(trader, builders=[builder])
    receipt, r = env.trade(trader, 7 * WAD + 12_345, builder, 3 * BPS + 7)
    # The fee: |quote| x rate, rounded up (the trader pays), from the trade's own quote.
    (pc,) = env.ch.PositionChanged.from_receipt(receipt)
    want = ceil_div(abs(pc.quoteDelta) * (3 * BPS + 7), WAD)
    assert r.builder_fee == want and want > 0
    (paid,) = _paid(env.vault, receipt)
    assert (paid.owner, paid.subaccount, paid.builder, paid.amountWad) == (trader.address, 0, builder.address, want)
    assert pc.fee == r.fee  # PositionChanged's fee is the protocol fee only
    after = env.state(trader, builders=[builder])
    # The trader pays the protocol fee and the builder fee; the pool and insurance get exactly the protocol
    # fee (no PnL on an opening trade); the builder exactly its fee; no token moves.
    assert after[("coll", trader.address)] == before[("coll", trader.address)] - r.fee - want
    assert after[("builder", builder.address)] == want
    assert after["insurance"] - before["insurance"] == r.to_insurance
    assert after["pool"] - before["pool"] == r.fee - r.to_insurance
    assert after["tokens"] == before["tokens"]
    env.check_model(trader, builders=[builder])
    # A reduce pays the builder too (it is above maintenance), at the same rounding.
    receipt, r2 = env.trade(trader, -3 * WAD, builder, 5 * BPS)
    (pc2,) = env.ch.PositionChanged.from_receipt(receipt)
    assert _paid(env.vault, receipt)[0].amountWad == ceil_div(abs(pc2.quoteDelta) * 5 * BPS, WAD) == r2.builder_fee
    assert env.vault.builderFees(builder) == want + r2.builder_fee
    env.check_model(trader, builders=[builder])


def test_no_builder_or_zero_rate_is_exactly_openposition(env, trader, builder):
    env.deposit(trader, 50_000 * 10**6)
    for b, rate in ((builder, 0), ("0x" + "00" * 20, 5 * BPS)):  # nothing approved: no fee call at all
        receipt, r = env.trade(trader, WAD, b, rate)
        assert r.builder_fee == 0 and _paid(env.vault, receipt) == []
    env.check_model(trader, builders=[builder])
    assert env.vault.builderFees(builder) == 0


def test_fee_above_the_approval_is_refused_and_changes_nothing(env, trader, builder):
    env.deposit(trader, 50_000 * 10**6)
    env.approve(trader, builder, 2 * BPS)
    env.trade_reverts(env.vault.BuilderFeeNotApproved, trader, WAD, builder, 2 * BPS + 1,
                      owner=trader, builder=builder, feeRate=2 * BPS + 1, approved=2 * BPS)
    env.approve(trader, builder, 0)  # revoked: any rate is refused
    env.trade_reverts(env.vault.BuilderFeeNotApproved, trader, WAD, builder, 1, approved=0)
    # A rate that could never be approved (it does not fit the packed trade word): refused first.
    env.trade_reverts(env.ch.ParameterOutOfBounds, trader, WAD, builder, 2**96, value=2**96)
    env.check_model(trader, builders=[builder])


def _largest_passing(m: Model, who, t: int, lo: int, hi: int) -> int:
    """Largest base in [lo, hi) the model lets `who` buy without a builder at `t` (bisection)."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            copy.deepcopy(m).open_position(who, 0, ETH, mid, MAX_UINT, t, t + 60)
            lo = mid
        except ModelRevert:
            hi = mid
    return lo


def test_fee_that_breaks_initial_margin_on_an_increase_is_refused(env, trader, builder):
    env.deposit(trader, 3_000 * 10**6)
    env.approve(trader, builder, MAX_BUILDER_FEE_RATE)
    base = _largest_passing(env.model, trader.address, env.t + 1, WAD, 20 * WAD)
    # Without the builder this size passes initial margin; with the fee paid first it does not.
    e = env.trade_reverts(env.ch.InsufficientMargin, trader, base, builder, MAX_BUILDER_FEE_RATE, owner=trader)
    assert e.args[-1] < 0
    env.trade(trader, base)  # the same trade without a builder goes through
    env.check_model(trader, builders=[builder])


def test_reduce_fee_is_refused_below_maintenance_and_beyond_the_collateral(env, trader, builder, other):
    env.deposit(trader, 3_000 * 10**6)
    env.deposit(other, 1_000_000 * 10**6)
    env.approve(trader, builder, MAX_BUILDER_FEE_RATE)
    env.trade(trader, 9 * WAD)
    # The index falls until the account is below maintenance, still with positive collateral.
    t = env.at()
    env.system.markets["ETH"].oracle.updateAnswer(2_600 * 10**8, sender=env.system.deployer)
    env.model.set_index(ETH, 2_600 * WAD, t)
    assert env.vault.isLiquidatable(trader, 0) and env.vault.collateral(trader, 0) > 0
    # A reduce with a builder would take the fee out of what backs the pool: refused, nothing changes.
    e = env.trade_reverts(env.ch.BuilderFeeBelowMaintenance, trader, -WAD, builder, BPS, owner=trader)
    assert e.args[-1] < 0
    # The same reduce without a builder goes through: it fills above the index (the vAMM has not followed it down),
    # so it lowers the account's value by its fee at most and is not margin-checked.
    env.trade(trader, -WAD)
    # The vAMM is pushed under the index; closing now would realize a loss beyond the collateral (bad debt). Without
    # a builder that close is refused by the reduce's own floor (ReduceBelowMaintenance, the negative collateral it
    # would leave); a builder fee on it is refused first by the Vault's collateral check.
    env.trade(other, -700 * WAD)
    m = copy.deepcopy(env.model)
    with pytest.raises(ModelRevert) as refused:
        m.open_position(trader.address, 0, ETH, -8 * WAD, 0, env.t + 1, env.t + 61)
    assert refused.value.name == "ReduceBelowMaintenance" and refused.value.error_args[-1] < 0
    env.trade_reverts(env.ch.ReduceBelowMaintenance, trader, -8 * WAD, ZERO, 0, owner=trader)  # no builder
    env.trade_reverts(env.vault.InsufficientCollateral, trader, -8 * WAD, builder, BPS, owner=trader)
    env.check_model(trader, other, builders=[builder])


def test_full_close_of_a_liquidatable_account_may_pay_from_what_is_left(env, trader, builder, other):
    """A close that leaves no position and positive collateral: the rest is the trader's own money (nothing
    left to back), so the fee is paid from it."""
    env.deposit(trader, 3_000 * 10**6)
    env.deposit(other, 1_000_000 * 10**6)
    env.approve(trader, builder, MAX_BUILDER_FEE_RATE)
    env.trade(trader, 9 * WAD)
    t = env.at()
    env.system.markets["ETH"].oracle.updateAnswer(2_600 * 10**8, sender=env.system.deployer)
    env.model.set_index(ETH, 2_600 * WAD, t)
    env.trade(other, -300 * WAD)
    assert env.vault.isLiquidatable(trader, 0)
    receipt, r = env.trade(trader, -9 * WAD, builder, BPS)
    assert r.builder_fee > 0 and _paid(env.vault, receipt)[0].amountWad == r.builder_fee
    assert env.vault.openMarkets(trader, 0) == 0 and env.vault.collateral(trader, 0) >= 0
    env.check_model(trader, other, builders=[builder])


# ---------------------------------------------------------------------------- claims


def test_claim_pays_whole_token_units_and_keeps_the_dust(env, trader, builder, other):
    env.deposit(trader, 50_000 * 10**6)
    env.approve(trader, builder, 7 * BPS + 3)
    env.trade(trader, 5 * WAD + 1, builder, 7 * BPS + 3)
    owed = env.vault.builderFees(builder)
    assert owed % env.scale != 0  # a fee in WAD leaves a rest below one token unit
    balance0 = env.usdc.balanceOf(other)
    env.at()
    receipt = env.vault.claimBuilderFees(other, sender=builder)  # paid to any address the builder names
    amount, amount_wad = env.model.claim_builder_fees(builder.address, other.address)
    (log,) = env.vault.BuilderFeesClaimed.from_receipt(receipt)
    assert (log.builder, log.to, log.amount, log.amountWad) == (builder.address, other.address, amount, amount_wad)
    assert amount == owed // env.scale and amount_wad == amount * env.scale
    assert env.usdc.balanceOf(other) - balance0 == amount
    assert env.vault.builderFees(builder) == owed % env.scale  # the dust stays
    env.check_model(trader, builders=[builder])
    # Only dust left: a named error, nothing changes.
    with expect_revert(env.vault.NoBuilderFees, builder=builder, balanceWad=owed % env.scale):
        env.vault.claimBuilderFees(builder, sender=builder)
    with pytest.raises(ModelRevert, match="NoBuilderFees"):
        env.model.claim_builder_fees(builder.address, builder.address)
    with expect_revert(env.vault.NoBuilderFees, builder=other, balanceWad=0):
        env.vault.claimBuilderFees(other, sender=other)  # someone with nothing accrued
    with expect_revert(env.vault.ZeroAddress):
        env.vault.claimBuilderFees("0x" + "00" * 20, sender=builder)
    assert env.vault.builderFees(builder) == owed % env.scale


def test_claim_is_open_at_every_pause_level_like_withdrawals(env, trader, builder):
    env.deposit(trader, 50_000 * 10**6)
    env.approve(trader, builder, 10 * BPS)
    env.trade(trader, 10 * WAD, builder, 10 * BPS)
    deployer = env.system.deployer
    env.vault.setPauseLevel(3, sender=deployer)  # withdrawals only
    env.model.pause_level = 3
    # Trading with a builder is paused like any trade; claiming is not (the fee is the builder's money).
    t = env.at()
    with expect_revert(env.ch.Paused, level=3):
        env.ch.openPositionWithBuilder(0, ETH, WAD, MAX_UINT, t + 60, builder, BPS, sender=trader)
    env.at()
    env.vault.claimBuilderFees(builder, sender=builder)
    env.model.claim_builder_fees(builder.address, builder.address)
    env.check_model(trader, builders=[builder])
    # Approvals are bookkeeping only: allowed while paused too.
    env.approve(trader, builder, 0)


# ---------------------------------------------------------------------------- the attacker's tests


def test_builder_cannot_charge_more_than_approved_nor_another_owner(env, trader, builder, other):
    env.deposit(trader, 50_000 * 10**6)
    env.deposit(other, 50_000 * 10**6)
    env.approve(trader, builder, 2 * BPS)
    # The trader's approval covers only the trader: `other` naming the same builder is refused.
    env.trade_reverts(env.vault.BuilderFeeNotApproved, other, WAD, builder, BPS, owner=other, approved=0)
    # The entry point has no owner argument (the caller's own account only), and the ledger hook is the
    # clearing house's alone: the builder cannot call it to debit anyone.
    with expect_revert(env.vault.UnauthorizedModule, caller=builder):
        env.vault.chargeBuilderFee(trader, 0, builder, BPS, 10**18, sender=builder)
    # The builder calling openPositionWithBuilder trades (and pays) on its own account, not the trader's.
    env.deposit(builder, 50_000 * 10**6)
    before = env.state(trader)
    env.trade_reverts(env.vault.BuilderFeeNotApproved, builder, WAD, builder, BPS, owner=builder, approved=0)
    assert env.state(trader) == before
    env.check_model(trader, other, builder, builders=[builder])


def test_operator_cannot_attach_a_builder(env, trader, builder):
    """openPositionFor has no builder parameter: an operator's trade pays no builder fee even when the owner
    approved the operator as a builder."""
    env.deposit(trader, 50_000 * 10**6)
    env.vault.setOperator(builder, True, sender=trader)
    env.approve(trader, builder, MAX_BUILDER_FEE_RATE)
    t = env.at()
    receipt = env.ch.openPositionFor(trader, 0, ETH, WAD, MAX_UINT, t + 60, sender=builder)
    env.model.open_position(trader.address, 0, ETH, WAD, MAX_UINT, t, t + 60)
    assert _paid(env.vault, receipt) == [] and env.vault.builderFees(builder) == 0
    assert "openPositionWithBuilderFor" not in [a.name for a in env.ch.contract_type.abi if a.type == "function"]
    env.check_model(trader, builders=[builder])


def test_self_approved_builder_fee_gains_nothing(env, trader, chain):
    """trader == builder: the fee moves from its collateral to its builder balance, net zero; the pool and the
    insurance fund get exactly what the same trades without a builder give them."""
    env.deposit(trader, 50_000 * 10**6)
    env.approve(trader, trader, MAX_BUILDER_FEE_RATE)
    snap, t0, model0 = chain.snapshot(), env.t, copy.deepcopy(env.model)
    env.trade(trader, 8 * WAD)
    env.trade(trader, -3 * WAD)
    plain = env.state(trader, builders=[trader])
    chain.restore(snap)
    env.t, env.model = t0, model0
    fees = sum(env.trade(trader, base, trader, MAX_BUILDER_FEE_RATE)[1].builder_fee for base in (8 * WAD, -3 * WAD))
    withb = env.state(trader, builders=[trader])
    assert withb[("builder", trader.address)] == fees > 0
    assert withb[("coll", trader.address)] + fees == plain[("coll", trader.address)]
    assert (withb["pool"], withb["insurance"], withb["tokens"], withb[("pos", trader.address)]) == (
        plain["pool"], plain["insurance"], plain["tokens"], plain[("pos", trader.address)])
    env.check_model(trader, builders=[trader])


# ---------------------------------------------------------------------------- the model alone


def test_model_fee_rounds_up_and_failed_charges_change_nothing():
    from vperp.config import lagging_peg_config

    t0 = 1_800_000_000
    m = Model.from_config(lagging_peg_config(), t0)
    m.deposit("alice", 0, 10_000 * 10**6, t0)
    m.approve_builder_fee("alice", "fe", 3)
    r = m.open_position("alice", 0, ETH, WAD, MAX_UINT, t0 + 1, t0 + 60, builder="fe", builder_fee_rate=3)
    assert r.builder_fee == ceil_div(abs(r.quote) * 3, WAD)
    assert m.builder_fees("fe") == r.builder_fee and m.builder_fee_log == [("alice", 0, "fe", r.builder_fee)]
    saved = copy.deepcopy(m.__dict__)
    with pytest.raises(ModelRevert, match="BuilderFeeNotApproved"):
        m.open_position("alice", 0, ETH, WAD, MAX_UINT, t0 + 2, t0 + 60, builder="fe", builder_fee_rate=4)
    assert m.__dict__ == saved


# ---------------------------------------------------------------------------- the SDK


def test_sdk_builder_helpers(env, chain, trader, builder, tmp_path):
    from decimal import Decimal

    from vperp.client import Client, ClientError, build_record, write_record

    path = tmp_path / "local.json"
    write_record(path, build_record(env.system, env.system.config, chain, 1))
    t, b = Client.from_deployment(path, account=trader), Client.from_deployment(path, account=builder)
    env.usdc.mint(trader, 50_000 * 10**6, sender=trader)
    t.deposit(50_000)
    t.approve_builder_fee(builder, "0.0005")
    assert t.builder_fee_approval(builder) == Decimal("0.0005")
    with expect_revert(env.vault.BuilderFeeNotApproved, feeRate=6 * BPS, approved=5 * BPS):
        t.open("ETH", 2, builder=builder, builder_fee_rate="0.0006")  # dry run: refused, nothing sent
    with pytest.raises(ClientError, match="builder"):
        t.open("ETH", 2, builder="0x" + "00" * 20, builder_fee_rate="0.0005")
    trade = t.open("ETH", 2, builder=builder, builder_fee_rate="0.0005")
    fee_wad = env.vault.builderFees(builder)
    assert fee_wad == ceil_div(abs(int(trade.quote_delta * WAD)) * 5 * BPS, WAD)
    assert b.builder_fees() == Decimal(fee_wad) / Decimal(WAD) == t.builder_fees(builder)
    before = env.usdc.balanceOf(builder)
    start = chain.blocks.head.number
    b.claim_builder_fees()
    assert env.usdc.balanceOf(builder) - before == fee_wad // env.scale
    assert env.vault.builderFees(builder) == fee_wad % env.scale
    # The feed's records of the three builder events (not OtherEvent): approval, fee, claim.
    from vperp.client import BuilderApproval, BuilderClaim, BuilderFee

    recs = [r for r in t.events(since_block=start - 5) if isinstance(r, (BuilderApproval, BuilderFee, BuilderClaim))]
    (fee,) = [r for r in recs if isinstance(r, BuilderFee)]
    assert (fee.owner, fee.subaccount, fee.builder, fee.amount) == (trader.address, 0, builder.address,
                                                                   Decimal(fee_wad) / Decimal(WAD))
    (claim,) = [r for r in recs if isinstance(r, BuilderClaim)]
    assert (claim.builder, claim.to, claim.amount_wad) == (builder.address, builder.address,
                                                           Decimal(fee_wad - fee_wad % env.scale) / Decimal(WAD))
    assert claim.amount == Decimal(fee_wad // env.scale) / Decimal(10**6)


# ---------------------------------------------------------------------------- the model: random sequences

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_step = st.tuples(st.sampled_from(["alice", "bob"]), st.integers(-30, 30).filter(bool), st.integers(0, 10),
                  st.integers(1, 4 * 3600))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_step, min_size=1, max_size=12))
def test_model_builder_fees_only_move_money_from_trader_to_builder(steps):
    """The same trades with and without builder fees (each trader its own builder here, and a third party
    for bob): the pool, the insurance fund and every position end identical, each trader's collateral is lower
    by exactly the fees it paid, the builders hold exactly those, and the Vault's tokens cover every claim
    to the wei after every step."""
    from vperp.config import lagging_peg_config

    t0 = 1_800_000_000
    plain, paid = Model.from_config(lagging_peg_config(), t0), Model.from_config(lagging_peg_config(), t0)
    builders = {"alice": "alice", "bob": "frontend"}
    for m in (plain, paid):
        for who in builders:
            m.deposit(who, 0, 20_000 * 10**6, t0)
    for who, b in builders.items():
        paid.approve_builder_fee(who, b, MAX_BUILDER_FEE_RATE)
    fees = {"alice": 0, "bob": 0}
    t = t0
    for who, tenths, bps, dt in steps:
        t += dt
        for m in (plain, paid):
            m.set_index(ETH, 3_000 * WAD, t)  # keep the feed fresh
        base = tenths * WAD // 10
        try:
            r0 = plain.open_position(who, 0, ETH, base, MAX_UINT if base > 0 else 0, t, t + 60)
        except ModelRevert:
            r0 = None
        try:
            r1 = paid.open_position(who, 0, ETH, base, MAX_UINT if base > 0 else 0, t, t + 60,
                                    builder=builders[who], builder_fee_rate=bps * BPS)
        except ModelRevert:
            r1 = None
        if (r0 is None) != (r1 is None):
            return  # the fee changed a margin outcome: the runs diverge from here on
        if r1 is not None:
            assert r1.builder_fee == ceil_div(abs(r1.quote) * bps * BPS, WAD)
            assert (r1.quote, r1.fee, r1.to_insurance) == (r0.quote, r0.fee, r0.to_insurance)
            fees[who] += r1.builder_fee
        assert paid.token_balance * paid.token_scale == paid.total_claims()
        assert (paid.pool_balance_wad, paid.insurance_fund_wad) == (plain.pool_balance_wad, plain.insurance_fund_wad)
        for w in builders:
            assert paid.collateral(w, 0) == plain.collateral(w, 0) - fees[w]
            assert paid._position(ETH, w, 0) == plain._position(ETH, w, 0)
    assert paid.builder_fees("alice") == fees["alice"] and paid.builder_fees("frontend") == fees["bob"]
