"""The ClearingHouse's listing and parameter setters run in ClearingHouseConfigurator by delegatecall
(ClearingHouse._configure). What must hold, and is checked here on a fresh ClearingHouse:

- the ClearingHouse deploys its configurator and owns it; a direct call to the configurator's setters fails
  for anyone (even the ClearingHouse's owner), and leaves both contracts unchanged;
- through the ClearingHouse, each setter behaves as one contract: owner only (the ClearingHouse's named error,
  before anything is forwarded), its events come from the ClearingHouse's address, its return value (the new
  market id) reaches the caller, its named errors (including OracleLib's UnsupportedOracleDecimals) decode
  from the ClearingHouse's ABI, and a refused call changes nothing;
- the writes land in the ClearingHouse's storage, read back by its views; the configurator's own storage
  stays empty;
- the liquidation engine's backstopClose, which also runs there, refuses a direct call from anyone;
- the fundingState view runs there too, read only, through the ClearingHouse's static call to itself, which its
  fallback accepts from the ClearingHouse alone.
- the AMM controller's setReserves runs there too: the sender checked against the ClearingHouse's controller (a
  direct call refuses everyone), under the ClearingHouse's own reentrancy lock (OpenZeppelin's transient slot),
  its event from the ClearingHouse's address, the lock released after the forwarded call.
"""
from decimal import Decimal

import ape
import pytest
from ape import project

from vperp.config import lagging_peg_config
from vperp.units import WAD

from helpers.reverts import revert_data
from helpers.trading import b32, wad

ZERO = "0x" + "00" * 20


@pytest.fixture(scope="module")
def fresh(deployer):
    cfg = lagging_peg_config()
    mc = cfg.markets[0]
    token = project.MockERC20.deploy("USD Coin (mock)", "USDC", cfg.collateral_decimals, sender=deployer)
    vault = project.Vault.deploy(token, deployer, sender=deployer)
    ch = project.ClearingHouse.deploy(vault, deployer, sender=deployer)
    oracle = project.MockAggregator.deploy(mc.oracle_decimals, int(mc.price) * 10**mc.oracle_decimals, "ETH / USD",
                                           sender=deployer)
    conf = project.ClearingHouseConfigurator.at(ch.configurator())
    return ch, conf, oracle, mc


def listing_args(mc, oracle):
    return (b32(mc.symbol), mc.to_params(oracle.address), wad(mc.insurance_fee_share), wad(mc.base_reserve))


def test_the_clearing_house_deploys_and_owns_its_configurator(fresh):
    ch, conf, _, _ = fresh
    assert conf.address != ZERO and len(ape.chain.provider.get_code(conf.address)) > 0
    assert conf.owner() == ch.address
    # Its own storage is not the ClearingHouse's: nothing wired there.
    assert conf.liquidationEngine() == ZERO and conf.ammController() == ZERO


def test_direct_calls_to_the_configurator_fail_for_anyone(fresh, deployer, alice):
    ch, conf, oracle, mc = fresh
    before = ch.marketCount()
    for who in (deployer, alice):
        with ape.reverts(conf.OwnableUnauthorizedAccount, account=who.address):
            conf.listMarket(*listing_args(mc, oracle), sender=who)
        with ape.reverts(conf.OwnableUnauthorizedAccount, account=who.address):
            conf.setSkewFunding(1, 0, sender=who)
        with ape.reverts(conf.OwnableUnauthorizedAccount, account=who.address):
            conf.setFundingParams(1, (0, 10**10, 0, 60, 1), sender=who)
        with ape.reverts(conf.OwnableUnauthorizedAccount, account=who.address):
            conf.setMarketParams(1, mc.to_params(oracle.address), 0, sender=who)
    assert ch.marketCount() == before


def test_the_backstop_hook_called_directly_refuses_everyone(fresh, deployer, alice):
    """backstopClose runs in the configurator (ClearingHouseSettlement's auction settlement); called directly it
    reads the configurator's own liquidationEngine slot, never set, so it refuses anyone with
    UnauthorizedModule(caller). Its Vault is the ClearingHouse's (an immutable both constructors set)."""
    ch, conf, _, _ = fresh
    assert conf.vault() == ch.vault()
    before = ch.marketCount()
    for who in (deployer, alice):
        with ape.reverts(conf.UnauthorizedModule, caller=who.address):
            conf.backstopClose(alice, 0, 1, WAD, 3_000 * WAD, sender=who)
    assert ch.marketCount() == before


