"""`FastChain`: the compiled contracts (Ape's bytecode, nothing re-implemented) in-process on pyrevm.

One transaction is one block: `transact` mines it at the pending timestamp (by default one second
after the head, as the suite's chains do; `pending_timestamp = T` or `advance(seconds)` set it) and
number head + 1. `call` is an `eth_call` on the head block. Reverts come back decoded to the custom
error's name and arguments through every ABI of the build, logs as (address, topics, data) and
decodable by event name.

Gas. pyrevm 0.3.7 never finalizes its journal between transactions: every account and storage slot a
transaction touched stays warm for all later ones, and an SSTORE is priced against the value the slot
had when it was first loaded, not at the start of the transaction. So its `gas_used` is not what a
node reports, except for the first transaction that touches each slot. `exact_gas=True` runs every
transaction as a node does: inside a journal checkpoint, the storage it changed is read off the
journal, the checkpoint is reverted (which makes every account and slot cold again and the journal
empty) and the changes are written to the database underneath. Each transaction then starts cold
with its original values from the database, and its gas equals Anvil's to the unit
(tests/fast/test_fast_gas_parity.py). The price is about 1 ms per transaction (reading the journal).
The spec id must be spelled as revm spells it, "Cancun": pyrevm maps an unknown name (e.g. "CANCUN")
silently to its latest spec.

Snapshots: `snapshot()` / `revert(token)`; in the default mode they are pyrevm journal checkpoints
(which also bound the journal's growth: revert each example), in the exact mode an undo log of
the values the committed transactions overwrote.

Transient storage (EIP-1153) is cleared after every transaction, as a node does (pyrevm does not).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from eth_utils import keccak
from pyrevm import EVM, AccountInfo, BlockEnv

from .abi import Artifacts

GENESIS_TIMESTAMP = 1_767_225_600  # 2026-01-01T00:00:00Z, the embedded chain's genesis in the suite
EVM_HARDFORK = "Cancun"  # ape-config.yaml: evm_version cancun
TX_GAS = 30_000_000
EOA_BALANCE = 10**24


class Revert(Exception):
    """A reverted call: `name`/`args` of the custom error (see Artifacts.decode_error), raw `data`."""

    def __init__(self, name: str, args: tuple, data: bytes, gas_used: int = 0):
        super().__init__(f"{name}{args}")
        self.name, self.error_args, self.data, self.gas_used = name, args, data, gas_used


@dataclass(slots=True)
class Log:
    address: str  # lowercase hex
    topics: list
    data: bytes


@dataclass(slots=True)
class Receipt:
    status: int
    gas_used: int
    block_number: int
    timestamp: int
    logs: list = field(default_factory=list)
    output: bytes = b""
    error: tuple | None = None  # (name, args) when status == 0
    revert_data: bytes = b""
    contract_address: str | None = None

    def logs_with(self, topic: bytes) -> list:
        return [lg for lg in self.logs if lg.topics and lg.topics[0] == topic]


_OUTPUT = re.compile(r"output: 0x([0-9a-fA-F]*)")
_GAS = re.compile(r"gas_used: (\d+)")
_SLOT = re.compile(r"(\d+): StorageSlot \{ previous_or_original_value: (\d+), present_value: (\d+) \}")


_HEAD = ": Account { info: AccountInfo { balance: "


def _journal_changes(journal: str) -> dict[str, dict[int, tuple[int, int]]]:
    """Storage slots whose present value differs from the value at the start of the transaction,
    per account, read off pyrevm's `journal_str` (the `Debug` rendering of revm's JournaledState):
    {address: {slot: (original, present)}}. Plain string searches find each account and its storage
    map (the accounts' code, most of the text, is skipped), a regex reads the slots."""
    end = journal.find("}, transient_storage: ")
    if end < 0:
        end = len(journal)
    out: dict[str, dict[int, tuple[int, int]]] = {}
    find = journal.find
    i = find(_HEAD, 0, end)
    while i >= 0:
        address = journal[i - 42:i]
        nxt = find(_HEAD, i + 1, end)
        stop = nxt if nxt >= 0 else end
        seg = find("storage: {", i, stop)
        if seg >= 0 and journal[seg + 10] != "}":
            changed = {}
            for m in _SLOT.finditer(journal, seg, stop):
                original, present = int(m.group(2)), int(m.group(3))
                if original != present:
                    changed[int(m.group(1))] = (original, present)
            if changed:
                out[address] = changed
        i = nxt
    return out


def _rlp_int(n: int) -> bytes:
    if n == 0:
        return b"\x80"
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return b if len(b) == 1 and b[0] < 0x80 else bytes([0x80 + len(b)]) + b


def create_address(sender: str, nonce: int) -> str:
    """The CREATE address of `sender` at `nonce`: keccak(rlp([sender, nonce]))[12:]."""
    body = b"\x94" + bytes.fromhex(sender[2:]) + _rlp_int(nonce)
    return "0x" + keccak(bytes([0xc0 + len(body)]) + body)[12:].hex()


class FastChain:
    """pyrevm with blocks, accounts, decoded reverts and logs, snapshots and (optionally) node-exact gas."""

    def __init__(self, artifacts: Artifacts | None = None, *, exact_gas: bool = False,
                 timestamp: int = GENESIS_TIMESTAMP, number: int = 0, spec: str = EVM_HARDFORK, tx_gas: int = TX_GAS):
        self.artifacts = artifacts or Artifacts()
        self.evm = EVM(spec_id=spec)
        self.exact_gas = exact_gas
        self.tx_gas = tx_gas
        self.block_number = number
        self.timestamp = timestamp  # the head block's
        self._pending: int | None = None
        self._env = None  # (number, timestamp) the EVM's block env is set to
        self.nonces: dict[str, int] = {}
        self.balances: dict[str, int] = {}
        # exact mode: the undo log of every committed change, (address, slot, previous value)
        self._undo: list[tuple[str, int, int]] = []
        self.transactions = 0
        self.calls = 0
        self.default_sender = "0x" + "0" * 40  # `from` of views called without one
        self.code_lengths: dict[str, int] = {}

    # ------------------------------------------------------------------ accounts and time

    def add_account(self, address: str, balance: int = EOA_BALANCE, nonce: int = 0) -> str:
        address = address.lower()
        self.balances[address] = balance
        self.nonces[address] = nonce
        self._put_info(address, AccountInfo(balance=balance, nonce=nonce))
        return address

    @property
    def pending_timestamp(self) -> int:
        return self._pending if self._pending is not None else self.timestamp + 1

    @pending_timestamp.setter
    def pending_timestamp(self, value: int) -> None:
        if value <= self.timestamp:
            raise ValueError(f"pending timestamp {value} not after the head block's {self.timestamp}")
        self._pending = value

    def advance(self, seconds: int) -> None:
        """The next block is `seconds` later than it would otherwise be."""
        self._pending = self.pending_timestamp + seconds

    def _block(self, number: int, timestamp: int) -> None:
        if self._env != (number, timestamp):
            self.evm.set_block_env(BlockEnv(number=number, timestamp=timestamp))
            self._env = (number, timestamp)

    # ------------------------------------------------------------------ transactions

    def transact(self, sender: str, to: str, data: bytes, *, gas: int | None = None) -> Receipt:
        """Mine one transaction in a new block; a revert is a receipt with status 0 and the decoded error."""
        number, ts = self.block_number + 1, self.pending_timestamp
        self._block(number, ts)
        self.block_number, self.timestamp, self._pending = number, ts, None
        self.transactions += 1
        self.nonces[sender] = self.nonces.get(sender, 0) + 1
        evm = self.evm
        cp = evm.snapshot() if self.exact_gas else None
        try:
            out = evm.message_call(sender, to, data, gas=gas or self.tx_gas)
        except RuntimeError as exc:
            if cp is not None:
                evm.revert(cp)
            return self._failed(exc, number, ts)
        result = evm.result
        logs = [Log(lg.address.lower(), lg.data[0], lg.data[1]) for lg in result.logs]
        receipt = Receipt(1, result.gas_used, number, ts, logs, bytes(out))
        if cp is not None:
            self._commit(cp)
        else:
            evm.reset_transient_storage()  # EIP-1153: a node clears it when the transaction ends
        return receipt

    def _failed(self, exc: RuntimeError, number: int, ts: int) -> Receipt:
        text = str(exc)
        m = _OUTPUT.search(text)
        if m is None:  # a halt (out of gas, invalid opcode) or a rejected transaction
            g = _GAS.search(text)
            return Receipt(0, int(g.group(1)) if g else 0, number, ts, error=("Halt", (text,)))
        data = bytes.fromhex(m.group(1))
        g = _GAS.search(text)
        return Receipt(0, int(g.group(1)) if g else 0, number, ts, error=self.artifacts.decode_error(data),
                       revert_data=data)

    def call(self, sender: str, to: str, data: bytes, *, gas: int | None = None) -> bytes:
        """`eth_call` on the head block (its number and timestamp); raises `Revert`. Leaves no trace: the
        call runs inside a journal checkpoint that is reverted."""
        self._block(self.block_number, self.timestamp)
        self.calls += 1
        evm = self.evm
        cp = evm.snapshot()
        try:
            return bytes(evm.message_call(sender, to, data, gas=gas or self.tx_gas))
        except RuntimeError as exc:
            text = str(exc)
            m = _OUTPUT.search(text)
            if m is None:
                raise Revert("Halt", (text,), b"") from None
            raw = bytes.fromhex(m.group(1))
            name, args = self.artifacts.decode_error(raw)
            raise Revert(name, args, raw) from None
        finally:
            evm.revert(cp)

    def deploy(self, sender: str, contract: str, *args, nonce: int | None = None) -> tuple[str, Receipt]:
        """Deploy contract type `contract` with constructor `args` from `sender` (CREATE at the sender's
        nonce, as a node would: the fast chain counts every transaction of each sender)."""
        from eth_abi import encode as abi_encode

        ct = self.artifacts[contract]
        code = ct.deployment_bytecode + (abi_encode(ct.constructor_inputs, list(args)) if ct.constructor_inputs else b"")
        if nonce is not None:
            self.nonces[sender] = nonce
        n = self.nonces.get(sender, 0)
        self._put_info(sender, AccountInfo(balance=self.balances.get(sender, 0), nonce=n))
        number, ts = self.block_number + 1, self.pending_timestamp
        self._block(number, ts)
        self.block_number, self.timestamp, self._pending = number, ts, None
        self.transactions += 1
        evm = self.evm
        cp = None
        if self.exact_gas:
            # The database would remember the new address as non-existing (it is looked up before the
            # creation) and then hide the code written to it: make it an existing empty account first.
            self._put_info(create_address(sender, n), AccountInfo())
            # The same for a contract the constructor itself creates (the ClearingHouse deploys its
            # configurator: CREATE at the new contract's nonce 1); otherwise the child's code is hidden too.
            self._put_info(create_address(create_address(sender, n), 1), AccountInfo())
            cp = evm.snapshot()
        try:
            address = evm.deploy(sender, code, gas=self.tx_gas).lower()
        except RuntimeError:
            if cp is not None:
                evm.revert(cp)
            raise
        result = evm.result
        logs = [Log(lg.address.lower(), lg.data[0], lg.data[1]) for lg in result.logs]
        receipt = Receipt(1, result.gas_used, number, ts, logs, contract_address=address)
        self.nonces[sender] = n + 1
        # revm keeps code analysed, padded with zeros; the deployed code is as long as the build's runtime code
        self.code_lengths[address] = len(ct.runtime_bytecode)
        if cp is None:
            evm.reset_transient_storage()
        else:
            runtime = bytes(evm.get_code(address))
            assert not any(runtime[len(ct.runtime_bytecode):]), f"{contract}: deployed code longer than the build's"
            created = {address: runtime[:len(ct.runtime_bytecode)]}
            # Contracts the constructor created (the ClearingHouse's configurator, at its nonce 1): their code
            # is in the journal too and must be written under it like the parent's. solc's code ends in the
            # metadata length (nonzero), so revm's zero padding is what trails.
            child = create_address(address, 1)
            child_code = bytes(evm.get_code(child) or b"").rstrip(b"\0")
            if child_code:
                created[child] = child_code
                self.code_lengths[child] = len(child_code)
            self._commit(cp, created=created)
            self._put_info(sender, AccountInfo(balance=self.balances.get(sender, 0), nonce=n + 1))
        return address, receipt

    # ------------------------------------------------------------------ exact mode: commit and undo

    def _put_info(self, address: str, info: AccountInfo) -> None:
        if self.exact_gas:
            cp = self.evm.snapshot()
            self.evm.insert_account_info(address, info)
            self.evm.revert(cp)
        else:
            self.evm.insert_account_info(address, info)

    def _commit(self, cp, created: dict | None = None) -> None:
        """Read what the transaction changed off the journal, revert the journal to `cp` (all cold again)
        and write the changes to the database underneath, recording the previous values for `revert`."""
        evm = self.evm
        changes = _journal_changes(evm.journal_str)
        evm.revert(cp)
        for address, code in (created or {}).items():
            self._put_info(address, AccountInfo(nonce=1, code=code))
        for address, slots in changes.items():
            for slot, (original, present) in slots.items():
                self._put_storage(address, slot, present)
                self._undo.append((address, slot, original))

    def _put_storage(self, address: str, slot: int, value: int) -> None:
        """Write a slot to the database under the journal. pyrevm's insert_account_storage writes to the
        database only while the account is not in the journal, and loads it there (warm): each write is
        therefore made inside its own checkpoint, reverted at once (the database keeps the value)."""
        cp = self.evm.snapshot()
        self.evm.insert_account_storage(address, slot, value)
        self.evm.revert(cp)

    # ------------------------------------------------------------------ snapshots

    def snapshot(self):
        head = (self.block_number, self.timestamp, self._pending, dict(self.nonces), self.transactions)
        if self.exact_gas:
            return ("undo", len(self._undo), head)
        return ("journal", self.evm.snapshot(), head)

    def revert(self, token) -> None:
        kind, mark, head = token
        if kind == "journal":
            self.evm.revert(mark)
        else:
            for address, slot, value in reversed(self._undo[mark:]):
                self._put_storage(address, slot, value)
            del self._undo[mark:]
        self.block_number, self.timestamp, self._pending, nonces, self.transactions = head
        self.nonces = dict(nonces)
        self._env = None

    # ------------------------------------------------------------------ reading state

    def storage(self, address: str, slot: int) -> int:
        cp = self.evm.snapshot()
        try:
            return self.evm.storage(address, slot)
        finally:
            self.evm.revert(cp)

    def code(self, address: str) -> bytes:
        """The runtime code at `address` (without revm's zero padding, for contracts deployed here)."""
        cp = self.evm.snapshot()
        try:
            code = bytes(self.evm.get_code(address) or b"")
        finally:
            self.evm.revert(cp)
        n = self.code_lengths.get(address.lower())
        return code[:n] if n is not None else code
