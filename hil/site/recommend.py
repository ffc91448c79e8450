"""Which site architecture fits a site? Measured, not argued: run every reference controller on the
scenario that matches the site's use, at its size (with growth) and power constraint, and pick the
simplest architecture that passes the load-limit check and delivers within half a point of the best.

Architectures, simplest first: plain plug-in (no coordination), timer / sequential sharing, local load
sharing (parallel equal share), cloud-managed load balancing (the same share decided at the CSMS, limits
sent as OCPP charging profiles; left out when the site must keep charging without a cloud connection),
smart-grid orchestration (the adaptive planner; the cost-aware variant when the tariff rewards shifting).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from hil.controllers.reference import CONTROLLERS
from hil.site.metrics import RunMetrics, measure
from hil.site.scenarios import Scenario, load_scenario
from hil.site.simulation import simulate

ARCHITECTURES: list[tuple[str, str]] = [
    ("plain", "plain plug-in"),
    ("timer", "timer / sequential sharing"),
    ("parallel", "local load sharing"),
    ("cloud", "cloud-managed load balancing"),
    ("adaptive", "smart-grid orchestration"),
    ("adaptive-cost", "smart-grid orchestration, cost-aware"),
]
"""(controller, architecture), simplest first."""
NEEDS_CLOUD = frozenset({"cloud"})
"""Architectures that stop coordinating without their cloud connection."""
ENERGY_SLACK_PCT = 0.5
"""A simpler architecture wins if it delivers within this many points of the best [percentage points]."""
COST_GAIN = 0.10
"""A more complex architecture is worth it when it cuts the bill by at least this share at equal energy."""
MET_SLACK_PCT = 5.0
"""... and leaves at most this many more points of sessions short of their request."""


@dataclass(frozen=True)
class SiteProfile:
    use: str
    """Scenario family: workplace, retail, residential or depot."""
    sessions: int
    """Concurrent sessions (ports) today."""
    capacity: float
    """Power constraint: site limit as a fraction of the ports' nameplate."""
    growth: float = 0.0
    """Expected growth in ports (0.5 = half as many again)."""
    uptime: str = "normal"
    """``high``: the site must keep charging without a cloud connection."""


@dataclass
class Recommendation:
    profile: SiteProfile
    architecture: str
    controller: str
    reasons: list[str]
    results: list[RunMetrics]

    def to_dict(self) -> dict[str, Any]:
        return {"profile": self.profile.__dict__, "architecture": self.architecture, "controller": self.controller,
                "reasons": self.reasons, "runs": [r.to_dict() for r in self.results]}


def _measured(scenario: Scenario, controller: str) -> RunMetrics:
    return measure(simulate(scenario, CONTROLLERS[controller](scenario)))


def recommend(profile: SiteProfile, seed: int | None = None) -> Recommendation:
    ports = max(1, math.ceil(profile.sessions * (1.0 + profile.growth)))
    scenario = load_scenario(profile.use, ports=ports, capacity=profile.capacity, seed=seed)
    candidates = [(name, arch) for name, arch in ARCHITECTURES if not (profile.uptime == "high" and name in NEEDS_CLOUD)]
    # One process per candidate run (each is a whole in-memory day): the answer comes in the time of the slowest.
    with ProcessPoolExecutor(max_workers=min(len(candidates), os.cpu_count() or 1)) as pool:
        results = list(pool.map(_measured, [scenario] * len(candidates), [name for name, _ in candidates]))
    compliant = [r for r in results if r.compliance.passed]
    if not compliant:
        return Recommendation(profile, "none of the reference architectures", "", [
            "no controller kept the site inside its limit: the power constraint is too tight for this use"], results)
    best_energy = max(r.energy_pct for r in compliant)
    names = dict(ARCHITECTURES)
    reasons = [f"{names[r.controller]} fails the load-limit check ({r.compliance.verdict})" for r in results if not r.compliance.passed]
    good = [r for r in compliant if r.energy_pct >= best_energy - ENERGY_SLACK_PCT]
    choice = good[0]  # simplest first
    for other in good[1:]:
        total = lambda m: m.energy_cost + m.demand_cost  # noqa: E731
        saving = 1.0 - total(other) / total(choice) if total(choice) > 0 else 0.0
        if saving < COST_GAIN:
            continue
        if other.met_pct < choice.met_pct - MET_SLACK_PCT:
            reasons.append(f"{names[other.controller]} would cost {100 * saving:.0f} % less but fully meets only "
                           f"{other.met_pct:.0f} % of sessions against {choice.met_pct:.0f} %")
            continue
        reasons.append(f"{names[other.controller]} costs {100 * saving:.0f} % less than {names[choice.controller]} "
                       f"at {other.energy_pct:.1f} % energy")
        choice = other
    for r in compliant:
        if r.energy_pct < best_energy - ENERGY_SLACK_PCT:
            reasons.append(f"{names[r.controller]} delivers {r.energy_pct:.1f} % of requested energy against {best_energy:.1f} %")
    reasons.append(f"{names[choice.controller]} passes the load-limit check and delivers {choice.energy_pct:.1f} % "
                   f"({choice.met_pct:.0f} % of sessions fully met, Jain {choice.jain:.3f})")
    if profile.uptime == "high":
        reasons.append("cloud-managed load balancing left out: the site must keep charging without a cloud connection")
    return Recommendation(profile, names[choice.controller], choice.controller, reasons, results)
