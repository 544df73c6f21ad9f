"""The statement and branch coverage analysis (devtools.srccoverage) on hand-built inputs.

No chain and no compiler: a tiny contract's source, AST, bytecode and source map are written out here by
hand, so every expected figure follows from reading the bytecode below, not from the analysis itself.
"""
from eth.vm.code_stream import CodeStream

from devtools import srccoverage as sc

SOURCE = """contract T {
    function f(uint256 x) external {
        if (x == 0) revert Z();
        y = x;
    }
}
"""
PATH = "contracts/T.sol"


def _range(snippet: str) -> tuple[int, int]:
    start = SOURCE.index(snippet)
    return start, len(snippet)


def _node(kind: str, snippet: str, **children) -> dict:
    s, l = _range(snippet)
    return {"nodeType": kind, "src": f"{s}:{l}:0", **children}


IF_SRC = "if (x == 0) revert Z();"
REVERT_SRC = "revert Z();"
ASSIGN_SRC = "y = x;"
AST = {"nodeType": "SourceUnit", "src": f"0:{len(SOURCE)}:0", "nodes": [
    _node("IfStatement", IF_SRC, condition=_node("BinaryOperation", "x == 0"),
          trueBody=_node("RevertStatement", REVERT_SRC)),
    _node("ExpressionStatement", ASSIGN_SRC),
]}

# pc: instruction                 attributed to
#  0: PUSH0                       the condition `x == 0`
#  1: ISZERO                      the condition
#  2: PUSH1 0x0a                  the if
#  4: JUMPI                       the if (jumps to the revert when x == 0)
#  5: PUSH1 0x01                  y = x
#  7: PUSH0                       y = x
#  8: SSTORE                      y = x
#  9: STOP                        the function
# 10: JUMPDEST                    the if
# 11: PUSH0                       the revert
# 12: PUSH0                       the revert
# 13: REVERT                      the revert
CODE = bytes.fromhex("5f15600a576001" "5f5500" "5b5f5ffd")
_SPANS = ["x == 0", "x == 0", IF_SRC, IF_SRC, ASSIGN_SRC, ASSIGN_SRC, ASSIGN_SRC,
          SOURCE[SOURCE.index("function"):SOURCE.rindex("}") - 2], IF_SRC, REVERT_SRC, REVERT_SRC, REVERT_SRC]
SOURCE_MAP = ";".join(f"{_range(s)[0]}:{_range(s)[1]}:0:-" for s in _SPANS)


def _out(code: bytes = CODE, immutables: dict | None = None) -> dict:
    evm = {"deployedBytecode": {"object": code.hex(), "sourceMap": SOURCE_MAP,
                                "immutableReferences": immutables or {}},
           "bytecode": {"object": "", "sourceMap": ""}}
    return {"sources": {PATH: {"id": 0, "ast": AST}}, "contracts": {PATH: {"T": {"evm": evm}}}}


def _recorded(pcs: set[int], jumped: set[int], fell: set[int], code: bytes = CODE) -> dict:
    hits = bytearray(len(code) + 1)
    for pc in pcs:
        hits[pc] = 1
    return {code: (hits, jumped, fell)}


NON_ZERO_PATH = {0, 1, 2, 4, 5, 7, 8, 9}  # x != 0: the JUMPI falls through, y is written
ZERO_PATH = {0, 1, 2, 4, 10, 11, 12, 13}  # x == 0: the JUMPI jumps to the revert


def test_instructions_skip_push_data():
    assert sc.instructions(CODE) == [0, 1, 2, 4, 5, 7, 8, 9, 10, 11, 12, 13]
    # PUSH32 carries 32 data bytes, PUSH0 none.
    assert sc.instructions(bytes([0x7F]) + bytes(32) + bytes([0x5F, 0x00])) == [0, 33, 34]


def test_source_map_empty_fields_repeat_the_previous_entry():
    assert sc.decode_source_map("10:5:0:-;;:7;3::1:i;:::o") == [
        (10, 5, 0, "-"), (10, 5, 0, "-"), (10, 7, 0, "-"), (3, 7, 1, "i"), (3, 7, 1, "o")]


def test_regions_carry_lines_and_arms():
    rs = sc.regions(AST, SOURCE.encode())
    by_kind = {r.kind: r for r in rs}
    assert by_kind["IfStatement"].line == 3 and by_kind["ExpressionStatement"].line == 4
    s, l = _range(REVERT_SRC)
    assert by_kind["IfStatement"].arms == [(s, s + l), None]


def test_one_path_leaves_the_revert_and_its_branch_unrun():
    [rep] = sc.analyse(_out(), {PATH: SOURCE}, _recorded(NON_ZERO_PATH, set(), {4}))
    assert (rep.statements, rep.statements_hit) == (3, 2)
    assert [(ln, kind) for ln, kind, _ in rep.missed_statements] == [(3, "RevertStatement")]
    assert (rep.branches, rep.branches_hit, rep.unresolved) == (2, 1, 0)
    assert [(ln, which) for ln, which, _ in rep.missed_branches] == [(3, "true")]
    assert rep.lines == {3, 4} and rep.lines_hit == {3, 4}


def test_the_false_branch_of_an_if_without_else_is_read_off_its_jump():
    [rep] = sc.analyse(_out(), {PATH: SOURCE}, _recorded(ZERO_PATH, {4}, set()))
    # Only the revert path ran: the if's false branch (no code of its own) was not taken, and y = x never ran.
    assert [(ln, which) for ln, which, _ in rep.missed_branches] == [(3, "false")]
    assert [(ln, kind) for ln, kind, _ in rep.missed_statements] == [(4, "ExpressionStatement")]
    assert rep.cross_checked == 1 and rep.disagreements == []  # the revert's own code agrees with the jump


