def test_deploy_lists_eth_and_btc(system, ch):
    assert ch.marketCount() == 2
    assert system.markets["ETH"].id == 1 and system.markets["BTC"].id == 2
    assert ch.indexPrice(1) == 3000 * 10**18


def test_open_and_close(system, ch, vault, alice, chain):
    system.fund(alice, 10_000)
    deadline = chain.pending_timestamp + 60
    tx = ch.openPosition(0, 1, 10**18, 10**30, deadline, sender=alice)
    print("open gas", tx.gas_used)
    size, on, pf = ch.position(alice, 0, 1)
    assert size == 10**18
    tx = ch.closePosition(0, 1, 0, deadline, sender=alice)
    print("close gas", tx.gas_used)
    assert ch.position(alice, 0, 1)[0] == 0
