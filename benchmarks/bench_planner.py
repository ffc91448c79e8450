"""Planner solve time: the adaptive controller's LP (HiGHS) with every port occupied and a 24 h horizon,
next to the targets (N = 200: <= 1 s; N = 1,000: <= 10 s). Two forms: uniform 5-minute steps (288
periods), and the controller's own horizon (5 minutes for 2 h, 15 minutes to 8 h, then hours; 58
periods), which is what it solves every 5 minutes. The baseline, measured in the same run, is the uniform
case solved in one go, without sifting (see ``hil.controllers.planner``).

Run: ``python benchmarks/bench_planner.py``.
"""

from __future__ import annotations

import time

import numpy as np

from hil.controllers import planner
from hil.controllers.planner import PlanInput, horizon_periods, plan

TARGETS = {200: 1.0, 1000: 10.0}


def problem(n: int, seed: int = 7, coarse: bool = False) -> PlanInput:
    rng = np.random.default_rng(seed)
    durations = horizon_periods(24 * 3600) if coarse else np.full(288, 300.0)
    K = len(durations)
    starts = np.concatenate(([0.0], np.cumsum(durations)[:-1]))
    phases = np.zeros((n, 3))
    phases[np.arange(n), rng.integers(0, 3, n)] = 1
    phases[rng.random(n) < 0.7] = 1
    ev_max = rng.choice([16.0, 32.0], n)
    departure = rng.uniform(4, 24, n) * 3600
    remaining = rng.uniform(5, 60, n)
    headroom = np.full((K, 3), 0.3 * (phases * ev_max[:, None]).sum(axis=0).max())
    hour = starts / 3600 % 24
    price = np.where((hour >= 12) & (hour < 18), 0.267, 0.0925)
    # As the controller passes them: the set points sent now, and the fairness tranches (sessions that
    # have had nothing yet: a quarter, half and three quarters of what they want).
    now = np.where(rng.random(n) < 0.3, ev_max, 0.0)
    fair = np.array([0.25, 0.5, 0.75])[None, :] * remaining[:, None]
    return PlanInput(start=0.0, phases=phases, ev_max_a=ev_max, remaining_kwh=remaining, departure=departure,
                     headroom_a=headroom, price=price, peak_weight=0.05, durations_s=durations, current_a=now,
                     fair_kwh=fair)


def timed(p: PlanInput, sift: bool = True) -> tuple[float, planner.Plan]:
    """Wall time [s] and result of one plan, with or without sifting."""
    threshold = planner.SIFT_COLUMNS
    planner.SIFT_COLUMNS = threshold if sift else 10**12
    try:
        start = time.perf_counter()
        result = plan(p)
        return time.perf_counter() - start, result
    finally:
        planner.SIFT_COLUMNS = threshold


def main() -> None:
    print("Planner solve time [s]. Target case: 24 h horizon at uniform 5-minute steps (288 periods).")
    print(f"{'N':>6} {'uniform 5-min (target case)':>28} {'target':>7} {'met':>4} {'one solve (baseline)':>21} "
          f"{'same optimum':>13} {'controller horizon':>19} {'status':>8}")
    for n in (50, 200, 1000):
        fine_s, fine = timed(problem(n))
        whole_s, whole = timed(problem(n), sift=False)
        coarse_s, coarse = timed(problem(n, coarse=True))
        target = TARGETS.get(n)
        met = "-" if target is None else ("yes" if fine_s <= target else "NO")
        same = "yes" if abs(fine.objective - whole.objective) <= 1e-7 * abs(whole.objective) else "NO"
        status = next((s.status for s in (fine, whole, coarse) if s.status != "optimal"), "optimal")
        print(f"{n:6d} {fine_s:28.2f} {target if target else '-':>7} {met:>4} {whole_s:21.2f} {same:>13} {coarse_s:19.2f} {status:>8}")


if __name__ == "__main__":
    main()
