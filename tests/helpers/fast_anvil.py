"""(not a test) `AnvilChain`: FastChain's interface over a private Anvil started for the test, so the
same transactions (the whole `vperp.deploy` through vperp.fast.deploy, then any raw calldata) run on
both and their receipts can be compared one by one.

Anvil is the npm package's binary (node_modules/.bin/anvil, installed by ./run.sh setup), started on a
free loopback port with the suite's test mnemonic, the fast chain's genesis timestamp, no base fee and
the given hardfork; every block's timestamp is set before its transaction (evm_setNextBlockTimestamp),
so both chains see the same block times. The process is stopped by `close()` (its own pid only).
"""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

from web3 import HTTPProvider, Web3

from vperp.chain_io import free_port
from vperp.fast import MNEMONIC
from vperp.fast.abi import Artifacts
from vperp.fast.chain import GENESIS_TIMESTAMP, Log, Receipt, Revert

ANVIL = Path(__file__).resolve().parents[2] / "node_modules" / ".bin" / "anvil"


class AnvilChain:
    def __init__(self, artifacts: Artifacts, *, hardfork: str | None = "cancun", timestamp: int = GENESIS_TIMESTAMP,
                 tx_gas: int = 16_000_000, steps_tracing: bool = False):
        self.artifacts = artifacts
        self.port = free_port()
        self.proc = subprocess.Popen(
            [str(ANVIL), "--port", str(self.port), "--host", "127.0.0.1", "--mnemonic", MNEMONIC,
             "--accounts", "10", "--timestamp", str(timestamp), "--block-base-fee-per-gas", "0",
             "--gas-price", "0", "--silent"] + (["--hardfork", hardfork] if hardfork else [])
            # the struct-log traces (debug_traceTransaction's default tracer) need the steps recorded
            + (["--steps-tracing"] if steps_tracing else []),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.w3 = Web3(HTTPProvider(f"http://127.0.0.1:{self.port}", request_kwargs={"timeout": 30}))
        for _ in range(200):
            if self.proc.poll() is not None:
                raise RuntimeError(f"anvil exited: {self.proc.stderr.read().decode()}")
            try:
                self.w3.eth.block_number
                break
            except Exception:  # noqa: BLE001 - not listening yet
                time.sleep(0.05)  # waits for a process, not chain time
        else:
            self.close()
            raise RuntimeError("anvil did not answer")
        self.hardfork = hardfork
        self.tx_gas = tx_gas
        self.timestamp = self.w3.eth.get_block("latest")["timestamp"]
        self.block_number = self.w3.eth.block_number
        self._pending = None
        self.balances: dict[str, int] = {}
        self.default_sender = "0x" + "0" * 40
        self.transactions = 0

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    # the FastChain interface vperp.fast.deploy uses
    def add_account(self, address: str, balance: int = 0, nonce: int = 0) -> str:
        self.balances[address.lower()] = balance
        return address.lower()

    @property
    def pending_timestamp(self) -> int:
        return self._pending if self._pending is not None else self.timestamp + 1

    @pending_timestamp.setter
    def pending_timestamp(self, value: int) -> None:
        self._pending = value

    def advance(self, seconds: int) -> None:
        self._pending = self.pending_timestamp + seconds

    def _send(self, tx: dict) -> dict:
        ts = self.pending_timestamp
        self.w3.provider.make_request("evm_setNextBlockTimestamp", [ts])
        tx = {**tx, "gas": self.tx_gas, "gasPrice": 0}
        receipt = self.w3.eth.wait_for_transaction_receipt(self.w3.eth.send_transaction(tx), timeout=30,
                                                           poll_latency=0.01)
        block = self.w3.eth.get_block(receipt["blockNumber"])
        assert block["timestamp"] == ts, (block["timestamp"], ts)
        self.timestamp, self.block_number, self._pending = ts, receipt["blockNumber"], None
        self.transactions += 1
        return receipt

    def _receipt(self, r: dict, address=None) -> Receipt:
        logs = [Log(lg["address"].lower(), [bytes(t) for t in lg["topics"]], bytes(lg["data"])) for lg in r["logs"]]
        return Receipt(r["status"], r["gasUsed"], r["blockNumber"], self.timestamp, logs, contract_address=address)

    def transact(self, sender: str, to: str, data: bytes, *, gas: int | None = None) -> Receipt:
        r = self._send({"from": Web3.to_checksum_address(sender), "to": Web3.to_checksum_address(to), "data": data})
        return self._receipt(r)

    def deploy(self, sender: str, contract: str, *args, nonce=None):
        from eth_abi import encode as abi_encode

        ct = self.artifacts[contract]
        code = ct.deployment_bytecode + (abi_encode(ct.constructor_inputs, list(args)) if ct.constructor_inputs else b"")
        r = self._send({"from": Web3.to_checksum_address(sender), "data": code})
        address = r["contractAddress"].lower()
        return address, self._receipt(r, address)

    def call(self, sender: str, to: str, data: bytes, *, gas=None) -> bytes:
        try:
            return bytes(self.w3.eth.call({"from": Web3.to_checksum_address(sender),
                                           "to": Web3.to_checksum_address(to), "data": data}))
        except Exception as exc:  # noqa: BLE001 - web3's ContractCustomError and friends
            data = getattr(exc, "data", None)
            raw = bytes.fromhex(data[2:]) if isinstance(data, str) and data.startswith("0x") else b""
            name, args = self.artifacts.decode_error(raw)
            raise Revert(name, args, raw) from None

    def nonce(self, address: str) -> int:
        return self.w3.eth.get_transaction_count(Web3.to_checksum_address(address))
