"""In-memory simulation speed: 50 ports for 24 h at 1 s resolution, in multiples of real time.

Prints each reference controller's figure next to the target (>= 10,000 x real time) and next to the
simulator's own floor measured in the same run (the plain plug-in controller, which decides nothing).

Run: ``python benchmarks/bench_simulation.py``.
"""

from __future__ import annotations

from hil.controllers.reference import CONTROLLERS
from hil.scenarios import load_scenario
from hil.simulation import simulate

TARGET = 10_000


def main() -> None:
    scenario = load_scenario("workplace", ports=50)
    print(f"scenario {scenario.name}: {scenario.ports} ports, {len(scenario.sessions)} sessions, 24 h at 1 s")
    print(f"{'controller':12} {'wall s':>7} {'x real time':>12} {'target':>8} {'vs plain':>9}")
    floor = None
    for name in ("plain", "sequential", "timer", "parallel"):
        run = simulate(scenario, CONTROLLERS[name](scenario))
        factor = scenario.duration / run.wall_s
        floor = floor or factor
        print(f"{name:12} {run.wall_s:7.2f} {factor:12,.0f} {TARGET:8,d} {factor / floor:9.2f}")


if __name__ == "__main__":
    main()