def test_setters_through_the_clearing_house_are_owner_only_and_forward_nothing_else(fresh, alice):
    ch, _, oracle, mc = fresh
    before = ch.marketCount()
    with ape.reverts(ch.OwnableUnauthorizedAccount, account=alice.address):
        ch.listMarket(*listing_args(mc, oracle), sender=alice)
    with ape.reverts(ch.OwnableUnauthorizedAccount, account=alice.address):
        ch.setSkewFunding(1, 0, sender=alice)
    assert ch.marketCount() == before


def test_list_market_returns_the_id_and_emits_from_the_clearing_house(fresh, deployer):
    ch, conf, oracle, mc = fresh
    n = ch.marketCount() + 1
    # The return value travels back through the delegatecall's returndata.
    assert ch.listMarket.call(*listing_args(mc, oracle), sender=deployer) == n
    tx = ch.listMarket(*listing_args(mc, oracle), sender=deployer)
    listed = [log for log in tx.decode_logs(ch.MarketListed)]
    assert len(listed) == 1 and listed[0].contract_address == ch.address and listed[0].marketId == n
    assert {log.contract_address for log in tx.decode_logs()} == {ch.address}
    # Written in the ClearingHouse's storage, read back by its views.
    assert ch.marketCount() == n and ch.symbolOf(n) == b32(mc.symbol)
    p = ch.marketParams(n)
    assert p.oracle == oracle.address and p.imr == wad(mc.imr) and p.maxSpread == wad(mc.max_spread)
    st = ch.marketState(n)
    assert st.baseReserve == wad(mc.base_reserve)
    assert ch.fundingParams(n).smoothingTau == ch.DEFAULT_SMOOTHING_TAU()
    assert ch.skewFunding(n)[0] == ch.DEFAULT_SKEW_FUNDING_PPM()
    assert ch.insuranceFeeShare(n) == wad(mc.insurance_fee_share)


def test_setters_write_the_clearing_house_and_refuse_bad_input_unchanged(fresh, deployer):
    ch, _, oracle, mc = fresh
    if ch.marketCount() == 0:
        ch.listMarket(*listing_args(mc, oracle), sender=deployer)
    mid = ch.marketCount()
    tx = ch.setSkewFunding(mid, 1234, sender=deployer)
    assert [e.ratePpm for e in tx.decode_logs(ch.SkewFundingSet)] == [1234] and ch.skewFunding(mid)[0] == 1234
    fp = ch.fundingParams(mid)
    new_fp = (fp.maxFundingRate, fp.maxRateVelocity, fp.baselineRate, fp.smoothingTau + 60, fp.fundingPeriodHours)
    tx = ch.setFundingParams(mid, new_fp, sender=deployer)
    assert len(tx.decode_logs(ch.FundingParamsSet)) == 1 and ch.fundingParams(mid).smoothingTau == fp.smoothingTau + 60
    # Out of bounds: the ClearingHouse's named error, nothing changed.
    with ape.reverts(ch.ParameterOutOfBounds, name=b32("skewFundingPpm"), value=10_001):
        ch.setSkewFunding(mid, 10_001, sender=deployer)
    assert ch.skewFunding(mid)[0] == 1234
    bad = list(mc.to_params(oracle.address))
    bad[4] = wad(mc.imr)  # mmr = imr: the imr must exceed the mmr
    with ape.reverts(ch.ParameterOutOfBounds, name=b32("imr")):
        ch.setMarketParams(mid, tuple(bad), wad(mc.insurance_fee_share), sender=deployer)
    assert ch.marketParams(mid).mmr == wad(mc.mmr)
    with ape.reverts(ch.UnknownMarket, marketId=mid + 1):
        ch.setSkewFunding(mid + 1, 0, sender=deployer)


def test_library_error_decodes_from_the_clearing_house_abi(fresh, deployer):
    """OracleLib's UnsupportedOracleDecimals is raised inside the configurator; the ClearingHouse's ABI
    declares it, so a caller decodes it by name. Nothing is listed."""
    ch, _, _, mc = fresh
    feed = project.MockAggregator.deploy(19, int(Decimal(mc.price) * 10**19), "19 decimals", sender=deployer)
    before = ch.marketCount()
    with ape.reverts(ch.UnsupportedOracleDecimals, feed=feed.address, decimals=19):
        ch.listMarket(*listing_args(mc, feed), sender=deployer)
    assert ch.marketCount() == before
    assert WAD == 10**18


