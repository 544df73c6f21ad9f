"""Smoothed, capped funding (vPerp) versus an unsmoothed hourly rule, on the same premium path.

The unsmoothed reference is the classic first-generation vAMM rule: every hour the rate is the past
hour's TWAP premium divided by 24, uncapped, paid for that hour. vPerp's rule is the contract's: the
target is clamp(premium / fundingPeriodHours + baseline, maxFundingRate) and the applied rate follows it
through `vperp.funding.evolve` (the exact mirror of FundingMath.evolve), so the figures here are the
on-chain figures to the wei for the same target path.

    python -m vperp.funding_compare [--plot docs/img/funding_step.png]

prints, for each premium path, the largest change of the rate between consecutive hours and the
largest funding paid over any 8 hours (per unit of notional), for both rules.

    python -m vperp.funding_compare --sim sim_out/economics/crash/seed1 [more run folders]

reads the simulator's runs instead (`steps.csv`: each market's premium as the contract computes it,
(mark TWAP - index TWAP) / index TWAP from `fundingState`, per step, held over the step) and prints, per run and market, both rules' largest change between hours and their ratio, plus the
hours the smoothed rule takes to reach 95 % of the rate a held premium asks for.
"""
from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass, replace
from pathlib import Path

from .funding import HOUR, WAD, clamp, evolve
from .units import (DEFAULT_FUNDING_PERIOD_HOURS, DEFAULT_MAX_FUNDING_RATE, DEFAULT_MAX_RATE_VELOCITY,
                    DEFAULT_SMOOTHING_TAU)

MINUTE = 60


@dataclass(frozen=True)
class Params:
    max_rate: int = DEFAULT_MAX_FUNDING_RATE  # the ClearingHouse's listing defaults (vperp.units)
    velocity: int = DEFAULT_MAX_RATE_VELOCITY
    tau: int = DEFAULT_SMOOTHING_TAU
    period_hours: int = DEFAULT_FUNDING_PERIOD_HOURS
    baseline: int = 0


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


def run_vperp(premiums: list[int], p: Params = Params()) -> Run:
    """vPerp: target re-sampled every minute (the contract samples every quarter TWAP window)."""
    rate, rates, paid = 0, [], []
    for prem in premiums:
        target = clamp(prem // p.period_hours + p.baseline, p.max_rate)
        rates.append(rate)
        rate, area = evolve(rate, target, MINUTE, p.tau, p.velocity)
        paid.append(area // HOUR)  # area is [wad/h * s]; /3600 gives the fraction of notional
    return Run("vPerp (smoothed, capped)", rates, paid)


def run_unsmoothed(premiums: list[int], period_hours: int = 24) -> Run:
    """Hourly rule: rate for hour h+1 = TWAP premium of hour h / period, no cap, no smoothing."""
    rates, paid = [], []
    rate = 0
    for i, _ in enumerate(premiums):
        if i % 60 == 0 and i > 0:
            hour = premiums[i - 60:i]
            rate = sum(hour) // len(hour) // period_hours
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
    """Premium per minute [wad] of one market in a simulator run: the contract's own premium (the
    `{market}_premium` column, fundingState's (mark TWAP - index TWAP) / index TWAP) from each row of
    `steps.csv`, held for the step's length (the `time_s` column's spacing, whole minutes)."""
    path = Path(run_dir) / "steps.csv"
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if len(rows) < 2:
        raise ValueError(f"{path}: needs at least two steps")
    k = symbol.lower()
    if f"{k}_index" not in rows[0]:
        raise ValueError(f"{path}: no market {symbol!r} (column {k}_index)")
    if f"{k}_premium" not in rows[0]:
        raise ValueError(f"{path}: no {k}_premium column (a run from before the simulator recorded the contract's "
                         f"premium: run it again)")
    step = int(float(rows[1]["time_s"]) - float(rows[0]["time_s"]))
    if step <= 0 or step % MINUTE:
        raise ValueError(f"{path}: steps of {step} s are not whole minutes")
    out: list[int] = []
    for r in rows:
        out += [round(float(r[f"{k}_premium"]) * WAD)] * (step // MINUTE)
    return out


def smoothing_ratio(premiums: list[int], p: Params = Params()) -> tuple[int, int, float]:
    """(unsmoothed largest change between hours, vPerp's, vPerp's / unsmoothed) on one premium path [wad/h]."""
    u = run_unsmoothed(premiums, p.period_hours).max_hourly_change()
    v = run_vperp(premiums, p).max_hourly_change()
    return u, v, (v / u if u else 0.0)


def hours_to_converge(premium: int, p: Params = Params(), fraction: float = 0.95, horizon_h: int = 96) -> float:
    """Hours the applied rate takes, from 0, to reach `fraction` of the target a premium held from then on
    asks for (minute resolution); inf if not within `horizon_h`."""
    target = clamp(premium // p.period_hours + p.baseline, p.max_rate)
    rates = run_vperp([premium] * (horizon_h * 60), p).rate_per_minute
    for i, r in enumerate(rates):
        if abs(r) >= fraction * abs(target):
            return i / 60
    return float("inf")


def render_sim(run_dirs: list[str], symbols: tuple[str, ...] = ("ETH", "BTC"), p: Params = Params()) -> str:
    out = ["| run | market | unsmoothed: max change between hours (%/h) | vPerp (%/h) | ratio |",
           "|---|---|---:|---:|---:|"]
    for d in run_dirs:
        for sym in symbols:
            u, v, r = smoothing_ratio(premiums_from_sim(d, sym), p)
            out.append(f"| {d} | {sym} | {u / WAD * 100:.4f} | {v / WAD * 100:.4f} | {r:.3f} |")
    conv = ", ".join(f"+{x}% premium {hours_to_converge(x * WAD // 100, p):.1f} h" for x in (1, 5))
    out.append("")
    out.append(f"hours to 95 % of the rate a held premium asks for: {conv}")
    return "\n".join(out)


DEFAULT_PATHS = {
    "+5 % premium step held 24 h": premium_step(),
    "+5 % premium spike for 30 min": premium_spike(),
}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--plot", help="write a PNG of the rates")
    ap.add_argument("--sim", nargs="+", metavar="RUN_DIR",
                    help="simulator run folders (each with steps.csv): the ratio on their premium paths")
    ap.add_argument("--tau-hours", type=float, default=None, help="smoothing time constant [h] (default: 4)")
    ap.add_argument("--velocity", type=float, default=None,
                    help="velocity limit [%%/h per hour] (default: 0.05)")
    args = ap.parse_args(argv)
    p = Params()
    if args.tau_hours is not None:
        if not 1 / 60 <= args.tau_hours <= 7 * 24:
            ap.error("--tau-hours must be within the contract's bounds, 1 min .. 7 days")
        p = replace(p, tau=round(args.tau_hours * HOUR))
    if args.velocity is not None:
        if not 1e-6 <= args.velocity <= 10:
            ap.error("--velocity must be within the contract's bounds, 1e-6 .. 10 %/h per hour")
        p = replace(p, velocity=round(args.velocity / 100 * WAD))
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
