"""A running rig: the instruments of a rig file, emulated ones served from one plant.

``Rig(spec).start()`` starts the plant and an emulator for every instrument marked ``emulated`` (each on
127.0.0.1 with a free port), then hands out drivers by role. Drivers are the same for emulated and real
instruments: only the address differs. ``close()`` puts every power source in its safe state first.
"""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import can

from hil.clock import Clock, RealClock, ScaledClock
from hil.emulators.can_hub import CanHub
from hil.emulators.charger_ecu import EmulatedChargerECU
from hil.emulators.ev import EmulatedEV
from hil.emulators.faults import Faults
from hil.emulators.loop import EmulatorLoop
from hil.emulators.modbus_meter import ModbusMeterEmulator
from hil.emulators.scpi import ScpiEmulator
from hil.instruments.energy_meter import EnergyMeter
from hil.instruments.ev_simulator import EVSimulator
from hil.instruments.limits import SoftLimits
from hil.instruments.power_source import PowerSource
from hil.plant import EV, Battery, Plant, PlantRunner, Port, PowerStage, Site
from hil.rig.model import EVSimulatorSpec, MeterSpec, PowerSourceSpec, RigSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Address:
    """Where an instrument is reached, in the words of the tool that reaches it."""

    role: str
    name: str
    text: str
    """Human-readable: VISA resource, ``host:port unit N``, or ``socketcand host:port channel``."""
    fields: dict[str, Any]
    """Machine-readable parts, for JSON output."""


_RUNNING: "weakref.WeakSet[Rig]" = weakref.WeakSet()


