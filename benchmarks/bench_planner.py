"""Planner solve time: the adaptive controller's LP (HiGHS) with every port occupied, a 24 h horizon at
5-minute steps, next to the targets (N = 200: <= 1 s; N = 1,000: <= 10 s) and, as the same-run baseline,
the same LP with the optional smoothness term switched on (much slower: why it is off by default).

Run: ``python benchmarks/bench_planner.py``.
"""

from __future__ import annotations

import time

import numpy as np

from hil.controllers.adaptive import PlanInput, plan

TARGETS = {200: 1.0, 1000: 10.0}


def problem(n: int, seed: int = 7, smoothness: float = 0.0) -> PlanInput:
    rng = np.random.default_rng(seed)
    K = 288
    phases = np.zeros((n, 3))
    phases[np.arange(n), rng.integers(0, 3, n)] = 1
    phases[rng.random(n) < 0.7] = 1
    ev_max = rng.choice([16.0, 32.0], n)
    departure = rng.uniform(4, 24, n) * 3600
    remaining = rng.uniform(5, 60, n)
    headroom = np.full((K, 3), 0.3 * (phases * ev_max[:, None]).sum(axis=0).max())
    price = np.where((np.arange(K) * 5 / 60 % 24 >= 12) & (np.arange(K) * 5 / 60 % 24 < 18), 0.267, 0.0925)
    return PlanInput(start=0.0, phases=phases, ev_max_a=ev_max, remaining_kwh=remaining, departure=departure,
                     headroom_a=headroom, price=price, peak_weight=0.05, smoothness=smoothness)


def main() -> None:
    print(f"{'N':>6} {'planner s':>10} {'status':>8} {'target s':>9} {'with smoothness s':>18}")
    for n in (50, 200, 1000):
        p = problem(n)
        start = time.perf_counter()
        result = plan(p)
        took = time.perf_counter() - start
        smooth = f"{plan(problem(n, smoothness=1e-4)).solve_s:18.2f}" if n <= 50 else f"{'(skipped)':>18}"
        target = TARGETS.get(n)
        print(f"{n:6d} {took:10.2f} {result.status:>8} {target if target else '-':>9} {smooth}")


if __name__ == "__main__":
    main()
