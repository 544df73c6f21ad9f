"""`ape run gas_trace --network ethereum:local:foundry --row PATTERN [--ops] [--functions]`: where a gas-table row's gas
goes (devtools/gas_trace.py): the gas table's set-up replayed on Anvil, then each matching row's call tree; with
`--ops`, its reads, writes, logs and calls per frame and the floor they add up to; with `--functions`, each compiled
function's own and total gas (the first run compiles the full build's input once more for solc's function entry
points, about a minute; run `ape compile -f` first if it reports that the codes differ).

Each row is traced as soon as it is measured, while its parent block's state is among the last few, so this script's
Anvil keeps only the last PRUNED_STATES states (`--prune-history`): an Anvil that keeps every past state writes the
older ones under ~/.foundry/anvil/tmp and leaves them behind, about 1.7 GB a run."""
import sys
from pathlib import Path

import click
from ape import accounts, chain
from ape.cli import ConnectedProviderCommand, network_option

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's devtools/
import devtools.gas as g  # noqa: E402
from devtools.gas_trace import call_order, call_tree, compile_debug, floor_line, frames, function_gas  # noqa: E402
from vperp import chain_io  # noqa: E402

_last: dict = {}
_trace = None  # set by `cli`: traces one row (its name, gas and receipt) as soon as it is measured

# States Anvil keeps (`--prune-history`): a row is traced right after its transaction, whose parent state is at
# most a few blocks back (the rows that share a block, then the reads around them); 64 leaves room. Switched at
# import, before `ape run` connects the provider and starts the node.
PRUNED_STATES = 64
chain_io.anvil_keeping_recent_states(PRUNED_STATES)


def _record(method):
    def wrapped(self, *args, **kw):
        r = method(self, *args, **kw)
        _last["r"] = r[-1] if isinstance(r, list) else r
        return r
    return wrapped


class _Row(g.Row):
    """A gas-table row, traced (when its name matches) with the receipt of the transaction measured last."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        if _trace is not None and _last.get("r") is not None:
            _trace(self, _last["r"])


def _label(to: str, data: str) -> str:
    try:
        ct = chain.contracts.instance_at(to).contract_type
    except Exception:  # noqa: BLE001 (an address Ape does not know: named by its prefix)
        return f"{to[:10]}.{data[:10]}"
    for sig, sel in ct.selector_identifiers.items():
        if ("0x" + sel.removeprefix("0x"))[:10] == data[:10]:
            return f"{ct.name}.{sig}"
    return f"{ct.name}.{data[:10]}"


@click.command(cls=ConnectedProviderCommand)
@network_option()
@click.option("--row", "patterns", multiple=True, required=True, help="a part of the names of the rows to trace")
@click.option("--ops", is_flag=True, help="count each frame's reads, writes, logs and calls, and the floor")
@click.option("--functions", "fns", is_flag=True, help="also each compiled function's own and total gas")
@click.option("--top", default=25, show_default=True, help="how many functions to print, by own gas")
def cli(network, patterns, ops, fns, top):
    """Trace the gas table's rows whose names contain a pattern."""
    provider = chain.provider
    if "anvil" not in str(getattr(provider, "name", "")).lower() and "foundry" not in str(provider.name).lower():
        raise click.UsageError("the traces need Anvil: --network ethereum:local:foundry")
    raw, orig = provider.web3.provider.make_request, provider.make_request

    def make_request(method, params=None):
        # the same-block rows send unsigned transactions: the sender is impersonated, the node asked directly
        if method == "eth_sendTransaction":
            raw("anvil_impersonateAccount", [params[0]["from"]])
            reply = raw(method, params)
            if "error" in reply:
                raise click.ClickException(str(reply["error"]))
            return reply["result"]
        return orig(method, params)

    object.__setattr__(provider, "make_request", make_request)
    g.Clock.tx = _record(g.Clock.tx)
    g.Clock.same_block = _record(g.Clock.same_block)
    g.Row = _Row
    entry_maps = compile_debug(Path(__file__).resolve().parents[1]) if fns else {}

    def trace(row, receipt):
        if not any(p in row.name for p in patterns):
            return
        tree = raw("debug_traceTransaction", [receipt.txn_hash, {"tracer": "callTracer"}])["result"]
        click.echo(f"== {row.name}: {row.gas:,} (traced transaction {receipt.gas_used:,})")
        click.echo("\n".join(call_tree(tree, _label)))
        if ops or fns:  # one struct-log trace for both (the stack only where --functions needs it)
            logs = raw("debug_traceTransaction", [receipt.txn_hash, {
                "disableMemory": True, "disableStack": not fns, "disableStorage": True}])["result"]["structLogs"]
        if ops:
            fs = frames(logs)
            click.echo("\n".join("  " + f.line(i) for i, f in enumerate(fs)))
            data = bytes(provider.web3.eth.get_transaction(receipt.txn_hash)["input"])
            click.echo("  totals: " + floor_line(receipt.gas_used, data, fs))
        if fns:
            names = [_label(c.get("to", ""), "").split(".")[0] for c in call_order(tree)]
            gas = function_gas(logs, [(n, entry_maps.get(n, {})) for n in names])
            click.echo("  by function (own / total, the calls' own part only; intrinsic gas not included):")
            for name, (own, total) in sorted(gas.items(), key=lambda kv: -kv[1][0])[:top]:
                click.echo(f"    {name}: {own:,} / {total:,}")

    global _trace
    _trace = trace
    g.measure(accounts.test_accounts, chain)
