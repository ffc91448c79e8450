"""The adaptive controller's planner LP: caps, stays, energy, weights; its formulation against the rows
written per port; sifting against one solve; V2G (floor, capacity, departure minimum, export within the
request)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import linprog

from hil.controllers import planner
from hil.controllers.planner import PlanInput, V2GInput, plan


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


def _taking_turns(K: int = 24) -> PlanInput:
    """Six identical EVs, each wanting more than an hour at full power, on a feeder for three: who charges
    when is a tie."""
    n = 6
    return PlanInput(start=0.0, phases=np.ones((n, 3)), ev_max_a=np.full(n, 32.0), remaining_kwh=np.full(n, 30.0),
                     departure=np.full(n, K * 300.0), headroom_a=np.full((K, 3), 96.0), price=np.full(K, 0.2))


def test_the_ports_charging_now_go_on_and_the_others_wait() -> None:
    p = _taking_turns()
    for now in ([32.0, 0, 32.0, 0, 0, 32.0], [0, 32.0, 0, 32.0, 32.0, 0]):
        first = plan(dataclasses.replace(p, current_a=np.array(now))).rates_a[:, 0]
        assert first == pytest.approx(now, abs=1e-6)


def test_keeping_the_set_points_never_breaks_the_headroom_or_costs_energy() -> None:
    p = _taking_turns()
    too_much = np.full(6, 32.0)  # what the ports drew before the headroom fell to 96 A
    result = plan(dataclasses.replace(p, current_a=too_much))
    assert (p.phases.T @ result.rates_a <= p.headroom_a.T + 1e-6).all()
    assert result.rates_a[:, 0].sum() == pytest.approx(96.0)
    free = plan(p)
    kwh = lambda r: (r * 3 * 230 * 300 / 3.6e6).sum()  # noqa: E731
    assert kwh(result.rates_a) == pytest.approx(kwh(free.rates_a), rel=1e-9)


def test_a_price_drop_still_moves_charging_from_the_ports_running_now() -> None:
    """Changing costs 0.05 per kWh of the first period; waiting for energy 0.25 cheaper pays."""
    p = dataclasses.replace(_taking_turns(), quick_weight=0.01, remaining_kwh=np.full(6, 5.0),
                            price=np.where(np.arange(24) < 6, 0.3, 0.05), current_a=np.full(6, 16.0))
    assert plan(p).rates_a[:, 0] == pytest.approx(np.zeros(6), abs=1e-6)


def _one_phase_congested(K: int = 12) -> PlanInput:
    """L1 carries 64 A for an hour (14.7 kWh): a single-phase EV on L1 and two three-phase EVs that want
    more than all of it. Per A of L1 the three-phase EVs take three times the energy, so a plan for energy
    alone gives it them; there is enough for a quarter of every request, not for half."""
    phases = np.array([[1, 0, 0], [1, 1, 1], [1, 1, 1]], dtype=float)
    return PlanInput(start=0.0, phases=phases, ev_max_a=np.full(3, 32.0), remaining_kwh=np.array([8.0, 40.0, 40.0]),
                     departure=np.full(3, K * 300.0), headroom_a=np.tile([64.0, 100.0, 100.0], (K, 1)),
                     price=np.full(K, 0.2), finish_margin_s=0.0)


def test_fairness_tranches_give_every_session_its_share_first() -> None:
    p = _one_phase_congested()
    kwh = lambda r: (r * p.phases.sum(axis=1)[:, None] * 230 * 300 / 3.6e6).sum(axis=1)  # noqa: E731
    alone = kwh(plan(p).rates_a)
    assert alone[0] == pytest.approx(0.0, abs=1e-6)  # starved: its energy costs three times the headroom
    shares = np.array([0.25, 0.5, 0.75])
    fair = kwh(plan(dataclasses.replace(p, fair_kwh=shares[None, :] * p.remaining_kwh[:, None])).rates_a)
    got = fair / p.remaining_kwh
    assert got.min() >= 0.25 - 1e-6, got  # everyone reaches the first share
    assert got.max() - got.min() <= 0.25 + 1e-6, got  # and no one is more than a tranche ahead
    assert fair.sum() <= alone.sum() + 1e-6  # fairness costs energy here, never adds any


def _per_port_objective(p: PlanInput) -> tuple[float, np.ndarray, np.ndarray]:
    """The previous formulation, written independently: every current in its phases' headroom rows, its
    energy row and the peak row of its period. Returns its optimum and the per-cell values and phase powers
    to evaluate any plan with."""
    K, n = len(p.price), len(p.ev_max_a)
    dur = np.full(K, p.period_s)
    starts = p.start + np.arange(K) * p.period_s
    end = starts[-1] + p.period_s
    nph = p.phases.sum(axis=1)
    finish = np.maximum(p.departure - p.finish_margin_s, np.minimum(p.departure, p.start + p.period_s))
    share = np.clip((finish[:, None] - starts[None, :]) / dur[None, :], 0.0, 1.0)
    kwh = nph[:, None] * p.phase_voltage * dur[None, :] / 3.6e6
    stay_kwh = p.ev_max_a * nph * p.phase_voltage * np.maximum(p.departure - p.start, p.period_s) / 3.6e6
    urgency = np.clip(p.remaining_kwh / stay_kwh, 0.0, 1.0)
    value = (p.energy_value * (1 + urgency)[:, None] + p.quick_weight * ((end - starts) / (end - p.start))[None, :]
             - p.price[None, :]) * kwh
    i, k = np.nonzero((p.remaining_kwh > 1e-6)[:, None] & (share > 1e-9))
    m = len(i)
    rows, cols, vals = [], [], []
    for phase in range(3):
        on = p.phases[i, phase] > 0
        rows.append(phase * K + k[on]), cols.append(np.nonzero(on)[0]), vals.append(np.ones(on.sum()))
    rows.append(3 * K + i), cols.append(np.arange(m)), vals.append(kwh[i, k])
    rows += [3 * K + n + k, 3 * K + n + np.arange(K)]
    cols += [np.arange(m), np.full(K, m)]
    vals += [nph[i] * p.phase_voltage / 1000.0, -np.ones(K)]
    A = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(3 * K + n + K, m + 1))
    b = np.concatenate((p.headroom_a.T.ravel(), p.remaining_kwh, np.zeros(K)))
    bounds = [(0.0, u) for u in p.ev_max_a[i] * share[i, k]] + [(0.0, None)]
    res = linprog(np.append(-value[i, k], p.peak_weight), A_ub=A, b_ub=b, bounds=bounds, method="highs")
    assert res.status == 0
    return -res.fun, value, nph


@pytest.mark.parametrize("peak_weight", [0.0, 0.2])
def test_without_v2g_the_plan_is_an_optimum_of_the_per_port_formulation(peak_weight: float) -> None:
    rng = np.random.default_rng(3)
    n, K = 30, 48
    phases = np.zeros((n, 3))
    phases[np.arange(n), rng.integers(0, 3, n)] = 1
    phases[rng.random(n) < 0.6] = 1
    p = PlanInput(start=0.0, phases=phases, ev_max_a=rng.choice([16.0, 32.0], n), remaining_kwh=rng.uniform(0, 30, n),
                  departure=rng.uniform(1, 4, n) * 3600, headroom_a=np.full((K, 3), 120.0),
                  price=np.where(np.arange(K) < 20, 0.3, 0.1), peak_weight=peak_weight)
    best, value, nph = _per_port_objective(p)
    for v2g in (None, V2GInput.none(n, K)):
        result = plan(dataclasses.replace(p, v2g=v2g))
        r = result.rates_a
        assert ((p.phases.T @ r) <= p.headroom_a.T + 1e-6).all()
        assert ((r * nph[:, None] * 230 * 300 / 3.6e6).sum(axis=1) <= p.remaining_kwh + 1e-6).all()
        got = (value * r).sum() - peak_weight * float((nph @ r).max()) * 230 / 1000
        assert got == pytest.approx(best, rel=1e-7, abs=1e-6)
        assert (result.discharge_a is None) == (v2g is None)


def _congested(n: int = 120, K: int = 96, seed: int = 5, **changes: object) -> PlanInput:
    """``n`` ports over ``K`` 5-minute periods on a feeder with a third of what they could draw."""
    rng = np.random.default_rng(seed)
    phases = np.zeros((n, 3))
    phases[np.arange(n), rng.integers(0, 3, n)] = 1
    phases[rng.random(n) < 0.6] = 1
    ev_max = rng.choice([16.0, 32.0], n)
    hour = np.arange(K) * 300.0 / 3600
    p = PlanInput(start=0.0, phases=phases, ev_max_a=ev_max, remaining_kwh=rng.uniform(2, 40, n),
                  departure=rng.uniform(1, K / 12, n) * 3600, headroom_a=np.full((K, 3), (phases * ev_max[:, None]).sum(axis=0).max() / 3),
                  price=np.where((hour >= 3) & (hour < 6), 0.3, 0.1), peak_weight=0.05)
    return dataclasses.replace(p, **changes)


def _sifted_and_whole(p: PlanInput, monkeypatch: pytest.MonkeyPatch) -> tuple[planner.Plan, planner.Plan, int]:
    """The plan by sifting (from coarse plans all the way down) and by one solve, and how many coarse plans
    the sifting made."""
    monkeypatch.setattr(planner, "SIFT_COLUMNS", 10**9)
    whole = plan(p)
    coarse = []
    original = planner._coarse
    monkeypatch.setattr(planner, "_coarse", lambda *a: coarse.append(1) or original(*a))
    monkeypatch.setattr(planner, "SIFT_COLUMNS", 0)
    return plan(p), whole, len(coarse)


@pytest.mark.parametrize("variant", ["plain", "cost-aware", "smooth", "previous", "current", "fair"])
def test_sifting_finds_the_optimum_of_the_whole_lp(variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    p = _congested()
    K = len(p.price)
    changes: dict[str, object] = {
        "plain": {}, "cost-aware": {"quick_weight": 0.1}, "smooth": {"smoothness": 0.01},
        "previous": {"previous_a": np.random.default_rng(1).uniform(0, 16, (len(p.ev_max_a), K))},
        "current": {"current_a": np.random.default_rng(2).choice([0.0, 16.0], len(p.ev_max_a)),
                    "previous_a": np.random.default_rng(1).uniform(0, 16, (len(p.ev_max_a), K))},
        "fair": {"fair_kwh": np.array([0.25, 0.5, 0.75])[None, :] * p.remaining_kwh[:, None]},
    }[variant]
    p = dataclasses.replace(p, **changes)
    sifted, whole, coarse = _sifted_and_whole(p, monkeypatch)
    assert coarse >= 2, "planned 96 periods from 32, and those from 11"
    assert sifted.status == whole.status == "optimal"
    assert sifted.objective == pytest.approx(whole.objective, rel=1e-9)
    r = sifted.rates_a
    assert ((p.phases.T @ r) <= p.headroom_a.T + 1e-6).all()
    assert ((r * p.phases.sum(axis=1)[:, None] * 230 * 300 / 3.6e6).sum(axis=1) <= p.remaining_kwh + 1e-6).all()
    assert (r <= p.ev_max_a[:, None] + 1e-6).all() and (r >= 0).all()


def test_sifting_with_v2g_finds_the_optimum_of_the_whole_lp(monkeypatch: pytest.MonkeyPatch) -> None:
    p = _congested()
    n, K = len(p.ev_max_a), len(p.price)
    bidirectional = np.arange(n) % 4 == 0
    stored = np.full(n, 10.0)
    export = np.where((np.arange(K) >= 30) & (np.arange(K) < 42), 40.0, 0.0)
    v2g = V2GInput(discharge_max_a=np.where(bidirectional, 16.0, 0.0), stored_kwh=stored, floor_kwh=np.full(n, 4.0),
                   min_departure_kwh=stored + 0.5 * p.remaining_kwh, capacity_kwh=stored + p.remaining_kwh,
                   export_kw=export, export_value=5.0)
    sifted, whole, coarse = _sifted_and_whole(dataclasses.replace(p, v2g=v2g), monkeypatch)
    assert coarse >= 2
    assert sifted.status == whole.status == "optimal"
    assert sifted.objective == pytest.approx(whole.objective, rel=1e-9)
    assert sifted.export_kw is not None and sifted.export_kw.sum() > 0
    assert sifted.shortfall_kwh is not None and whole.shortfall_kwh is not None
    assert sifted.shortfall_kwh.sum() == pytest.approx(whole.shortfall_kwh.sum(), abs=1e-6)


def _v2g_problem(headroom: float = 40.0, **v2g: object) -> PlanInput:
    """Three three-phase EVs, 4 h in 5-minute periods. EV 0 and 1 can discharge (16 A); an export of 15 kW is
    requested from 1.5 h to 2 h. Energies above each EV's emergency floor (0)."""
    K = 48
    export = np.where((np.arange(K) >= 18) & (np.arange(K) < 24), 15.0, 0.0)
    stored = np.array([4.0, 12.0, 0.0])
    remaining = np.array([20.0, 8.0, 15.0])
    inputs = dict(discharge_max_a=np.array([16.0, 16.0, 0.0]), stored_kwh=stored, floor_kwh=np.zeros(3),
                  min_departure_kwh=stored + remaining, capacity_kwh=stored + remaining, export_kw=export, export_value=50.0)
    inputs.update(v2g)
    return PlanInput(start=0.0, phases=np.ones((3, 3)), ev_max_a=np.full(3, 32.0), remaining_kwh=remaining,
                     departure=np.array([3.0, 4.0, 2.5]) * 3600, headroom_a=np.full((K, 3), headroom),
                     price=np.full(K, 0.2), v2g=V2GInput(**inputs))  # type: ignore[arg-type]


