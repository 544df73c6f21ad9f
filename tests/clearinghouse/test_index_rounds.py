"""The index in the TWAP sums and the funding index is the feed's own history (ClearingHouseAccrual._indexArea).

Before: each accrual recorded the index it read, and that index priced the whole interval until the next accrual. A
feed that can be set and reset within one transaction (a mock here; a feed reading a thin spot market allows it)
let an attacker put a price the feed held for no time into the sums for
as long as nobody touched the market: in the batch below (feed at 4x, `pokeFunding`, feed back, one transaction)
the index TWAP, the breaker's and the peg guard's input, and the day's funding sample read the phantom, and funding
over the interval was priced at it. Now an accrual splits the interval at the feed's round time (`updatedAt`): the
index recorded at the last accrual up to it, the round's price after it. On a feed that stamps its rounds with the
block's time, the phantom's round ends in its own block, so it weighs nothing; views extend the sums the same way
(the feed as it stands; the last index when it cannot be read), so a view and the accrual that follows it agree.
The limits are pinned too: a round posted after the phantom before any accrual, and a writer who stamps its own
round times (such a feed must not be listed).

The attack runs end to end against a control (the same blocks and accruals, the feed re-stamped at its price
instead), and every figure is asserted equal to the wei: views during the idle interval, the hourly samples, the
funding the attacker receives, the pool's NAV, the insurance fund. The honest paths pin the rule's arithmetic.
"""
from __future__ import annotations

from eth_abi import encode as abi_encode
from eth_utils import keccak

from helpers.clock import HOUR, next_hour
from helpers.funding import BIG
from helpers.markets import list_market
from helpers.trading import WAD

ETH = 1
P = 3000 * 10**8  # ETH's feed answer (8 decimals)


def _call(sig: str, types: list, args: list) -> bytes:
    return keccak(text=sig)[:4] + abi_encode(types, args)


def _batch(system, atk, phantom: int | None, stamped_at: int | None = None, keep: bool = False):
    """One transaction: the feed at `phantom` (or re-stamped at its price: the control), ETH accrued, the feed back
    (or, with `keep`, re-stamped at `phantom`: a genuine round). With `stamped_at` the phantom's round carries that
    time (`updateRoundData`: a writer who stamps its rounds)."""
    oracle, ch = system.markets["ETH"].oracle, system.clearing_house
    honest = phantom if keep else oracle.latestAnswer()
    first = honest if phantom is None else phantom
    if stamped_at is None:
        set_first = _call("updateAnswer(int256)", ["int256"], [first])
    else:
        set_first = _call("updateRoundData(uint80,int256,uint256,uint256)", ["uint80", "int256", "uint256", "uint256"],
                          [oracle.latestRound() + 1, first, stamped_at, stamped_at])
    calls = [(oracle.address, set_first),
             (ch.address, _call("pokeFunding(uint32)", ["uint32"], [ETH])),
             (oracle.address, _call("updateAnswer(int256)", ["int256"], [honest]))]
    return atk.batch([a for a, _ in calls], [d for _, d in calls], sender=system.deployer)


def _figures(system, who) -> tuple:
    """What the market's views say (all but the index recorded at the last accrual, `lastIndexPrice`, which holds
    whatever that accrual read), the attacker's pending funding, the pool's NAV and the insurance fund."""
    ch, pool, vault = system.clearing_house, system.pool, system.vault
    st = ch.marketState(ETH)
    return (tuple(ch.twaps(ETH)), tuple(ch.fundingState(ETH)), st.cumulativeFunding,
            ch.position(who, 1, ETH).pendingFunding, pool.navWad(), vault.insuranceFund())