class Rig:
    """The instruments of one rig file, with emulators for the emulated ones."""

    @staticmethod
    def running() -> list["Rig"]:
        """The rigs of this process started and not closed yet (for live status)."""
        return list(_RUNNING)

    def __init__(self, spec: RigSpec, source: Path | str | None = None) -> None:
        self.spec = spec
        self.source = source
        scaled = spec.emulated or spec.clock.scale != 1.0  # real instruments on a scaled clock: served emulators
        self.clock: Clock = ScaledClock(spec.clock.scale) if scaled else RealClock()
        self.plant: Plant | None = None
        self._loop: EmulatorLoop | None = None
        self._runner: PlantRunner | None = None
        self._scpi: dict[str, ScpiEmulator] = {}
        self._modbus: ModbusMeterEmulator | None = None
        self._hub: CanHub | None = None
        self._can_peers: dict[str, tuple[EmulatedEV, EmulatedChargerECU | None, list[can.BusABC]]] = {}
        self._drivers: dict[str, PowerSource | EnergyMeter | EVSimulator] = {}
        self._lock = threading.RLock()
        self._started = False
        self._closed = False

    # -- life cycle ---------------------------------------------------------------------------------
    def start(self) -> "Rig":
        """Start the plant and the emulators. Idempotent."""
        with self._lock:
            if self._started:
                return self
            self._started = True
            _RUNNING.add(self)
            if self.spec.emulated:
                try:
                    self._start_emulation()
                except BaseException:
                    self.close()
                    raise
            return self

    def _start_emulation(self) -> None:
        spec = self.spec
        self.plant = _build_plant(spec)
        self._loop = EmulatorLoop()
        self._runner = PlantRunner(self.plant, self.clock).start()
        for s in spec.power_sources:
            if s.emulated:
                emu = ScpiEmulator(
                    self.plant, s.port or "", s.profile,
                    latency=None if s.latency_ms is None else s.latency_ms / 1000.0,
                )
                self._loop.run(emu.start())
                self._scpi[s.name] = emu
        meters = [m for m in spec.meters if m.emulated]
        if meters:
            self._modbus = ModbusMeterEmulator(
                self.plant, {m.unit: (m.model, m.point) for m in meters},
                latency=None if meters[0].latency_ms is None else meters[0].latency_ms / 1000.0,
                update_period=meters[0].update_ms / 1000.0, port=next((m.tcp_port for m in meters if m.tcp_port), 0),
            )
            self._loop.run(self._modbus.start())
        evs = [e for e in spec.ev_simulators if e.emulated]
        if evs:
            self._hub = CanHub()
            self._loop.run(self._hub.start())
            for e in evs:
                self._start_can_peers(e)

    def _start_can_peers(self, e: EVSimulatorSpec) -> None:
        assert self._hub is not None and self.plant is not None
        buses = [self._hub_bus(e.channel)]
        ev = EmulatedEV(self.plant, e.port or "", buses[0])
        ecu = None
        if e.charger_ecu:
            buses.append(self._hub_bus(e.channel))
            ecu = EmulatedChargerECU(self.plant, e.port or "", buses[1])
        self._can_peers[e.name] = (ev, ecu, buses)
        ev.start()
        if ecu is not None:
            ecu.start()

    def _hub_bus(self, channel: str) -> can.BusABC:
        assert self._hub is not None
        return can.Bus(interface="socketcand", host=self._hub.host, port=self._hub.port, channel=channel)

    def close(self) -> None:
        """Make every source safe, close every driver, stop the emulators. Idempotent, never raises."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            _RUNNING.discard(self)
            self.safe_state()
            for driver in list(self._drivers.values()):
                try:
                    driver.close()
                except Exception as exc:  # noqa: BLE001 - closing must go on
                    log.warning("closing %s: %s", driver, exc)
            self._drivers.clear()
            for ev, ecu, buses in self._can_peers.values():
                for peer in (ev, ecu):
                    if peer is not None:
                        peer.stop()
                for bus in buses:
                    bus.shutdown()
            self._can_peers.clear()
            if self._loop is not None:
                for emu in [*self._scpi.values(), self._modbus, self._hub]:
                    if emu is not None:
                        try:
                            self._loop.run(emu.stop(), timeout=5.0)
                        except Exception as exc:  # noqa: BLE001
                            log.warning("stopping emulator: %s", exc)
                self._loop.close()
            if self._runner is not None:
                self._runner.stop()

    def __enter__(self) -> "Rig":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def status(self) -> dict[str, Any]:
        """What a live display shows of this rig: its clock [simulated s since start], scale, the
        instruments in use of all, and every fault injected into its emulators now (instrument: fields)."""
        faulty: dict[str, list[str]] = {}
        healthy = Faults()
        for name in [*self._scpi, *self._can_peers, *(m.name for m in self.spec.meters if m.emulated)]:
            try:
                f = self.faults(name)
            except KeyError:
                continue
            changed = [k for k in healthy.__dataclass_fields__ if k != "swallowed" and getattr(f, k) != getattr(healthy, k)]
            if changed:
                faulty[name] = changed
        total = len(self.spec.power_sources) + len(self.spec.meters) + len(self.spec.ev_simulators)
        return {"rig": self.spec.name, "sim_s": round(self.clock.now(), 1), "scale": self.clock.scale,
                "instruments": total, "in_use": len(self._drivers), "faults": faulty}

    # -- safety -------------------------------------------------------------------------------------
    def safe_state(self) -> dict[str, str | None]:
        """Put every power source of the rig in its safe state, verified by read-back.

        Returns ``{name: None}`` for each source made safe, or the reason it could not be verified.
        Opens sources the tests never touched: a bench left energised by another program is caught too.
        """
        results: dict[str, str | None] = {}
        for s in self.spec.power_sources:
            try:
                self.power_source(s.name).safe_state()
                results[s.name] = None
            except Exception as exc:  # noqa: BLE001 - every source gets its turn
                results[s.name] = str(exc)
                log.error("safe state of %s not verified: %s", s.name, exc)
        return results

    # -- addresses ----------------------------------------------------------------------------------
    def addresses(self) -> list[Address]:
        """Where each instrument is reached now (emulated ones after ``start()``)."""
        out = [self._source_address(s) for s in self.spec.power_sources]
        out += [self._meter_address(m) for m in self.spec.meters]
        out += [self._ev_address(e) for e in self.spec.ev_simulators]
        return out

    def resolved_spec(self) -> RigSpec:
        """The rig with every emulated instrument replaced by its address, as a real rig would name it.

        Another process (or another evhil) can load this to reach the emulators over their sockets.
        """
        data = self.spec.model_dump()
        for k, s in enumerate(self.spec.power_sources):
            if s.emulated:
                data["power_sources"][k].update(emulated=False, resource=self._scpi[s.name].resource)
        for k, m in enumerate(self.spec.meters):
            if m.emulated:
                assert self._modbus is not None
                data["meters"][k].update(emulated=False, transport="tcp", host=self._modbus.host, tcp_port=self._modbus.port)
        for k, e in enumerate(self.spec.ev_simulators):
            if e.emulated:
                assert self._hub is not None
                data["ev_simulators"][k].update(
                    emulated=False, interface="socketcand", host=self._hub.host, tcp_port=self._hub.port
                )
        data["name"] = f"{self.spec.name} (served)"
        return RigSpec.model_validate(data)

    def _source_address(self, s: PowerSourceSpec) -> Address:
        resource = self._scpi[s.name].resource if s.name in self._scpi else (s.resource or "")
        return Address("power_source", s.name, resource, {"resource": resource, "profile": s.profile})

    def _meter_address(self, m: MeterSpec) -> Address:
        if m.emulated and self._modbus is not None:
            host, port, transport = self._modbus.host, self._modbus.port, "tcp"
        else:
            host, port, transport = m.host, m.tcp_port or 502, m.transport
        if transport == "rtu" and not m.emulated:
            text = f"{m.serial_port} {m.baudrate} baud unit {m.unit}"
            return Address("meter", m.name, text, {"serial_port": m.serial_port, "baudrate": m.baudrate, "unit": m.unit, "model": m.model})
        return Address("meter", m.name, f"{host}:{port} unit {m.unit}", {"host": host, "port": port, "unit": m.unit, "model": m.model})

    def _ev_address(self, e: EVSimulatorSpec) -> Address:
        if e.emulated and self._hub is not None:
            host, port, interface = self._hub.host, self._hub.port, "socketcand"
        else:
            host, port, interface = e.host, e.tcp_port, e.interface
        where = f"{host}:{port} " if host else ""
        return Address(
            "ev_simulator", e.name, f"{interface} {where}channel {e.channel}",
            {"interface": interface, "host": host, "port": port, "channel": e.channel},
        )

    # -- drivers ------------------------------------------------------------------------------------
    def power_source(self, name: str | None = None) -> PowerSource:
        """The (opened) driver of power source ``name`` (default: the first)."""
        spec = _pick(self.spec.power_sources, name, "power source")
        return self._driver(spec.name, lambda: self._open_power_source(spec))  # type: ignore[return-value]

    def meter(self, name: str | None = None) -> EnergyMeter:
        """The (opened) driver of meter ``name`` (default: the first)."""
        spec = _pick(self.spec.meters, name, "meter")
        return self._driver(spec.name, lambda: self._open_meter(spec))  # type: ignore[return-value]

    def ev(self, name: str | None = None) -> EVSimulator:
        """The (opened) driver of EV simulator ``name`` (default: the first)."""
        spec = _pick(self.spec.ev_simulators, name, "EV simulator")
        return self._driver(spec.name, lambda: self._open_ev(spec))  # type: ignore[return-value]

    def faults(self, name: str) -> Faults:
        """The fault controls of the emulator behind instrument ``name`` (emulated rigs only)."""
        if name in self._scpi:
            return self._scpi[name].faults
        if name in self._can_peers:
            return self._can_peers[name][0].faults
        for m in self.spec.meters:
            if m.name == name and m.emulated and self._modbus is not None:
                return self._modbus.faults(m.unit)
        raise KeyError(f"{name!r} is not an emulated instrument of rig {self.spec.name!r}")

    def _driver(self, name: str, opener: Any) -> Any:
        with self._lock:
            if name not in self._drivers:
                driver = opener()
                self._drivers[name] = driver
            return self._drivers[name]

    def _open_power_source(self, s: PowerSourceSpec) -> PowerSource:
        limits = SoftLimits(s.limits.voltage, s.limits.current, s.limits.power, s.limits.ramp)
        driver = PowerSource(self._source_address(s).text, s.profile, limits, name=s.name, timeout_ms=s.timeout_ms)
        driver.open()
        return driver

    def _open_meter(self, m: MeterSpec) -> EnergyMeter:
        a = self._meter_address(m).fields
        if "serial_port" in a:
            driver = EnergyMeter(m.model, serial_port=m.serial_port, baudrate=m.baudrate, parity=m.parity,
                                 unit=m.unit, name=m.name, timeout_s=m.timeout_s)
        else:
            driver = EnergyMeter(m.model, host=a["host"], port=a["port"], unit=m.unit, name=m.name, timeout_s=m.timeout_s)
        driver.open()
        return driver

    def _open_ev(self, e: EVSimulatorSpec) -> EVSimulator:
        a = self._ev_address(e).fields
        kwargs: dict[str, Any] = {}
        if a["interface"] == "socketcand":
            kwargs = {"host": a["host"], "port": a["port"]}
        driver = EVSimulator(interface=a["interface"], channel=e.channel, bitrate=e.bitrate, name=e.name,
                             dbc=e.dbc, bus_kwargs=kwargs)
        driver.open()
        return driver


def _pick(items: list[Any], name: str | None, role: str) -> Any:
    if not items:
        raise LookupError(f"the rig has no {role}")
    if name is None:
        return items[0]
    for item in items:
        if item.name == name:
            return item
    raise LookupError(f"no {role} named {name!r}; the rig has {', '.join(i.name for i in items)}")


def _build_plant(spec: RigSpec) -> Plant:
    ports = []
    for p in spec.ports:
        b = p.battery
        ev = EV(battery=Battery(capacity_kwh=b.capacity_kwh, soc=b.soc / 100.0, max_voltage=b.max_voltage,
                                max_current=b.max_current), phases=tuple(p.phases)) if p.ev_present else None
        ports.append(Port(p.name, stage=PowerStage(), ev=ev))
    site = Site(phase_voltage=spec.site.phase_voltage, frequency=spec.site.frequency, limit_a=spec.site.limit_a,
                unmanaged_w=tuple(spec.site.unmanaged_w))  # type: ignore[arg-type]
    return Plant(ports, site)
