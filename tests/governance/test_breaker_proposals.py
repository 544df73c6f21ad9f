"""Governance of the breakers' thresholds: who may cancel a loosening, and which breaker a proposal lands on
(two review findings, fixed here, each with the attacker's path):

- A leaked admin key proposes the loosest thresholds for a thin market (a +40 % pump then trips nothing after
  the timelock). The guardian, which may cancel any other loosening (a lower imr, say), could not cancel this
  one: every proposal targeting the governor was out of its reach. Now the guardian may cancel breaker
  changes (`setBreakerParams`, `setBreakerMarketThresholds`, `setBreaker`) and still not the governor's roles
  (`setAdmin`, `setGuardian`: it must not veto its own removal).
- Breaker parameters were not bound to the breaker they were proposed for: with a breaker switch and a
  threshold change pending together, anyone could execute them in either order. Now a pending breaker-parameter
  proposal is stale (`StaleProposal`) once another breaker is wired, so it lands on the breaker it was made
  for or nowhere.
"""
from helpers.governance import admin, g, guardian, keeper  # noqa: F401 - the breakers modules' system (g: autouse)
from helpers.governance import encode, propose, struct_tuple, wait_out
from helpers.trading import ETH_ID as ETH
from helpers.trading import WAD, expect_revert

LOOSEST = (WAD // 2, WAD // 2, 86_400, 10 * WAD)  # every field at its hard bound


def test_guardian_cancels_a_loosening_of_a_markets_breakers(system, g):
    before = struct_tuple(g.breaker.thresholdOverrides(ETH))
    pid, _, _ = propose(g, g.governor, encode(g.governor, "setBreakerMarketThresholds", ETH, LOOSEST))
    tx = g.governor.cancel(pid, sender=g.guardian)
    assert [e.proposalId for e in g.governor.Cancelled.from_receipt(tx)] == [pid]
    assert pid not in list(g.governor.pendingProposals())
    assert struct_tuple(g.breaker.thresholdOverrides(ETH)) == before


def test_guardian_cancels_a_loosening_of_the_global_breakers(system, g):
    p = list(struct_tuple(g.breaker.params()))
    p[0] = WAD // 2  # moveThreshold at its bound
    pid, _, _ = propose(g, g.governor, encode(g.governor, "setBreakerParams", tuple(p)))
    g.governor.cancel(pid, sender=g.guardian)
    assert pid not in list(g.governor.pendingProposals())


def test_guardian_still_cannot_cancel_the_governors_roles(system, g, accounts):
    for method in ("setAdmin", "setGuardian"):
        pid, _, _ = propose(g, g.governor, encode(g.governor, method, accounts[8].address))
        with expect_revert(g.governor.GuardianCannotCancel, proposalId=pid):
            g.governor.cancel(pid, sender=g.guardian)
        g.governor.cancel(pid, sender=g.admin)  # the admin may


def test_thresholds_proposed_for_one_breaker_never_land_on_its_replacement(project, chain, system, g, deployer):
    t = (15 * WAD // 100, WAD // 10, 0, 3 * WAD // 4)
    b2 = project.CircuitBreaker.deploy(g.governor, sender=deployer)
    pid_wire, _, _ = propose(g, g.governor, encode(g.governor, "setBreaker", b2.address))
    pid_t, _, _ = propose(g, g.governor, encode(g.governor, "setBreakerMarketThresholds", ETH, t))
    old = g.breaker
    wait_out(chain, system, g, [pid_wire])  # the switch first
    assert g.governor.breaker() == b2.address
    with expect_revert(g.governor.StaleProposal, proposalId=pid_t):
        g.governor.execute(pid_t, sender=deployer)
    assert struct_tuple(b2.thresholdOverrides(ETH)) == (0, 0, 0, 0)
    assert struct_tuple(old.thresholdOverrides(ETH)) != t
