"""The fast execution tier: the contracts Ape compiles, run in-process on pyrevm (a Rust EVM).

- `FastChain` (chain.py): blocks with explicit timestamps, accounts, transactions and eth_calls,
  reverts decoded to custom errors, logs, snapshots, and (`exact_gas=True`) gas per transaction equal
  to a node's.
- `fast_deploy` (deploy.py): `vperp.deploy` itself, run against the fast chain.
- `mnemonic_accounts`: the addresses of the suite's test mnemonic (Ape's and Anvil's accounts), so a fast
  deployment has the same addresses as one on Anvil.

The differential fuzz over it lives in tests/fast/ (docs/testing.md, "Fast execution tier").
"""
from __future__ import annotations

import functools

from .abi import Artifacts
from .chain import GENESIS_TIMESTAMP, FastChain, Receipt, Revert
from .deploy import Account, Contract, fast_deploy

MNEMONIC = "test test test test test test test test test test test junk"  # ape-config.yaml `test:`


@functools.lru_cache(maxsize=None)
def mnemonic_accounts(n: int = 10) -> tuple[str, ...]:
    """The first `n` addresses of the test mnemonic (m/44'/60'/0'/0/i), lowercase."""
    from eth_account import Account as EthAccount

    EthAccount.enable_unaudited_hdwallet_features()
    return tuple(EthAccount.from_mnemonic(MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}").address.lower()
                 for i in range(n))


__all__ = ["Account", "Artifacts", "Contract", "FastChain", "GENESIS_TIMESTAMP", "Receipt", "Revert",
           "fast_deploy", "mnemonic_accounts"]
