"""devtools/gas_trace.py counts a trace's opcodes by kind, per call frame, as docs/gas.md's floors read them.

The traces here are written by hand (a struct-log trace is a list of steps: depth, op, gasCost, gas), so each
count can be checked against the number it must give; the tool's Anvil run (`ape run gas_trace`) only feeds it
real traces.
"""
from devtools.gas_trace import (Frame, call_order, call_tree, floor_line, frames, function_gas, function_name,
                                 intrinsic_gas, totals)


def step(depth, op, cost, gas=1_000_000):
    return {"depth": depth, "op": op, "gasCost": cost, "gas": gas}


def test_frames_count_reads_writes_logs_and_calls_per_frame():
    logs = [
        step(1, "PUSH1", 3),
        step(1, "SLOAD", 2_100),  # cold
        step(1, "SLOAD", 100),  # warm
        step(1, "SSTORE", 20_000),  # zero -> nonzero
        step(1, "STATICCALL", 2_600 + 50_000, gas=900_000),  # cold address, 50,000 forwarded
        step(2, "SLOAD", 2_100, gas=50_000),  # the callee's first step shows what it was given
        step(2, "SSTORE", 2_900),
        step(2, "LOG3", 1_756),
        step(2, "RETURN", 0),
        step(1, "TSTORE", 100),
        step(1, "SSTORE", 2_900),
        step(1, "SSTORE", 2_900),
        step(1, "LOG1", 1_000),
        step(1, "STOP", 0),
    ]
    fs = frames(logs)
    assert [f.depth for f in fs] == [1, 2]
    top, callee = fs
    assert (top.cold_reads, top.warm_reads, top.writes, top.logs, top.calls, top.transient, top.other) == \
        (1, 1, {20_000: 1, 2_900: 2}, 1_000, 2_600, 100, 3)
    assert (callee.cold_reads, callee.writes, callee.logs, callee.calls) == (1, {2_900: 1}, 1_756, 0)
    t = totals(fs)
    assert t == {"cold_reads": 2, "cold_read_gas": 4_200, "warm_read_gas": 100, "write_gas": 28_700,
                 "logs": 2_756, "calls": 2_600, "transient": 100, "other": 3}
    assert "SSTORE [2 x 2,900, 1 x 20,000] = 25,800" in top.line(0)


def test_a_second_call_from_the_same_frame_is_a_new_frame():
    logs = [step(1, "CALL", 100 + 10_000, gas=500_000), step(2, "STOP", 0, gas=10_000),
            step(1, "CALL", 100 + 20_000, gas=400_000), step(2, "SLOAD", 2_100, gas=20_000), step(1, "STOP", 0)]
    fs = frames(logs)
    assert [f.depth for f in fs] == [1, 2, 2]
    assert fs[0].calls == 200 and fs[2].cold_reads == 1 and fs[1].cold_reads == 0


def test_call_tree_gives_each_call_its_own_part():
    tree = {"type": "CALL", "to": "0xa", "input": "0x1", "gasUsed": hex(100_000), "calls": [
        {"type": "STATICCALL", "to": "0xb", "input": "0x2", "gasUsed": hex(30_000),
         "calls": [{"type": "STATICCALL", "to": "0xc", "input": "0x3", "gasUsed": hex(6_771)}]},
        {"type": "CALL", "to": "0xd", "input": "0x4", "gasUsed": hex(15_000)}]}
    lines = call_tree(tree, lambda to, data: f"{to}.{data}")
    assert lines == ["CALL 0xa.0x1: 100,000 (own 55,000)", "  STATICCALL 0xb.0x2: 30,000 (own 23,229)",
                     "    STATICCALL 0xc.0x3: 6,771 (own 6,771)", "  CALL 0xd.0x4: 15,000 (own 15,000)"]


def test_an_empty_frame_prints_zeros():
    assert Frame(1).line(0) == ("frame 0 (depth 1): SLOAD 0 cold 0 + 0 warm 0; SSTORE [] = 0; LOG 0; calls 0; "
                                "transient 0; other 0")


def test_the_floor_takes_intrinsic_gas_from_calldata_and_shows_refunds():
    data = bytes([0xab, 0, 0, 1])  # two nonzero bytes, two zero ones
    assert intrinsic_gas(data) == 21_000 + 2 * 16 + 2 * 4
    fs = frames([step(1, "SLOAD", 2_100), step(1, "SSTORE", 2_900), step(1, "SSTORE", 2_900), step(1, "ADD", 3)])
    spent = 21_040 + 2_100 + 5_800 + 3
    line = floor_line(spent - 4_800, data, fs)  # one slot cleared: 4,800 back
    assert "refunds 4,800" in line
    assert f"floor {21_040 + 2_100 + 5_800 - 4_800:,}" in line and "Computation 3" in line


