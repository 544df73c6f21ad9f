"""The published comparison (docs/funding.md) checked against the continuous-time closed form.

The expected figures are computed here in floating point from the ODE dr/dt = (T - r) / tau (the
velocity limit never binds on these paths: v * tau = 0.2 %/h exceeds every gap of 0.1 %/h), not from
the integer kernel, so the test fails if the kernel or the comparison drifts from the documented rule.
"""
import math

from vperp.funding_compare import Params, premium_spike, premium_step, run_unsmoothed, run_vperp

WAD = 10**18
P = Params()
CAP = P.max_rate / WAD  # 0.001 per hour
TAU_H = P.tau / 3600


def rate_after_step(t_h: float, hold_h: float) -> float:
    """Applied rate t hours after a step to the cap that lasts hold_h hours, from r = 0."""
    if t_h <= hold_h:
        return CAP * (1 - math.exp(-t_h / TAU_H))
    return rate_after_step(hold_h, hold_h) * math.exp(-(t_h - hold_h) / TAU_H)


def max_8h_paid(hold_h: float, horizon_h: float) -> float:
    step = 1 / 600
    n = int(horizon_h / step)
    r = [rate_after_step(i * step, hold_h) for i in range(n + 1)]
    w = int(8 / step)
    cum = [0.0]
    for a, b in zip(r, r[1:]):
        cum.append(cum[-1] + (a + b) / 2 * step)
    return max(cum[i + w] - cum[i] for i in range(len(cum) - w))


def test_step_unsmoothed_jumps_by_premium_over_24_and_pays_a_third_of_it_in_8h():
    run = run_unsmoothed(premium_step())
    assert abs(run.max_hourly_change() / WAD - 0.05 / 24) < 1e-12
    assert abs(run.max_window_paid(8) / WAD - 8 * 0.05 / 24) < 1e-9


def test_step_vperp_first_hour_change_matches_the_exponential_closed_form():
    run = run_vperp(premium_step(), P)
    expected = CAP * (1 - math.exp(-1 / TAU_H))  # the largest hourly move is the first one
    assert abs(run.max_hourly_change() / WAD - expected) / expected < 1e-6
    assert run.max_hourly_change() <= P.velocity  # and within the velocity limit


def test_step_vperp_max_8h_funding_matches_the_integral():
    run = run_vperp(premium_step(hold_h=24), P)
    expected = max_8h_paid(24, 36)
    assert abs(run.max_window_paid(8) / WAD - expected) / expected < 1e-4


def test_spike_vperp_pays_a_fraction_of_the_unsmoothed_rule():
    smooth, raw = run_vperp(premium_spike(), P), run_unsmoothed(premium_spike())
    expected_peak = CAP * (1 - math.exp(-0.5 / TAU_H))  # rate reached after 30 min at the cap target
    assert abs(max(smooth.rate_per_minute) / WAD - expected_peak) / expected_peak < 1e-3
    assert smooth.max_window_paid(8) * 2 < raw.max_window_paid(8)


# ---------------------------------------------------------------------------- on the simulator's paths


def _write_run(folder, rows):
    folder.mkdir()
    cols = ["step", "time_s", "eth_index", "eth_premium", "btc_index", "btc_premium"]
    lines = [",".join(cols)] + [",".join(str(v) for v in r) for r in rows]
    (folder / "steps.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_sim_premiums_are_the_contracts_held_over_each_step(tmp_path):
    """The path is the premium the contract computed (fundingState, recorded per step), not one rebuilt from
    the mark TWAP and the spot index: in a crash the lagging TWAP against a falling index would show a
    premium of several % that the contract never saw."""
    from vperp.funding_compare import premiums_from_sim

    run = _write_run(tmp_path / "run", [(1, 300, 3000, 0.01, 60000, -0.01), (2, 600, 2500, 0, 60000, 0)])
    assert premiums_from_sim(run, "ETH") == [WAD // 100] * 5 + [0] * 5
    assert premiums_from_sim(run, "btc") == [-WAD // 100] * 5 + [0] * 5
    old = tmp_path / "old"
    old.mkdir()
    (old / "steps.csv").write_text("step,time_s,eth_index,eth_mark\n1,300,3000,3030\n2,600,3000,3000\n")
    import pytest

    with pytest.raises(ValueError, match="no eth_premium column"):
        premiums_from_sim(old, "ETH")


def test_sim_run_errors_are_named(tmp_path):
    import pytest

    from vperp.funding_compare import main, premiums_from_sim

    run = _write_run(tmp_path / "run", [(1, 300, 3000, 0.01, 1, 0), (2, 330, 3000, 0, 1, 0)])
    with pytest.raises(ValueError, match="no market 'SOL'"):
        premiums_from_sim(run, "SOL")
    with pytest.raises(ValueError, match="not whole minutes"):
        premiums_from_sim(run, "ETH")
    with pytest.raises(SystemExit) as e:
        main(["--sim", str(tmp_path / "missing")])
    assert e.value.code == 2


def test_on_a_held_premium_below_the_velocity_limit_the_ratio_is_the_first_hour_of_the_exponential():
    """A +1 % premium (target 0.0417 %/h, a gap under v x tau = 0.2 %/h): the smoothed rate's largest
    change between hours is its first hour's, (1 - e^(-1/4)) of the gap, and the unsmoothed rule moves by
    the whole gap at once: the ratio is 0.221 whatever the premium's size below the limit (the figure the
    velocity limit does not change at the defaults; docs/funding.md)."""
    from vperp.funding_compare import hours_to_converge, smoothing_ratio

    path = premium_step(step=WAD // 100, before_h=1, hold_h=24, after_h=1)
    u, v, ratio = smoothing_ratio(path)
    assert u == WAD // 100 // 24
    assert math.isclose(ratio, 1 - math.exp(-1 / TAU_H), rel_tol=2e-3)
    # 95 % of the held premium's rate after 4 h x ln 20 = 11.98 h (minute resolution)
    assert abs(hours_to_converge(WAD // 100) - TAU_H * math.log(20)) <= 1 / 60