def _attack_setup(project, system, chain, alice, bob):
    """Alice long 300 ETH (longs pay), Bob long 40 ETH in subaccount 1, two hourly samples: the applied rate is
    under way. Returns (batch contract, h0, the attack's time: 10 minutes into hour h0 + 2, a snapshot there)."""
    ch = system.clearing_house
    atk = project.BatchCaller.deploy(sender=system.deployer)
    system.fund(alice, 2_000_000)
    system.fund(bob, 100_000, 1)
    h0 = next_hour(chain.pending_timestamp)
    for i in (0, 1):  # 150 ETH a trade (inside the band)
        chain.pending_timestamp = h0 + 10 + i
        ch.openPosition(0, ETH, 150 * WAD, BIG, h0 + 100, sender=alice)
    chain.pending_timestamp = h0 + 20
    ch.openPosition(1, ETH, 40 * WAD, BIG, h0 + 100, sender=bob)
    for k in (1, 2):
        chain.pending_timestamp = h0 + k * HOUR
        ch.pokeFunding(ETH, sender=alice)
    assert ch.marketState(ETH).fundingRate > 0
    return atk, h0, h0 + 2 * HOUR + 600, chain.snapshot()


def _run(system, chain, atk, who, h0, t, phantom, round_at=None, poke=False, stamped_at=None, idle=2980, keep=False):
    """The batch at `t`; a view of everything ~50 minutes on (nobody touched ETH, but for a poke in the next block
    when `poke`; when `round_at` is given the feed posts a round at P at that time first); then four hourly pokes
    and `who`'s close."""
    ch, vault = system.clearing_house, system.vault
    chain.pending_timestamp = t
    assert _batch(system, atk, phantom, stamped_at, keep).timestamp == t
    if poke:
        ch.pokeFunding(ETH, sender=system.deployer)
    if round_at is not None:
        chain.pending_timestamp = round_at
        assert system.markets["ETH"].oracle.updateAnswer(P, sender=system.deployer).timestamp == round_at
    chain.pending_timestamp = t + idle
    chain.mine()
    idle = _figures(system, who), ch.marketState(ETH).lastIndexPrice
    samples = []
    for k in (3, 4, 5, 6):
        chain.pending_timestamp = h0 + k * HOUR
        (s,) = ch.pokeFunding(ETH, sender=who).events.filter(ch.FundingSampled)
        samples.append(tuple(s.event_arguments.values()))
    chain.pending_timestamp = h0 + 6 * HOUR + 10
    ch.closePosition(1, ETH, 0, h0 + 7 * HOUR, sender=who)
    return idle, samples, vault.collateral(who, 1), system.pool.navWad(), vault.insuranceFund()


def test_a_price_the_feed_held_for_no_time_weighs_nothing(project, system, chain, alice, bob):
    """Alice (honest) is long 300 ETH, so longs pay funding; Bob (the attacker) is long 40 ETH in subaccount 1 and
    wants the rate negative. Ten minutes into an hour, his batch sets the feed to 4x, pokes ETH (the block's first
    accrual, so it records 4x) and sets the feed back; nobody touches ETH for the rest of the hour. The hour's
    sample, the funding over the interval and the views in between are what a control run gives (the same batch
    with the feed re-stamped at its price), to the wei; so are the three hours of funding after it, Bob's
    collateral when he closes, the pool's NAV and the insurance fund. Before the rule the phantom priced the 50
    minutes until the next accrual (figures in docs/funding.md)."""
    atk, h0, t, snap = _attack_setup(project, system, chain, alice, bob)
    control = _run(system, chain, atk, bob, h0, t, None)
    chain.restore(snap)
    attack = _run(system, chain, atk, bob, h0, t, 4 * P)
    (c_idle, c_recorded), c_samples, c_coll, c_nav, c_ins = control
    (a_idle, a_recorded), a_samples, a_coll, a_nav, a_ins = attack
    print(f"\nindex rounds: phantom at 4x, 50 min idle: index TWAP {a_idle[0][1] / WAD:,.2f} "
          f"(control {c_idle[0][1] / WAD:,.2f}); hour's sample target {a_samples[0][2] / 1e14:+.2f} bps/h "
          f"(control {c_samples[0][2] / 1e14:+.2f}); attacker {(a_coll - c_coll) / WAD:+,.2f} USD against the "
          f"control, pool NAV {(a_nav - c_nav) / WAD:+,.2f}, insurance {(a_ins - c_ins) / WAD:+,.2f}")
    assert abs(c_idle[0][1] - 3000 * WAD) < 30 * WAD  # the control's TWAP is ETH's, near 3,000
    # The phantom is the index its accrual recorded (an instant's read, like any read of the feed), and weighs
    # nothing in any sum; the next accrual records the feed again.
    assert (c_recorded, a_recorded) == (3000 * WAD, 4 * 3000 * WAD)
    assert (a_idle, a_samples, a_coll, a_nav, a_ins) == (c_idle, c_samples, c_coll, c_nav, c_ins)


