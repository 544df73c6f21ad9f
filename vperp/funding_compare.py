"""Smoothed, capped funding (vPerp) versus an unsmoothed hourly rule, on the same premium path.

The unsmoothed reference is the classic first-generation vAMM rule: every hour the rate is the past
hour's TWAP premium divided by 24, uncapped, paid for that hour. vPerp's rule is the contract's (kernel
`twap-exp`, the default): once an hour the target becomes clamp(mean premium over the last 24 whole hours /
fundingPeriodHours + baseline, maxFundingRate), and the applied rate follows it through `vperp.funding.evolve`
(the exact mirror of FundingMath.evolve) with tau 2 h. The contract's day-long premium is the ratio of the
day-long mark and index TWAPs, which this comparison takes as the mean of the per-minute premium (the same while
the index is flat); the exponential is the contract's to the wei for the same target path.

    python -m vperp.funding_compare [--plot docs/img/funding_step.png]

prints, for each premium path, the largest change of the rate between consecutive hours and the
largest funding paid over any 8 hours (per unit of notional), for both rules.

    python -m vperp.funding_compare --sim sim_out/economics/crash/seed1 [more run folders]

reads the simulator's runs instead (`steps.csv`: each market's premium as the contract computes it,
(mark TWAP - index TWAP) / index TWAP from `fundingState`, per step, held over the step) and prints, per run and market, both rules' largest change between hours and their ratio, plus the
hours the smoothed rule takes to reach 95 % of the rate a held premium asks for.

    python -m vperp.funding_compare --kernel boxcar-hourly-exp --window-hours 10 --tau-hours 2 [--sim ...]

runs a candidate kernel (KERNELS: the shipped exponential, moving averages of the target over W hours, and
an exponential following such an average) in place of the shipped one, and

    python -m vperp.funding_compare --summary --sim sim_out/funding/{crash,squeeze}/seed{1,2,3,4,5}

prints one row per kernel of CANDIDATES (docs/funding.md#kernels-that-meet-the-010-goal): the ratio per
scenario, on the synthetic paths, the convergence and the largest 8 h funding. The shipped kernel's output is
the same with or without these options.

    python -m vperp.funding_compare --peg-lag 3 --sim sim_out/economics/{calm,trend,squeeze,crash}/seed{1,2,3,4,5}

prints, per scenario, how far the peg lags the index (the repeg's dead band) next to the premium, and the funding
target that lag alone asks for at a 3-hour period (`peg_lag`; docs/pool.md, the shipped setting).
"""
from __future__ import annotations

import argparse
import csv
import math
from dataclasses import dataclass, replace
from pathlib import Path

from .funding import HOUR, WAD, clamp, evolve, tdiv
from .units import (DEFAULT_FUNDING_PERIOD_HOURS, DEFAULT_MAX_FUNDING_RATE, DEFAULT_MAX_RATE_VELOCITY,
                    DEFAULT_SMOOTHING_TAU, FUNDING_WINDOW_HOURS)

MINUTE = 60


@dataclass(frozen=True)
class Params:
    # the ClearingHouse's listing defaults (vperp.units); the cap at DEFAULT_MAX_FUNDING_RATE, the most a listing sets (a
    # market is listed at its taker fee / 9, at most this): the research tables below use it
    max_rate: int = DEFAULT_MAX_FUNDING_RATE
    velocity: int = DEFAULT_MAX_RATE_VELOCITY
    tau: int = DEFAULT_SMOOTHING_TAU
    period_hours: int = DEFAULT_FUNDING_PERIOD_HOURS
    baseline: int = 0
    kernel: str = "twap-exp"  # one of KERNELS; twap-exp is the contract's rule
    window: int = FUNDING_WINDOW_HOURS * HOUR  # [s] boxcar length (whole minutes; whole hours for the hourly kernels)
    phase: int = 0  # [min] the hourly kernels' hour boundaries fall this long after the path's (the chain's clock)


KERNELS = ("exp", "boxcar", "boxcar-hourly", "boxcar-exp", "boxcar-hourly-exp", "twap-exp")
"""exp: the rule before the day-long premium (exponential approach to the target sampled every quarter TWAP window,
time constant tau, speed capped at velocity);
boxcar: the rate is the mean target over the last `window` (a moving average, continuous in time);
boxcar-hourly: the same mean taken once per hour, over the last `window` whole hours, and held for the hour;
boxcar-exp: the shipped exponential (tau, velocity) following the continuous boxcar's output;
boxcar-hourly-exp: the shipped exponential following the hourly boxcar's output (an on-chain form of boxcar-exp,
docs/funding.md#kernels-that-meet-the-010-goal);
twap-exp: the exponential following, each hour, clamp(mean premium over the last `window` whole hours /
period + baseline): the average taken before the cap, as the contract's W-hour TWAP premium is (the shipped rule,
W = 24 h, tau = 2 h)."""


