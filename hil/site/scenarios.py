"""Scenarios: who arrives when, wanting how much, at which site, under which tariff and grid events.

A scenario file (``fixtures/scenarios/*.yaml``) names a session generator, the number of ports, the site
capacity, a tariff and events; sessions are drawn from the file's seed, so a run is reproducible. The
generators follow the project's scenario set: S1 workplace, S2 retail, S3 residential overnight, S4
fleet depot. ``load_sessions_csv`` reads session files in the ACN-Data style instead.

Units: seconds from the scenario start, A per phase, kWh, kW, V.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
SCENARIO_DIR = FIXTURES / "scenarios"
TARIFF_DIR = FIXTURES / "tariffs"
HOUR = 3600.0


class ScenarioError(ValueError):
    """A scenario, tariff or session file is missing or malformed (the message names file and field)."""


@dataclass(frozen=True)
class Session:
    """One EV visit to one port."""

    id: str
    port: int
    arrival: float
    departure: float
    energy_kwh: float
    """Energy the driver wants."""
    max_current_a: float
    """The EV's maximum charging current [A per phase]."""
    phases: tuple[int, ...]
    """Phases it draws from (0-based: 0 = L1)."""
    v2g_reserve_kwh: float = 0.0
    """V2G: how much the EV may give back below its charge on arrival before its emergency floor [kWh];
    0 = not bidirectional. Its departure minimum is still ``energy_kwh`` above its arrival charge."""


@dataclass(frozen=True)
class Tariff:
    name: str
    currency: str
    energy: tuple[tuple[float, float], ...]
    """(hour of day from which it applies, price per kWh), sorted."""
    demand_per_kw: float

    def price(self, t: float, start_h: float = 0.0) -> float:
        """Energy price [per kWh] at ``t`` seconds after a start at hour ``start_h``."""
        hour = (start_h + t / HOUR) % 24.0
        price = self.energy[-1][1]
        for h, p in self.energy:
            if hour >= h:
                price = p
        return price

    def prices(self, times: np.ndarray, start_h: float = 0.0) -> np.ndarray:
        hours = (start_h + np.asarray(times, dtype=float) / HOUR) % 24.0
        edges = np.array([h for h, _ in self.energy])
        values = np.array([p for _, p in self.energy])
        return values[np.searchsorted(edges, hours, side="right") - 1]


@dataclass(frozen=True)
class GridEvent:
    """A limit step, unmanaged-load step, demand-response event or V2G export request."""

    kind: Literal["limit_step", "unmanaged_step", "demand_response", "v2g_export"]
    start: float
    duration: float = float("inf")
    fraction: float = 0.0
    """limit_step: new limit as a fraction of the old; unmanaged_step: added load as a fraction of the limit;
    demand_response: reduction of the limit (0.35 = 35 % less)."""
    notice: float = 0.0
    """demand_response: how long before ``start`` it is announced [s]."""
    power_kw: float = 0.0
    """v2g_export: requested export [kW]."""


@dataclass(frozen=True)
class Scenario:
    name: str
    seed: int
    ports: int
    phase_voltage: float
    evse_max_a: float
    limit_a: float
    """Site limit per phase [A]."""
    breaker_a: float
    unmanaged_a: float
    tariff: Tariff
    start_h: float
    duration: float
    sessions: tuple[Session, ...]
    events: tuple[GridEvent, ...] = ()
    port_phase: tuple[int, ...] = field(default=())
    """The phase each port's single-phase EVs use (ports rotate L1, L2, L3)."""

    @property
    def nameplate_a(self) -> float:
        """Per-phase current if every port ran at its maximum [A]."""
        return self.ports * self.evse_max_a


# -- files -------------------------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _EventSpec(_Strict):
    kind: Literal["limit_step", "unmanaged_step", "demand_response", "v2g_export"]
    at_h: float
    duration_h: float | None = None
    fraction: float = Field(0.0, ge=0)
    reduction: float = Field(0.0, ge=0, le=1)
    notice_h: float = Field(0.0, ge=0)
    power_kw: float = Field(0.0, ge=0)


class _ScenarioSpec(_Strict):
    name: str
    sessions: Literal["workplace", "retail", "residential", "depot"]
    ports: int = Field(gt=0, le=100_000)
    seed: int = 0
    capacity: float = Field(gt=0, le=10)
    single_phase_share: float = Field(0.0, ge=0, le=1)
    tariff: str = "flat"
    start_h: float = Field(0.0, ge=0, lt=24)
    duration_h: float = Field(24.0, gt=0)
    phase_voltage: float = 230.0
    evse_max_a: float = 32.0
    unmanaged: float = Field(0.0, ge=0, le=1)
    """Building load per phase as a fraction of the site limit (scales with ``capacity`` and ``ports``)."""
    v2g_share: float = Field(0.0, ge=0, le=1)
    """Share of three-phase sessions whose EV is bidirectional (drawn from its own stream of the seed)."""
    v2g_reserve_kwh: float = Field(10.0, ge=0)
    """What a bidirectional EV may give below its arrival charge [kWh]."""
    events: list[_EventSpec] = []