def test_the_funding_cap_is_bounded_by_the_taker_fee_one_wei_either_side(fresh, deployer):
    """The funding oscillation's bound (docs/security.md "Fixed: the funding oscillation"): a market's funding cap
    is at most its taker fee / 9 per hour while its time constant is under 12 hours, the fee / 6 from 12 hours on
    (ClearingHouseConfigurator._capFeeHours), and its rate velocity at least a quarter of the cap per hour. The
    listing sets the fee / 9 (at most DEFAULT_MAX_FUNDING_RATE); setFundingParams refuses a cap one wei above the
    bound at the new time constant, a faster time constant that the cap outgrows, or a velocity one wei under its
    floor; setMarketParams refuses a fee one wei below the bound. Each refusal changes nothing; with two bounds broken
    the cap's is named first. The model refuses the same kinds of values with the same errors (next test)."""
    from vperp import units

    ch, _, oracle, mc = fresh
    fee = 10**15 + 7  # 10 bps and a remainder: every bound below rounds down
    params = list(mc.to_params(oracle.address))
    params[5] = fee
    ch.listMarket(b32("CAPFEE"), tuple(params), wad(mc.insurance_fee_share), wad(mc.base_reserve), sender=deployer)
    mid = ch.marketCount()
    f = ch.fundingParams(mid)
    assert f.maxFundingRate == fee // 9 == units.listing_funding_cap(fee)
    v0 = f.maxRateVelocity
    rest = lambda cap, tau, v=v0: (cap, v, f.baselineRate, tau, f.fundingPeriodHours)  # noqa: E731
    slow, fast = 12 * 3600, 12 * 3600 - 1
    assert units.max_funding_cap(fee, slow) == fee // 6 and units.max_funding_cap(fee, fast) == fee // 9

    def refused(name, value, call):
        before = (tuple(ch.fundingParams(mid)), tuple(ch.marketParams(mid)))
        with ape.reverts(ch.ParameterOutOfBounds, name=b32(name), value=value):
            call()
        assert (tuple(ch.fundingParams(mid)), tuple(ch.marketParams(mid))) == before

    # setFundingParams: one wei either side at each time constant.
    refused("maxFundingRate", fee // 9 + 1, lambda: ch.setFundingParams(mid, rest(fee // 9 + 1, fast), sender=deployer))
    ch.setFundingParams(mid, rest(fee // 9, fast), sender=deployer)
    refused("maxFundingRate", fee // 6 + 1, lambda: ch.setFundingParams(mid, rest(fee // 6 + 1, slow), sender=deployer))
    # Both the cap and the velocity out of bounds: the cap is checked first.
    refused("maxFundingRate", fee // 6 + 1, lambda: ch.setFundingParams(mid, rest(fee // 6 + 1, slow, 10**10),
                                                                        sender=deployer))
    ch.setFundingParams(mid, rest(fee // 6, slow), sender=deployer)
    assert ch.fundingParams(mid).maxFundingRate == fee // 6
    # A faster time constant with the slow bound's cap: refused (the fee no longer covers 9 hours of it).
    refused("maxFundingRate", fee // 6, lambda: ch.setFundingParams(mid, rest(fee // 6, fast), sender=deployer))
    # The velocity: at least the cap / 4 per hour, one wei either side.
    cap = fee // 6
    refused("maxRateVelocity", cap // 4 - 1, lambda: ch.setFundingParams(mid, rest(cap, slow, cap // 4 - 1),
                                                                         sender=deployer))
    ch.setFundingParams(mid, rest(cap, slow, cap // 4), sender=deployer)
    assert ch.fundingParams(mid).maxRateVelocity == cap // 4 == units.min_rate_velocity(cap)
    # setMarketParams: the fee must cover 6 hours of the cap at tau 12 h ...
    low = list(params)
    low[5] = cap * 6 - 1
    refused("takerFee", cap * 6 - 1, lambda: ch.setMarketParams(mid, tuple(low), wad(mc.insurance_fee_share),
                                                                 sender=deployer))
    low[5] = cap * 6
    ch.setMarketParams(mid, tuple(low), wad(mc.insurance_fee_share), sender=deployer)
    assert ch.marketParams(mid).takerFee == cap * 6
    # ... and 9 hours of it under 12 h.
    ch.setFundingParams(mid, rest(cap * 6 // 9, fast), sender=deployer)
    low[5] = cap * 6 // 9 * 9 - 1
    refused("takerFee", low[5], lambda: ch.setMarketParams(mid, tuple(low), wad(mc.insurance_fee_share),
                                                            sender=deployer))
    # Funding off: any fee, zero included.
    ch.setFundingParams(mid, rest(0, fast), sender=deployer)
    low[5] = 0
    ch.setMarketParams(mid, tuple(low), wad(mc.insurance_fee_share), sender=deployer)
    refused("maxFundingRate", 1, lambda: ch.setFundingParams(mid, rest(1, slow), sender=deployer))
    # The listing caps at DEFAULT_MAX_FUNDING_RATE: a 1 % fee lists at 0.1 %/h, not 0.111 %/h.
    params[5] = 10**16
    ch.listMarket(b32("CAPMAX"), tuple(params), wad(mc.insurance_fee_share), wad(mc.base_reserve), sender=deployer)
    assert ch.fundingParams(ch.marketCount()).maxFundingRate == ch.DEFAULT_MAX_FUNDING_RATE() == 10**15


def test_the_model_bounds_the_funding_cap_by_the_taker_fee_as_the_contract_does():
    """The model's setters (vperp.model) refuse the same caps, velocities and fees as the test above, with the same
    error."""
    from dataclasses import replace

    from vperp.config import lagging_peg_config
    from vperp.model import Model, ModelRevert

    cfg = lagging_peg_config()
    model = Model.from_config(cfg, timestamp=1_000_000)
    mk = model.markets[1]
    fee = mk.taker_fee
    assert mk.funding_params.max_funding_rate == min(fee // 9, 10**15)
    base = mk.funding_params
    t = 1_000_000 + 60
    slow, fast = 12 * 3600, 12 * 3600 - 1
    for cap, tau, ok in ((fee // 9 + 1, fast, False), (fee // 9, fast, True),
                         (fee // 6 + 1, slow, False), (fee // 6, slow, True), (fee // 6, fast, False)):
        if ok:
            model.set_funding_params(1, replace(base, max_funding_rate=cap, smoothing_tau=tau), t)
        else:
            with pytest.raises(ModelRevert) as e:
                model.set_funding_params(1, replace(base, max_funding_rate=cap, smoothing_tau=tau), t)
            assert e.value.args[:3] == ("ParameterOutOfBounds", "maxFundingRate", cap)
    cap = fee // 6
    with pytest.raises(ModelRevert) as e:
        model.set_funding_params(1, replace(base, max_funding_rate=cap, smoothing_tau=slow,
                                            max_rate_velocity=cap // 4 - 1), t)
    assert e.value.args[:3] == ("ParameterOutOfBounds", "maxRateVelocity", cap // 4 - 1)
    with pytest.raises(ModelRevert) as e:  # both out of bounds: the cap first, as the contract
        model.set_funding_params(1, replace(base, max_funding_rate=cap + 1, smoothing_tau=slow, max_rate_velocity=10**10), t)
    assert e.value.args[:3] == ("ParameterOutOfBounds", "maxFundingRate", cap + 1)
    with pytest.raises(ModelRevert) as e:
        model.set_market_params(1, t, taker_fee=cap * 6 - 1)
    assert e.value.args[:3] == ("ParameterOutOfBounds", "takerFee", cap * 6 - 1)
    model.set_market_params(1, t, taker_fee=cap * 6)


VIEW_PREFIX = bytes.fromhex("c9675dd8")  # ClearingHouse.VIEW_PREFIX


def _raw_call(contract, sender, data: bytes):
    """eth_call of raw calldata: (reverted, returned or revert data)."""
    w3 = ape.chain.provider.web3
    try:
        return False, bytes(w3.eth.call({"to": contract.address, "from": sender.address, "data": "0x" + data.hex()}))
    except Exception as e:  # noqa: BLE001 - eth-tester's TransactionFailed or web3's revert error: the data either way
        return True, revert_data(e)


def test_funding_state_runs_in_the_configurator_read_only(system, deployer, alice):
    """fundingState's code lives in the configurator (ClearingHouse._configureView: a static call to the ClearingHouse
    itself, its calldata behind VIEW_PREFIX, which the ClearingHouse's fallback delegate-calls to the configurator).
    The prefix is the documented hash and no function's selector; the fallback refuses anyone but the ClearingHouse
    itself with no data, as a call to no function was always refused, and changes nothing; the configurator called
    directly reads its own storage, where no market is listed; through the ClearingHouse the answer is the one
    computed from its storage (the model agrees: tests/clearinghouse/test_funding.py and the fuzzers)."""
    from eth_abi import decode as abi_decode
    from eth_utils import keccak

    ch = system.clearing_house
    conf = project.ClearingHouseConfigurator.at(ch.configurator())
    assert keccak(text="vperp.ClearingHouse.viewInConfigurator")[:4] == VIEW_PREFIX
    selectors = {keccak(text=m.selector)[:4] for m in (*ch.contract_type.view_methods, *ch.contract_type.mutable_methods)}
    assert VIEW_PREFIX not in selectors and len(selectors) > 50
    inner = bytes(ch.fundingState.encode_input(1))
    state = ch.fundingState(1)
    for who in (deployer, alice):
        assert _raw_call(ch, who, VIEW_PREFIX + inner) == (True, b"")  # the prefix from outside: refused, no data
        assert _raw_call(ch, who, bytes.fromhex("deadbeef")) == (True, b"")  # no function: refused as before
        with pytest.raises(Exception):
            who.transfer(ch, 0, data=VIEW_PREFIX + inner)  # as a transaction too
    assert ch.fundingState(1) == state
    reverted, out = _raw_call(ch, alice, inner)  # the plain call, raw: seven words, the view's answer
    assert not reverted and list(abi_decode(["int256"] * 3 + ["uint256"] * 2 + ["int256"] * 2, out)) == list(state)
    with ape.reverts(conf.UnknownMarket, marketId=1):
        conf.fundingState(1)


# The AMM controller's setReserves, forwarded the same way (sender check, the shared reentrancy slot, the event's
# address, the lock released after the call).
REENTRANCY_SLOT = bytes.fromhex("9b779b17422d0df92223018b32b4d1fa46e071723d6817e2486d003becc55f00")


def test_set_reserves_forwarding_sender_lock_and_event(system, ch, chain, alice, project, deployer):
    cfg = project.ClearingHouseConfigurator.at(ch.configurator())
    args = (1, 10_000 * WAD, 30_000_000 * WAD, 0)
    # Not the controller: the ClearingHouse's error, same selector and argument as before the move.
    with ape.reverts(ch.UnauthorizedModule, module=alice.address):
        ch.setReserves(*args, sender=alice)
    # The configurator called directly reads its own (never set) ammController and refuses everyone.
    assert cfg.ammController() == "0x0000000000000000000000000000000000000000"
    with ape.reverts(cfg.UnauthorizedModule, module=alice.address):
        cfg.setReserves(*args, sender=alice)
    # Both codes use OpenZeppelin's transient lock slot: under delegatecall the configurator's nonReentrant reads
    # and writes the ClearingHouse's transient storage, so it is the same lock the trading functions hold.
    for code in (chain.provider.get_code(ch.address), chain.provider.get_code(cfg.address)):
        assert REENTRANCY_SLOT in bytes(code)
    # Through the controller (a depth sync after a pool deposit): the event comes from the ClearingHouse.
    units = system.units(1_000_000)
    system.collateral.mint(alice, units, sender=alice)
    system.collateral.approve(system.pool, units, sender=alice)
    system.pool.deposit(units, alice, sender=alice)
    tx = system.amm.syncDepth(1, sender=alice)
    logs = [log for log in tx.events if log.event_name == "ReservesSet"]
    assert len(logs) == 1 and logs[0].contract_address == ch.address
    # The lock is released after the forwarded call: a second setReserves and a nonReentrant call in one tx pass.
    ch2 = project.ClearingHouse.deploy(system.vault, deployer, sender=deployer)
    batch = project.BatchCaller.deploy(sender=deployer)
    ch2.setAmmController(batch, sender=deployer)
    ch2.listMarket(b32("X"), system.markets["ETH"].config.to_params(system.markets["ETH"].oracle.address), 0,
                   10_000 * WAD, sender=deployer)
    sr = ch2.setReserves.encode_input(1, 10_000 * WAD, 30_000_000 * WAD, 5)
    batch.batch([ch2.address, ch2.address, ch2.address], [sr, sr, ch2.pokeFunding.encode_input(1)], sender=deployer)
    assert ch2.marketState(1).cumulativeFunding == 10
    # toInt104 on the charge: 2^103 - 10 more fits, one more wei does not.
    big = ch2.setReserves.encode_input(1, 10_000 * WAD, 30_000_000 * WAD, 2**103 - 1 - 10)
    batch.batch([ch2.address], [big], sender=deployer)
    over = ch2.setReserves.encode_input(1, 10_000 * WAD, 30_000_000 * WAD, 1)
    with ape.reverts():
        batch.batch([ch2.address], [over], sender=deployer)
