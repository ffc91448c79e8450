"""Driver for energy meters over Modbus TCP or RTU (pymodbus, exact version pinned).

One class for every meter family: the register map (``register_map``) says where each quantity lives,
how it is stored and how large a read may be. SunSpec meters are found by scanning for the "SunS" marker
and walking the model chain. The pymodbus client runs with ``retries=0`` so faults show instead of being
retried away; a dropped connection is re-opened once per request.

Units: V, A, W, Hz, kWh, seconds. Thread-safe: one lock per instrument.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from dataclasses import dataclass
from typing import Any

from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerType

from hil.instruments.errors import InstrumentProtocolError, InstrumentReportedError, InstrumentUnreachable
from hil.instruments.register_map import SUNS, Point, RegisterMap, decode_string, load_map, spans

log = logging.getLogger(__name__)

MODBUS_EXCEPTIONS = {
    1: "illegal function", 2: "illegal data address", 3: "illegal data value", 4: "device failure",
    5: "acknowledge", 6: "device busy", 10: "gateway path unavailable", 11: "gateway target did not respond",
}


@dataclass(frozen=True)
class MeterIdentity:
    maker: str
    model: str
    serial: str

    @property
    def summary(self) -> str:
        return f"{self.maker} {self.model} serial {self.serial}"


@dataclass(frozen=True)
class MeterValues:
    """One reading: per phase L1..L3 voltage [V], current [A], active power [W]; totals."""

    voltage: tuple[float, float, float]
    current: tuple[float, float, float]
    power: tuple[float, float, float]
    total_power: float
    """[W], positive importing."""
    frequency: float
    """[Hz]"""
    import_kwh: float
    export_kwh: float


_PHASED = ("voltage", "current", "power")


class EnergyMeter:
    """A Modbus energy meter named in a rig file.

    TCP: ``host`` and ``port``. RTU: ``serial_port`` (a device such as ``/dev/ttyUSB0`` or a pyserial URL
    such as ``socket://10.0.0.7:4001`` for a serial server), ``baudrate`` and ``parity``. ``unit`` is the
    Modbus unit (device) id. Call ``open()`` first.
    """

    def __init__(
        self, model: str | RegisterMap, *, host: str | None = None, port: int = 502, serial_port: str | None = None,
        baudrate: int = 9600, parity: str = "E", unit: int = 1, name: str = "meter", timeout_s: float = 1.0,
    ) -> None:
        if (host is None) == (serial_port is None):
            raise ValueError("give either host (Modbus TCP) or serial_port (Modbus RTU)")
        self.map = load_map(model) if isinstance(model, str) else model
        self.host, self.port, self.serial_port = host, port, serial_port
        self.baudrate, self.parity, self.unit = baudrate, parity, unit
        self.name = name
        self.timeout_s = timeout_s
        self._lock = threading.RLock()
        self._client: ModbusTcpClient | ModbusSerialClient | None = None
        self._base: int | None = None
        """SunSpec: address of the metering model's ID register; other maps: 0."""
        self._common: int | None = None
        self._plans: dict[tuple[str, ...], list[tuple[int, int]]] = {}

    @property
    def address(self) -> str:
        if self.host is not None:
            return f"{self.host}:{self.port} unit {self.unit}"
        return f"{self.serial_port} {self.baudrate} baud unit {self.unit}"

    def __repr__(self) -> str:
        return f"EnergyMeter({self.name!r}, {self.map.name!r}, {self.address!r})"

    # -- session ------------------------------------------------------------------------------------
    def open(self) -> "EnergyMeter":
        """Connect (and, for SunSpec, locate the models). Idempotent."""
        with self._lock:
            if self._client is None:
                self._connect()
            if self.map.sunspec is not None and self._base is None:
                self._scan()
        return self

    def _connect(self) -> None:
        if self.host is not None:
            client: Any = ModbusTcpClient(self.host, port=self.port, timeout=self.timeout_s, retries=0)
        else:
            client = ModbusSerialClient(
                self.serial_port, framer=FramerType.RTU, baudrate=self.baudrate, parity=self.parity,
                timeout=self.timeout_s, retries=0,
            )
        if not client.connect():
            client.close()
            raise InstrumentUnreachable(self.name, self.address, "cannot connect (refused, unreachable or no such port)")
        self._client = client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def __enter__(self) -> "EnergyMeter":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- raw reads ----------------------------------------------------------------------------------
    def read_registers(self, address: int, count: int, table: str | None = None) -> list[int]:
        """Read ``count`` registers from ``address`` of ``table`` (default: the map's table)."""
        if count > self.map.max_registers:
            raise ValueError(f"{self.name}: {count} registers exceed the {self.map.model}'s limit of {self.map.max_registers} per read")
        with self._lock:
            return self._read(address, count, table or self.map.table)

    def _read(self, address: int, count: int, table: str, retry: bool = True) -> list[int]:
        if self._client is None:
            self._connect()
        client = self._client
        assert client is not None
        what = f"{'input' if table == 'input' else 'holding'} registers {address}..{address + count - 1}"
        try:
            if table == "input":
                rr = client.read_input_registers(address, count=count, device_id=self.unit)
            else:
                rr = client.read_holding_registers(address, count=count, device_id=self.unit)
        except (ModbusException, OSError) as exc:
            client.close()
            self._client = None
            if retry:
                log.info("%s: reconnecting after %s", self.name, exc)
                return self._read(address, count, table, retry=False)
            raise InstrumentUnreachable(self.name, self.address, f"no reply reading {what} within {self.timeout_s:g} s: {exc}") from exc
        if rr.isError():
            code = int(getattr(rr, "exception_code", 0))
            raise InstrumentReportedError(
                self.name, self.address, code, f"Modbus exception {code} ({MODBUS_EXCEPTIONS.get(code, 'unknown')}) reading {what}"
            )
        regs = list(rr.registers)
        if len(regs) != count:
            raise InstrumentProtocolError(self.name, self.address, f"asked {count} registers, got {len(regs)}")
        return regs

    # -- SunSpec --------------------------------------------------------------------------------------
    def _scan(self) -> None:
        spec = self.map.sunspec
        assert spec is not None
        tried = []
        for base in spec.bases:
            try:
                marker = self._read(base, 2, "holding")
            except InstrumentReportedError:
                tried.append(str(base))
                continue
            if tuple(marker) != SUNS:
                tried.append(str(base))
                continue
            address = base + 2
            for _ in range(64):
                model_id, length = self._read(address, 2, "holding")
                if model_id == 0xFFFF:
                    break
                if model_id == 1:
                    self._common = address
                if model_id == spec.model:
                    if length != spec.length:
                        raise InstrumentProtocolError(self.name, self.address, f"SunSpec model {model_id} has length {length}, not {spec.length}")
                    self._base = address
                address += 2 + length
            if self._base is None:
                raise InstrumentProtocolError(self.name, self.address, f"SunSpec device at {base} has no model {spec.model}")
            return
        raise InstrumentProtocolError(self.name, self.address, f"no SunSpec \"SunS\" marker at {', '.join(tried)}")

    def sunspec_models(self) -> list[int]:
        """The SunSpec model ids the device lists, in order (SunSpec maps only)."""
        spec = self.map.sunspec
        if spec is None:
            return []
        self.open()
        with self._lock:
            assert self._common is not None or self._base is not None
            address = (self._common or self._base or 0)
            models = []
            for _ in range(64):
                model_id, length = self._read(address, 2, "holding")
                if model_id == 0xFFFF:
                    break
                models.append(model_id)
                address += 2 + length
            return models

    # -- reading --------------------------------------------------------------------------------------
    def read(self) -> MeterValues:
        """Read every quantity in as few requests as the meter allows."""
        with self._lock:
            values = self._read_points(list(self.map.points))
        def phases(kind: str) -> tuple[float, float, float]:
            return tuple(values.get(f"{kind}_l{k}", math.nan) for k in (1, 2, 3))  # type: ignore[return-value]
        import_kwh = values.get("import_energy", math.nan)
        export_kwh = values.get("export_energy", math.nan)
        return MeterValues(
            voltage=phases("voltage"), current=phases("current"), power=phases("power"),
            total_power=values.get("total_power", math.nan), frequency=values.get("frequency", math.nan),
            import_kwh=import_kwh, export_kwh=export_kwh,
        )

    def read_point(self, name: str) -> float:
        """One quantity by its map name (``total_power``, ``current_l1``, ...) in one request."""
        if name not in self.map.points:
            raise KeyError(f"{self.map.model} has no point {name!r}; it has {', '.join(self.map.points)}")
        with self._lock:
            return self._read_points([name])[name]

    def _read_points(self, names: list[str]) -> dict[str, float]:
        m = self.map
        if m.sunspec is not None and self._base is None:
            self._scan()
        key = tuple(names)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._plan(names)
        regs: dict[int, int] = {}
        for address, count in plan:
            for k, r in enumerate(self._read(address, count, m.table), start=address):
                regs[k] = r
        base = self._base or 0
        out = {}
        for n in names:
            p = m.points[n]
            a = base + p.address
            exponent = 0
            if p.scale_factor is not None:
                sf = regs[base + p.scale_factor]
                exponent = sf - 0x10000 if sf >= 0x8000 else sf
            value = m.decode(p, [regs[a + k] for k in range(p.width)], exponent)
            out[n] = value / 1000.0 if p.unit == "Wh" else value
        return out

    def _plan(self, names: list[str]) -> list[tuple[int, int]]:
        """The reads ``(address, count)`` that cover ``names`` and their scale factors."""
        m = self.map
        base = self._base or 0
        points = [m.points[n] for n in names]
        needed = [Point(address=base + p.address, type=p.type, count=p.count) for p in points]
        sfs = sorted({p.scale_factor for p in points if p.scale_factor is not None})
        needed += [Point(address=base + sf, type="int16") for sf in sfs]
        blocks = [(b0 + base, b1 + base) for b0, b1 in m.blocks]
        return spans(needed, blocks, m.max_registers)

    def identify(self) -> MeterIdentity:
        """Model and serial number as the meter reports them."""
        self.open()
        ident = self.map.identity
        with self._lock:
            if self.map.sunspec is not None:
                base = self._common
                if base is None:
                    raise InstrumentProtocolError(self.name, self.address, "SunSpec device has no common model 1")
                block = self._read(base, 66, "holding")
                text = {n: decode_string(block[p.address:p.address + p.count])
                        for n, p in (("maker", ident.manufacturer), ("model", ident.model_name), ("serial", ident.serial)) if p}
                return MeterIdentity(text.get("maker", ""), text.get("model", ""), text.get("serial", ""))
            serial = ""
            if ident.serial is not None:
                p = ident.serial
                regs = self._read(p.address, p.width, ident.table)
                serial = decode_string(regs) if p.type == "string" else str(int(self.map.decode(p, regs)))
            return MeterIdentity(self.map.maker, self.map.model, serial)

    # -- asyncio side -------------------------------------------------------------------------------
    async def aread(self) -> MeterValues:
        return await asyncio.to_thread(self.read)

    async def aidentify(self) -> MeterIdentity:
        return await asyncio.to_thread(self.identify)