@dataclass
class Run:
    name: str
    rate_per_minute: list[int]  # applied rate at the start of each minute [wad per hour]
    paid_per_minute: list[int]  # funding paid over each minute per unit notional [wad]

    def hourly_rates(self) -> list[int]:
        return self.rate_per_minute[::60]

    def max_hourly_change(self) -> int:
        r = self.hourly_rates()
        return max(abs(b - a) for a, b in zip(r, r[1:]))

    def max_window_paid(self, hours: int = 8) -> int:
        w = hours * 60
        p = self.paid_per_minute
        acc = sum(p[:w])
        best = abs(acc)
        for i in range(w, len(p)):
            acc += p[i] - p[i - w]
            best = max(best, abs(acc))
        return best


def premium_step(step: int = 5 * 10**16, before_h: int = 4, hold_h: int = 24, after_h: int = 12) -> list[int]:
    """Premium per minute: 0, then `step` (e.g. +5 %) held for `hold_h` hours, then 0 again."""
    return [0] * (before_h * 60) + [step] * (hold_h * 60) + [0] * (after_h * 60)


def premium_spike(step: int = 5 * 10**16, before_h: int = 4, spike_min: int = 30, after_h: int = 12) -> list[int]:
    """A short dislocation: `step` for `spike_min` minutes (a squeeze or a thin-book wick)."""
    return [0] * (before_h * 60) + [step] * spike_min + [0] * (after_h * 60)


def kernel_label(p: Params) -> str:
    """The rule's name in the tables: the shipped name for the default kernel, else the kernel and its parameters."""
    if p == Params():
        return "vPerp (smoothed, capped)"
    if p.kernel == "exp":
        return f"exp tau {p.tau / HOUR:g} h"
    w = f"{p.window / HOUR:g} h"
    if p.kernel == "boxcar":
        return f"boxcar {w}"
    if p.kernel == "boxcar-hourly":
        return f"hourly boxcar {w}"
    if p.kernel == "boxcar-exp":
        return f"boxcar {w} then exp tau {p.tau / HOUR:g} h"
    if p.kernel == "twap-exp":
        return f"hourly {w} premium TWAP then exp tau {p.tau / HOUR:g} h"
    return f"hourly boxcar {w} then exp tau {p.tau / HOUR:g} h"


