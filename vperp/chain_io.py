"""Per-transaction work that Ape and web3 do and that vPerp's own tools never read.

The test suite (tests/conftest.py), the simulator (vperp.sim) and the gas table (devtools.gas) switch it off;
the SDK does not (an integrator's process keeps Ape's and web3's behaviour). None of it changes a
transaction, a call, a sender or a result: only work done around them is skipped or answered once.

| what | cost it removes (measured on this repository) |
|---|---|
| `skip_console_log_traces` | after every transaction to a contract, Ape re-executes it with a tracer to build its call tree and print Hardhat-style `console.log` output; no vPerp contract logs that way. tests/amm/test_peg_follow.py: 69 s -> 24 s |
| `cache_default_sender` | for a call without a sender, web3's eth-tester middleware asks the chain for its account list three times to fill `from`; the list never changes, so it is asked once per web3 instance. The same file: 24 s -> 20 s |
| `cache_chain_id` | web3 validates every request against the node's chain id, asked anew each time (about 2,000 round trips in a 30-step simulator run); a running node's id does not change. A 30-step crash run: 18.5 s -> 16.3 s |
| `cache_default_transaction_type` | Ape works out the type of every call and transaction it builds from the network's configuration, building pydantic settings objects anew each time (about 1 ms a call on the embedded chain); the answer per ecosystem and network is kept. With the next row, tests/orders/test_order_router.py, tests/clearinghouse/test_trading_errors.py and test_funding.py in one process: 80.2 s -> 70.5 s of CPU; tests/liquidation and tests/governance/test_governance.py 94.3 s -> 87.3 s (means of two runs each) |
| `cache_code_checks` | before every call and transaction to a contract, Ape asks the chain for the contract's code (an `eth_getCode`; on a development chain it caches none, since restoring a snapshot can remove a contract); an address found with code is not asked again until the chain is next restored to a snapshot. The figures: the row above |
| `anvil_on_a_free_port` | nothing measurable: it removes a failure. Ape starts a simulator's Anvil on a random port it does not check and gives it 20 s to answer; in a full test run (two workers, three simulator processes starting nodes) a run failed that way (`RPCTimeoutError`), three tests with it. The node now gets a port the kernel just found free and 90 s. Only the simulator's entry points switch it |
| `forget_stopped_nodes` | Ape records every node it starts in its data folder (`~/.ape/processes/nodes.json`) and, when it stops one, looks through that whole record, building the provider's settings anew for each entry (about 10 ms each). Nodes stopped by processes that ran in parallel (the tests start several simulator processes at once; each writes the file it read, so one's removal can undo another's) or that were killed stay in the record for good: on the development machine it held 545 entries of stopped nodes, which cost every simulator process 5.3 s at its end. The simulator's entry points drop the entries whose process is gone before they start their node. An 18-step crash run: 13.9 s -> 9.1 s (user CPU 11.5 s -> 6.8 s) |
| `anvil_without_step_traces_or_state_files` | Ape starts Anvil with `--steps-tracing`: Anvil then records every EVM step of every transaction, for a `debug_traceTransaction` asked later; the simulator asks none (its reverts are named from their revert data, `vperp.sim.Wire`). And Anvil keeps the chain's state at every past block, writing the older ones to files under `~/.foundry/anvil/tmp` that a stopped node leaves behind: 0.2 to 1.9 GB per simulator run (the development machine's disk filled with 79 GB of them in a day); the simulator reads only the latest state, so `--prune-history` keeps a few recent states in memory and writes none. Only the simulator's own entry points (`python -m vperp.sim`, `ape run simulate`, `ape run economics`) switch them, before their Anvil starts. A 16-step thin run with breakers: the same CSV and summary, 17.7 s -> 14.4 s without the step traces |
| `anvil_keeping_recent_states` | the same state files, for the gas trace (scripts/gas_trace.py), which needs the step traces but only the last few states: it traces each row as soon as it is measured; a run wrote about 1.7 GB of them before and now writes none, with the same figures |
"""
from __future__ import annotations

import functools
import os
from typing import Any


def skip_console_log_traces() -> None:
    """Ape's `_post_send_transaction` only prints `console.log` output (and logs the fee at INFO level)."""
    import ape_ethereum.provider as ape_provider

    ape_provider._post_send_transaction = _no_console_log


def _no_console_log(tx: Any, receipt: Any) -> None:
    return None


def cache_default_sender() -> None:
    """eth-tester only: web3 fills a call's missing `from` with the chain's first account."""
    import web3.providers.eth_tester.middleware as tester_middleware

    first: dict[int, Any] = {}

    def guess_from(w3: Any, _: Any) -> Any:
        key = id(w3)
        if key not in first:
            accounts = w3.eth.accounts
            first[key] = accounts[0] if accounts else None
        return first[key]

    tester_middleware.guess_from = guess_from


def cache_chain_id(w3: Any) -> None:
    """Keep the node's answer to `eth_chainId` (web3's request cache, limited to that one method)."""
    provider = w3.provider
    if hasattr(provider, "cacheable_requests"):
        provider.cacheable_requests = {"eth_chainId"}
        provider.cache_allowed_requests = True


