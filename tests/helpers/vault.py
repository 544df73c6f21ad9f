"""Shared helpers for the Vault tests (tests/test_vault_*.py): funding accounts, the ledger snapshot a
failed call must leave untouched, single-event lookup, and a strict `ape.reverts`."""
from __future__ import annotations

from contextlib import contextmanager

import ape


def _norm(v):
    return v.address if hasattr(v, "address") else v


@contextmanager
def reverts_with(error, **inputs):
    """`ape.reverts(error)`, plus: the revert really is `error` (not a Panic or string that
    ape.reverts lets through) and every named input equals the expected value."""
    with ape.reverts(error) as info:
        yield info
    exc = info.value
    assert type(exc).__name__ == error.__name__, f"expected {error.__name__}, got {exc!r}"
    for name, expected in inputs.items():
        assert name in exc.inputs, f"{error.__name__} has no input {name!r}: {exc.inputs}"
        assert exc.inputs[name] == _norm(expected), f"{name}: {exc.inputs[name]!r} != {expected!r}"


def ledger(vault, token, holders=(), accounts=()):
    """Everything a failed call must leave untouched."""
    return (
        tuple(token.balanceOf(h) for h in (*holders, vault)),
        tuple(vault.collateral(o, s) for o, s in accounts),
        vault.poolBalance(),
        vault.insuranceFund(),
    )


def mint_approve(token, vault, who, amount):
    token.mint(who, amount, sender=who)
    token.approve(vault, amount, sender=who)


def deposit(token, vault, who, amount, sub=0):
    mint_approve(token, vault, who, amount)
    vault.deposit(sub, amount, sender=who)


def only_event(tx, event):
    logs = tx.events.filter(event)
    assert len(logs) == 1, logs
    return logs[0]
