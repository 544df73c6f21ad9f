"""What the test modules share (no test module imports another): the documented formulas in Python integers
and the chain helpers, one module per subject.

- `trading`: vAMM quotes, fees, margin requirements, the strict `expect_revert`, `funding_off` and
  `prepare_actors`;
- `reverts`: the one revert decoder (`revert_data`, `error_table`, `revert_name`), for the tests and the
  fuzzers alike;
- `vault`, `governance`, `liquidation`, `funding`, `markets` (markets listed in a test), `wired` (fresh
  contracts whose module slots hold test accounts), `value_safety` (the attack reviews' actors and steps);
- `clock`: the suite's block clock; `chain_harness`, `differential`, `stateful`: the fuzzers' runner,
  vocabulary and machine (shared with tests/fast/);
- `incidents`: the incident files' ledger identities, model and keeper passes (tests/incidents/);
- the fast tier's (tests/fast/): `fast_harness` (the fuzzers' runner on pyrevm), `fast_erc4626` (the ERC-4626
  property suite's environment and steps), `fast_anvil` (the fast chain's interface over a private Anvil, for
  gas parity).

The shared fixtures (`batcher`, `no_funding`, `actors_no_funding`, the session deployment) are in
tests/conftest.py.
"""
