"""Where a gas-table row's gas goes: the call tree of its transaction and, per call frame, the storage reads and writes,
logs, calls and the rest, counted from Anvil's traces. docs/gas.md's floors are counted with it.

`./run.sh ape run gas_trace --network ethereum:local:foundry --row "take (partial" --ops` replays the gas table's
set-up (devtools/gas.py `measure`, the same pinned blocks) on Anvil and, for each row whose name contains a `--row`
pattern, prints:

- the call tree (`callTracer`): each call's gas and its own part (less its callees'). The top call's own part
  includes the transaction's intrinsic gas (21,000 plus calldata);
- with `--ops`, per frame in order of entry (the default struct-log tracer): SLOADs cold (2,100) and warm (100);
  SSTOREs by their cost (20,000 a zero slot made nonzero, 2,900 a warm rewrite, 5,000 a cold one, 100 a slot
  rewritten to its value or written again); LOGs; the frame's own cost of its calls (2,600 a cold address,
  100 a warm one, without the gas forwarded); transient storage; everything else (computation, memory,
  calldata and return data).

A floor is then intrinsic + cold reads + writes - refunds + logs + cold addresses: what the operation cannot do
without under its rules, before any computation (`floor_line`; refunds: what clearing a slot gives back).
"""
from __future__ import annotations

from dataclasses import dataclass, field

CALL_OPS = frozenset({"CALL", "STATICCALL", "DELEGATECALL", "CALLCODE", "CREATE", "CREATE2"})
COLD_SLOAD = 2_100


@dataclass
class Frame:
    """One call frame's opcode gas, by kind."""
    depth: int
    cold_reads: int = 0
    warm_reads: int = 0
    writes: dict[int, int] = field(default_factory=dict)  # SSTORE cost -> how many
    logs: int = 0
    calls: int = 0  # the frame's own cost of its calls (address access, value), not the gas forwarded
    transient: int = 0
    other: int = 0

    @property
    def write_gas(self) -> int:
        return sum(cost * n for cost, n in self.writes.items())

    def line(self, n: int) -> str:
        w = ", ".join(f"{k} x {c:,}" for c, k in sorted(self.writes.items()))
        return (f"frame {n} (depth {self.depth}): SLOAD {self.cold_reads} cold {self.cold_reads * COLD_SLOAD:,} + "
                f"{self.warm_reads} warm {self.warm_reads * 100:,}; SSTORE [{w}] = {self.write_gas:,}; "
                f"LOG {self.logs:,}; calls {self.calls:,}; transient {self.transient:,}; other {self.other:,}")


def frames(struct_logs: list[dict]) -> list[Frame]:
    """The frames of a struct-log trace, in order of entry, with each opcode's gas added to its kind."""
    out: list[Frame] = []
    stack: list[Frame] = []
    for i, step in enumerate(struct_logs):
        depth = step["depth"]
        while stack and stack[-1].depth > depth:
            stack.pop()
        if not stack or stack[-1].depth < depth:
            stack.append(Frame(depth))
            out.append(stack[-1])
        f = stack[-1]
        op, cost = step["op"], step["gasCost"]
        if op == "SLOAD":
            if cost >= COLD_SLOAD:
                f.cold_reads += 1
            else:
                f.warm_reads += 1
        elif op == "SSTORE":
            f.writes[cost] = f.writes.get(cost, 0) + 1
        elif op.startswith("LOG"):
            f.logs += cost
        elif op in CALL_OPS:
            nxt = struct_logs[i + 1] if i + 1 < len(struct_logs) else None
            # a call's cost includes the gas handed to the callee: the callee's first step shows it
            f.calls += cost - (nxt["gas"] if nxt is not None and nxt["depth"] == depth + 1 else 0)
        elif op in ("TLOAD", "TSTORE"):
            f.transient += cost
        else:
            f.other += cost
    return out


def call_tree(node: dict, label, depth: int = 0) -> list[str]:
    """`callTracer`'s tree as lines: each call's gas and its own part. `label(to, input)` names a call."""
    used = int(node.get("gasUsed", "0x0"), 16)
    kids = node.get("calls") or []
    own = used - sum(int(k.get("gasUsed", "0x0"), 16) for k in kids)
    lines = [f"{'  ' * depth}{node.get('type')} {label(node.get('to', ''), node.get('input', ''))}: {used:,} (own {own:,})"]
    for k in kids:
        lines += call_tree(k, label, depth + 1)
    return lines


def intrinsic_gas(data: bytes) -> int:
    """A call transaction's intrinsic gas: 21,000 and 16 a nonzero calldata byte, 4 a zero one (no access list)."""
    return 21_000 + sum(16 if b else 4 for b in data)


def floor_line(gas_used: int, data: bytes, fs: list[Frame]) -> str:
    """The transaction's sums, its refunds (what the opcodes and the intrinsic gas exceed the gas used by) and its
    floor: intrinsic + cold reads + writes - refunds + logs + the calls' own cost, before any computation."""
    t = totals(fs)
    intrinsic = intrinsic_gas(data)
    spent = intrinsic + sum(v for k, v in t.items() if k != "cold_reads")
    refunds = spent - gas_used
    floor = intrinsic + t["cold_read_gas"] + t["write_gas"] - refunds + t["logs"] + t["calls"]
    return (f"intrinsic {intrinsic:,}; {t['cold_reads']} cold reads {t['cold_read_gas']:,}; writes {t['write_gas']:,}; "
            f"refunds {refunds:,}; logs {t['logs']:,}; calls {t['calls']:,}: floor {floor:,}. Computation "
            f"{t['other']:,}, warm reads {t['warm_read_gas']:,}, transient {t['transient']:,}")


def totals(fs: list[Frame]) -> dict[str, int]:
    """The transaction's sums over every frame (gas, except the counts of reads)."""
    return {
        "cold_reads": sum(f.cold_reads for f in fs),
        "cold_read_gas": sum(f.cold_reads for f in fs) * COLD_SLOAD,
        "warm_read_gas": sum(f.warm_reads for f in fs) * 100,
        "write_gas": sum(f.write_gas for f in fs),
        "logs": sum(f.logs for f in fs),
        "calls": sum(f.calls for f in fs),
        "transient": sum(f.transient for f in fs),
        "other": sum(f.other for f in fs),
    }