def _boxcar(targets: list[int], n: int) -> tuple[list[int], list[int]]:
    """Moving average of the per-minute target over the last n minutes (zero before the path starts): the rate
    at the start of each minute, and the funding paid over the minute (the rate moves linearly within it, as
    one minute's target enters the window and the oldest leaves)."""
    rates, paid, s = [], [], 0
    for i, t in enumerate(targets):
        r0 = tdiv(s, n)
        s += t - (targets[i - n] if i >= n else 0)
        rates.append(r0)
        paid.append((r0 + tdiv(s, n)) // 120)  # mean rate over the minute [wad/h] x 60 s / 3600
    return rates, paid


def _boxcar_hourly(targets: list[int], hours: int, phase: int = 0) -> tuple[list[int], list[int]]:
    """The rate of each hour is the mean target over the `hours` whole hours before it, held for the hour; the
    hours start `phase` minutes into the path's hours."""
    rates, paid, n, rate = [], [], hours * 60, 0
    for i in range(len(targets)):
        if i % 60 == phase % 60:
            rate = tdiv(sum(targets[max(0, i - n):i]), n)
        rates.append(rate)
        paid.append(rate // 60)
    return rates, paid


def run_vperp(premiums: list[int], p: Params = Params()) -> Run:
    """A kernel on a per-minute premium path; the default is the contract's (twap-exp, hourly). The `exp` kernel
    re-samples its target every minute (the rule before the day-long premium sampled every quarter TWAP window)."""
    if p.kernel != "exp":
        return _run_kernel(premiums, p)
    rate, rates, paid = 0, [], []
    for prem in premiums:
        target = clamp(prem // p.period_hours + p.baseline, p.max_rate)
        rates.append(rate)
        rate, area = evolve(rate, target, MINUTE, p.tau, p.velocity)
        paid.append(area // HOUR)  # area is [wad/h * s]; /3600 gives the fraction of notional
    return Run("vPerp (smoothed, capped)", rates, paid)


def _run_kernel(premiums: list[int], p: Params) -> Run:
    """The candidate kernels (KERNELS other than exp) on the same per-minute target as run_vperp."""
    if p.kernel not in KERNELS:
        raise ValueError(f"unknown kernel {p.kernel!r} (one of {', '.join(KERNELS)})")
    if p.window <= 0 or p.window % MINUTE:
        raise ValueError("the boxcar window must be a positive whole number of minutes")
    hourly = p.kernel in ("boxcar-hourly", "boxcar-hourly-exp", "twap-exp")
    if hourly and p.window % HOUR:
        raise ValueError("the hourly boxcar's window must be whole hours")
    targets = [clamp(prem // p.period_hours + p.baseline, p.max_rate) for prem in premiums]
    if p.kernel == "twap-exp":  # mean premium over the window, then the target's cap
        mean = _boxcar_hourly(premiums, p.window // HOUR, p.phase)[0]
        rates, paid = [clamp(m // p.period_hours + p.baseline, p.max_rate) for m in mean], []
    elif hourly:
        rates, paid = _boxcar_hourly(targets, p.window // HOUR, p.phase)
    else:
        rates, paid = _boxcar(targets, p.window // MINUTE)
    if p.kernel.endswith("-exp"):  # the boxcar's output is the exponential's target, minute by minute
        box, rate, rates, paid = rates, 0, [], []
        for b in box:
            rates.append(rate)
            rate, area = evolve(rate, b, MINUTE, p.tau, p.velocity)
            paid.append(area // HOUR)
    return Run(kernel_label(p), rates, paid)


def run_unsmoothed(premiums: list[int], period_hours: int = 24, extra: list[int] | None = None) -> Run:
    """Hourly rule: rate for hour h+1 = TWAP premium of hour h / period, no cap, no smoothing; with `extra` (a
    per-minute rate, e.g. the skew term), plus its mean over hour h."""
    rates, paid = [], []
    rate = 0
    for i, _ in enumerate(premiums):
        if i % 60 == 0 and i > 0:
            hour = premiums[i - 60:i]
            rate = sum(hour) // len(hour) // period_hours
            if extra is not None:
                rate += sum(extra[i - 60:i]) // 60
        rates.append(rate)
        paid.append(rate // 60)
    return Run("unsmoothed hourly premium/24", rates, paid)


def compare(paths: dict[str, list[int]], p: Params = Params()) -> list[tuple[str, str, int, int]]:
    rows = []
    for name, prem in paths.items():
        for run in (run_unsmoothed(prem, p.period_hours), run_vperp(prem, p)):
            rows.append((name, run.name, run.max_hourly_change(), run.max_window_paid(8)))
    return rows


def render(rows) -> str:
    out = ["| premium path | rule | max change between hours (%/h) | max funding over 8 h (% of notional) |",
           "|---|---|---:|---:|"]
    for path, rule, dh, w8 in rows:
        out.append(f"| {path} | {rule} | {dh / WAD * 100:.4f} | {w8 / WAD * 100:.4f} |")
    return "\n".join(out)


def plot(paths: dict[str, list[int]], out: str, p: Params = Params()) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(paths), 1, figsize=(9, 3.2 * len(paths)), squeeze=False)
    for ax, (name, prem) in zip(axes[:, 0], paths.items()):
        hours = [i / 60 for i in range(len(prem))]
        ax.plot(hours, [x / WAD * 100 / p.period_hours for x in prem], color="0.6", lw=1,
                label="premium / 24 (%/h)")
        for run, style in ((run_unsmoothed(prem, p.period_hours), "--"), (run_vperp(prem, p), "-")):
            ax.plot(hours, [r / WAD * 100 for r in run.rate_per_minute], style, lw=1.6, label=run.name)
        ax.axhline(p.max_rate / WAD * 100, color="red", lw=0.8, ls=":", label="cap")
        ax.set_title(name)
        ax.set_xlabel("hours")
        ax.set_ylabel("funding rate (%/h)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def premiums_from_sim(run_dir: str | Path, symbol: str) -> list[int]:
    """Premium per minute [wad] of one market in a simulator run: the contract's own premium over the market's TWAP
    window ((mark TWAP - index TWAP) / index TWAP: the `{market}_twap_premium` column, from `twaps`; in runs recorded
    before that column, `{market}_premium`, fundingState's premium, which was the same window then) from each row of
    `steps.csv`, held for the step's length (the `time_s` column's spacing, whole minutes)."""
    return _column_from_sim(run_dir, symbol, "twap_premium", "premium")


def applied_from_sim(run_dir: str | Path, symbol: str) -> list[int]:
    """The applied funding rate the chain reported (`{market}_funding_applied`, fundingState after each step),
    per minute, held over each step like `premiums_from_sim`."""
    return _column_from_sim(run_dir, symbol, "funding_applied")


def _column_from_sim(run_dir: str | Path, symbol: str, name: str, fallback: str | None = None) -> list[int]:
    path = Path(run_dir) / "steps.csv"
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if len(rows) < 2:
        raise ValueError(f"{path}: needs at least two steps")
    k = symbol.lower()
    if f"{k}_index" not in rows[0]:
        raise ValueError(f"{path}: no market {symbol!r} (column {k}_index)")
    col = f"{k}_{name}"
    if col not in rows[0] and fallback is not None:
        col = f"{k}_{fallback}"
    if col not in rows[0]:
        raise ValueError(f"{path}: no {col} column (a run from before the simulator recorded it: run it again)")
    step = int(float(rows[1]["time_s"]) - float(rows[0]["time_s"]))
    if step <= 0 or step % MINUTE:
        raise ValueError(f"{path}: steps of {step} s are not whole minutes")
    out: list[int] = []
    for r in rows:
        out += [round(float(r[col]) * WAD)] * (step // MINUTE)
    return out


def chain_ratio(run_dir: str | Path, symbol: str, p: Params = Params(), with_skew: bool = False) -> float:
    """The ratio measured on the chain itself: the largest change between hours of the applied rate the run
    recorded, over the unsmoothed rule's on the run's premium path; `with_skew`: over the same rule with the skew
    term the run recorded (`{market}_skew_term`, the instantaneous term, hourly mean) added unsmoothed, i.e. vPerp's
    target without the cap and the smoothing."""
    extra = _column_from_sim(run_dir, symbol, "skew_term") if with_skew else None
    u = run_unsmoothed(premiums_from_sim(run_dir, symbol), p.period_hours, extra).max_hourly_change()
    v = Run("chain", applied_from_sim(run_dir, symbol), []).max_hourly_change()
    return v / u if u else 0.0


def smoothing_ratio(premiums: list[int], p: Params = Params(), reference_period_hours: int | None = None
                    ) -> tuple[int, int, float]:
    """(unsmoothed largest change between hours, vPerp's, vPerp's / unsmoothed) on one premium path [wad/h]; the
    unsmoothed rule at the kernel's own period, or at `reference_period_hours` when given."""
    u = run_unsmoothed(premiums, reference_period_hours or p.period_hours).max_hourly_change()
    v = run_vperp(premiums, p).max_hourly_change()
    return u, v, (v / u if u else 0.0)


def reference_ratio(premiums: list[int], p: Params = Params(), reference_period_hours: int = 24) -> float:
    """A kernel's largest change between hours over the unsmoothed rule's at `reference_period_hours` (the Perp v1
    rule: premium / 24) on the same path. `smoothing_ratio` compares with the unsmoothed rule at the kernel's own
    period instead; the two differ by the ratio of the periods."""
    return smoothing_ratio(premiums, p, reference_period_hours)[2]


def held_premium_ratio(period_hours: float, window_hours: float, tau_hours: float,
                       reference_period_hours: float = 24) -> float:
    """Closed form of `reference_ratio` for the contract's rule (twap-exp) on a premium P held from a whole hour on,
    below the cap and the velocity limit. The day-long mean rises by P / W each hour for W hours, so the target by
    c = P / (period x W); the exponential's gap to a target rising by c an hour settles as c (1 - a^k) / (1 - a),
    a = e^(-1/tau), so the applied rate moves by c (1 - a^k) in hour k, most in the W-th: c (1 - e^(-W/tau)). The
    unsmoothed reference moves once, by P / reference period. Ratio: reference (1 - e^(-W/tau)) / (period x W).
    At the listing (24 h, W 24 h, tau 2 h): 1/24 = 0.042; shipped (3 h, 24 h, 12 h): 0.288 against premium / 24,
    0.036 against its own unsmoothed premium / 3. For 0.10 against premium / 24 at a 3-hour period the rise must
    spread over W / (1 - e^(-W/tau)) >= 80 hours (tau >= 67.3 h at W = 24 h)."""
    return reference_period_hours * (1 - math.exp(-window_hours / tau_hours)) / (period_hours * window_hours)


def oscillation(half_hours: int, premium: float, cap: float, tau_hours: float, period_hours: float, fee: float,
                window_hours: int = FUNDING_WINDOW_HOURS, cycles: int = 12, warm: int = 4) -> tuple[float, float]:
    """The funding oscillation in steady state (docs/security.md "Fixed: the funding oscillation"): a position held at
    +N for `half_hours`, then -N for as long, over and over, alone in the market, so that its own skew is the premium:
    `premium` (a fraction; the skew term folded in as premium-equivalent) with the side's sign. Per hour, as the
    contract samples it: the target is clamp(mean premium over the last `window_hours` hours / period, cap), and the
    applied rate moves toward it with time constant `tau_hours` (the hour's funding is the exact integral of the
    exponential). Returns (funding the position collects, fees its flips pay) per day, as fractions of N's notional,
    averaged over cycles `warm`..`cycles` (the first ones build the mean from zero). The vAMM round trip itself
    costs nothing between repegs, so the attacker's net is the difference."""
    decay = math.exp(-1 / tau_hours)
    area_of_gap = tau_hours * (1 - decay)  # the hour's integral of the gap's exponential decay, per unit of gap
    prof = [1] * half_hours + [-1] * half_hours
    hist: list[int] = []
    rate = funding = fees = 0.0
    start, hours = warm * len(prof), cycles * len(prof)
    for h in range(hours):
        side = prof[h % len(prof)]
        mean = sum(hist[-window_hours:]) / window_hours * premium
        target = max(-cap, min(cap, mean / period_hours))
        area = target + (rate - target) * area_of_gap
        rate = target + (rate - target) * decay
        if h >= start:
            funding -= side * area
            if h % len(prof) in (0, half_hours):
                fees += 2 * fee  # a flip trades 2N
        hist.append(side)
    days = (hours - start) / 24
    return funding / days, fees / days


def oscillation_k(half_hours: int, phase_minutes: int, premium: float, tau_s: int, velocity_ratio: float,
                  cycles: int = 6, warm: int = 2) -> float:
    """The funding oscillation against the contract's own kernel (`vperp.funding.evolve`: the exponential approach
    and the velocity limit, integer arithmetic) at a cap of 1e14: the position flips `phase_minutes` after each
    hourly sample, every `half_hours`; the hour's premium area counts each side for its part of the hour (so a flip
    just after the sample breaks the tie a whole-hour model gives the day mean at the turn). `premium` is the
    position's premium as a multiple of cap x period; the velocity is `velocity_ratio` x cap per hour. Returns the
    funding collected per flip in units of (2 x cap x 1 hour): the ratio of funding to fees at a taker fee of H x cap
    is this / H."""
    from .funding import clamp as iclamp, evolve
    cap = 10**14
    v = max(int(velocity_ratio * cap), 10**10)
    period = 2 * half_hours
    hist: list[float] = []
    rate = 0
    funding = 0.0
    flips = 0
    s1 = phase_minutes * 60
    for h in range(cycles * period):
        before = 1 if ((h - 1) % period) < half_hours else -1  # held over [h - 1 + phase, h + phase)
        after = 1 if (h % period) < half_hours else -1
        mean = sum(hist[-FUNDING_WINDOW_HOURS:]) / FUNDING_WINDOW_HOURS * premium
        target = iclamp(int(mean * cap), cap)
        a1 = 0
        if s1:
            rate, a1 = evolve(rate, target, s1, tau_s, v)
        rate, a2 = evolve(rate, target, 3600 - s1, tau_s, v)
        if h >= warm * period:
            funding -= (before * a1 + after * a2) / 3600 / cap
            flips += before != after
        hist.append((s1 * before + (3600 - s1) * after) / 3600)
    return funding / (2 * flips)


def oscillation_worst(tau_s: int, fee_hours: float, velocity_ratio: float = 0.25, halves: range = range(6, 61, 2),
                      phases: tuple[int, ...] = (0, 1, 5), premiums: tuple[float, ...] = (30, 1000)) -> float:
    """The oscillation's funding over its fees at the largest cap a market may set, the taker fee / `fee_hours` per
    hour, and the slowest velocity it may set with it (a quarter of the cap per hour; ClearingHouseConfigurator): the
    worst of `oscillation_k` over the flip intervals, the flip's minute after the sample and the premiums. Below 1,
    every flip pays more in fees than it collects; below 1 - the insurance fund's share of the fee, the pool gains."""
    return max(oscillation_k(h, ph, x, tau_s, velocity_ratio) for x in premiums for h in halves
               for ph in phases) / fee_hours


def hours_to_converge(premium: int, p: Params = Params(), fraction: float = 0.95, horizon_h: int = 96) -> float:
    """Hours the applied rate takes, from 0, to reach `fraction` of the target a premium held from then on
    asks for (minute resolution); inf if not within `horizon_h`."""
    target = clamp(premium // p.period_hours + p.baseline, p.max_rate)
    rates = run_vperp([premium] * (horizon_h * 60), p).rate_per_minute
    for i, r in enumerate(rates):
        if abs(r) >= fraction * abs(target):
            return i / 60
    return float("inf")


@dataclass
class PegLag:
    """One market of one run: the peg's lag behind the index against the premium (`peg_lag`). Means over the
    steps, each a fraction (per hour for the rates)."""
    lag: float  # mean of (peg - index) / index: the peg's price at zero net position against the index
    lag_abs: float  # mean of its absolute value
    premium: float  # mean of (spot - index) / index: the lag plus what the traders' skew adds on the curve
    premium_abs: float
    bias: float  # lag / period: the funding target the lag alone asks for, per hour (at the run's period)
    applied_abs: float  # mean |applied funding rate| the chain recorded, per hour


def peg_lag(run_dir: str | Path, symbol: str, period_hours: int) -> PegLag:
    """What the repeg's dead band puts into funding, from a run's `steps.csv` (the `{market}_peg` column,
    `AmmController.pegPrice` after each step, beside `index`, `spot` and `funding_applied`). The peg follows the
    index only once it is further than the repeg threshold away, so with no skew at all the curve's price, and with
    it the premium, lags the index by up to the threshold; divided by the funding period, that lag is a target no
    trader's position asks for."""
    path = Path(run_dir) / "steps.csv"
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    k = symbol.lower()
    for col in ("index", "spot", "peg", "funding_applied"):
        if rows and f"{k}_{col}" not in rows[0]:
            raise ValueError(f"{path}: no {k}_{col} column (a run from before the simulator recorded it: run it again)")
    if not rows:
        raise ValueError(f"{path}: no steps")
    lags = [float(r[f"{k}_peg"]) / float(r[f"{k}_index"]) - 1 for r in rows]
    prems = [float(r[f"{k}_spot"]) / float(r[f"{k}_index"]) - 1 for r in rows]
    applied = [abs(float(r[f"{k}_funding_applied"])) for r in rows]
    n = len(rows)
    lag = sum(lags) / n
    return PegLag(lag, sum(map(abs, lags)) / n, sum(prems) / n, sum(map(abs, prems)) / n, lag / period_hours,
                  sum(applied) / n)


def render_peg_lag(run_dirs: list[str], period_hours: int, symbols: tuple[str, ...] = ("ETH", "BTC")) -> str:
    """Per scenario (run folders grouped by their parent folder's name), the range over the runs and their markets
    (of `symbols`) of `peg_lag`'s figures: lag and premium in bps, the lag's funding and the applied rate in %/h."""
    groups: dict[str, list[PegLag]] = {}
    for d in run_dirs:
        with (Path(d) / "steps.csv").open(newline="") as f:
            header = next(csv.reader(f), [])
        for sym in (s for s in symbols if f"{s.lower()}_index" in header):  # the markets the run has
            groups.setdefault(Path(d).parent.name, []).append(peg_lag(d, sym, period_hours))
    rng = lambda xs, scale, fmt: f"{min(xs) * scale:{fmt}} to {max(xs) * scale:{fmt}}"  # noqa: E731
    out = [f"| scenario | mean lag of the peg (bps) | mean \\|lag\\| (bps) | mean spot premium (bps) | mean \\|spot "
           f"premium\\| (bps) | the lag's target at a {period_hours} h period (%/h) | mean \\|applied rate\\| (%/h) |",
           "|---|---|---|---|---|---|---|"]
    for sc, xs in groups.items():
        out.append(f"| {sc} | {rng([x.lag for x in xs], 1e4, '+.2f')} | {rng([x.lag_abs for x in xs], 1e4, '.2f')} | "
                   f"{rng([x.premium for x in xs], 1e4, '+.2f')} | {rng([x.premium_abs for x in xs], 1e4, '.2f')} | "
                   f"{rng([x.bias for x in xs], 100, '+.4f')} | {rng([x.applied_abs for x in xs], 100, '.4f')} |")
    return "\n".join(out)


def render_sim(run_dirs: list[str], symbols: tuple[str, ...] = ("ETH", "BTC"), p: Params = Params()) -> str:
    out = ["| run | market | unsmoothed: max change between hours (%/h) | vPerp (%/h) | ratio | ratio on chain "
           "| ratio on chain, skew term in both |",
           "|---|---|---:|---:|---:|---:|---:|"]
    for d in run_dirs:
        for sym in symbols:
            u, v, r = smoothing_ratio(premiums_from_sim(d, sym), p)
            try:
                both = f"{chain_ratio(d, sym, p, with_skew=True):.3f}"
            except ValueError:  # a run recorded before the skew term column
                both = "n/a"
            out.append(f"| {d} | {sym} | {u / WAD * 100:.4f} | {v / WAD * 100:.4f} | {r:.3f} | "
                       f"{chain_ratio(d, sym, p):.3f} | {both} |")
    conv = ", ".join(f"+{x}% premium {hours_to_converge(x * WAD // 100, p):.1f} h" for x in (1, 5))
    out.append("")
    out.append(f"hours to 95 % of the rate a held premium asks for: {conv}")
    return "\n".join(out)


DEFAULT_PATHS = {
    "+5 % premium step held 24 h": premium_step(),
    "+5 % premium spike for 30 min": premium_spike(),
}


PREVIOUS = Params(kernel="exp", tau=4 * HOUR)
"""The rule shipped before the day-long premium: the exponential (tau 4 h) toward the target sampled every quarter
TWAP window from the 15-minute TWAPs."""

CANDIDATES = (
    Params(),
    PREVIOUS,
    replace(PREVIOUS, tau=10 * HOUR),
    Params(kernel="twap-exp", window=10 * HOUR, tau=2 * HOUR),
    Params(kernel="boxcar", window=10 * HOUR),
    Params(kernel="boxcar-hourly", window=10 * HOUR),
    Params(kernel="boxcar-exp", window=10 * HOUR, tau=2 * HOUR),
    Params(kernel="boxcar-hourly-exp", window=10 * HOUR, tau=2 * HOUR),
    Params(kernel="boxcar-hourly-exp", window=24 * HOUR, tau=2 * HOUR),
)
"""The kernels of docs/funding.md#kernels-that-meet-the-010-goal: the shipped rule (twap-exp, W 24 h, tau 2 h), the
rule before it and the same with tau 10 h, the same TWAP rule over 10 h, and the boxcars of the target (W = 10 h:
the shortest whose ratio on a held premium below the cap is at most 0.10, 1/W; and 24 h)."""
RECOMMENDED = CANDIDATES[0]  # the shipped rule (bold in the summary)

PHASES = (0, 15, 30, 45)  # [min] where the chain's hour boundaries may fall within the path's hours


def describe(p: Params) -> tuple[str, str]:
    """(kernel, parameters) for the summary table."""
    tau_v = f"tau {p.tau / HOUR:g} h, v {p.velocity / WAD * 100:g} %/h²"
    if p.kernel == "exp":
        return "exp" + (" (before)" if p == PREVIOUS else ""), tau_v
    w = f"W {p.window / HOUR:g} h"
    return p.kernel + (" (the rule, listing parameters)" if p == Params() else ""), (w + ", " + tau_v if p.kernel.endswith("-exp") else w)


def summarize(p: Params, run_dirs: list[str] = (), symbols: tuple[str, ...] = ("ETH", "BTC")) -> dict:
    """One kernel's figures: the ratio (largest change between hours, kernel / unsmoothed) on each simulator
    scenario (run folders grouped by their parent folder's name, e.g. crash/seed1 -> crash: (min, max) over the
    runs and markets), on the +5 % step and spike of DEFAULT_PATHS and on a +1 % step (below the cap), the hours
    to 95 %, 99 % and 100 % of the rate a held +1 % premium asks for, and the largest funding paid over 8 h on the
    +5 % step [wad]; for the hourly kernels, each figure is the worst over the hour phases PHASES."""
    phases = PHASES if p.kernel in ("boxcar-hourly", "boxcar-hourly-exp", "twap-exp") else (0,)
    sim: dict[str, tuple[float, float]] = {}
    for d in run_dirs:
        for sym in symbols:
            prem = premiums_from_sim(d, sym)
            for ph in phases:
                r = smoothing_ratio(prem, replace(p, phase=ph))[2]
                lo, hi = sim.get(Path(d).parent.name, (r, r))
                sim[Path(d).parent.name] = (min(lo, r), max(hi, r))
    held = WAD // 100
    step, spike = DEFAULT_PATHS["+5 % premium step held 24 h"], DEFAULT_PATHS["+5 % premium spike for 30 min"]
    worst = lambda f: max(f(replace(p, phase=ph)) for ph in phases)  # noqa: E731
    return {
        "sim": sim,
        "step": worst(lambda q: smoothing_ratio(step, q)[2]),
        "step_1pct": worst(lambda q: smoothing_ratio(premium_step(step=held), q)[2]),
        "spike": worst(lambda q: smoothing_ratio(spike, q)[2]),
        "converge": tuple(worst(lambda q: hours_to_converge(held, q, f)) for f in (0.95, 0.99, 1.0)),
        "max_8h": worst(lambda q: run_vperp(step, q).max_window_paid(8)),
    }


def render_summary(candidates, run_dirs: list[str] = ()) -> str:
    rows = [(describe(p), summarize(p, run_dirs)) for p in candidates]
    scenarios = list(dict.fromkeys(Path(d).parent.name for d in run_dirs))
    hours = lambda x: "never" if x == float("inf") else f"{x:.1f}"  # noqa: E731
    out = ["| kernel | parameters | " + "".join(f"{s} ratio | " for s in scenarios)
           + "+5 % step | +1 % step | +5 % spike | 95 % / 99 % / 100 % of a held premium's rate (h) "
           "| max funding over 8 h (% of notional) |",
           "|---|---|" + "---|" * len(scenarios) + "---:|---:|---:|---|---:|"]
    for p, ((kernel, params), s) in zip(candidates, rows):
        kernel = f"**{kernel}**" if p == RECOMMENDED else kernel
        sims = "".join(f"{s['sim'][sc][0]:.3f}-{s['sim'][sc][1]:.3f} | " for sc in scenarios)
        out.append(f"| {kernel} | {params} | {sims}{s['step']:.3f} | {s['step_1pct']:.3f} | {s['spike']:.3f} | "
                   + " / ".join(hours(x) for x in s["converge"]) + f" | {s['max_8h'] / WAD * 100:.4f} |")
    return "\n".join(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--plot", help="write a PNG of the rates")
    ap.add_argument("--sim", nargs="+", metavar="RUN_DIR",
                    help="simulator run folders (each with steps.csv): the ratio on their premium paths")
    ap.add_argument("--tau-hours", type=float, default=None, help="smoothing time constant [h] (default: 2)")
    ap.add_argument("--velocity", type=float, default=None,
                    help="velocity limit [%%/h per hour] (default: 0.05)")
    ap.add_argument("--kernel", choices=KERNELS, default=None,
                    help="smoothing kernel (default: twap-exp, the shipped rule; see KERNELS)")
    ap.add_argument("--window-hours", type=float, default=None, help="boxcar length W [h] (default: 10)")
    ap.add_argument("--phase-minutes", type=int, default=None,
                    help="hourly kernels: minutes from the path's hour boundaries to the kernel's (default: 0)")
    ap.add_argument("--peg-lag", type=int, metavar="PERIOD_HOURS", default=None,
                    help="with --sim: the peg's lag behind the index and the funding target it alone asks for at "
                         "this funding period (docs/pool.md, the shipped setting)")
    ap.add_argument("--summary", action="store_true",
                    help="one row per kernel (CANDIDATES, or the one the options above give): the ratios on the "
                         "--sim runs (grouped by scenario folder), the synthetic paths, convergence, 8 h funding")
    args = ap.parse_args(argv)
    p = Params()
    if args.kernel is not None:
        p = replace(p, kernel=args.kernel)
    if args.window_hours is not None:
        if not 1 / 60 <= args.window_hours <= 7 * 24 or round(args.window_hours * 60) != args.window_hours * 60:
            ap.error("--window-hours must be whole minutes, 1 min .. 7 days")
        p = replace(p, window=round(args.window_hours * HOUR))
        if p.kernel in ("boxcar-hourly", "boxcar-hourly-exp", "twap-exp") and p.window % HOUR:
            ap.error("--window-hours must be whole hours for the hourly boxcar")
    if args.phase_minutes is not None:
        if not 0 <= args.phase_minutes < 60:
            ap.error("--phase-minutes must be within 0 .. 59")
        p = replace(p, phase=args.phase_minutes)
    if args.tau_hours is not None:
        if not 1 / 60 <= args.tau_hours <= 7 * 24:
            ap.error("--tau-hours must be within the contract's bounds, 1 min .. 7 days")
        p = replace(p, tau=round(args.tau_hours * HOUR))
    if args.velocity is not None:
        if not 1e-6 <= args.velocity <= 10:
            ap.error("--velocity must be within the contract's bounds, 1e-6 .. 10 %/h per hour")
        p = replace(p, velocity=round(args.velocity / 100 * WAD))
    if args.peg_lag is not None:
        if not args.sim or args.peg_lag < 1:
            ap.error("--peg-lag needs --sim runs and a period of at least 1 hour")
        try:
            print(render_peg_lag(args.sim, args.peg_lag))
        except (OSError, ValueError) as e:
            ap.error(str(e))
        return
    if args.summary:
        chosen = any(x is not None for x in (args.kernel, args.window_hours, args.tau_hours, args.velocity))
        try:
            print(render_summary([p] if chosen else CANDIDATES, args.sim or []))
        except (OSError, ValueError) as e:
            ap.error(str(e))
        return
    if args.sim:
        try:
            print(render_sim(args.sim, p=p))
        except (OSError, ValueError) as e:
            ap.error(str(e))
        return
    print(render(compare(DEFAULT_PATHS, p)))
    if args.plot:
        plot(DEFAULT_PATHS, args.plot, p)
        print(f"plot written to {args.plot}")


if __name__ == "__main__":
    main()
