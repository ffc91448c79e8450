"""Metrics of a controller run: energy, sessions met, peak, utilisation and imbalance, compliance,
fairness, cost, smoothness and computation, as one flat record per run.

Units: kWh, kW, A, %, currency of the tariff, ms.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from hil.compliance.check import SETTLING_S, ComplianceReport, Event, check
from hil.site.simulation import RunResult

MET_KWH = 0.1
"""A session is fully met when less than this is missing [kWh]."""


@dataclass
class RunMetrics:
    scenario: str
    controller: str
    architecture: str
    ports: int
    sessions: int
    capacity_pct: float
    energy_kwh: float
    energy_pct: float
    """Delivered over requested [%]."""
    met_pct: float
    """Sessions fully met [%]."""
    min_share_pct: float
    peak_kw: float
    max_utilisation_pct: float
    """Highest 1 s site current over the limit, any phase [%]."""
    imbalance_mean: float
    imbalance_max: float
    """NEMA phase unbalance (max - mean) / mean while the site draws current."""
    jain: float
    """Jain's index over delivered / requested."""
    energy_cost: float
    demand_cost: float
    changes_per_session_hour: float
    step_ms_mean: float
    step_ms_p95: float
    step_ms_max: float
    fallback_s: float
    realtime_factor: float
    """Simulated seconds per wall second."""
    compliance: ComplianceReport
    exported_kwh: float = 0.0
    """V2G: energy given back to the grid [kWh]."""
    export_requested_kwh: float = 0.0
    """V2G: energy the export requests asked for [kWh]."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["compliance"] = self.compliance.to_dict()
        return data


def measure(run: RunResult) -> RunMetrics:
    s = run.scenario
    requested, delivered = run.requested_kwh, np.minimum(run.delivered_kwh, run.requested_kwh)
    share = np.divide(delivered, requested, out=np.ones_like(requested), where=requested > 0)
    v = s.phase_voltage
    power_kw = run.site_a.sum(axis=1) * v / 1000.0
    dt = run.config.dt
    drawing = run.site_a.sum(axis=1) > 1.0
    phase_mean = run.site_a.mean(axis=1)
    unbalance = np.where(drawing, (run.site_a.max(axis=1) - phase_mean) / np.maximum(phase_mean, 1e-9), 0.0)
    settling = SETTLING_S.get(run.architecture, 10.0)
    events = [Event(t, kind, red, 0.0 if kind == "dr_notice" else None) for t, kind, red in run.event_times]
    compliance = check(run.t, run.site_a, run.limit_a, events, settling_s=settling, breaker_a=s.breaker_a, voltage=v)
    steps = run.step_ms if len(run.step_ms) else np.zeros(1)
    hours = run.session_hours.sum()
    return RunMetrics(
        scenario=s.name, controller=run.controller, architecture=run.architecture, ports=s.ports,
        sessions=len(requested), capacity_pct=100.0 * s.limit_a / s.nameplate_a,
        energy_kwh=float(delivered.sum()), energy_pct=100.0 * float(delivered.sum() / max(requested.sum(), 1e-9)),
        met_pct=100.0 * float(np.mean(requested - delivered < MET_KWH)) if len(requested) else 100.0,
        min_share_pct=100.0 * float(share.min()) if len(share) else 100.0,
        peak_kw=float(power_kw.max()), max_utilisation_pct=100.0 * float((run.site_a / np.maximum(run.limit_a, 1e-9)).max()),
        imbalance_mean=float(unbalance[drawing].mean()) if drawing.any() else 0.0, imbalance_max=float(unbalance.max()),
        jain=float(share.sum() ** 2 / (len(share) * (share ** 2).sum())) if len(share) and (share ** 2).sum() > 0 else 1.0,
        energy_cost=float((power_kw * run.price).sum() * dt / 3600.0),
        demand_cost=float(power_kw.max() * s.tariff.demand_per_kw),
        changes_per_session_hour=float(run.setpoint_changes.sum() / hours) if hours > 0 else 0.0,
        step_ms_mean=float(steps.mean()), step_ms_p95=float(np.percentile(steps, 95)), step_ms_max=float(steps.max()),
        fallback_s=run.fallback_s, realtime_factor=float(run.t[-1] + dt) / max(run.wall_s, 1e-9), compliance=compliance,
        exported_kwh=run.exported_kwh, export_requested_kwh=run.export_requested_kwh,
    )
