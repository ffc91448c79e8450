"""The in-memory loop's EV model, step by step: each EV follows the set point from ``ev_delay`` ago through
the first-order lag, exactly (the loop skips work on steps where nothing changes, and must give what
stepping every port every second gives), also when arrivals, a full battery or a start delay fall inside
the reaction delay."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from hil.controllers.observation import Decision, Observation
from hil.site.scenarios import Scenario, Session, Tariff
from hil.site.simulation import SimulationConfig, simulate

EVERY_STEP = dict(record_ports_every=1.0)
"""Per-port traces at every step (``RunResult.port_a`` has one row more, never written: compare ``[:len(t)]``)."""


def site(sessions: tuple[Session, ...], duration: float = 120.0) -> Scenario:
    return Scenario(name="ev-model", seed=0, ports=len(sessions), phase_voltage=230.0, evse_max_a=32.0,
                    limit_a=1000.0, breaker_a=1000.0, unmanaged_a=0.0, tariff=Tariff("flat", "USD", ((0.0, 0.2),), 0.0),
                    start_h=8.0, duration=duration, sessions=sessions, events=())


@dataclass
class Scripted:
    """Set points [A] by port from given times [s] on (0 before)."""

    schedule: dict[int, list[tuple[float, float]]]
    name: str = "scripted"
    architecture: str = "local"

    def decide(self, obs: Observation) -> Decision:
        setpoints = np.zeros(len(obs.connected))
        for port, steps in self.schedule.items():
            for start, amps in steps:
                if obs.time >= start:
                    setpoints[port] = amps
        return Decision(setpoints)


def lagged(setpoints: list[float], delay: int, follow: float, ev_max: float, ready: int = 0) -> list[float]:
    """The current each step [A]: the set point ``delay`` steps ago, capped, through the lag (from step ``ready``)."""
    actual, out = 0.0, []
    for k in range(len(setpoints)):
        target = min(setpoints[k - delay] if k >= delay else 0.0, ev_max)
        if k < ready:
            target = 0.0
        actual += (target - actual) * follow
        out.append(actual)
    return out


def setpoint_at(steps: list[tuple[float, float]], t: float) -> float:
    """The scripted set point at ``t`` [A] (``steps`` in time order)."""
    return ([0.0] + [amps for start, amps in steps if start <= t])[-1]


def test_each_ev_follows_its_set_point_after_the_delay_exactly_across_arrivals() -> None:
    # Port 1's set point changes at 14 s, one step before port 2 arrives (at 15 s, while it is in the delay).
    sessions = (Session("a", 0, 0.0, 120.0, 50.0, 32.0, (0, 1, 2)), Session("b", 1, 0.0, 120.0, 50.0, 16.0, (0,)),
                Session("c", 2, 15.0, 120.0, 50.0, 32.0, (1,)))
    schedule = {0: [(10.0, 20.0), (40.0, 8.0)], 1: [(14.0, 32.0)], 2: [(15.0, 12.0), (16.0, 24.0)]}
    run = simulate(site(sessions), Scripted(schedule), SimulationConfig(ev_delay=2.0, ev_lag=1.0, **EVERY_STEP))
    follow = 1.0 - math.exp(-1.0)
    for port, ev_max in ((0, 32.0), (1, 16.0), (2, 32.0)):
        setpoints = [setpoint_at(schedule[port], t) for t in run.t]
        assert run.port_a[:len(run.t), port].tolist() == lagged(setpoints, 2, follow, ev_max)
    assert run.port_a[15, 1] == 0.0 and run.port_a[16, 1] > 0.0  # 14 s + 2 s


def test_a_full_battery_stops_and_its_energy_is_exactly_the_request() -> None:
    sessions = (Session("small", 0, 0.0, 300.0, 0.05, 32.0, (0, 1, 2)), Session("big", 1, 0.0, 300.0, 50.0, 32.0, (0, 1, 2)))
    run = simulate(site(sessions, 300.0), Scripted({0: [(0.0, 32.0)], 1: [(0.0, 32.0)]}), SimulationConfig(**EVERY_STEP))
    assert run.delivered_kwh[0] == pytest.approx(0.05, abs=1e-12)
    full = int(np.nonzero(run.port_kwh[:, 0] >= 0.05 - 1e-12)[0][0])
    steps = len(run.t)
    assert 5 < full < 20 and (run.port_a[full:steps, 0] == 0.0).all()
    assert (run.port_a[10:steps, 1] > 31.0).all()  # the other port goes on
    assert np.array_equal(run.site_a[:, 0], run.port_a[:steps, 0] + run.port_a[:steps, 1])


def test_the_start_delay_holds_the_ev_at_zero_then_it_follows() -> None:
    sessions = (Session("a", 0, 3.0, 100.0, 50.0, 32.0, (0,)),)
    config = SimulationConfig(ev_delay=1.0, ev_lag=1.0, ev_start_delay=7.0, **EVERY_STEP)
    run = simulate(site(sessions, 100.0), Scripted({0: [(0.0, 20.0)]}), config)
    follow = 1.0 - math.exp(-1.0)
    assert run.port_a[:len(run.t), 0].tolist() == lagged([20.0 if t >= 3.0 else 0.0 for t in run.t], 1, follow, 32.0, ready=10)
