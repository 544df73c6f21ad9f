"""Defensive checks that the statement/branch coverage report found unreached: the bounds and module guards
a correct deployment never trips. Each test drives the call straight into the guard and pins the named
custom error with its arguments, and that the failed call left the relevant state alone.

Module-only hooks (the Vault's `settleTrade`/`withdrawPool`, the ClearingHouse's `setReserves` and
liquidation hooks) are reached from FRESH contracts whose module slot holds an ordinary test account,
so the test can call the hook with arguments a real module would never send. Module setters are
once-only, which is why the session deployment cannot be re-wired for this.

Expected values come from the interface documentation and the hard bounds stated in the contracts'
parameter docs (not from the contracts' outputs): the insurance fund lives in an int128 slot; reserves
are bounded to [1e18, 1e36] base and (0, 1e36] quote; the pool's withdraw window to [1 h, 30 days];
an auction slice must be nonzero, of the position's sign and at most what is not yet in an auction,
and an auction fill takes base out of the auctioned part only (opposite sign, at most its size).
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import rlp
from ape import project
from eth_utils import keccak, to_canonical_address, to_checksum_address

from trading_helpers import b32, WAD, expect_revert, snapshot, trade
from vault_helpers import ledger, mint_approve, only_event
from vperp.config import default_config, wad
from vperp.deployment import Market, System

ZERO = "0x" + "00" * 20
INT128_MAX = 2**127 - 1
HOUR, DAY = 3600, 86_400

# Hard bounds (ClearingHouse: virtual reserves; LiquidityPool: withdraw window).
MIN_BASE_RESERVE = 10**18
MAX_RESERVE = 10**36
MIN_WINDOW = HOUR
MAX_WINDOW = 30 * DAY

SIZE = 10 * WAD  # each trader's position in the fresh market (base)
AUCTIONED = 4 * WAD  # the part of it a test puts into an auction




def create_address(sender, nonce: int) -> str:
    """Address of the contract `sender` creates with `nonce` (CREATE: keccak(rlp([sender, nonce])))."""
    return to_checksum_address(keccak(rlp.encode([to_canonical_address(sender.address), nonce]))[12:])


def assert_constructor_reverts(chain, deployer, container, error, *args):
    """Deploying `container(*args)` reverts with exactly `error` and leaves no code where it would live."""
    would_be = create_address(deployer, deployer.nonce)
    with expect_revert(error):
        container.deploy(*args, sender=deployer)
    assert len(chain.provider.get_code(would_be)) == 0


def new_vault(deployer, decimals: int):
    token = project.MockERC20.deploy(f"Token{decimals}", f"T{decimals}", decimals, sender=deployer)
    return token, project.Vault.deploy(token, deployer, sender=deployer)


@pytest.fixture(scope="module")
def wired(deployer, alice, bob, carol, dave, erin):
    """A fresh Vault + ClearingHouse (the minimum of vperp.deployment's wiring that trading needs) whose
    liquidation engine is bob and whose AMM controller is carol, with one market (the default ETH
    config), 10M of pool cash, alice long SIZE, dave short SIZE, erin funded but flat."""
    cfg = default_config()
    mc = cfg.markets[0]
    token = project.MockERC20.deploy("USD Coin (mock)", "USDC", cfg.collateral_decimals, sender=deployer)
    vault = project.Vault.deploy(token, deployer, sender=deployer)
    ch = project.ClearingHouse.deploy(vault, deployer, sender=deployer)
    vault.setClearingHouse(ch, sender=deployer)
    ch.setLiquidationEngine(bob, sender=deployer)
    ch.setAmmController(carol, sender=deployer)
    oracle = project.MockAggregator.deploy(mc.oracle_decimals, int(mc.price) * 10**mc.oracle_decimals, "ETH / USD",
                                           sender=deployer)
    ch.listMarket(b32(mc.symbol), mc.to_params(oracle.address), wad(mc.insurance_fee_share), wad(mc.base_reserve),
                  sender=deployer)
    assert ch.marketCount() == 1  # the first market of a fresh clearing house has id 1
    system = System(vault=vault, clearing_house=ch, collateral=token, deployer=deployer,
                    config=cfg.with_markets(mc), markets={mc.symbol: Market(mc.symbol, 1, oracle, mc)})
    cash = system.units(10_000_000)  # pool cash: the open-interest cap is a multiple of it
    mint_approve(token, vault, deployer, cash)
    vault.fundPool(cash, sender=deployer)
    for who in (alice, dave, erin):
        system.fund(who, 100_000)
    trade(ch, alice, 1, SIZE)
    trade(ch, dave, 1, -SIZE)
    assert ch.position(alice, 0, 1)[0] == SIZE and ch.position(dave, 0, 1)[0] == -SIZE
    return SimpleNamespace(system=system, ch=ch, vault=vault, token=token, engine=bob, amm=carol,
                           long=alice, short=dave, taker=erin, market=1)


def ch_state(w, owners) -> dict:
    """What a rejected ClearingHouse hook must leave alone: ledger, market and positions (trading_helpers
    .snapshot) plus each owner's auctioned size."""
    snap = snapshot(w.system, owners, markets=[w.market])
    for o in owners:
        snap[("auctioned", o.address)] = w.ch.auctionedSize(o, 0, w.market)
    return snap


# ============================================================================ Vault


@pytest.mark.parametrize("decimals", [6, 18])
def test_fund_insurance_beyond_int128_reverts_amount_too_large(deployer, alice, decimals):
    """fundInsurance refuses a top-up that would take the insurance fund past int128.max (its ledger slot)
    with AmountTooLarge(amount in token units), even when the amount alone is in range; the largest
    top-up that fits is accepted, after which a single token unit more is refused."""
    token, vault = new_vault(deployer, decimals)
    scale = 10 ** (18 - decimals)
    first = INT128_MAX // scale // 2
    fits = (INT128_MAX - first * scale) // scale  # largest further amount that keeps the fund <= int128.max
    over = fits + 1
    assert over <= INT128_MAX // scale  # the amount alone passes the token-to-WAD range check
    mint_approve(token, vault, alice, first + fits + 1)
    vault.fundInsurance(first, sender=alice)
    assert vault.insuranceFund() == first * scale

    before = ledger(vault, token, holders=(alice,)), token.allowance(alice, vault)
    with expect_revert(vault.AmountTooLarge, amount=over):
        vault.fundInsurance(over, sender=alice)
    assert (ledger(vault, token, holders=(alice,)), token.allowance(alice, vault)) == before

    vault.fundInsurance(fits, sender=alice)
    assert vault.insuranceFund() == (first + fits) * scale
    assert INT128_MAX - scale < vault.insuranceFund() <= INT128_MAX
    before = ledger(vault, token, holders=(alice,))
    with expect_revert(vault.AmountTooLarge, amount=1):
        vault.fundInsurance(1, sender=alice)
    assert ledger(vault, token, holders=(alice,)) == before


@pytest.mark.parametrize("setter,getter", [("setClearingHouse", "clearingHouse"),
                                           ("setLiquidationEngine", "liquidationEngine"),
                                           ("setLiquidityPool", "liquidityPool")])
def test_vault_module_setter_rejects_zero_and_stays_unwired(deployer, carol, setter, getter):
    """A fresh Vault's once-only module setters refuse the zero address (ZeroAddress()); the refused call
    does not use up the one wiring: the slot stays empty and a real module can still be set."""
    _, vault = new_vault(deployer, 6)
    assert getattr(vault, getter)() == ZERO
    with expect_revert(vault.ZeroAddress):
        getattr(vault, setter)(ZERO, sender=deployer)
    assert getattr(vault, getter)() == ZERO
    getattr(vault, setter)(carol, sender=deployer)
    assert getattr(vault, getter)() == carol.address


@pytest.fixture
def ch_vault(deployer, alice, bob):
    """A fresh 18-decimal Vault whose clearing house is bob; alice holds 100 of collateral."""
    token, vault = new_vault(deployer, 18)
    vault.setClearingHouse(bob, sender=deployer)
    mint_approve(token, vault, alice, 100 * WAD)
    vault.deposit(0, 100 * WAD, sender=alice)
    return token, vault


@pytest.mark.parametrize("collateral_delta,pool_delta,insurance_delta", [
    (1, 0, 0),
    (0, -1, 0),
    (0, 0, 1),
    (-10 * WAD, 6 * WAD, 4 * WAD - 1),  # a fee split that loses one wei
    (-5 * WAD, -5 * WAD, 0),  # both sides debited
    (WAD, -WAD, 1),
])
def test_settle_trade_rejects_unbalanced_deltas(ch_vault, alice, bob, collateral_delta, pool_delta, insurance_delta):
    """settleTrade from the clearing house refuses deltas that do not sum to zero with
    UnbalancedSettlement(collateralDelta, poolDelta, insuranceDelta): money is never created or destroyed;
    the account, its open-market bitmap, the pool and the insurance fund stay as they were."""
    assert collateral_delta + pool_delta + insurance_delta != 0
    token, vault = ch_vault
    before = ledger(vault, token, holders=(alice,), accounts=((alice, 0),)), vault.openMarkets(alice, 0)
    with expect_revert(vault.UnbalancedSettlement, collateralDelta=collateral_delta, poolDelta=pool_delta,
                       insuranceDelta=insurance_delta):
        vault.settleTrade(alice, 0, 1, True, collateral_delta, pool_delta, insurance_delta, sender=bob)
    assert (ledger(vault, token, holders=(alice,), accounts=((alice, 0),)), vault.openMarkets(alice, 0)) == before


def test_settle_trade_balanced_deltas_move_the_ledger(ch_vault, alice, bob):
    """Control for the unbalanced cases: a balanced settlement (a 10 loss split 6 pool / 4 insurance) is
    applied exactly and marks the market open in the account's bitmap."""
    token, vault = ch_vault
    vault.settleTrade(alice, 0, 3, True, -10 * WAD, 6 * WAD, 4 * WAD, sender=bob)
    assert vault.collateral(alice, 0) == 90 * WAD
    assert vault.poolBalance() == 6 * WAD and vault.insuranceFund() == 4 * WAD
    assert vault.openMarkets(alice, 0) == 1 << 2  # bit (marketId - 1)
    assert token.balanceOf(vault) == 100 * WAD  # a ledger move, no tokens


@pytest.fixture
def pool_vault(deployer, alice, carol):
    """A fresh 6-decimal Vault whose liquidity pool is carol, with 1,000 tokens of pool cash (funded by alice)."""
    token, vault = new_vault(deployer, 6)
    vault.setLiquidityPool(carol, sender=deployer)
    mint_approve(token, vault, alice, 1_000 * 10**6)
    vault.fundPool(1_000 * 10**6, sender=alice)
    return token, vault


def test_withdraw_pool_guards(pool_vault, deployer, alice, bob, carol):
    """withdrawPool: only the liquidity pool may call it (UnauthorizedModule(caller), not even the owner),
    never to the zero address (ZeroAddress()), never more than the pool's cash
    (InsufficientPoolCash(poolBalance, amountWad)); none of these moves a token or the ledger. The whole
    cash, exactly, is paid out."""
    token, vault = pool_vault
    cash_units = 1_000 * 10**6
    scale = 10**12
    holders = (alice, bob, carol)
    before = ledger(vault, token, holders=holders)
    assert before[2] == cash_units * scale  # poolBalance in WAD

    for caller in (alice, deployer):
        with expect_revert(vault.UnauthorizedModule, caller=caller):
            vault.withdrawPool(1, bob, sender=caller)
    with expect_revert(vault.ZeroAddress):
        vault.withdrawPool(1, ZERO, sender=carol)
    with expect_revert(vault.InsufficientPoolCash, poolBalance=cash_units * scale, amountWad=(cash_units + 1) * scale):
        vault.withdrawPool(cash_units + 1, bob, sender=carol)
    assert ledger(vault, token, holders=holders) == before

    vault.withdrawPool(cash_units, bob, sender=carol)
    assert token.balanceOf(bob) == cash_units and vault.poolBalance() == 0 and token.balanceOf(vault) == 0
    with expect_revert(vault.InsufficientPoolCash, poolBalance=0, amountWad=scale):
        vault.withdrawPool(1, bob, sender=carol)


@pytest.mark.parametrize("who", ["alice", "deployer", "unwired"])
def test_charge_liquidation_only_from_the_engine(system, deployer, alice, bob, who):
    """chargeLiquidation from anyone but the liquidation engine (a trader, the owner, or anyone on a Vault
    with no engine wired yet) reverts UnauthorizedModule(caller): no collateral moves to a keeper and
    nothing reaches the insurance fund."""
    if who == "unwired":
        token, vault = new_vault(deployer, 6)
        caller = alice
    else:
        token, vault = system.collateral, system.vault
        caller = alice if who == "alice" else deployer
    mint_approve(token, vault, alice, 1_000 * 10**6)
    vault.deposit(0, 1_000 * 10**6, sender=alice)
    accts = ((alice, 0), (bob, 0))
    before = ledger(vault, token, holders=(alice, bob), accounts=accts)
    with expect_revert(vault.UnauthorizedModule, caller=caller):
        vault.chargeLiquidation(alice, 0, bob, 5 * WAD, 10 * WAD, sender=caller)
    assert ledger(vault, token, holders=(alice, bob), accounts=accts) == before


@pytest.mark.parametrize("who", ["alice", "deployer", "unwired"])
def test_record_shortfall_only_from_the_engine(system, deployer, alice, who):
    """recordShortfall (the bad-debt estimate the pool's NAV sets aside) from anyone but the liquidation
    engine reverts UnauthorizedModule(caller) and records nothing: a trader cannot depress the share
    price, nor clear an estimate."""
    vault = new_vault(deployer, 6)[1] if who == "unwired" else system.vault
    caller = alice if who != "deployer" else deployer
    before = (vault.pendingBadDebt(), vault.shortfallOf(alice, 0))
    with expect_revert(vault.UnauthorizedModule, caller=caller):
        vault.recordShortfall(alice, 0, 10**6 * WAD, sender=caller)
    assert (vault.pendingBadDebt(), vault.shortfallOf(alice, 0)) == before == (0, 0)


# ============================================================================ ClearingHouse


def test_clearing_house_constructor_rejects_zero_vault(chain, deployer):
    """A ClearingHouse without a Vault is refused at deployment: ZeroAddress(), nothing deployed."""
    assert_constructor_reverts(chain, deployer, project.ClearingHouse, project.ClearingHouse.ZeroAddress, ZERO, deployer)


@pytest.mark.parametrize("setter,getter", [("setAmmController", "ammController"),
                                           ("setLiquidationEngine", "liquidationEngine")])
def test_clearing_house_module_setter_rejects_zero_and_stays_unwired(system, deployer, carol, setter, getter):
    """A fresh ClearingHouse's once-only module setters refuse the zero address (ZeroAddress()); the slot
    stays empty and can still be wired to a real module afterwards."""
    ch = project.ClearingHouse.deploy(system.vault, deployer, sender=deployer)
    with expect_revert(ch.ZeroAddress):
        getattr(ch, setter)(ZERO, sender=deployer)
    assert getattr(ch, getter)() == ZERO
    getattr(ch, setter)(carol, sender=deployer)
    assert getattr(ch, getter)() == carol.address


@pytest.mark.parametrize("hook", ["markForAuction", "settleAuctionFill", "backstopClose", "releaseFromAuction",
                                  "setReserves"])
@pytest.mark.parametrize("caller_name", ["owner_of_position", "deployer"])
def test_module_hooks_refuse_other_callers(wired, deployer, hook, caller_name):
    """The liquidation hooks answer only the liquidation engine, setReserves only the AMM controller:
    from the position's owner or from the contract owner they revert UnauthorizedModule(caller) and
    change nothing (ledger, market, positions, auctioned sizes)."""
    w = wired
    caller = w.long if caller_name == "owner_of_position" else deployer
    calls = {
        "markForAuction": lambda: w.ch.markForAuction(w.long, 0, w.market, WAD, sender=caller),
        "settleAuctionFill": lambda: w.ch.settleAuctionFill(w.long, 0, w.market, WAD, 3000 * WAD, w.taker, 0,
                                                            sender=caller),
        "backstopClose": lambda: w.ch.backstopClose(w.long, 0, w.market, WAD, 2900 * WAD, sender=caller),
        "releaseFromAuction": lambda: w.ch.releaseFromAuction(w.long, 0, w.market, WAD, sender=caller),
        "setReserves": lambda: w.ch.setReserves(w.market, 20_000 * WAD, 60_000_000 * WAD, 0, sender=caller),
    }
    owners = (w.long, w.short, w.taker)
    before = ch_state(w, owners)
    with expect_revert(w.ch.UnauthorizedModule, caller=caller):
        calls[hook]()
    assert ch_state(w, owners) == before


@pytest.mark.parametrize("base,quote,name,value", [
    (MIN_BASE_RESERVE - 1, 30_000_000 * WAD, "baseReserve", MIN_BASE_RESERVE - 1),
    (0, 30_000_000 * WAD, "baseReserve", 0),
    (MAX_RESERVE + 1, 30_000_000 * WAD, "baseReserve", MAX_RESERVE + 1),
    (10_000 * WAD, 0, "quoteReserve", 0),
    (10_000 * WAD, MAX_RESERVE + 1, "quoteReserve", MAX_RESERVE + 1),
    (0, 0, "baseReserve", 0),  # both out of bounds: the base reserve is checked first
])
def test_set_reserves_out_of_bounds(wired, base, quote, name, value):
    """setReserves from the AMM controller refuses reserves outside the hard bounds with
    ParameterOutOfBounds(name, value); the market (reserves, open interest) and every position stay."""
    w = wired
    owners = (w.long, w.short)
    before = ch_state(w, owners)
    with expect_revert(w.ch.ParameterOutOfBounds, name=b32(name), value=value):
        w.ch.setReserves(w.market, base, quote, 0, sender=w.amm)
    assert ch_state(w, owners) == before


@pytest.mark.parametrize("base,quote", [(MIN_BASE_RESERVE, 1), (MAX_RESERVE, MAX_RESERVE)])
def test_set_reserves_bounds_are_inclusive(wired, base, quote):
    """Control for the bounds: the bound values themselves are accepted and written as given."""
    w = wired
    tx = w.ch.setReserves(w.market, base, quote, 0, sender=w.amm)
    log = only_event(tx, w.ch.ReservesSet)
    assert (log.marketId, log.baseReserve, log.quoteReserve) == (w.market, base, quote)
    s = w.ch.marketState(w.market)
    assert (s.baseReserve, s.quoteReserve) == (base, quote)


# ---------------------------------------------------------------------------- auction slices


KICK_CASES = ["zero", "wrong_sign", "over_position", "over_remaining", "no_position"]


@pytest.mark.parametrize("side", [1, -1], ids=["long", "short"])
@pytest.mark.parametrize("case", KICK_CASES)
def test_mark_for_auction_rejects_invalid_slice(wired, side, case):
    """markForAuction (kick side) refuses a zero slice, a slice against the position's sign, and one larger
    than what is not yet in an auction (the whole position, or what an earlier slice left), with
    InvalidAuctionSlice(slice, available); auctioned sizes, positions and the ledger stay."""
    w = wired
    owner = w.long if side > 0 else w.short
    available = side * SIZE
    if case == "over_remaining":
        w.ch.markForAuction(owner, 0, w.market, side * AUCTIONED, sender=w.engine)
        available = side * (SIZE - AUCTIONED)
    if case == "no_position":
        owner, available = w.taker, 0
    slice_ = {
        "zero": 0,
        "wrong_sign": -side * WAD,
        "over_position": side * (SIZE + 1),
        "over_remaining": side * (SIZE - AUCTIONED + 1),
        "no_position": side * WAD,
    }[case]
    owners = (w.long, w.short, w.taker)
    before = ch_state(w, owners)
    with expect_revert(w.ch.InvalidAuctionSlice, slice=slice_, available=available):
        w.ch.markForAuction(owner, 0, w.market, slice_, sender=w.engine)
    assert ch_state(w, owners) == before


@pytest.mark.parametrize("side", [1, -1], ids=["long", "short"])
@pytest.mark.parametrize("case", ["zero", "wrong_sign", "over_auctioned", "no_auction"])
def test_release_from_auction_rejects_invalid_slice(wired, side, case):
    """releaseFromAuction (a cancelled auction) returns only what is in an auction, with its sign:
    a zero slice, the wrong sign, more than the auctioned part, or an account with none revert
    InvalidAuctionSlice(slice, auctioned) and change nothing; exactly the auctioned part is accepted."""
    w = wired
    owner = w.long if side > 0 else w.short
    auctioned = 0 if case == "no_auction" else side * AUCTIONED
    if auctioned:
        w.ch.markForAuction(owner, 0, w.market, auctioned, sender=w.engine)
    slice_ = {"zero": 0, "wrong_sign": -side * WAD, "over_auctioned": side * (AUCTIONED + 1),
              "no_auction": side * WAD}[case]
    owners = (w.long, w.short, w.taker)
    before = ch_state(w, owners)
    with expect_revert(w.ch.InvalidAuctionSlice, slice=slice_, available=auctioned):
        w.ch.releaseFromAuction(owner, 0, w.market, slice_, sender=w.engine)
    assert ch_state(w, owners) == before
    if auctioned:
        w.ch.releaseFromAuction(owner, 0, w.market, auctioned, sender=w.engine)
        assert w.ch.auctionedSize(owner, 0, w.market) == 0 and w.ch.position(owner, 0, w.market)[0] == side * SIZE


@pytest.mark.parametrize("side", [1, -1], ids=["long", "short"])
def test_mark_for_auction_accepts_exactly_the_available_size(wired, side):
    """Control for the kick-side bound: two slices that together are the whole position are accepted and
    add up in auctionedSize; after that nothing is available (InvalidAuctionSlice(side, 0))."""
    w = wired
    owner = w.long if side > 0 else w.short
    w.ch.markForAuction(owner, 0, w.market, side * AUCTIONED, sender=w.engine)
    w.ch.markForAuction(owner, 0, w.market, side * (SIZE - AUCTIONED), sender=w.engine)
    assert w.ch.auctionedSize(owner, 0, w.market) == side * SIZE
    assert w.ch.position(owner, 0, w.market)[0] == side * SIZE  # marking moves no size
    with expect_revert(w.ch.InvalidAuctionSlice, slice=side, available=0):
        w.ch.markForAuction(owner, 0, w.market, side, sender=w.engine)


# (side, case): a zero fill is refused on either side (the check was once asymmetric: a zero fill of a
# long auction passed it as a no-op, found by the coverage report; now it is refused like a zero slice).
TAKE_CASES = [(side, case) for side in (1, -1) for case in ("over_auctioned", "wrong_sign", "no_auction", "zero")]


@pytest.mark.parametrize("side,case", TAKE_CASES,
                         ids=[f"{'long' if s > 0 else 'short'}-{c}" for s, c in TAKE_CASES])
def test_settle_auction_fill_rejects_invalid_slice(wired, side, case):
    """settleAuctionFill (take side: the auctioned account's leg, fromAuction) takes base out of the
    auctioned part only: a fill larger than the auction, of the wrong sign, on an account with no
    auction, or a zero fill (either side) reverts InvalidAuctionSlice(baseDelta, auctioned), where
    baseDelta = -fill is the owner's change; positions, auctioned sizes and the ledger stay."""
    w = wired
    owner = w.long if side > 0 else w.short
    auctioned = 0 if case == "no_auction" else side * AUCTIONED
    if auctioned:
        w.ch.markForAuction(owner, 0, w.market, auctioned, sender=w.engine)
    fill = {
        "over_auctioned": side * (AUCTIONED + 1),
        "wrong_sign": -side * WAD,
        "no_auction": side * WAD,
        "zero": 0,
    }[case]
    owners = (w.long, w.short, w.taker)
    before = ch_state(w, owners)
    with expect_revert(w.ch.InvalidAuctionSlice, slice=-fill, available=auctioned):
        w.ch.settleAuctionFill(owner, 0, w.market, fill, 3000 * WAD, w.taker, 0, sender=w.engine)
    assert ch_state(w, owners) == before


@pytest.mark.parametrize("side", [1, -1], ids=["long", "short"])
def test_settle_auction_fill_of_the_whole_auction_is_accepted(wired, side):
    """Control for the take-side bound: a fill of exactly the auctioned size is accepted; it moves that
    base from the owner to the taker and empties the auction."""
    w = wired
    owner = w.long if side > 0 else w.short
    w.ch.markForAuction(owner, 0, w.market, side * AUCTIONED, sender=w.engine)
    w.ch.settleAuctionFill(owner, 0, w.market, side * AUCTIONED, 3000 * WAD, w.taker, 0, sender=w.engine)
    assert w.ch.auctionedSize(owner, 0, w.market) == 0
    assert w.ch.position(owner, 0, w.market)[0] == side * (SIZE - AUCTIONED)
    assert w.ch.position(w.taker, 0, w.market)[0] == side * AUCTIONED


# ============================================================================ LiquidationEngine


@pytest.mark.parametrize("zero_vault,zero_ch", [(True, False), (False, True), (True, True)],
                         ids=["vault", "clearing_house", "both"])
def test_liquidation_engine_constructor_rejects_zero_modules(system, chain, deployer, zero_vault, zero_ch):
    """A LiquidationEngine without its Vault or ClearingHouse is refused at deployment: ZeroAddress(),
    nothing deployed."""
    vault = ZERO if zero_vault else system.vault
    ch = ZERO if zero_ch else system.clearing_house
    assert_constructor_reverts(chain, deployer, project.LiquidationEngine, project.LiquidationEngine.ZeroAddress,
                               vault, ch, deployer)


# ============================================================================ LiquidityPool


@pytest.mark.parametrize("window", [0, MIN_WINDOW - 1, MAX_WINDOW + 1, 2**32 - 1])
def test_set_pool_params_withdraw_window_out_of_bounds(system, deployer, window):
    """setPoolParams refuses a withdraw window outside [1 h, 30 days] with
    ParameterOutOfBounds("withdrawWindow", window), whatever the other (valid) fields; the pool's
    parameters stay as they were."""
    pool = system.pool
    before = tuple(pool.poolParams())
    with expect_revert(pool.ParameterOutOfBounds, name=b32("withdrawWindow"), value=window):
        pool.setPoolParams((DAY, window, 10**17), sender=deployer)
    assert tuple(pool.poolParams()) == before


@pytest.mark.parametrize("window", [MIN_WINDOW, MAX_WINDOW])
def test_set_pool_params_withdraw_window_bounds_are_inclusive(system, deployer, window):
    """Control for the window bounds: 1 h and 30 days themselves are accepted and stored."""
    pool = system.pool
    pool.setPoolParams((DAY, window, 10**17), sender=deployer)
    assert tuple(pool.poolParams()) == (DAY, window, 10**17)
