"""The adaptive controller's planner LP, the offline optimum, and the controller in the loop."""

from __future__ import annotations

import numpy as np
import pytest

from hil.controllers.optimum import offline_optimum
from hil.controllers.planner import PlanInput, plan
from hil.controllers.reference import CONTROLLERS
from hil.metrics import measure
from hil.scenarios import load_scenario
from hil.simulation import SimulationConfig, simulate


def small_problem(K: int = 24) -> PlanInput:
    phases = np.array([[1, 1, 1], [1, 0, 0], [0, 1, 0], [1, 1, 1]], dtype=float)
    return PlanInput(
        start=0.0, phases=phases, ev_max_a=np.array([32.0, 32.0, 16.0, 16.0]), remaining_kwh=np.array([20.0, 5.0, 2.0, 50.0]),
        departure=np.array([2 * 3600.0, 1 * 3600.0, 2 * 3600.0, 1.5 * 3600.0]), headroom_a=np.full((K, 3), 40.0),
        price=np.where(np.arange(K) < 12, 0.3, 0.05),
    )


def test_plan_respects_headroom_caps_stays_and_energy() -> None:
    p = small_problem()
    result = plan(p)
    assert result.status == "optimal"
    r = result.rates_a
    assert (r >= -1e-9).all() and (r <= p.ev_max_a[:, None] + 1e-6).all()
    assert ((p.phases.T @ r) <= p.headroom_a.T + 1e-6).all()
    kwh = (r * p.phases.sum(axis=1)[:, None] * 230 * 300 / 3.6e6).sum(axis=1)
    assert (kwh <= p.remaining_kwh + 1e-6).all()
    period_start = np.arange(24) * 300.0
    gone = period_start[None, :] + 150 > p.departure[:, None]
    assert (r[gone] == 0).all(), "no charging after departure"


def test_quick_weight_front_loads_and_cost_weight_waits_for_cheap_energy() -> None:
    p = small_problem()
    quick = plan(p).rates_a
    cheap = plan(PlanInput(**{**p.__dict__, "quick_weight": 1e-3, "remaining_kwh": np.array([5.0, 0, 0, 0])})).rates_a
    assert quick[0, 0] > 0  # starts at once
    assert cheap[0, :12].sum() == pytest.approx(0.0, abs=1e-6) and cheap[0, 12:].sum() > 0  # waits for the cheap hours


def test_offline_optimum_bounds_every_controller() -> None:
    scenario = load_scenario("workplace-stress", ports=12)
    best, requested = offline_optimum(scenario)
    assert 0 < best <= requested + 1e-6
    for name in ("parallel", "adaptive"):
        delivered = simulate(scenario, CONTROLLERS[name](scenario)).delivered_kwh.sum()
        assert delivered <= best * 1.01  # the 5-minute LP is the bound, up to its coarser resolution


def test_adaptive_is_compliant_and_close_to_the_optimum_when_congested() -> None:
    scenario = load_scenario("workplace", ports=20, capacity=0.12)
    best, requested = offline_optimum(scenario)
    m = measure(simulate(scenario, CONTROLLERS["adaptive"](scenario)))
    assert m.compliance.passed, m.compliance.to_dict()
    assert m.energy_pct >= 100 * best / requested - 1.5


def test_jain_fairness_under_heavy_congestion() -> None:
    """Jain's index over delivered / requested >= 0.93 at 10 % of nameplate (the reference's target; ASA-QC
    reaches 0.933), for the parallel and adaptive controllers; first-come sequential is far below."""
    scenario = load_scenario("workplace-stress", ports=24, capacity=0.10)
    coarse = SimulationConfig(dt=10.0, control_period=10.0)  # fairness needs no sub-10-s detail
    jain = {name: measure(simulate(scenario, CONTROLLERS[name](scenario), coarse)).jain
            for name in ("parallel", "adaptive", "sequential")}
    assert jain["parallel"] >= 0.93 and jain["adaptive"] >= 0.93, jain
    assert jain["sequential"] < 0.8, jain
