"""Per-transaction work that Ape and web3 do and that vPerp's own tools never read.

The test suite (tests/conftest.py), the simulator (vperp.sim) and the gas table (devtools.gas) switch it off;
the SDK does not (an integrator's process keeps Ape's and web3's behaviour). None of it changes a
transaction, a call, a sender or a result: only work done around them is skipped or answered once.

| what | cost it removes (measured on this repository) |
|---|---|
| `skip_console_log_traces` | after every transaction to a contract, Ape re-executes it with a tracer to build its call tree and print Hardhat-style `console.log` output; no vPerp contract logs that way. tests/test_peg_follow.py: 69 s -> 24 s |
| `cache_default_sender` | for a call without a sender, web3's eth-tester middleware asks the chain for its account list three times to fill `from`; the list never changes, so it is asked once per web3 instance. The same file: 24 s -> 20 s |
| `cache_chain_id` | web3 validates every request against the node's chain id, asked anew each time (about 2,000 round trips in a 30-step simulator run); a running node's id does not change. A 30-step crash run: 18.5 s -> 16.3 s |
| `forget_stopped_nodes` | Ape records every node it starts in its data folder (`~/.ape/processes/nodes.json`) and, when it stops one, looks through that whole record, building the provider's settings anew for each entry (about 10 ms each). Nodes stopped by processes that ran in parallel (the tests start several simulator processes at once; each writes the file it read, so one's removal can undo another's) or that were killed stay in the record for good: on the development machine it held 545 entries of stopped nodes, which cost every simulator process 5.3 s at its end. The simulator's entry points drop the entries whose process is gone before they start their node. An 18-step crash run: 13.9 s -> 9.1 s (user CPU 11.5 s -> 6.8 s) |
| `anvil_without_step_traces` | Ape starts Anvil with `--steps-tracing`: Anvil then records every EVM step of every transaction, for a `debug_traceTransaction` asked later; the simulator asks none (its reverts are named from their revert data, `vperp.sim.Wire`). Only the simulator's own entry points (`python -m vperp.sim`, `ape run simulate`, `ape run economics`) switch it off, before their Anvil starts. A 16-step thin run with breakers: the same CSV and summary, 17.7 s -> 14.4 s |
"""
from __future__ import annotations

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


def anvil_without_step_traces() -> None:
    """Anvil's command line as Ape builds it (ape-foundry's `FoundryProvider.build_command`), less `--steps-tracing`,
    for the nodes this process starts after the call."""
    try:
        from ape_foundry.provider import FoundryProvider
    except ImportError:  # no Anvil provider: no node to start
        return
    build = FoundryProvider.build_command
    if build.__name__ == "_without_steps_tracing":
        return

    def _without_steps_tracing(self: Any) -> list[str]:
        return [arg for arg in build(self) if arg != "--steps-tracing"]

    FoundryProvider.build_command = _without_steps_tracing


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