def anvil_without_step_traces_or_state_files() -> None:
    """Anvil's command line as Ape builds it (ape-foundry's `FoundryProvider.build_command`), less `--steps-tracing` and
    plus `--prune-history` (past states kept in memory only, none written to disk), for the nodes this process starts
    after the call."""
    _switch_anvil_command(step_traces=False, states=None)


def anvil_keeping_recent_states(states: int) -> None:
    """Anvil's command line as Ape builds it, with its step traces (a `debug_traceTransaction` needs them) and
    `--prune-history states`: the last `states` states in memory, none written to disk, for a tool that traces each
    transaction soon after it is mined (scripts/gas_trace.py)."""
    _switch_anvil_command(step_traces=True, states=states)


def _switch_anvil_command(step_traces: bool, states: int | None) -> None:
    try:
        from ape_foundry.provider import FoundryProvider
    except ImportError:  # no Anvil provider: no node to start
        return
    build = FoundryProvider.build_command
    if hasattr(build, "__wrapped__"):  # switched already
        return
    prune = ["--prune-history"] if states is None else ["--prune-history", str(states)]

    @functools.wraps(build)
    def switched(self: Any) -> list[str]:
        return [arg for arg in build(self) if step_traces or arg != "--steps-tracing"] + prune

    FoundryProvider.build_command = switched


ANVIL_START_SECONDS = 90  # how long a node this process starts may take to answer (Ape's default: 20 s)


def anvil_on_a_free_port() -> None:
    """Start the nodes this process starts (ape-foundry's `FoundryProvider._start` with `host: auto`) on a port the
    kernel has just handed out as free, and wait up to ANVIL_START_SECONDS for them to answer. Ape picks a random
    port without checking it and waits 20 s: a port already taken (the test suite's own nodes and clients use the
    same range) or a loaded machine made a simulator run fail with `RPCTimeoutError` before its first step."""
    try:
        from ape_foundry.provider import FoundryProvider
    except ImportError:  # no Anvil provider: no node to start
        return
    start, begin = FoundryProvider.start, FoundryProvider._start
    if hasattr(begin, "__wrapped__"):  # switched already
        return

    @functools.wraps(begin)
    def on_a_free_port(self: Any) -> None:
        if self._host == "auto":
            port = free_port()
            self.attempted_ports.append(port)
            self._host = f"http://127.0.0.1:{port}"
        begin(self)

    @functools.wraps(start)
    def patiently(self: Any, timeout: int = 20) -> None:
        start(self, timeout=max(timeout, ANVIL_START_SECONDS))

    FoundryProvider._start = on_a_free_port
    FoundryProvider.start = patiently


def free_port() -> int:
    """A local TCP port nothing listens on now (the kernel's pick for a socket bound to port 0)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def forget_stopped_nodes() -> None:
    """Drop from Ape's record of the nodes it started (`networks.running_nodes`) the entries whose process no
    longer exists (POSIX: signal 0 finds no process); a running node's entry stays. Elsewhere, nothing."""
    if os.name != "posix":
        return
    from ape import networks

    nodes = networks.running_nodes
    stopped = [pid for pid in nodes.process_ids if not _process_exists(pid)]
    if stopped:
        nodes.remove_processes(*stopped)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def cache_default_transaction_type() -> None:
    """Ape's Ethereum ecosystem works out the type of every transaction and call it builds from the network's
    configuration, read and validated anew each time; the answer per ecosystem and network is kept."""
    from ape_ethereum.ecosystem import Ethereum

    compute = Ethereum.default_transaction_type.fget
    if hasattr(compute, "__wrapped__"):  # kept already
        return
    answers: dict = {}

    @functools.wraps(compute)
    def kept(self: Any) -> Any:
        provider = self.network_manager.active_provider
        key = (id(self), provider.network.name if provider else None)
        if key not in answers:
            answers[key] = compute(self)
        return answers[key]

    Ethereum.default_transaction_type = property(kept)


def cache_code_checks() -> None:
    """Before every call and transaction to a contract Ape asks the chain for its code, to refuse an address without
    any (on a development chain it keeps no code cache: a chain restored to a snapshot may have lost the contract).
    An address found with code is not asked again until the chain is next restored to a snapshot
    (`chain.restore`, Ape's isolation): nothing else removes code (no SELFDESTRUCT since Cancun)."""
    from ape.contracts.base import ContractMethodHandler
    from ape.managers.chain import ChainManager

    check = ContractMethodHandler._validate_is_contract
    if hasattr(check, "__wrapped__"):  # switched already
        return
    restore = ChainManager.restore
    with_code: set = set()

    @functools.wraps(check)
    def validate_once(self: Any) -> None:
        key = (id(self.provider), self.contract.address)
        if key not in with_code:
            check(self)  # raises for an address without code
            with_code.add(key)

    @functools.wraps(restore)
    def restore_and_forget(self: Any, *args: Any, **kwargs: Any) -> Any:
        with_code.clear()
        return restore(self, *args, **kwargs)

    ContractMethodHandler._validate_is_contract = validate_once
    ChainManager.restore = restore_and_forget
