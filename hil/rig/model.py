"""The rig file as typed models: which instrument is where, soft limits, the device under test.

Every model forbids unknown keys, so a typo in a rig file is an error rather than a silently ignored
setting. Cross-references (ports named by instruments, unique names, addresses of real instruments) are
checked in ``RigSpec``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

PROFILES_DIR = Path(__file__).resolve().parent.parent / "instruments" / "profiles"


def _profile_names(kind: str, suffix: str) -> list[str]:
    return sorted(p.stem for p in (PROFILES_DIR / kind).glob(f"*{suffix}"))


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(Strict):
    """Soft limits of a power source. Units: V, A, W; ramp in V/s and A/s."""

    voltage: float = Field(gt=0)
    current: float = Field(gt=0)
    power: float = Field(gt=0)
    ramp: float = Field(default=100.0, gt=0)


class BatterySpec(Strict):
    """Initial state of an emulated EV's battery."""

    capacity_kwh: float = Field(default=40.0, gt=0)
    soc: float = Field(default=30.0, ge=0, le=100, description="state of charge [%]")
    max_voltage: float = Field(default=410.0, gt=0)
    max_current: float = Field(default=125.0, gt=0)


class PortSpec(Strict):
    """A charging port of the site."""

    name: str = Field(min_length=1)
    phases: list[Literal[1, 2, 3]] = Field(default=[1, 2, 3], min_length=1)
    battery: BatterySpec = BatterySpec()
    ev_present: bool = True


class SiteSpec(Strict):
    """The feeder. Units: A per phase, V phase-to-neutral, Hz, W per phase."""

    limit_a: float = Field(default=100.0, gt=0)
    phase_voltage: float = Field(default=230.0, gt=0)
    frequency: float = Field(default=50.0, gt=0)
    unmanaged_w: list[float] = Field(default=[0.0, 0.0, 0.0], min_length=3, max_length=3)


class PowerSourceSpec(Strict):
    """A programmable DC source reached over VISA/SCPI."""

    name: str = Field(min_length=1)
    port: str | None = None
    profile: str
    emulated: bool = False
    resource: str | None = None
    timeout_ms: int = Field(default=2000, gt=0)
    latency_ms: float | None = Field(default=None, ge=0)
    limits: Limits

    @model_validator(mode="after")
    def _known_profile(self) -> "PowerSourceSpec":
        known = _profile_names("scpi", ".yaml")
        if known and self.profile not in known:
            raise ValueError(f"unknown SCPI profile {self.profile!r}; known: {', '.join(known)}")
        return self


class MeterSpec(Strict):
    """An energy meter reached over Modbus TCP or RTU."""

    name: str = Field(min_length=1)
    model: str
    point: str = Field(description="the port name the meter measures, or 'site' for the feeder")
    emulated: bool = False
    transport: Literal["tcp", "rtu"] = "tcp"
    host: str | None = None
    tcp_port: int | None = Field(default=None, gt=0, lt=65536)
    """Modbus TCP port: a real meter's (default 502); for an emulated meter the port evhil serves it on
    (default a free one; every emulated meter of a rig shares one server, so at most one port)."""
    serial_port: str | None = None
    baudrate: int = Field(default=9600, gt=0)
    parity: Literal["N", "E", "O"] = "N"
    unit: int = Field(default=1, ge=0, le=247)
    timeout_s: float = Field(default=1.0, gt=0)
    latency_ms: float | None = Field(default=None, ge=0)
    update_ms: float = Field(default=100.0, ge=0)
    """Emulated meters: how often the emulator refreshes their registers [ms of real time; on a clock
    scaled ``s`` times that is ``s x update_ms`` of simulated time]; 0 measures on every read. The emulator
    serves all its meters on the first emulated meter's cycle."""

    @model_validator(mode="after")
    def _known_model(self) -> "MeterSpec":
        known = _profile_names("meters", ".yaml")
        if known and self.model not in known:
            raise ValueError(f"unknown meter model {self.model!r}; known: {', '.join(known)}")
        return self


