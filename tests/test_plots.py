"""Run plots: each session's charge against its request is the delivered energy the metrics report."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hil import plots
from hil.controllers.reference import CONTROLLERS
from hil.site.scenarios import load_scenario
from hil.site.simulation import SimulationConfig, simulate


def test_session_charge_ends_at_the_delivered_share_and_is_empty_between_sessions(tmp_path: Path) -> None:
    scenario = load_scenario("retail", ports=6)
    every = 60.0  # per-port samples [s]
    run = simulate(scenario, CONTROLLERS["parallel"](scenario),
                   SimulationConfig(dt=5.0, control_period=5.0, record_ports_every=every))
    charge = plots.session_charge(run)
    delivered = dict(zip(run.session_ids, run.delivered_kwh))
    for s in scenario.sessions:
        inside = (run.port_t >= s.arrival) & (run.port_t < s.departure)
        if not inside.any():
            continue
        trace = charge[inside, s.port]
        assert np.all(np.diff(trace) >= -1e-9), s.id  # a charging session never loses charge
        # The last sample is at most one sampling interval before departure, at most one interval's charge short.
        final = delivered[s.id] / s.energy_kwh * 100
        one_interval = s.max_current_a * len(s.phases) * scenario.phase_voltage * every / 3.6e6 / s.energy_kwh * 100
        assert final - one_interval - 1e-6 <= trace[-1] <= final + 1e-6, s.id
    occupied = np.zeros(charge.shape, dtype=bool)
    for s in scenario.sessions:
        occupied[(run.port_t >= s.arrival) & (run.port_t < s.departure), s.port] = True
    assert np.isnan(charge[~occupied]).all() and not np.isnan(charge[occupied]).any()
    png = plots.state_of_charge(run, tmp_path / "charge.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
