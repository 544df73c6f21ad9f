"""The SDK's documented examples run as written: every Python block marked `<!-- sdk-example -->` in
docs/integrators.md (Funding, Liquidations, Liquidity pool, Events and live subscriptions) and then in
docs/keeper.md, in order, in one namespace, on the embedded chain.

The blocks continue the SDK section's session (`c = Client.from_deployment(account=me)` after a 10,000
USDC deposit), which this test sets up the same way, with the deployment record in a temporary
`deployments/` folder ($VPERP_DEPLOYMENTS) and a temporary working directory (the feed's cursor file).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from vperp.client import Client, build_record, write_record

ROOT = Path(__file__).resolve().parents[2]
MARK = "<!-- sdk-example -->"


def examples(doc: str) -> list[tuple[str, int, str]]:
    """(file, line, code) of each marked Python block of `doc`."""
    text = (ROOT / "docs" / doc).read_text()
    out = []
    for m in re.finditer(re.escape(MARK) + r"\n```python\n(.*?)\n```", text, re.S):
        out.append((doc, text[:m.start()].count("\n") + 3, m.group(1)))
    return out


def test_the_marked_examples_exist():
    found = examples("integrators.md")
    assert len(found) == 4, [line for _, line, _ in found]
    assert len(examples("keeper.md")) == 1


def test_sdk_examples_run_as_written(system, chain, tmp_path, monkeypatch, capsys):
    from ape import accounts

    folder = tmp_path / "deployments"
    write_record(folder / "local-test.json", build_record(system, system.config, chain, 1))
    monkeypatch.setenv("VPERP_DEPLOYMENTS", str(folder))
    monkeypatch.chdir(tmp_path)
    me = accounts.test_accounts[1]
    c = Client.from_deployment(account=me)  # the SDK section's session, found by chain id and block 0
    c.collateral.mint(me, 10_000 * 10**6, sender=me)
    c.deposit(10_000)
    namespace = {"Client": Client, "c": c, "me": me}
    for doc, line, code in examples("integrators.md") + examples("keeper.md"):
        try:
            exec(compile(code, f"docs/{doc}:{line}", "exec"), namespace)
        except Exception as e:  # say which block failed
            pytest.fail(f"docs/{doc} block at line {line}: {type(e).__name__}: {e}")
    out = capsys.readouterr().out
    assert "Kick" in out and "Trade(" in out and "LpPosition(" in out
    assert (tmp_path / "vperp-feed.json").is_file()
    assert namespace["take"].amount == namespace["kick"].size