def test_function_gas_follows_jumps_into_entry_points_and_back():
    """A JUMP to an entry point, with the return address below the function's arguments, enters it; the JUMP to
    that address leaves it. Own gas stays with the innermost function, totals include the callees."""
    entries = {0x64: ("accrue", 1), 0x80: ("expNegWad", 0)}

    def st(pc, op, cost, depth=1, stack=None):
        return {"depth": depth, "pc": pc, "op": op, "gasCost": cost, "gas": 1_000_000, "stack": stack or []}

    logs = [
        st(0, "PUSH1", 3),
        st(10, "JUMP", 8, stack=["0x20", "0x1", "0x64"]),  # return 0x20, one argument, to accrue
        st(0x64, "SLOAD", 2_100),
        st(0x65, "JUMP", 8, stack=["0x70", "0x80"]),  # return 0x70, no argument, to expNegWad
        st(0x80, "MUL", 5),
        st(0x81, "JUMP", 8, stack=["0x70"]),  # back to accrue
        st(0x70, "ADD", 3),
        st(0x71, "JUMP", 8, stack=["0x20"]),  # back to the entry code
        st(0x20, "STOP", 0),
    ]
    gas = function_gas(logs, [("ClearingHouse", entries)])
    assert gas["ClearingHouse.expNegWad"] == [5 + 8, 5 + 8]
    assert gas["ClearingHouse.accrue"] == [2_100 + 8 + 3 + 8, 2_100 + 8 + 13 + 3 + 8]
    assert gas["ClearingHouse.(entry)"][0] == 3 + 8 + 0
    assert function_name("fun_accrue_1234") == "accrue" and function_name("fun_trade") == "trade"
    assert function_name("abi_decode_uint32") == "abi_decode_uint32"


def test_call_order_is_the_order_of_entry():
    tree = {"to": "a", "calls": [{"to": "b", "calls": [{"to": "c"}]}, {"to": "d"}]}
    assert [n["to"] for n in call_order(tree)] == ["a", "b", "c", "d"]


def test_the_counts_add_up_to_the_receipt_on_a_real_trace():
    """On Anvil's traces of real transactions (a deposit, a ClearingHouse trade, an LP deposit, on a deployment
    made through vperp.fast), the counter misses nothing: intrinsic gas plus every frame's reads, writes, logs,
    calls' own cost, transient storage and the rest is the receipt's gas exactly where no slot is cleared, and the
    call tree's frames are the struct-log frames, in the same order."""
    from helpers.fast_anvil import AnvilChain
    from vperp.config import plain_config
    from vperp.fast import Account, Artifacts, fast_deploy, mnemonic_accounts

    anvil = AnvilChain(Artifacts(), steps_tracing=True)
    try:
        deployer, alice, lp = mnemonic_accounts(3)
        for a in (deployer, alice, lp):
            anvil.add_account(a)
        s = fast_deploy(anvil, Account(anvil, deployer), plain_config())
        art = anvil.artifacts
        usdc, vault, ch, pool = s.collateral.address, s.vault.address, s.clearing_house.address, s.pool.address

        def tx(sender, target, contract, fn, *args):
            r = anvil.transact(sender, target, art[contract].function(fn).encode(list(args)))
            assert r.status == 1, fn
            block = anvil.w3.eth.get_block(r.block_number)
            return block["transactions"][0], r

        for who in (alice, lp):
            tx(who, usdc, "MockERC20", "mint", who, 10**12)
            tx(who, usdc, "MockERC20", "approve", vault, 2**256 - 1)
            tx(who, usdc, "MockERC20", "approve", pool, 2**256 - 1)
        measured = [tx(alice, vault, "Vault", "deposit", 0, 10**10)]
        deadline = anvil.pending_timestamp + 600
        measured.append(tx(alice, ch, "ClearingHouse", "openPosition", 0, s.markets["ETH"].id, 10**18, 2**256 - 1,
                           deadline))
        measured.append(tx(lp, pool, "LiquidityPool", "deposit", 10**11, lp))
        raw = anvil.w3.provider.make_request
        for txh, receipt in measured:
            logs = raw("debug_traceTransaction", [txh.hex() if isinstance(txh, bytes) else txh, {
                "disableMemory": True, "disableStack": True, "disableStorage": True}])["result"]["structLogs"]
            tree = raw("debug_traceTransaction", [txh.hex() if isinstance(txh, bytes) else txh,
                                                  {"tracer": "callTracer"}])["result"]
            data = bytes(anvil.w3.eth.get_transaction(txh)["input"])
            fs = frames(logs)
            assert len(fs) == len(call_order(tree))
            t = totals(fs)
            spent = intrinsic_gas(data) + sum(v for k, v in t.items() if k != "cold_reads")
            assert spent == receipt.gas_used, (spent, receipt.gas_used)
            assert "refunds 0;" in floor_line(receipt.gas_used, data, fs)
    finally:
        anvil.close()