class EVSimulatorSpec(Strict):
    """An EV simulator on a CAN bus (any python-can interface)."""

    name: str = Field(min_length=1)
    port: str | None = None
    emulated: bool = False
    interface: str = "socketcand"
    channel: str = "can0"
    bitrate: int = Field(default=500_000, gt=0)
    host: str | None = None
    tcp_port: int | None = Field(default=None, gt=0, lt=65536)
    dbc: str = "chademo"
    charger_ecu: bool = Field(default=True, description="emulated rigs: emulate the charger's CAN side too")


INSTRUMENT_ROLES: dict[str, str] = {
    "plug_in": "ev_simulators", "unplug": "ev_simulators", "ev_suspend": "ev_simulators", "ev_resume": "ev_simulators",
    "power_off": "power_sources", "power_on": "power_sources",
}
"""The actions ``dut.control.instruments`` may wire, and the section of the rig file their instrument is in."""

_SECTIONS = ("power_sources", "meters", "ev_simulators")


class ControlSpec(Strict):
    """How the device under test is driven: plug in, unplug, present token, cut network..."""

    adapter: Literal["emulated", "command", "prompt", "service"] = "emulated"
    service_url: str | None = Field(default=None, pattern=r"^https?://",
                                    description="adapter 'service': the device's service port, http://host:port")
    commands: dict[
        Literal[
            "plug_in", "unplug", "present_token", "cut_network", "restore_network", "raise_fault",
            "clear_fault", "power_off", "power_on", "ev_suspend", "ev_resume",
            "unplug_ev_side", "plug_in_ev_side", "bay_enter", "bay_leave",
            # a charger under test back to its factory state, switched off, before each OCPP case
            # (hil.ocpp.fixtures; the case's boot switches it on with power_on)
            "reset_to_defaults",
            # a site's load manager under test (see hil.control.SiteControl)
            "set_site_limit",
            # a CSMS under test: what its operator does (see hil.control.CommandOperator)
            "remote_start", "remote_stop", "reset", "unlock", "get_configuration", "change_configuration",
            "clear_cache", "set_charging_profile", "clear_charging_profile", "get_composite_schedule",
        ],
        str,
    ] = {}
    instruments: dict[Literal["plug_in", "unplug", "ev_suspend", "ev_resume", "power_off", "power_on"], list[str]] = {}
    """Actions the rig's own instruments carry out (``hil.control.RigControl``): ``plug_in``, ``unplug``,
    ``ev_suspend`` and ``ev_resume`` name an EV simulator (a list: one per connector, in connector order),
    ``power_off`` and ``power_on`` the power source feeding the charger. An action not wired here (or a
    connector beyond the list) runs its command if ``commands`` has one, else goes to the adapter (``prompt``:
    the person at the bench; ``command``: an error naming the missing command)."""
    timeout_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _service_has_a_url(self) -> "ControlSpec":
        if (self.adapter == "service") != (self.service_url is not None):
            raise ValueError("adapter 'service' and service_url go together (the service port of the device)")
        return self

    @field_validator("instruments", mode="before")
    @classmethod
    def _one_name_is_a_list(cls, value: object) -> object:
        """``plug_in: ev`` is short for ``plug_in: [ev]``."""
        if isinstance(value, dict):
            return {action: [names] if isinstance(names, str) else names for action, names in value.items()}
        return value

    @field_validator("instruments")
    @classmethod
    def _instruments_beside_the_adapter(cls, value: dict[str, list[str]], info: ValidationInfo) -> dict[str, list[str]]:
        if value and info.data.get("adapter") == "emulated":
            raise ValueError("needs adapter 'command' or 'prompt' for the actions not wired; the 'emulated' adapter "
                             "drives evhil's own emulator")
        for action, names in value.items():
            if not names or not all(names):
                raise ValueError(f"{action}: name an instrument")
            if INSTRUMENT_ROLES[action] == "power_sources" and len(names) > 1:
                raise ValueError(f"{action}: name one power source, not a list")
            if action in info.data.get("commands", {}):
                raise ValueError(f"{action}: also has a command in dut.control.commands; keep one of them")
        return value

    def check_instruments(self, rig: "RigSpec") -> None:
        """Every instrument ``instruments`` names is in ``rig`` in the role its action needs, at most one EV
        simulator per connector; ``ValueError`` names the field."""
        for action, names in self.instruments.items():
            field, role = f"dut.control.instruments.{action}", INSTRUMENT_ROLES[action]
            if len(names) > rig.dut.connectors:
                raise ValueError(f"{field}: {len(names)} EV simulators for {rig.dut.connectors} connector(s) "
                                 "(dut.connectors); list one per connector")
            wanted = [i.name for i in getattr(rig, role)]
            known = f"{action} needs one of {role}: {', '.join(wanted) or 'the rig has none'}"
            for name in names:
                if name in wanted:
                    continue
                actual = next((r for r in _SECTIONS if any(i.name == name for i in getattr(rig, r))), None)
                if actual is None:
                    raise ValueError(f"{field}: no instrument named {name!r}; {known}")
                raise ValueError(f"{field}: {name!r} is listed under {actual}; {known}")


