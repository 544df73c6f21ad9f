"""Smoothed, capped funding (vPerp) versus an unsmoothed hourly rule, on the same premium path.

The unsmoothed reference is the classic first-generation vAMM rule: every hour the rate is the past
hour's TWAP premium divided by 24, uncapped, paid for that hour. vPerp's rule is the contract's: the
target is clamp(premium / fundingPeriodHours + baseline, maxFundingRate) and the applied rate follows it
through `vperp.funding.evolve` (the exact mirror of FundingMath.evolve), so the figures here are the
on-chain figures to the wei for the same target path.

    python -m vperp.funding_compare [--plot docs/img/funding_step.png]

prints, for each premium path, the largest change of the rate between consecutive hours and the
largest funding paid over any 8 hours (per unit of notional), for both rules.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

from .funding import HOUR, WAD, clamp, evolve

MINUTE = 60


@dataclass(frozen=True)
class Params:
    max_rate: int = 10**15  # 0.1 %/h
    velocity: int = 5 * 10**14  # 0.05 %/h per hour
    tau: int = 4 * HOUR
    period_hours: int = 24
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


DEFAULT_PATHS = {
    "+5 % premium step held 24 h": premium_step(),
    "+5 % premium spike for 30 min": premium_spike(),
}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--plot", help="write a PNG of the rates")
    args = ap.parse_args(argv)
    print(render(compare(DEFAULT_PATHS)))
    if args.plot:
        plot(DEFAULT_PATHS, args.plot)
        print(f"plot written to {args.plot}")


if __name__ == "__main__":
    main()
