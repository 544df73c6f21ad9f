"""Mutation operators over the solc AST of the production sources.

Each operator walks the AST solc produced for a source unit and proposes edits of the source text at the
byte ranges the AST gives (`src`), so comments, strings, pragmas and NatSpec are never touched and every
mutant is exactly one edit of one expression or statement:

| operator | what | example |
|---|---|---|
| `cmp-boundary` | a relational operator moved across its boundary | `a < b` -> `a <= b`, `a >= b` -> `a > b` |
| `cmp-negate` | equality negated | `a == b` -> `a != b` |
| `off-by-one` | a number literal plus or minus one (not an operand of a comparison, which `cmp-boundary` covers, nor an array length) | `q + 1` -> `q + (1 + 1)`, `16` -> `(16 - 1)` |
| `rounding` | a rounding direction swapped | `mulWadUp` <-> `mulWadDown` (and `divWad`, `mulDiv`, `sMulWad`, `sMulDiv`), `divUp(a, b)` -> `(a) / (b)`, `Math.mulDiv(a, b, c)` -> `Math.mulDiv(a, b, c, Math.Rounding.Ceil)` |
| `drop-revert` | a `revert ...;` or `require(...);` statement replaced by `{}` (so `if (c) revert E();` becomes `if (c) {}`) | |
| `swap-args` | two arguments of one call (function, library, external or struct constructor) swapped where solc typed both alike; calls whose swap is the identity (`mulDivDown(x, y, d)`'s x and y, `min`, `max`) are left out | `f(a, b)` -> `f(b, a)` |
| `arith` | `+` <-> `-`, `+=` <-> `-=`, a unary minus dropped | `pool += fee` -> `pool -= fee` |
| `logic` | `&&` <-> `||`, a `!` dropped, `true` <-> `false` | |
| `drop-modifier` | a modifier invocation removed from a function (access control, re-entrancy lock, pause checks) | `onlyOwner` -> `` |
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass

OPERATORS = ("cmp-boundary", "cmp-negate", "off-by-one", "rounding", "drop-revert", "swap-args", "arith", "logic",
             "drop-modifier")

BOUNDARY = {"<": "<=", "<=": "<", ">": ">=", ">=": ">"}
NEGATE = {"==": "!=", "!=": "=="}
ARITH = {"+": "-", "-": "+"}
ARITH_ASSIGN = {"+=": "-=", "-=": "+="}
LOGIC = {"&&": "||", "||": "&&"}
COMPARISONS = set(BOUNDARY) | set(NEGATE)
# WadMath's rounding pairs: name stem -> both spellings exist
ROUNDING_STEMS = ("mulWad", "divWad", "mulDiv", "sMulWad", "sMulDiv")
# Calls whose two arguments commute (a swap is the identity): callee name -> argument index pairs
SKIP_KEYS = {"typeDescriptions", "typeName", "parameters", "returnParameters", "baseContracts", "overrides"}
COMMUTATIVE = {"mulWadDown": {(0, 1)}, "mulWadUp": {(0, 1)}, "mulDivDown": {(0, 1)}, "mulDivUp": {(0, 1)},
               "mulDiv": {(0, 1)}, "min": {(0, 1)}, "max": {(0, 1)}, "sMulDivDown": set(), "sMulDivUp": set()}


@dataclass(frozen=True)
class Mutant:
    """One edit of one source file: bytes [start, end) replaced by `replacement`."""

    file: str
    start: int
    end: int
    original: str
    replacement: str
    operator: str
    line: int
    function: str  # Contract.function (or Contract for state variables)
    description: str

    @property
    def id(self) -> str:
        key = f"{self.file}|{self.start}|{self.end}|{self.replacement}".encode()
        return hashlib.sha1(key).hexdigest()[:10]

    @property
    def contract(self) -> str:
        return self.file.rsplit("/", 1)[-1].removesuffix(".sol")

    def apply(self, source: str) -> str:
        raw = source.encode("utf-8")
        assert raw[self.start:self.end].decode("utf-8") == self.original, (self.id, "source changed")
        return (raw[:self.start] + self.replacement.encode("utf-8") + raw[self.end:]).decode("utf-8")

    def diff(self, source: str) -> tuple[str, str]:
        """(original lines, mutated lines) of the edit, whole lines, stripped of indentation."""
        raw = source.encode("utf-8")
        a = raw.rfind(b"\n", 0, self.start) + 1
        b = raw.find(b"\n", self.end)
        b = len(raw) if b < 0 else b
        before = raw[a:b].decode("utf-8")
        after = (raw[a:self.start] + self.replacement.encode("utf-8") + raw[self.end:b]).decode("utf-8")
        squash = lambda t: " ".join(x.strip() for x in t.splitlines())  # noqa: E731
        return squash(before), squash(after)

    def to_json(self) -> dict:
        return {**asdict(self), "id": self.id}

    @classmethod
    def from_json(cls, d: dict) -> "Mutant":
        return cls(**{k: v for k, v in d.items() if k != "id"})


def _span(node: dict) -> tuple[int, int]:
    s, length, _ = (int(x) for x in node["src"].split(":"))
    return s, s + length


class _Generator:
    def __init__(self, file: str, source: str, ast: dict):
        self.file = file
        self.raw = source.encode("utf-8")
        self.ast = ast
        self.out: list[Mutant] = []
        self.scope = ""
        self._lines = [0] + [m.end() for m in re.finditer(b"\n", self.raw)]

    def line(self, offset: int) -> int:
        lo, hi = 0, len(self._lines)
        while lo + 1 < hi:
            mid = (lo + hi) // 2
            if self._lines[mid] <= offset:
                lo = mid
            else:
                hi = mid
        return lo + 1

    def text(self, a: int, b: int) -> str:
        return self.raw[a:b].decode("utf-8")

    def add(self, op: str, a: int, b: int, replacement: str, description: str | None = None) -> None:
        original = self.text(a, b)
        if original == replacement:
            return
        self.out.append(Mutant(self.file, a, b, original, replacement, op, self.line(a), self.scope,
                               description or f"`{original}` -> `{replacement}`"))

    def operator_span(self, left: dict, right: dict, op: str) -> tuple[int, int] | None:
        """The byte range of `op` between two operands (None if anything but whitespace surrounds it)."""
        _, a = _span(left)
        b, _ = _span(right)
        gap = self.text(a, b)
        if gap.strip() != op:
            return None
        i = gap.index(op)
        return a + len(gap[:i].encode()), a + len(gap[:i].encode()) + len(op.encode())

    def statement_span(self, node: dict) -> tuple[int, int]:
        """A statement's range with its trailing `;` (solc's `src` stops before it)."""
        a, b = _span(node)
        j = b
        while j < len(self.raw) and self.raw[j:j + 1] in b" \t\r\n":
            j += 1
        if self.raw[j:j + 1] == b";":
            b = j + 1
        return a, b

    # ------------------------------------------------------------------------ the walk

    def walk(self, node, parent=None) -> None:
        if isinstance(node, list):
            for child in node:
                self.walk(child, parent)
            return
        if not isinstance(node, dict):
            return
        kind = node.get("nodeType")
        saved = self.scope
        if kind == "ContractDefinition":
            self.scope = node["name"]
        elif kind in ("FunctionDefinition", "ModifierDefinition"):
            contract = self.scope.split(".")[0]
            name = node.get("name") or node.get("kind", "")
            self.scope = f"{contract}.{name}"
        elif kind == "VariableDeclaration" and parent is not None and parent.get("nodeType") == "ContractDefinition":
            self.scope = f"{self.scope.split('.')[0]}.{node['name']}"
        if kind == "EmitStatement":
            self.scope = saved
            return  # event arguments: an edit there changes a log only (the fuzz compares logs anyway)
        handler = getattr(self, f"on_{kind}", None)
        if handler is not None:
            handler(node, parent)
        if kind == "RevertStatement":
            self.scope = saved
            return  # the error's arguments: `drop-revert` covers the statement
        if kind == "FunctionCall" and (node.get("expression") or {}).get("name") == "require" \
                and (node.get("expression") or {}).get("nodeType") == "Identifier":
            self.walk(node["arguments"][:1], node)  # the condition, not the error
            self.scope = saved
            return
        for key, value in node.items():
            if key in SKIP_KEYS:
                continue
            if isinstance(value, (dict, list)):
                self.walk(value, node)
        self.scope = saved

    # ------------------------------------------------------------------------ handlers

    def on_BinaryOperation(self, node, parent):
        op = node["operator"]
        span = self.operator_span(node["leftExpression"], node["rightExpression"], op)
        if span is None:
            return
        if op in BOUNDARY:
            self.add("cmp-boundary", *span, BOUNDARY[op])
        elif op in NEGATE:
            self.add("cmp-negate", *span, NEGATE[op])
        elif op in ARITH:
            self.add("arith", *span, ARITH[op])
        elif op in LOGIC:
            self.add("logic", *span, LOGIC[op])

    def on_Assignment(self, node, parent):
        op = node["operator"]
        if op in ARITH_ASSIGN:
            span = self.operator_span(node["leftHandSide"], node["rightHandSide"], op)
            if span:
                self.add("arith", *span, ARITH_ASSIGN[op])

    def on_UnaryOperation(self, node, parent):
        op = node["operator"]
        if not node.get("prefix"):
            return
        a, b = _span(node)
        sa, sb = _span(node["subExpression"])
        if op == "-":
            self.add("arith", a, b, self.text(sa, sb), f"unary minus dropped: `{self.text(a, b)}`")
        elif op == "!":
            self.add("logic", a, b, self.text(sa, sb), f"negation dropped: `{self.text(a, b)}`")

    def on_Literal(self, node, parent):
        a, b = _span(node)
        if node.get("kind") == "bool":
            self.add("logic", a, b, "false" if node["value"] == "true" else "true")
            return
        if node.get("kind") != "number":
            return
        value = node.get("value", "")
        if value.lower().startswith("0x"):
            return  # addresses, selectors, masks
        ptype = parent.get("nodeType") if parent else None
        if ptype == "ArrayTypeName":
            return
        if ptype == "FunctionCall" and parent.get("kind") == "typeConversion" \
                and (parent.get("typeDescriptions") or {}).get("typeString", "").startswith("address"):
            return  # address(0): a different address literal, not an off-by-one
        if ptype == "BinaryOperation" and parent["operator"] in COMPARISONS:
            return  # `x < 10` -> `x < 11` is `x <= 10`: cmp-boundary's mutant
        text = self.text(a, b)
        self.add("off-by-one", a, b, f"({text} + 1)", f"`{text}` -> `{text} + 1`")
        if _number(value) != 0:
            self.add("off-by-one", a, b, f"({text} - 1)", f"`{text}` -> `{text} - 1`")

    def on_RevertStatement(self, node, parent):
        a, b = self.statement_span(node)
        self.add("drop-revert", a, b, "{}", f"dropped: `{_short(self.text(a, b))}`")

    def on_ExpressionStatement(self, node, parent):
        expr = node.get("expression") or {}
        callee = expr.get("expression") or {}
        if expr.get("nodeType") == "FunctionCall" and callee.get("nodeType") == "Identifier" \
                and callee.get("name") == "require":
            a, b = self.statement_span(node)
            self.add("drop-revert", a, b, "{}", f"dropped: `{_short(self.text(a, b))}`")

    def on_ModifierInvocation(self, node, parent):
        if node.get("kind") != "modifierInvocation":
            return
        a, b = _span(node)
        self.add("drop-modifier", a, b, "", f"modifier `{self.text(a, b)}` dropped")

    def on_Identifier(self, node, parent):
        self._rounding_name(node, *_span(node), node.get("name", ""), parent)

    def on_MemberAccess(self, node, parent):
        name = node.get("memberName", "")
        loc = node.get("memberLocation")
        if loc:
            s, length, _ = (int(x) for x in loc.split(":"))
            a, b = s, s + length
        else:
            _, b = _span(node)
            a = b - len(name.encode())
        self._rounding_name(node, a, b, name, parent)

    def _rounding_name(self, node, a, b, name, parent):
        if self.text(a, b) != name:
            return
        for stem in ROUNDING_STEMS:
            for x, y in (("Up", "Down"), ("Down", "Up")):
                if name == stem + x:
                    self.add("rounding", a, b, stem + y)

    def on_FunctionCall(self, node, parent):
        callee = node.get("expression") or {}
        name = callee.get("name") or callee.get("memberName") or ""
        args = node.get("arguments") or []
        if node.get("kind") == "functionCall" and name == "divUp" and len(args) == 2:
            x, d = (self.text(*_span(arg)) for arg in args)
            a, b = _span(node)
            self.add("rounding", a, b, f"({x}) / ({d})", f"`divUp({x}, {d})` -> `({x}) / ({d})`")
        if node.get("kind") == "functionCall" and name == "mulDiv" and len(args) == 3 \
                and callee.get("nodeType") == "MemberAccess" and self.text(*_span(callee)).startswith("Math."):
            _, last = _span(args[-1])
            self.add("rounding", last, last, ", Math.Rounding.Ceil", "`Math.mulDiv` floor -> ceil")
        if node.get("kind") not in ("functionCall", "structConstructorCall") or node.get("names"):
            return
        if name in ("require", "assert", "revert") or callee.get("nodeType") == "ElementaryTypeNameExpression":
            return
        if (callee.get("typeDescriptions") or {}).get("typeIdentifier", "").startswith("t_function_error"):
            return
        if parent is not None and parent.get("nodeType") == "RevertStatement":
            return
        types = [(arg.get("typeDescriptions") or {}).get("typeString") for arg in args]
        for i in range(len(args)):
            for j in range(i + 1, len(args)):
                if not types[i] or types[i] != types[j] or (i, j) in COMMUTATIVE.get(name, set()):
                    continue
                if types[i].startswith(("int_const", "rational_const", "literal_string")):
                    continue
                (ai, bi), (aj, bj) = _span(args[i]), _span(args[j])
                ti, tj = self.text(ai, bi), self.text(aj, bj)
                if ti == tj:
                    continue
                a, b = ai, bj
                replacement = tj + self.text(bi, aj) + ti
                self.add("swap-args", a, b, replacement, f"`{name}`: arguments {i + 1} and {j + 1} swapped "
                                                          f"(`{_short(ti)}` <-> `{_short(tj)}`)")


def _number(value: str) -> float:
    try:
        return float(value.replace("_", ""))
    except ValueError:
        return 1.0


def _short(text: str, n: int = 70) -> str:
    t = " ".join(text.split())
    return t if len(t) <= n else t[:n - 3] + "..."


def generate(file: str, source: str, ast: dict, operators=OPERATORS) -> list[Mutant]:
    """Every mutant of one source unit for the given operators, in source order, without duplicates
    (two edits giving the same text count once)."""
    gen = _Generator(file, source, ast)
    gen.walk(ast)
    seen, out = set(), []
    for m in sorted(gen.out, key=lambda m: (m.start, m.end, m.operator, m.replacement)):
        if m.operator not in operators:
            continue
        key = (m.start, m.end, m.replacement)
        if key in seen:
            continue
        seen.add(key)
        out.append(m)
    return out