class SiteMeterSpec(Strict):
    """The site meter a load manager under test reads, which evhil emulates on 127.0.0.1 at this address (the
    address the product was commissioned with)."""

    model: str = "sdm630"
    tcp_port: int = Field(gt=0, lt=65536)
    unit: int = Field(default=1, ge=1, le=247)

    @model_validator(mode="after")
    def _known_model(self) -> "SiteMeterSpec":
        known = _profile_names("meters", ".yaml")
        if known and self.model not in known:
            raise ValueError(f"unknown meter model {self.model!r}; known: {', '.join(known)}")
        return self


class DutSpec(Strict):
    """The device under test (used by the OCPP and controller suites).

    ``kind: site_controller`` is a site's load manager reached only over the wire: evhil's charge points
    connect to its ``csms_url`` (OCPP ``ocpp_version``), it reads ``site_meter`` (emulated by evhil), and it
    is told the site limit through ``control`` (``set_site_limit``)."""

    kind: Literal["none", "charger", "site_controller", "csms", "reference"] = "reference"
    name: str = "evhil reference"
    control: ControlSpec = ControlSpec()
    csms_url: str | None = Field(default=None, description="a CSMS under test: its ws:// or wss:// base URL")
    ocpp_version: Literal["1.6", "2.0.1"] | None = None
    connectors: int = Field(default=1, ge=1)
    charge_point_id: str = Field(default="EVHIL-CP1", min_length=1, pattern=r"^[A-Za-z0-9*\-_=:+|@.]+$",
                                 description="the id a charger under test connects with (the URL's last part)")
    password: str | None = Field(default=None, min_length=16, max_length=40,
                                 description="basic-auth password (security profile 1)")
    csms_host: str = Field(default="127.0.0.1", description="where evhil's CSMS listens for a charger under test")
    csms_port: int = Field(default=0, ge=0, lt=65536, description="0: a free port")
    architecture: Literal["local", "cloud"] = Field(
        default="local", description="site_controller: its settling time class (local 10 s, cloud 60 s)")
    site_meter: SiteMeterSpec | None = None
    launch: str | None = Field(default=None, description="a shell command that starts the device under test (a CSMS or "
                               "a charger: once for the run; a site_controller: for each condition) and is stopped "
                               "after it; leave out for a device that runs by itself")
    launch_ready: str | None = Field(default=None, description="a URL the launched device listens on once it is up "
                                     "(its service port); the run waits for it (default for a CSMS: csms_url)")

    @model_validator(mode="after")
    def _site_controller(self) -> "DutSpec":
        if self.csms_url is not None and not self.csms_url.startswith(("ws://", "wss://")):
            raise ValueError(f"dut.csms_url {self.csms_url!r}: an OCPP URL starts ws:// or wss://")
        return self


