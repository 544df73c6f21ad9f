"""Mutation testing of the production contracts (contracts/*.sol, contracts/libraries/*.sol).

`python -m devtools.mutation` (or `./run.sh ape run mutate`) generates mutants from the solc AST
(`operators`: comparison boundaries and negations, off-by-one literals, rounding directions, dropped
reverts/requires, swapped same-typed arguments, `+`/`-`, logic, dropped modifiers), builds each one in a
temporary copy of the project with the WebAssembly solc (`compile`: only the source units that include
the mutated file), and runs the fast tier (the compiled bytecode on pyrevm against the Python model, a
quick profile) and then the file's Ape unit tests against it (`runner`), stopping at the first failing
test. The report (`report`) gives the score, killed / (killed + survived), per operator and per
contract, and lists the survivors with their lines. The project's own contracts/ and .build/ are never
written. See docs/testing.md ("Mutation testing") and docs/mutation.md.
"""
from .compile import Compiler, strip_metadata
from .operators import OPERATORS, Mutant, generate
from .runner import Result, Stage, Workspace, evaluate

__all__ = ["Compiler", "Mutant", "OPERATORS", "Result", "Stage", "Workspace", "evaluate", "generate",
           "strip_metadata"]
