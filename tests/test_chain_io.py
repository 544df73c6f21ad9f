"""vperp/chain_io.py: the work around calls and transactions that the tests and the simulator skip or answer once
changes no answer. In the test process (tests/conftest.py switches all but the simulator's two on): Ape's kept
transaction type is the one it works out, and a contract's code is asked again once the chain is restored to a
snapshot. For the simulator's entry points: its Anvil's command line is Ape's less `--steps-tracing` plus `--prune-history`, it starts on a free
port with 90 s to answer, and Ape's record of its nodes loses only the stopped ones.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from ape.exceptions import ContractNotFoundError

from vperp import chain_io


def test_the_kept_transaction_type_is_apes(chain):
    ecosystem = chain.provider.network.ecosystem
    kept = type(ecosystem).default_transaction_type.fget
    assert ecosystem.default_transaction_type == kept.__wrapped__(ecosystem)  # Ape's own, worked out anew


def test_code_is_asked_again_after_a_restore(chain, project, deployer):
    """A contract found with code is called without asking again; restoring the chain to a snapshot taken before its
    deployment forgets that, so a call to it is refused as Ape refuses a call to an address without code."""
    snapshot = chain.snapshot()
    token = project.MockERC20.deploy("T", "T", 6, sender=deployer)
    assert token.decimals() == 6 and token.decimals() == 6  # the second without asking for the code
    chain.restore(snapshot)
    with pytest.raises(ContractNotFoundError):
        token.decimals()


def test_the_simulators_anvil_records_no_steps_and_writes_no_state_files(monkeypatch):
    """`python -m vperp.sim` and the simulator's `ape run` commands start Anvil as Ape does, less `--steps-tracing` and
    plus `--prune-history`, so that no past state is written under ~/.foundry/anvil/tmp (vperp/chain_io.py): the same
    command line otherwise."""
    from ape import networks
    from ape_foundry.provider import FoundryProvider

    # Ape's own builder for the test (an in-process economics or simulator run in this worker may have switched it
    # already: the switch keeps Ape's as `__wrapped__`), and whatever was there back after the test.
    apes_builder = getattr(FoundryProvider.build_command, "__wrapped__", FoundryProvider.build_command)
    monkeypatch.setattr(FoundryProvider, "build_command", apes_builder)
    provider = networks.ethereum.local.get_provider("foundry")
    apes = provider.build_command()
    assert "--steps-tracing" in apes
    chain_io.anvil_without_step_traces_or_state_files()
    chain_io.anvil_without_step_traces_or_state_files()  # a second call changes nothing
    assert provider.build_command() == [a for a in apes if a != "--steps-tracing"] + ["--prune-history"]


def test_the_gas_traces_anvil_keeps_its_step_traces_and_recent_states_only(monkeypatch):
    """The gas trace (scripts/gas_trace.py) starts Anvil as Ape does, step traces included (its traces need them), plus
    `--prune-history N`: the last N states in memory, none written under ~/.foundry/anvil/tmp (vperp/chain_io.py)."""
    from ape import networks
    from ape_foundry.provider import FoundryProvider

    apes_builder = getattr(FoundryProvider.build_command, "__wrapped__", FoundryProvider.build_command)
    monkeypatch.setattr(FoundryProvider, "build_command", apes_builder)
    provider = networks.ethereum.local.get_provider("foundry")
    apes = provider.build_command()
    chain_io.anvil_keeping_recent_states(64)
    chain_io.anvil_keeping_recent_states(8)  # a second call changes nothing
    assert provider.build_command() == apes + ["--prune-history", "64"]


def test_the_simulator_drops_stopped_nodes_from_apes_record(tmp_path, monkeypatch):
    """Before it starts its node, the simulator drops from Ape's record of the nodes it started the entries whose
    process is gone (each one costs every later node's stop a settings validation, vperp/chain_io.py); a running
    process's entry stays."""
    from ape import networks
    from ape.managers.networks import NodeProcessData

    monkeypatch.setattr(networks.config_manager, "DATA_FOLDER", tmp_path)  # the record in a temporary folder
    stopped = subprocess.Popen([sys.executable, "-c", "pass"])
    stopped.wait()
    record = networks.running_nodes
    record.nodes = {pid: NodeProcessData(network_choice="ethereum:local:foundry", http_uri=f"http://127.0.0.1:{port}")
                    for pid, port in ((os.getpid(), 1), (stopped.pid, 2))}
    record.model_dump_file()
    assert set(networks.running_nodes.nodes) == {os.getpid(), stopped.pid}
    chain_io.forget_stopped_nodes()
    assert set(networks.running_nodes.nodes) == {os.getpid()}


def test_the_simulators_anvil_starts_on_a_free_port_and_is_given_time(monkeypatch):
    """The simulator's node starts on a port the kernel has just found free (Ape picks a random one it does not check)
    and is given ANVIL_START_SECONDS to answer instead of Ape's 20 s (vperp/chain_io.py): a run in a loaded test
    session failed with `RPCTimeoutError` before its first step."""
    import socket

    from ape import networks
    from ape_foundry.provider import FoundryProvider

    seen = {}

    def begin(self):  # stands in for Ape's `_start`: records the host it was handed, then starts
        seen["host"] = self._host
        self.start()

    def start(self, timeout: int = 20):  # stands in for Ape's `start`: records how long it would wait
        seen["timeout"] = timeout

    monkeypatch.setattr(FoundryProvider, "_start", begin)
    monkeypatch.setattr(FoundryProvider, "start", start)
    chain_io.anvil_on_a_free_port()
    chain_io.anvil_on_a_free_port()  # a second call changes nothing
    provider = networks.ethereum.local.get_provider("foundry")
    monkeypatch.setattr(provider, "_host", "auto")
    FoundryProvider._start(provider)
    host, port = seen["host"].rsplit(":", 1)
    assert host == "http://127.0.0.1" and seen["timeout"] == chain_io.ANVIL_START_SECONDS == 90
    with socket.socket() as s:
        s.bind(("127.0.0.1", int(port)))  # nothing listens there
    monkeypatch.setattr(provider, "_host", "http://127.0.0.1:8545")  # a host of the user's: left as it is
    FoundryProvider._start(provider)
    assert seen["host"] == "http://127.0.0.1:8545"
