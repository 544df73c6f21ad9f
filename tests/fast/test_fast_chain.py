"""The fast chain itself (vperp.fast): the deployment equals an Ape deployment, blocks and time, reverts
decoded by name, snapshots in both modes, the exact mode's state equals the default mode's, the model's
faster rollback, the harness's calldata encoder."""
from __future__ import annotations

import copy
import random

import pytest
from eth_abi import encode as abi_encode

from helpers import chain_harness
from helpers.fast_harness import fast_encode
from vperp import deploy
from vperp.config import plain_config
from vperp.fast import Account, FastChain, Revert, fast_deploy, mnemonic_accounts
from vperp.fast.model import ATOMIC_ACTIONS, FastModel, fast_copy
from vperp.model import Model, ModelRevert

CONTRACTS = ("vault", "clearing_house", "liquidation", "pool", "amm", "collateral")


def _views(ct, market_ids, address):
    """(function, args) for every view of `ct` whose inputs are market ids, an address, or nothing."""
    for fn in ct.functions.values():
        if not fn.is_view:
            continue
        if not fn.inputs:
            yield fn, ()
        elif fn.inputs == ["uint32"]:
            for mid in market_ids:
                yield fn, (mid,)
        elif fn.inputs == ["address"]:
            yield fn, (address,)
        elif fn.inputs == ["address", "uint32"]:
            yield fn, (address, 0)


@pytest.fixture(scope="module")
def both(accounts, chain):
    """vperp.deploy on the connected Ape chain and on a fast chain that starts where it did (the same
    deployer nonce, so the same addresses, and the same block timestamps)."""
    deployer = accounts[0]
    nonce, start = deployer.nonce, chain.pending_timestamp
    ape_system = deploy(deployer, plain_config())
    fc = FastChain(exact_gas=True, timestamp=start - 1)
    fc.add_account(deployer.address.lower(), nonce=nonce)
    fast_system = fast_deploy(fc, Account(fc, deployer.address), plain_config())
    return ape_system, fast_system, fc, chain


def test_deployment_equals_ape(both):
    ape_system, fast_system, fc, chain = both
    w3 = chain.provider.web3
    cs = w3.to_checksum_address
    for name in CONTRACTS:
        assert getattr(fast_system, name).address == getattr(ape_system, name).address.lower(), name
    oracles = [(m.oracle.address.lower(), fast_system.markets[s].oracle.address) for s, m in ape_system.markets.items()]
    assert all(a == b for a, b in oracles)
    checked = 0
    for name in CONTRACTS:
        c = getattr(fast_system, name)
        assert fc.code(c.address) == bytes(w3.eth.get_code(cs(c.address))), f"{name}: runtime code differs"
        for fn, args in _views(c._type, (1, 2, 3), fast_system.deployer.address):
            data = fn.encode(args)
            try:
                want = bytes(w3.eth.call({"to": cs(c.address), "data": data}))
            except Exception:  # noqa: BLE001 - reverted on Ape's chain
                want = None
            try:
                got = fc.call(fc.default_sender, c.address, data)
            except Revert:
                got = None
            assert got == want, f"{name}.{fn.name}{args}: fast {got!r} vs ape {want!r}"
            checked += 1
    assert checked > 100, checked


def test_blocks_time_and_reverts():
    fc = FastChain()
    alice, bob = mnemonic_accounts(2)
    fc.add_account(alice)
    s = fast_deploy(fc, alice, plain_config())
    head = fc.timestamp
    assert fc.pending_timestamp == head + 1
    fc.advance(100)
    data = s.vault._type.function("withdraw").encode([0, 1])
    r = fc.transact(bob, s.vault.address, data)
    assert (r.status, r.timestamp, r.block_number) == (0, head + 101, fc.block_number)
    assert r.error[0] == "InsufficientCollateral" and r.error[1][0] == bob
    with pytest.raises(Revert) as e:
        fc.call(bob, s.vault.address, data)
    assert e.value.name == "InsufficientCollateral"
    fc.pending_timestamp = head + 500
    r = fc.transact(alice, s.markets["ETH"].oracle.address,
                    s.markets["ETH"].oracle._type.function("updateAnswer").encode([2_900 * 10**8]))
    assert r.status == 1 and r.timestamp == head + 500
    assert s.markets["ETH"].oracle.latestTimestamp() == head + 500
    with pytest.raises(ValueError):
        fc.pending_timestamp = head


