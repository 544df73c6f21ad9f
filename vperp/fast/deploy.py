"""`fast_deploy(chain, deployer, config)`: the whole protocol on a `FastChain`, by running
`vperp.deployment.deploy` itself (same order, constructor arguments, wiring, listing, parameters and
seeds) against a small stand-in for Ape's `project` and contract objects.

`vperp.deploy` reads `from ape import project` when it runs; `fast_deploy` puts a module whose
`project` is the stand-in in `sys.modules["ape"]` for the duration of that call and restores what was
there (Ape itself, or nothing) afterwards. Nothing of Ape is imported or needed.
"""
from __future__ import annotations

import sys
import types
from contextlib import contextmanager

from vperp.config import DeployConfig
from vperp.deployment import System, deploy

from .abi import Function
from .chain import FastChain, Receipt, Revert


class Account:
    """An externally owned account of the fast chain (what Ape's test accounts are to `deploy`)."""

    def __init__(self, chain: FastChain, address: str):
        self.chain = chain
        self.address = address.lower()

    def __str__(self) -> str:
        return self.address

    __repr__ = __str__

    def __eq__(self, other) -> bool:
        return _address(other) == self.address

    def __hash__(self) -> int:
        return hash(self.address)


def _address(v):
    return getattr(v, "address", v).lower() if isinstance(getattr(v, "address", v), str) else v


def _arg(v):
    """Contract objects and accounts as their address; tuples/lists element-wise."""
    if hasattr(v, "address"):
        return v.address
    if isinstance(v, (list, tuple)):
        return type(v)(_arg(x) for x in v)
    return v


class Struct(tuple):
    """A decoded return value: a tuple that also answers its field names as attributes."""

    def __new__(cls, values, names):
        t = super().__new__(cls, values)
        t._names = {n: i for i, n in enumerate(names) if n}
        return t

    def __getattr__(self, name):
        try:
            return self[self._names[name]]
        except KeyError:
            raise AttributeError(name) from None


class EventLog:
    """One decoded log: `event_name`, and each field as an attribute."""

    def __init__(self, address: str, name: str, fields: dict):
        self.contract_address, self.event_name, self._fields = address, name, fields

    def __getattr__(self, name):
        try:
            return self._fields[name]
        except KeyError:
            raise AttributeError(name) from None


class FastReceipt:
    def __init__(self, chain: FastChain, receipt: Receipt):
        self.receipt = receipt
        self.gas_used = receipt.gas_used
        self.status = receipt.status
        self.events = [EventLog(lg.address, *d) for lg in receipt.logs
                       if (d := chain.artifacts.decode_log(lg.topics, lg.data)) is not None]


class TransactionFailed(Exception):
    pass


class _Method:
    def __init__(self, contract: "Contract", fn: Function):
        self.contract, self.fn = contract, fn

    def __call__(self, *args, sender=None, **kwargs):
        chain = self.contract.chain
        data = self.fn.encode([_arg(a) for a in args])
        if self.fn.is_view and sender is None:
            try:
                out = self.fn.decode(chain.call(chain.default_sender, self.contract.address, data))
            except Revert as e:
                raise TransactionFailed(f"{self.fn.name}: {e.name}{e.error_args}") from None
            values = [Struct(v, comps) if comps else v for v, comps in zip(out, self.fn.output_components)]
            return values[0] if len(values) == 1 else Struct(values, self.fn.output_names)
        receipt = chain.transact(_address(sender), self.contract.address, data)
        if receipt.status != 1:
            raise TransactionFailed(f"{self.fn.name}: {receipt.error}")
        return FastReceipt(chain, receipt)


class Contract:
    """A deployed contract: `contract.method(*args, sender=account)` sends a transaction (a view without
    `sender` is an eth_call returning the decoded value); `.address` is lowercase hex."""

    def __init__(self, chain: FastChain, ctype: str, address: str):
        self.chain, self.contract_type_name, self.address = chain, ctype, address.lower()
        self._type = chain.artifacts[ctype]

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return _Method(self, self._type.function(name))
        except KeyError:
            raise AttributeError(f"{self.contract_type_name} has no function {name}") from None

    def __str__(self) -> str:
        return self.address

    @property
    def contract_type(self):
        """The ABI in the shape Ape's ContractType gives it (`.abi[i].type/.name/.inputs[j].canonical_type`)."""
        return _ape_shaped(self._type)


def _ape_shaped(ct):
    from types import SimpleNamespace

    from .abi import canonical_type

    def entry(item):
        return SimpleNamespace(type=item["type"], name=item.get("name", ""),
                               inputs=[SimpleNamespace(name=i.get("name", ""), canonical_type=canonical_type(i))
                                       for i in item.get("inputs", [])])

    return SimpleNamespace(name=ct.name, abi=[entry(i) for i in ct.abi])


class ContractContainer:
    def __init__(self, chain: FastChain, name: str):
        self.chain, self.name = chain, name

    def deploy(self, *args, sender=None) -> Contract:
        address, _ = self.chain.deploy(_address(sender), self.name, *[_arg(a) for a in args])
        return Contract(self.chain, self.name, address)

    def at(self, address: str) -> Contract:
        return Contract(self.chain, self.name, _address(address))


class Project:
    """What `deploy` (and tests/chain_harness.build_env) use of Ape's `project`: `project.<ContractType>.deploy(...)` and `.at(address)`."""

    def __init__(self, chain: FastChain):
        self._chain = chain

    def __getattr__(self, name):
        if name.startswith("_") or name not in self._chain.artifacts.types:
            raise AttributeError(name)
        return ContractContainer(self._chain, name)


@contextmanager
def ape_project(project: Project):
    """`from ape import project` answers `project` inside the block (vperp.deploy imports it when called)."""
    saved = sys.modules.get("ape")
    shim = types.ModuleType("ape")
    shim.project = project
    sys.modules["ape"] = shim
    try:
        yield
    finally:
        if saved is None:
            sys.modules.pop("ape", None)
        else:
            sys.modules["ape"] = saved


def fast_deploy(chain: FastChain, deployer: Account | str, config: DeployConfig | None = None) -> System:
    """`vperp.deploy(deployer, config)` on the fast chain; returns the same `System` (its contracts are
    `Contract`s of this module)."""
    if isinstance(deployer, str):
        deployer = Account(chain, deployer)
    if deployer.address not in chain.balances:
        chain.add_account(deployer.address)
    chain.default_sender = deployer.address
    with ape_project(Project(chain)):
        return deploy(deployer, config)