def test_limit_a_round_posted_before_any_accrual_ends_the_phantom_there(project, system, chain, alice, bob):
    """What the rule does not see: rounds posted and replaced between two accruals. If the feed posts another
    round (here a heartbeat re-post, unchanged, 20 minutes after the attack) before anything accrues ETH, the next
    accrual knows only that the recorded index (the phantom) held until that round began: the phantom counts for
    those 20 minutes (before the rule: until the next accrual, 50 minutes), exactly as a genuine round at 4x for 20
    minutes would (that run is equal to the wei). An accrual in any block between the attack and that round (a
    trade, the keeper's poke) ends it at zero: that run equals its control to the wei."""
    atk, h0, t, snap = _attack_setup(project, system, chain, alice, bob)
    runs = {}
    for name, phantom, poke, keep in (("control", None, False, False), ("attack", 4 * P, False, False),
                                      ("genuine", 4 * P, False, True), ("control, poked", None, True, False),
                                      ("attack, poked", 4 * P, True, False)):
        if runs:
            chain.restore(snap)  # a restore consumes the snapshot: take it again
            snap = chain.snapshot()
        runs[name] = _run(system, chain, atk, bob, h0, t, phantom, round_at=t + 1200, poke=poke, keep=keep)
    (c_idle, _), c_samples, c_coll, c_nav, c_ins = runs["control"]
    (a_idle, _), a_samples, a_coll, a_nav, a_ins = runs["attack"]
    print(f"\nindex rounds (limit): phantom at 4x, a round 20 min later before any accrual: index TWAP "
          f"{a_idle[0][1] / WAD:,.2f} (control {c_idle[0][1] / WAD:,.2f}); hour's sample target "
          f"{a_samples[0][2] / 1e14:+.2f} bps/h (control {c_samples[0][2] / 1e14:+.2f}); attacker "
          f"{(a_coll - c_coll) / WAD:+,.2f} USD against the control, pool NAV {(a_nav - c_nav) / WAD:+,.2f}, "
          f"insurance {(a_ins - c_ins) / WAD:+,.2f}")
    # The phantom counts as a genuine 20-minute round at its price would: views, samples, collateral, NAV, insurance.
    (g_idle, _), *g_rest = runs["genuine"]
    assert (a_idle[:3], a_samples, a_coll, a_nav, a_ins) == (g_idle[:3], *g_rest)
    assert a_samples[0][6] > c_samples[0][6]
    (cp_idle, _), *cp_rest = runs["control, poked"]
    (ap_idle, _), *ap_rest = runs["attack, poked"]
    assert (ap_idle, ap_rest) == (cp_idle, cp_rest)