@pytest.mark.parametrize("exact", [False, True])
def test_snapshot_revert(exact):
    fc = FastChain(exact_gas=exact)
    alice, bob = mnemonic_accounts(2)
    fc.add_account(alice)
    s = fast_deploy(fc, alice, plain_config())
    token = fc.snapshot()
    supply, balance = s.collateral.totalSupply(), s.collateral.balanceOf(bob)
    s.collateral.mint(bob, 123, sender=Account(fc, bob))
    assert s.collateral.balanceOf(bob) == balance + 123
    fc.revert(token)
    assert (s.collateral.totalSupply(), s.collateral.balanceOf(bob)) == (supply, balance)
    s.collateral.mint(bob, 7, sender=Account(fc, bob))
    assert s.collateral.balanceOf(bob) == balance + 7


def test_exact_mode_leaves_the_same_state():
    """The same transactions in both modes: equal receipts' statuses and logs, equal views after."""
    chains = [FastChain(exact_gas=e) for e in (False, True)]
    systems = []
    for fc in chains:
        fc.add_account(mnemonic_accounts(1)[0])
        systems.append(fast_deploy(fc, mnemonic_accounts(1)[0], plain_config()))
    trader = mnemonic_accounts(3)[2]
    results = []
    for fc, s in zip(chains, systems):
        a = fc.artifacts
        seq = [(s.collateral.address, a["MockERC20"].function("mint").encode([trader, 10**12])),
               (s.collateral.address, a["MockERC20"].function("approve").encode([s.vault.address, 10**12])),
               (s.vault.address, a["Vault"].function("deposit").encode([0, 10**11])),
               (s.clearing_house.address, a["ClearingHouse"].function("openPosition").encode(
                   [0, 1, 10**18, 2**256 - 1, fc.timestamp + 100])),
               (s.vault.address, a["Vault"].function("withdraw").encode([0, 10**12]))]
        rs = [fc.transact(trader, to, data) for to, data in seq]
        views = (s.vault.collateral(trader, 0), s.vault.poolBalance(), s.clearing_house.position(trader, 0, 1),
                 s.clearing_house.marketState(1), s.pool.navWad())
        results.append(([(r.status, [(lg.address, lg.topics, lg.data) for lg in r.logs]) for r in rs], views))
    assert results[0] == results[1]
    assert [st for st, _ in results[0][0]] == [1, 1, 1, 1, 0]


def test_fast_model_is_the_model():
    """FastModel wraps exactly the model's atomic actions, and a reverting action leaves it unchanged."""
    atomic_code = Model.deposit.__code__
    members = {}
    for cls in reversed(Model.__mro__):  # Model and its per-contract mixins; a subclass's definition wins
        members.update(vars(cls))
    assert sorted(ATOMIC_ACTIONS) == sorted(n for n, f in members.items()
                                           if getattr(f, "__code__", None) is atomic_code)
    assert len(ATOMIC_ACTIONS) > 20
    m = fast_copy(Model.from_config())
    assert isinstance(m, FastModel) and isinstance(copy.deepcopy(m), FastModel)
    m.deposit("alice", 0, 10**9, 1)
    before = copy.deepcopy(m.__dict__)
    with pytest.raises(ModelRevert):
        m.open_position("alice", 0, 1, 10**24, 2**256 - 1, 2, 100)  # far beyond the margin
    assert m.__dict__ == before
    r = m.open_position("alice", 0, 1, 10**16, 2**256 - 1, 2, 100)
    ref = Model.from_config()
    ref.deposit("alice", 0, 10**9, 1)
    assert ref.open_position("alice", 0, 1, 10**16, 2**256 - 1, 2, 100) == r


def test_fast_encode_is_eth_abi():
    rng = random.Random(7)
    sigs = ["openPosition(uint32,uint32,int256,uint256,uint256)", "kick(address,uint32,uint32,address)",
            "transferMargin(uint32,uint32,uint256)", "updateAnswer(int256)", "deposit(uint256,address)",
            "batch(address[],bytes[])"]
    for _ in range(300):
        sig = rng.choice(sigs)
        types = chain_harness._split_types(sig[sig.index("(") + 1:-1])
        args = []
        for t in types:
            if t == "address":
                args.append("0x" + rng.randbytes(20).hex())
            elif t.startswith("uint"):
                args.append(rng.choice([0, 1, 2**int(t[4:]) - 1, rng.randrange(2**int(t[4:]))]))
            elif t.startswith("int"):
                bits = int(t[3:])
                args.append(rng.choice([0, -1, -2**(bits - 1), 2**(bits - 1) - 1, rng.randrange(-2**(bits - 1), 2**(bits - 1))]))
            else:
                args = [["0x" + "11" * 20], [b"\x01\x02"]]
                break
        assert fast_encode(sig, args) == chain_harness._selector(sig) + abi_encode(types, args)