class _TariffSpec(_Strict):
    name: str
    currency: str = "USD"
    energy: list[tuple[float, float]]
    demand_per_kw: float = 0.0


def _read(path: Path, model: type[BaseModel]) -> BaseModel:
    if not path.is_file():
        raise ScenarioError(f"{path}: no such file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ScenarioError(f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ScenarioError(f"{path}: {where}: {first['msg']}") from None


def load_tariff(name_or_path: str | Path) -> Tariff:
    """A tariff from ``fixtures/tariffs/<name>.yaml`` or a path."""
    path = Path(name_or_path) if str(name_or_path).endswith(".yaml") else TARIFF_DIR / f"{name_or_path}.yaml"
    spec = _read(path, _TariffSpec)
    assert isinstance(spec, _TariffSpec)
    return Tariff(spec.name, spec.currency, tuple(sorted((float(h), float(p)) for h, p in spec.energy)), spec.demand_per_kw)


def scenario_names() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def load_scenario(name_or_path: str | Path, *, seed: int | None = None, capacity: float | None = None,
                  ports: int | None = None) -> Scenario:
    """A scenario from ``fixtures/scenarios/<name>.yaml`` (or a path), sessions drawn from its seed.

    ``seed``, ``capacity`` and ``ports`` override the file's values.
    """
    path = Path(name_or_path) if str(name_or_path).endswith(".yaml") else SCENARIO_DIR / f"{name_or_path}.yaml"
    if not path.is_file() and not str(name_or_path).endswith(".yaml"):
        raise ScenarioError(f"unknown scenario {name_or_path!r}; known: {', '.join(scenario_names())}")
    spec = _read(path, _ScenarioSpec)
    assert isinstance(spec, _ScenarioSpec)
    spec = spec.model_copy(update={k: v for k, v in (("seed", seed), ("capacity", capacity), ("ports", ports)) if v is not None})
    rng = np.random.default_rng(spec.seed)
    port_phase = tuple(k % 3 for k in range(spec.ports))
    sessions = generate_sessions(spec.sessions, spec.ports, rng, duration=spec.duration_h * HOUR, start_h=spec.start_h,
                                 evse_max_a=spec.evse_max_a, single_phase_share=spec.single_phase_share,
                                 port_phase=port_phase, phase_voltage=spec.phase_voltage)
    if spec.v2g_share > 0:  # a separate stream: the sessions themselves stay what the seed makes them
        pick = np.random.default_rng([spec.seed, 2]).random(len(sessions)) < spec.v2g_share
        sessions = [replace(s, v2g_reserve_kwh=spec.v2g_reserve_kwh) if chosen and len(s.phases) == 3 else s
                    for s, chosen in zip(sessions, pick)]
    limit = spec.capacity * spec.ports * spec.evse_max_a
    events = tuple(
        GridEvent(
            e.kind, (e.at_h - spec.start_h) % 24.0 * HOUR if spec.start_h else e.at_h * HOUR,
            float("inf") if e.duration_h is None else e.duration_h * HOUR,
            e.reduction if e.kind == "demand_response" else e.fraction, e.notice_h * HOUR, e.power_kw,
        )
        for e in spec.events
    )
    return Scenario(
        name=spec.name, seed=spec.seed, ports=spec.ports, phase_voltage=spec.phase_voltage, evse_max_a=spec.evse_max_a,
        limit_a=limit, breaker_a=limit, unmanaged_a=spec.unmanaged * limit, tariff=load_tariff(spec.tariff),
        start_h=spec.start_h, duration=spec.duration_h * HOUR, sessions=tuple(sessions), events=events, port_phase=port_phase,
    )


# -- generators ----------------------------------------------------------------------------------------------
def generate_sessions(
    kind: str, ports: int, rng: np.random.Generator, *, duration: float, start_h: float = 0.0, evse_max_a: float = 32.0,
    single_phase_share: float = 0.3, port_phase: tuple[int, ...] | None = None, phase_voltage: float = 230.0,
) -> list[Session]:
    """Draw sessions of ``kind`` (workplace, retail, residential, depot) and seat them at free ports.

    An EV that finds every port taken is turned away. Energy is capped at 98 % of what the port could
    deliver during the stay at the EV's maximum current.
    """
    port_phase = port_phase or tuple(k % 3 for k in range(ports))
    arrivals, dwells, energies = _draw(kind, ports, rng)
    arrivals = (arrivals - start_h) % 24.0 if start_h else arrivals
    order = np.argsort(arrivals)
    free_at = np.zeros(ports)
    out: list[Session] = []
    for k in order:
        arrival = arrivals[k] * HOUR
        departure = min(arrival + dwells[k] * HOUR, duration)
        if departure - arrival < 600 or arrival >= duration:
            continue
        candidates = np.nonzero(free_at <= arrival)[0]
        if len(candidates) == 0:
            continue  # turned away
        port = int(candidates[0])
        free_at[port] = departure
        single = rng.random() < single_phase_share
        phases = (port_phase[port],) if single else (0, 1, 2)
        max_a = min(evse_max_a, 32.0 if single else float(rng.choice([16.0, 32.0], p=[0.4, 0.6])))
        deliverable = max_a * len(phases) * phase_voltage * (departure - arrival) / HOUR / 1000.0
        out.append(Session(f"{kind}-{len(out) + 1:04d}", port, arrival, departure,
                           round(float(min(energies[k], 0.98 * deliverable)), 3), max_a, phases))
    return sorted(out, key=lambda s: s.arrival)


def _draw(kind: str, ports: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arrival hour of day, dwell [h], energy [kWh] per attempt."""
    if kind == "workplace":
        n = int(round(1.4 * ports))
        morning = rng.random(n) < 0.75
        arrivals = np.where(morning, rng.normal(8.5, 1.25, n), rng.uniform(10, 20, n))
        dwells = np.clip(rng.lognormal(np.log(6.5), 0.45, n), 0.75, 12)
        energies = np.clip(rng.lognormal(np.log(10), 0.6, n), 2, 45)
    elif kind == "retail":
        n = int(round(4 * ports))
        peak = rng.random(n) < 0.5
        arrivals = np.clip(np.where(peak, rng.normal(12, 1.5, n), rng.normal(17, 1.5, n)), 8, 22)
        dwells = rng.uniform(0.5, 2.0, n)
        energies = rng.uniform(5, 25, n)
    elif kind == "residential":
        n = ports
        arrivals = rng.uniform(17, 21, n)
        dwells = rng.uniform(6, 8, n) + 24 - arrivals
        energies = rng.uniform(20, 50, n)
    elif kind == "depot":
        n = ports
        arrivals = rng.uniform(17.5, 18.5, n)
        dwells = 30.0 - arrivals
        energies = rng.uniform(40, 80, n)
    else:
        raise ScenarioError(f"unknown session kind {kind!r}; known: workplace, retail, residential, depot")
    return np.clip(arrivals, 0, 23.99), dwells, energies


def load_sessions_csv(path: str | Path, *, day_start: datetime | None = None, default_max_current_a: float = 32.0,
                      phases: tuple[int, ...] = (0, 1, 2)) -> list[Session]:
    """Sessions from a CSV in the ACN-Data style.

    Columns: ``sessionID``, ``stationID``, ``connectionTime``, ``disconnectTime``, ``kWhDelivered`` and
    optionally ``kWhRequested`` (used when present); times as in ACN-Data (``Tue, 02 Oct 2018 15:02:11
    GMT``) or ISO 8601. Times become seconds from ``day_start`` (default: midnight UTC of the first
    connection); stations become port numbers in order of first appearance.
    """
    path = Path(path)
    rows: list[tuple[str, str, datetime, datetime, float]] = []
    try:
        with path.open(newline="") as handle:
            for line, row in enumerate(csv.DictReader(handle), start=2):
                try:
                    requested = (row.get("kWhRequested") or "").strip()
                    energy = float(requested) if requested else float(row["kWhDelivered"])
                    rows.append((row["sessionID"], row["stationID"], _when(row["connectionTime"]), _when(row["disconnectTime"]), energy))
                except (KeyError, ValueError, TypeError) as exc:
                    raise ScenarioError(f"{path}:{line}: {type(exc).__name__}: {exc}") from None
    except OSError as exc:
        raise ScenarioError(f"{path}: {exc.strerror}") from None
    if not rows:
        raise ScenarioError(f"{path}: no sessions")
    start = day_start or min(r[2] for r in rows).replace(hour=0, minute=0, second=0, microsecond=0)
    stations: dict[str, int] = {}
    out = []
    for sid, station, connected, disconnected, energy in sorted(rows, key=lambda r: r[2]):
        port = stations.setdefault(station, len(stations))
        out.append(Session(sid, port, (connected - start).total_seconds(), (disconnected - start).total_seconds(),
                           energy, default_max_current_a, phases))
    return out


def _when(text: str) -> datetime:
    text = text.strip()
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)