def test_limit_a_writer_who_stamps_the_round_time_prices_the_interval_since_the_last_accrual(project, system, chain,
                                                                                              alice, bob):
    """The rule trusts the feed's round time as it trusts its price. A writer who stamps its own rounds (the mock's
    `updateRoundData`) back-dates the phantom to the last accrual: it then prices the whole interval since, 50 idle
    minutes here, as the old rule would have priced the interval after it, and a poke after the transaction no
    longer shortens it. The figures pinned: the hour's sample at the cap, the attacker about +22 USD, the pool about
    -186 at the listing's cap (the 10 bps fee / 9 per hour: 0.0111 %/h); at the 0.1 %/h cap the markets were listed
    with before the funding oscillation's bound, an attacker's review of this rule measured +226.94 / -1,929.03.
    Such a feed must not be listed."""
    atk, h0, t, snap = _attack_setup(project, system, chain, alice, bob)
    last = system.clearing_house.marketState(ETH).lastUpdate  # the last accrual: the second hourly poke
    assert t + 2400 - last == 3000
    control = _run(system, chain, atk, bob, h0, t + 2400, None, idle=300)
    chain.restore(snap)
    attack = _run(system, chain, atk, bob, h0, t + 2400, 4 * P, stamped_at=last, idle=300)
    (c_idle, _), c_samples, c_coll, c_nav, _ = control
    (a_idle, _), a_samples, a_coll, a_nav, _ = attack
    gain, loss = (a_coll - c_coll) / WAD, (a_nav - c_nav) / WAD
    print(f"\nindex rounds (limit): a phantom stamped at the last accrual, 50 min back: hour's sample target "
          f"{a_samples[0][2] / 1e14:+.2f} bps/h (control {c_samples[0][2] / 1e14:+.2f}); attacker {gain:+,.2f} USD, "
          f"pool NAV {loss:+,.2f}")
    assert a_samples[0][2] == -system.clearing_house.fundingParams(ETH).maxFundingRate == -(10**15 // 9)  # the cap
    assert 15 < gain < 40 and -300 < loss < -150


def _listed_then_a_round(project, system, chain):
    """A market listed at L at 2,000 with its own feed, which posts 2,100 at L + 100; the next block at L + 300.
    Returns (clearing house, market id, L)."""
    mid, oracle, _, tx = list_market(system, project, 2000)
    L = tx.timestamp
    chain.pending_timestamp = L + 100
    oracle.updateAnswer(2100 * 10**8, sender=system.deployer)
    chain.pending_timestamp = L + 300
    return system.clearing_house, mid, L


def test_a_round_between_accruals_counts_from_its_time(project, system, chain, alice):
    """A market listed at L (every observation at L, so its TWAP spans [L, now]) at 2,000; the feed posts 2,100 at
    L + 100 and nobody touches the market. At L + 300 the index TWAP is (2,000 x 100 + 2,100 x 200) / 300 (before:
    2,000, the new round unseen until an accrual, and then counted from the accrual on); after the accrual at
    L + 301 the view reads the same rule, and at L + 400 it is (2,000 x 100 + 2,100 x 300) / 400. Funding is off on
    a fresh market (rate and target 0), so only the sums are read."""
    ch, mid, L = _listed_then_a_round(project, system, chain)
    chain.mine()
    p1, p2 = 2000 * WAD, 2100 * WAD
    assert ch.twaps(mid)[1] == (p1 * 100 + p2 * 200) // 300
    ch.pokeFunding(mid, sender=alice)  # at L + 301
    assert ch.twaps(mid)[1] == (p1 * 100 + p2 * 201) // 301  # the accrual summed what the view extends
    assert ch.marketState(mid).lastIndexPrice == p2
    chain.pending_timestamp = L + 400
    chain.mine()
    assert ch.twaps(mid)[1] == (p1 * 100 + p2 * 300) // 400


def test_governance_accrues_the_whole_interval_at_the_last_index(project, system, chain, alice):
    """setFundingParams accrues without reading the feed (replacing a broken feed must not depend on it), so the
    interval up to it is priced at the last recorded index, 2,000, though the feed posted 2,100 at L + 100; the
    round is then older than that accrual and prices the interval after it, from L + 300."""
    ch, mid, L = _listed_then_a_round(project, system, chain)
    ch.setFundingParams(mid, tuple(ch.fundingParams(mid)), sender=system.deployer)
    assert ch.marketState(mid).lastIndexPrice == 2000 * WAD
    chain.pending_timestamp = L + 400
    chain.mine()
    assert ch.twaps(mid)[1] == (2000 * WAD * 300 + 2100 * WAD * 100) // 400


def test_a_round_time_outside_the_interval_is_clamped_into_it(project, system, chain, alice):
    """The round's time is the feed's word, clamped into [last accrual, now]: a round stamped before the last
    accrual prices the whole interval at its price; one stamped in the future (a test chain's clock skew) none of
    it, until the accrual records it."""
    ch = system.clearing_house
    mid, oracle, _, tx = list_market(system, project, 2000)
    L = tx.timestamp
    p1, p2 = 2000 * WAD, 2100 * WAD
    chain.pending_timestamp = L + 100
    oracle.updateRoundData(7, 2100 * 10**8, L - 50, L - 50, sender=system.deployer)  # before the listing
    chain.pending_timestamp = L + 300
    chain.mine()
    assert ch.twaps(mid)[1] == p2
    chain.pending_timestamp = L + 310
    oracle.updateRoundData(8, 2200 * 10**8, L + 10_000, L + 10_000, sender=system.deployer)  # in the future
    chain.pending_timestamp = L + 400
    chain.mine()
    assert ch.twaps(mid)[1] == p1  # from L: all at the last recorded index, 2,000
    chain.pending_timestamp = L + 401
    ch.pokeFunding(mid, sender=alice)  # records 2,200 (the round's time clamps to now: none of [L, L + 401])
    assert ch.marketState(mid).lastIndexPrice == 2200 * WAD
    chain.pending_timestamp = L + 500
    chain.mine()
    assert ch.twaps(mid)[1] == (p1 * 401 + 2200 * WAD * 99) // 500
    assert p2 != p1


def test_views_answer_on_a_stale_feed_at_the_last_index(project, system, chain, alice, bob):
    """The views that extend the sums read the feed without reverting (`_tryRound`): on a stale feed they price the
    time since the last accrual at the last recorded index, as before the rule, and never revert; the pool's
    valuation marks the market suspended."""
    ch = system.clearing_house
    mid, oracle, cfg, tx = list_market(system, project, 2000)
    L = tx.timestamp
    heartbeat = cfg.heartbeat
    chain.pending_timestamp = L + 100
    oracle.updateRoundData(9, 2500 * 10**8, L + 100 - heartbeat - 1, L + 100 - heartbeat - 1,
                           sender=system.deployer)
    chain.pending_timestamp = L + 300
    chain.mine()
    assert ch.twaps(mid)[1] == 2000 * WAD
    assert ch.marketState(mid).cumulativeFunding == 0
    assert ch.fundingState(mid).indexTwap == 2000 * WAD
    assert ch.position(bob, 0, mid).pendingFunding == 0


def test_views_answer_whatever_the_feed_answers(system, chain, alice):
    """The views that must answer (the pool's valuation through `tradersExitPnl`, and the views that extend the sums)
    read the feed with `OracleLib.tryReadRound`, which treats as unreadable an answer of 2^128 wad or more (no
    market can hold it; before, the arithmetic on it could overflow and revert the ERC-4626 views) and a round time
    near 2^256 (no overflow in the staleness test): the market is suspended in the valuation and the views price
    the time since the last accrual at the last recorded index."""
    ch, pool = system.clearing_house, system.pool
    system.fund(alice, 100_000)
    ch.openPosition(0, ETH, 10 * WAD, BIG, chain.pending_timestamp + 100, sender=alice)
    oracle = system.markets["ETH"].oracle
    now = chain.pending_timestamp
    for answer, at in ((2**128 // 10**10, now), (2**200, now), (P, 2**256 - 1)):
        oracle.updateRoundData(oracle.latestRound() + 1, answer, at, at, sender=system.deployer)
        chain.mine()
        pnl, exposure, suspended, market = ch.tradersExitPnl()
        if answer != P:  # the far-future round is fresh by the rule (a time in the future counts as fresh)
            assert market == ETH and suspended > 0
        assert ch.twaps(ETH)[1] > 0 and ch.marketState(ETH).lastIndexPrice == 3000 * WAD
        ch.fundingState(ETH)
        ch.position(alice, 0, ETH)
        pool.navWad()
        pool.totalAssets()