@pytest.mark.parametrize("headroom", [40.0, 25.0])
def test_v2g_plan_keeps_floor_and_capacity_reaches_minimum_and_exports_within_the_request(headroom: float) -> None:
    p = _v2g_problem(headroom)
    assert p.v2g is not None
    result = plan(p)
    assert result.status == "optimal"
    assert result.discharge_a is not None and result.stored_kwh is not None and result.export_kw is not None
    E = result.stored_kwh[:2]
    assert (E >= p.v2g.floor_kwh[:2, None] - 1e-6).all()
    assert (E <= p.v2g.capacity_kwh[:2, None] + 1e-6).all()
    assert (E[:, -1] >= p.v2g.min_departure_kwh[:2] - 1e-6).all()
    assert result.shortfall_kwh is not None and (result.shortfall_kwh <= 1e-6).all()
    x = result.discharge_a
    assert (x >= -1e-9).all() and (x <= p.v2g.discharge_max_a[:, None] + 1e-6).all()
    assert x[2].sum() == 0.0  # EV 2 cannot discharge
    gross_kw = (x * 3 * 230 / 1000).sum(axis=0)
    assert (gross_kw <= p.v2g.export_kw + 1e-6).all() and (result.export_kw <= p.v2g.export_kw + 1e-6).all()
    assert (x[:, p.v2g.export_kw == 0] == 0).all()  # discharge only when asked
    assert result.export_kw.sum() > 0
    assert ((p.phases.T @ result.rates_a) <= p.headroom_a.T + 1e-6).all()


def test_v2g_plan_precharges_before_the_window_to_export() -> None:
    """EV 0 arrives with 4 kWh and needs 24 kWh at 3 h: to export in the window and still leave at its
    minimum it charges before it; the plan exports all that its discharge maximum gives (11 kW of 15)."""
    result = plan(_v2g_problem())
    assert result.stored_kwh is not None and result.export_kw is not None and result.discharge_a is not None
    before = result.stored_kwh[0, 18]
    assert before > 4.0 + 5.0  # charged well before the window
    assert result.export_kw[18:24] == pytest.approx(np.full(6, 15.0), abs=1e-6)  # both EVs together give it all


def test_an_unreachable_minimum_is_a_reported_shortfall_not_a_failure() -> None:
    big = np.array([100.0, 20.0, 15.0])
    p = _v2g_problem(min_departure_kwh=big, capacity_kwh=big)
    result = plan(p)
    assert result.status == "optimal"
    assert result.shortfall_kwh is not None and result.shortfall_kwh[0] > 30.0
    assert result.export_kw is not None and result.discharge_a is not None
    assert result.discharge_a[0].sum() == 0.0  # the EV that cannot reach its minimum gives nothing
