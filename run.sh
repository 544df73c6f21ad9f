#!/usr/bin/env bash
# vPerp's one entry point for newcomers and CI. Every command first makes sure the toolchain is in
# place (idempotent: a second run installs nothing), then runs the job.
#
#   ./run.sh demo   [ape args]   deploy on the embedded local chain and run the demonstration
#   ./run.sh test   [ape args]   run the test suite, one worker per core (add --network ethereum:local:foundry for Anvil)
#   ./run.sh gas                 regenerate docs/gas.md
#   ./run.sh coverage            run the tests and write docs/coverage.md (external-function coverage)
#   ./run.sh slither [--list]    Slither over contracts/ (offline), fails on findings missing from security/slither-triage.yaml
#   ./run.sh setup               only set up
#   ./run.sh ape ...             any ape command inside the environment
#   ./run.sh cast ...            Foundry's cast (npm) with vPerp's signatures loaded; a failed call names its custom error
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD

setup() {
  # Python: a project-local virtualenv with the pinned packages (pyproject.toml).
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
  fi
  local stamp=.venv/.vperp-installed
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e ".[dev]"   # the SDK and every extra (pyproject.toml)
    touch "$stamp"
  fi
  # npm: the official Solidity compiler (WebAssembly), Anvil, OpenZeppelin and Solady, from the lockfile.
  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
  fi
  # Chromium, only for the dashboard's browser test (tests/sdk/test_dashboard.py), from Debian, when missing.
  # Best effort: without root or apt-get setup goes on and that test skips, naming the package.
  command -v chromium >/dev/null || { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1; } || true
}

env_vars() {
  # py-solc-x finds `solc-v<version>` here: a shim over the WebAssembly compiler (tools/solc-wasm.js).
  export SOLCX_BINARY_PATH="$ROOT/tools/solcx"
  export PATH="$ROOT/.venv/bin:$ROOT/node_modules/.bin:$PATH"
  export MPLBACKEND=Agg
  # The checkout's developer tooling (devtools/: gas table, coverage, Slither gate, mutation testing) is not part of
  # the installed package; the repository root on the path makes it importable here.
  export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
}

cast_signatures() {
  # cast decodes custom errors, events and calldata only from signatures it knows, read from its cache
  # ~/.foundry/cache/signatures. Merge the project's (abi/signatures.json, written with the ABIs by
  # `ape run export_abi`) into it; entries already there stay, ours win on the same selector.
  python3 - "$ROOT/abi/signatures.json" "$HOME/.foundry/cache/signatures" <<'PY'
import json, os, sys
ours, cache = sys.argv[1], sys.argv[2]
new = json.load(open(ours))
try:
    old = json.load(open(cache))
except (OSError, ValueError):
    old = {}
merged = {k: {**(old.get(k) or {}), **new.get(k, {})} for k in ("functions", "errors", "events")}
if merged != {k: old.get(k) for k in merged}:
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    with open(cache + ".tmp", "w") as f:
        json.dump(merged, f)
    os.replace(cache + ".tmp", cache)
PY
}

run_cast() {
  # The native cast binary: the npm wrapper (node_modules/.bin/cast) exits 0 even when cast fails.
  local bin
  bin=$(ls "$ROOT"/node_modules/@foundry-rs/cast-*/bin/cast 2>/dev/null | head -n1 || true)
  bin=${bin:-cast}
  # When cast fails with revert data (`cast call` and `cast estimate` print it raw), also name the
  # custom error from the signatures loaded above (`cast send` does that itself).
  local err rc=0 data
  err=$(mktemp)
  "$bin" "$@" 2>"$err" || rc=$?
  cat "$err" >&2
  if [ "$rc" -ne 0 ]; then
    data=$(grep -o 'data: "0x[0-9a-fA-F]*"' "$err" | head -n1 | cut -d'"' -f2 || true)
    if [ "${#data}" -ge 10 ]; then
      echo "reverted: $("$bin" decode-error "$data" 2>/dev/null | paste -sd' ' - || true)" >&2
    fi
  fi
  rm -f "$err"
  return "$rc"
}

compile_contracts() {
  # Ape recompiles changed files but not always what imports them (a library edit can leave its users
  # stale), so any contract newer than the last build forces a full compile (about 5 s).
  if [ -f .build/__local__.json ] && [ -n "$(find contracts -name '*.sol' -newer .build/__local__.json)" ]; then
    ape compile -f
  else
    ape compile
  fi
}

workers() {
  # The suite runs on pytest-xdist workers, one per core (VPERP_WORKERS=n to choose, 0 for one process),
  # a test file staying on one worker (its module fixtures are deployed once). Not when the arguments
  # already choose (-n), need one process (-s, --pdb) or name an Anvil network (one node per run).
  local n=${VPERP_WORKERS:-auto} a prev=
  [ "$n" = 0 ] && return 0
  for a in "$@"; do
    case "$prev $a" in "--capture no"|"-p no:xdist"|"-p no:xdist.plugin") return 0 ;; esac
    case "$a" in
      -n|-n*|--numprocesses*|--capture=no|--pdb|--trace|-pno:xdist*|*foundry*) return 0 ;;
      --*) ;;
      -[a-zA-Z]*s*) [ "$prev" = -k ] || [ "$prev" = -m ] || return 0 ;;  # -s, or -s among short flags (-vs, -xs)
    esac
    prev=$a
  done
  echo "-n $n --dist loadfile"
}

cmd=${1:-help}
shift || true
case "$cmd" in
  setup) setup; env_vars; compile_contracts ;;
  demo) setup; env_vars; compile_contracts >/dev/null; exec ape run demo "$@" ;;
  test) setup; env_vars; compile_contracts >/dev/null; exec ape test $(workers "$@") "$@" ;;  # no path given: tests/
  coverage) setup; env_vars; compile_contracts >/dev/null
    # External-function coverage (devtools/fncoverage.py) of the whole suite on the embedded chain.
    export VPERP_COVERAGE="${VPERP_COVERAGE:-$ROOT/docs/coverage.md}"; exec ape test "$@" ;;
  gas) setup; env_vars; compile_contracts >/dev/null; exec ape run gas "$@" ;;
  slither) setup; env_vars; exec python -m devtools.slither_check "$@" ;;
  ape) setup; env_vars; exec ape "$@" ;;
  cast) setup >&2; env_vars; cast_signatures; run_cast "$@" ;;
  *) sed -n '2,12p' "$0"; exit 2 ;;
esac