def test_both_paths_cover_everything():
    [rep] = sc.analyse(_out(), {PATH: SOURCE}, _recorded(NON_ZERO_PATH | ZERO_PATH, {4}, {4}))
    assert (rep.statements_hit, rep.branches_hit, rep.branches) == (3, 2, 2)
    assert rep.missed_statements == [] and rep.missed_branches == []
    text, totals = sc.report([rep])
    assert totals["sh"] == totals["s"] == 3 and totals["bh"] == totals["b"] == 2
    assert "| contracts/T.sol | 3/3 (100.0 %)" in text


def test_nothing_recorded_reaches_nothing():
    [rep] = sc.analyse(_out(), {PATH: SOURCE}, {})
    assert rep.statements_hit == 0 and rep.branches_hit == 0 and rep.branches == 2


def test_recorded_code_matches_outside_immutables_only():
    immutables = {"7": [{"start": 5, "length": 2}]}  # the PUSH1 0x01 at pc 5 and the PUSH0 after it
    out = _out(immutables=immutables)
    deployed = CODE[:6] + b"\x02" + CODE[7:]  # a different immutable value: the same code
    [rep] = sc.analyse(out, {PATH: SOURCE}, _recorded(NON_ZERO_PATH, set(), {4}, deployed))
    assert rep.statements_hit == 2
    other = CODE[:9] + b"\x01" + CODE[10:]  # a byte outside the immutables differs: another code
    [rep] = sc.analyse(out, {PATH: SOURCE}, _recorded(NON_ZERO_PATH, set(), {4}, other))
    assert rep.statements_hit == 0


class _Stream(CodeStream):
    pass


def test_the_recording_iterator_records_pcs_and_jump_outcomes(monkeypatch):
    """Drive the recording iterator the way py-evm's interpreter does: PUSH reads its data through the
    stream, JUMPI moves the program counter when it jumps."""
    monkeypatch.setattr(sc, "_hits", {})
    monkeypatch.setattr(sc, "_jumped", sc.defaultdict(set))
    monkeypatch.setattr(sc, "_fell", sc.defaultdict(set))
    _Stream.__iter__ = sc._recording_iter

    def run(jump: bool):
        stream = _Stream(CODE)
        for op in stream:
            if 0x60 <= op <= 0x7F:
                stream.read(op - 0x5F)
            elif op == sc.JUMPI and jump:
                stream.program_counter = 10
            elif op in (0x00, 0xFD):
                break

    run(jump=False)
    hits, jumped, fell = sc.recorded()[CODE]
    assert {pc for pc in range(len(CODE)) if hits[pc]} == NON_ZERO_PATH
    assert (jumped, fell) == (set(), {4})
    run(jump=True)
    hits, jumped, fell = sc.recorded()[CODE]
    assert {pc for pc in range(len(CODE)) if hits[pc]} == NON_ZERO_PATH | ZERO_PATH
    assert (jumped, fell) == ({4}, {4})


# The same `if` compiled a second time (as in a constructor or a second contract), where the optimizer laid
# the revert out so that no jump can be identified as deciding: the block the JUMPI jumps to first computes
# something attributed to `y = x` (merged code), then reverts.
#  0-9: as CODE; 10: JUMPDEST (the if); 11: PUSH0, 12: ISZERO (y = x); 13: PUSH0, 14: PUSH0, 15: REVERT (the revert)
CODE2 = bytes.fromhex("5f15600a576001" "5f5500" "5b5f155f5ffd")
_SPANS2 = _SPANS[:8] + [IF_SRC, ASSIGN_SRC, ASSIGN_SRC, REVERT_SRC, REVERT_SRC, REVERT_SRC]


def test_a_copy_without_a_deciding_jump_voids_not_taken_claims():
    """CODE ran only the x != 0 path, CODE2 only the x == 0 path. CODE's deciding jump never went into the
    revert, but CODE2 (no deciding jump) did run it: the true branch must not be reported as not taken."""
    out = _out()
    sm2 = ";".join(f"{_range(s)[0]}:{_range(s)[1]}:0:-" for s in _SPANS2)
    out["contracts"][PATH]["U"] = {"evm": {
        "deployedBytecode": {"object": CODE2.hex(), "sourceMap": sm2, "immutableReferences": {}},
        "bytecode": {"object": "", "sourceMap": ""}}}
    rec = _recorded(NON_ZERO_PATH, set(), {4})
    rec.update(_recorded({0, 1, 2, 4, 10, 11, 12, 13, 14, 15}, {4}, set(), CODE2))
    [rep] = sc.analyse(out, {PATH: SOURCE}, rec)
    assert (rep.branches, rep.branches_hit) == (2, 2) and rep.missed_branches == []
    assert rep.statements_hit == 3


def test_a_reported_snippet_is_never_cut_inside_a_name():
    """The report quotes each missed statement's first 90 characters; a cut inside `Contract.member` would read as a
    citation of a member that does not exist (tests/test_references.py), so the cut falls before the name."""
    text = "if ( s == LiquidationEngine.setLiquidationParams.selector || s == LiquidationEngine.setAuctionParams.selector)"
    assert text[:90].endswith("LiquidationEngine.setAuc")
    assert sc._clip(text) == "if ( s == LiquidationEngine.setLiquidationParams.selector || s =="
    assert sc._clip("x = a.b;") == "x = a.b;"  # short: as is
    assert sc._clip("y" * 95) == "y" * 90  # one name longer than the width: cut anyway
    assert sc._clip("a " * 60) == ("a " * 45).rstrip()  # cut between names: as is