class ClockSpec(Strict):
    scale: float = Field(default=1.0, gt=0, description="simulated seconds per real second: emulated rigs, and the "
                         "emulators another process serves (hil emulate --rig-out keeps their scale); a bench is 1")


class RigSpec(Strict):
    """A whole bench or emulated rig."""

    name: str = Field(min_length=1)
    description: str = ""
    clock: ClockSpec = ClockSpec()
    site: SiteSpec = SiteSpec()
    ports: list[PortSpec] = []
    power_sources: list[PowerSourceSpec] = []
    meters: list[MeterSpec] = []
    ev_simulators: list[EVSimulatorSpec] = []
    dut: DutSpec = DutSpec()

    @model_validator(mode="after")
    def _cross_references(self) -> "RigSpec":
        port_names = [p.name for p in self.ports]
        _unique("ports", port_names)
        _unique("instrument", [i.name for i in self.instruments()])
        known_ports = set(port_names)
        for role, items in (("power_sources", self.power_sources), ("ev_simulators", self.ev_simulators)):
            for k, item in enumerate(items):
                if item.port is not None and item.port not in known_ports:
                    raise ValueError(f"{role}[{k}] ({item.name}): port {item.port!r} is not declared under ports")
                if item.emulated and item.port is None:
                    raise ValueError(f"{role}[{k}] ({item.name}): an emulated instrument needs a port")
        for k, m in enumerate(self.meters):
            if m.point != "site" and m.point not in known_ports:
                raise ValueError(f"meters[{k}] ({m.name}): point {m.point!r} is neither 'site' nor a declared port")
        for k, s in enumerate(self.power_sources):
            if not s.emulated and not s.resource:
                raise ValueError(f"power_sources[{k}] ({s.name}): a real power source needs a resource")
        for k, m in enumerate(self.meters):
            if not m.emulated and m.transport == "tcp" and not m.host:
                raise ValueError(f"meters[{k}] ({m.name}): a real Modbus TCP meter needs a host")
            if not m.emulated and m.transport == "rtu" and not m.serial_port:
                raise ValueError(f"meters[{k}] ({m.name}): a real Modbus RTU meter needs a serial_port")
        units = [(m.host, m.tcp_port or 502, m.serial_port, m.unit) for m in self.meters if not m.emulated]
        _unique("meter address (host, tcp_port, serial_port, unit)", units)
        emulated_units = [m.unit for m in self.meters if m.emulated]
        _unique("emulated meter unit", emulated_units)
        if len({m.tcp_port for m in self.meters if m.emulated and m.tcp_port}) > 1:
            raise ValueError("emulated meters share one Modbus server: give tcp_port on at most one port number")
        for k, e in enumerate(self.ev_simulators):
            if not e.emulated and e.interface == "socketcand" and not (e.host and e.tcp_port):
                raise ValueError(f"ev_simulators[{k}] ({e.name}): a socketcand interface needs host and tcp_port")
        self.dut.control.check_instruments(self)
        return self

    def instruments(self) -> list[PowerSourceSpec | MeterSpec | EVSimulatorSpec]:
        return [*self.power_sources, *self.meters, *self.ev_simulators]

    @property
    def emulated(self) -> bool:
        """True when any instrument is emulated (evhil then runs the plant), or when the rig has no instrument
        and its device under test is a site's load manager (evhil emulates the whole site around it)."""
        if not self.instruments() and self.dut.kind == "site_controller":
            return True
        return any(i.emulated for i in self.instruments())


def _unique(what: str, values: list[object]) -> None:
    seen: set[object] = set()
    for v in values:
        if v in seen:
            raise ValueError(f"duplicate {what} {v!r}")
        seen.add(v)
