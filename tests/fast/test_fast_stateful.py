"""The stateful machine (tests/helpers/stateful.py's `Protocol`: its rules, bundles, invariants
(docs/specification.md) and the value-safety review's exploit properties F1-F8) on the fast tier.

The machine runs unchanged; only its environment is the fast one (fast_harness.build_fast_env, with
helpers.stateful's actors, prefunding and warm-up) and its runner the fast one (`FastRunner`: transactions
and eth_calls on pyrevm, the lean views after every step). `Protocol` builds its runner through the name
`Runner` in helpers.stateful's namespace: the test points that name at FastRunner while the machine runs and
restores it after.

Profiles: CI 150 runs of up to 40 rules (derandomized); `VPERP_FUZZ=long` 3,000 runs of up to 60 rules.
"""
from __future__ import annotations

import os
import time

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from helpers import fast_harness as fh
from helpers import stateful as ts
from helpers.chain_harness import STATS, print_report, reset_stats

LONG = os.environ.get("VPERP_FUZZ", "").lower() == "long"
RUNS, STEPS = (3_000, 60) if LONG else (150, 40)
RUNS = int(os.environ.get("VPERP_FUZZ_STATEFUL_RUNS", RUNS))


@pytest.fixture(scope="module")
def env(request):
    e = fh.build_fast_env(ts.WHALE + 1, ts.PREFUND, ts.WARMUP,
                          exact_gas=os.environ.get("VPERP_FAST_GAS", "exact") != "warm")
    reset_stats()
    for key in ts.PROPS:
        ts.PROPS[key] = 0
    started = time.process_time()
    yield e
    cpu = time.process_time() - started
    print_report(request, f"fast stateful machine ({'long' if LONG else 'ci'} profile): {STATS['examples']} runs, "
                 f"{STATS['steps']} steps in {STATS['seconds']:.1f} s = "
                 f"{STATS['steps'] / max(STATS['seconds'], 1e-9):.0f} steps/s ({cpu:.1f} s CPU for the module); "
                 f"{STATS['trades']} trades, {STATS['kicks']} kicks, {STATS['takes']} takes, {STATS['redos']} redos, "
                 f"{STATS['cancels']} cancels, {STATS['backstops']} backstops, {STATS['bad_debt_events']} bad debts, "
                 f"{STATS['lp']} pool actions, {STATS['depth_syncs']} depth syncs, {STATS['repegs']} repegs; "
                 f"exploit properties checked: " + ", ".join(f"{k} {v}" for k, v in ts.PROPS.items()))


class _FastRunnerSwap:
    def __enter__(self):
        self.saved = ts.Runner
        ts.Runner = fh.FastRunner

    def __exit__(self, *exc):
        ts.Runner = self.saved


def test_fast_protocol_state_machine(env):
    ts.Protocol.env = env
    with _FastRunnerSwap(), fh.fast_calldata():
        run_state_machine_as_test(
            ts.Protocol,
            settings=settings(
                max_examples=RUNS,
                stateful_step_count=STEPS,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
                phases=[p for p in Phase if p != Phase.shrink or os.environ.get("VPERP_FUZZ_SHRINK", "1") != "0"],
                print_blob=True,
            ),
        )
    assert STATS["steps"] > 0 and STATS["examples"] >= RUNS


@pytest.mark.parametrize("name", list(ts.SCRIPTS))
def test_fast_exploit_scripts(env, name):
    ts.Protocol.env = env
    with _FastRunnerSwap(), fh.fast_calldata():
        ts.run_script(env, name)
