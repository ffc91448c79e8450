"""In-memory simulation speed: 50 ports for 24 h at 1 s resolution, in multiples of real time.

Prints each reference controller's figure next to the target (>= 10,000 x real time) and next to the
simulator's own floor measured in the same run (the plain plug-in controller, which decides nothing).
``--repeat N`` runs each controller N times and keeps its best run: on a loaded machine the figures are
noisy, the ratio to the plain run less so.

``python benchmarks/bench_simulation.py tou`` prints the time-of-use figure instead: the cost-aware adaptive
controller's bill against the cost-blind one's at equal energy (target >= 25 % lower), with the offline
LP's cheapest way to deliver the same energy as the bound, energy only and energy plus demand charge.

Run: ``python benchmarks/bench_simulation.py [tou | --repeat N]``.
"""

from __future__ import annotations

import sys

import numpy as np

from hil.controllers.optimum import offline_min_cost
from hil.controllers.reference import CONTROLLERS
from hil.site.metrics import measure
from hil.site.scenarios import load_scenario
from hil.site.simulation import simulate

TARGET = 10_000
TOU_TARGET = 0.25


def main(repeat: int = 1) -> None:
    scenario = load_scenario("workplace", ports=50)
    print(f"scenario {scenario.name}: {scenario.ports} ports, {len(scenario.sessions)} sessions, 24 h at 1 s"
          f"{f', best of {repeat}' if repeat > 1 else ''}")
    print(f"{'controller':12} {'wall s':>7} {'x real time':>12} {'target':>8} {'vs plain':>9} {'controller s':>13}")
    floor = None
    for name in ("plain", "sequential", "timer", "parallel", "adaptive"):
        run = min((simulate(scenario, CONTROLLERS[name](scenario)) for _ in range(repeat)), key=lambda r: r.wall_s)
        factor = scenario.duration / run.wall_s
        floor = floor or factor
        print(f"{name:12} {run.wall_s:7.2f} {factor:12,.0f} {TARGET:8,d} {factor / floor:9.2f} {run.step_ms.sum() / 1e3:13.2f}")


def tou() -> None:
    print(f"{'scenario':12} {'part':16} {'cost-blind':>11} {'cost-aware':>11} {'saving':>7} {'LP bound':>9} {'target':>7} "
          f"{'energy % blind/aware':>21}")
    for name in ("workplace", "residential"):
        scenario = load_scenario(name)
        blind_run = simulate(scenario, CONTROLLERS["adaptive"](scenario))
        blind, aware = measure(blind_run), measure(simulate(scenario, CONTROLLERS["adaptive-cost"](scenario)))
        energy = np.minimum(blind_run.delivered_kwh, blind_run.requested_kwh) * 0.999
        lp_energy, _ = offline_min_cost(scenario, energy, demand=False)
        lp_cost, lp_peak = offline_min_cost(scenario, energy, demand=True)
        parts = (("energy", blind.energy_cost, aware.energy_cost, lp_energy),
                 ("energy + demand", blind.energy_cost + blind.demand_cost, aware.energy_cost + aware.demand_cost,
                  lp_cost + lp_peak * scenario.tariff.demand_per_kw))
        for part, b, a, bound in parts:
            print(f"{name:12} {part:16} {b:11,.1f} {a:11,.1f} {1 - a / b:7.1%} {1 - bound / b:9.1%} {TOU_TARGET:7.0%} "
                  f"{blind.energy_pct:10.2f}/{aware.energy_pct:.2f}")


if __name__ == "__main__":
    if sys.argv[1:] == ["tou"]:
        tou()
    elif sys.argv[1:2] == ["--repeat"] and len(sys.argv) == 3:
        main(int(sys.argv[2]))
    else:
        main()
