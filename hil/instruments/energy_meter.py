"""Driver for energy meters over Modbus TCP or Modbus RTU (pymodbus 3.16.1, pinned).

One class for every meter family: the register map (``register_map``, data in ``profiles/meters``) says
where each quantity lives, how it is stored and how large one read may be. SunSpec meters are found by
scanning the base addresses for the "SunS" marker and walking the model chain to the metering model.

Error handling: the pymodbus client runs with ``retries=0`` so faults show instead of being retried
away. A Modbus exception response raises ``InstrumentReportedError`` (``code`` = exception code); no
reply within ``timeout_s`` raises ``InstrumentUnreachable`` at once (the connection is closed so a late,
stale reply cannot be mistaken for the next one); a connection found dropped is re-opened once and the
request repeated; an answer that does not parse raises ``InstrumentProtocolError``.

Units: V, A, W, Hz, kWh, seconds. Thread-safe: one lock per instrument.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType

from hil.instruments.errors import (InstrumentError, InstrumentProtocolError, InstrumentReportedError,
                                   InstrumentUnreachable)
from hil.instruments.register_map import SUNS, RegisterMap, decode_string, load_map

log = logging.getLogger(__name__)

MODBUS_EXCEPTIONS = {
    1: "illegal function", 2: "illegal data address", 3: "illegal data value", 4: "device failure",
    5: "acknowledge", 6: "device busy", 10: "gateway path unavailable", 11: "gateway target did not respond",
}
"""Modbus exception codes and their names."""
_MAX_MODELS = 64
"""SunSpec: longest model chain walked before giving up."""


@dataclass(frozen=True)
class MeterIdentity:
    """What the meter says it is."""

    model: str
    maker: str
    serial: str
    model_code: int | None = None
    """The raw model code register, where the map has one."""

    @property
    def summary(self) -> str:
        """One line, e.g. ``Eastron SDM630 serial 12345``."""
        return f"{self.maker} {self.model} serial {self.serial or '?'}"


@dataclass(frozen=True)
class MeterValues:
    """One reading: per phase L1..L3 voltage [V], current [A], active power [W]; totals.

    A quantity the meter does not provide (or reports as not implemented) is NaN.
    """

    voltage: tuple[float, float, float]
    current: tuple[float, float, float]
    power: tuple[float, float, float]
    total_power: float
    """[W], positive importing."""
    frequency: float
    """[Hz]"""
    import_kwh: float
    """Imported active energy [kWh]."""
    export_kwh: float
    """Exported active energy [kWh]."""


class EnergyMeter:
    """A Modbus energy meter of map ``model`` (``sdm630``, ``sunspec``, ``em24``; see ``MODELS``).

    TCP: ``host`` and ``port``. RTU: ``serial_port`` (a device such as ``/dev/ttyUSB0``, or a pyserial
    URL such as ``socket://127.0.0.1:5020`` for RTU framing over TCP), ``baudrate`` and ``parity``
    (``"E"``, ``"N"``, ``"O"``). ``unit`` is the Modbus unit (device) id; ``timeout_s`` the reply timeout
    [s]. ``name`` appears in every error. Call ``open()`` first (or use as a context manager).
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
        """SunSpec: address of the metering model's ID register."""
        self._models: list[tuple[int, int]] = []
        """SunSpec: (model id, address of its ID register) in chain order."""
        self._plans: dict[tuple[str, ...], list[tuple[int, int]]] = {}
        self.transcript: deque[tuple[float, str, int, int, str]] = deque(maxlen=10_000)
        """Recent reads: (time [s since the epoch], table, address, count, registers or the error)."""

    @property
    def address(self) -> str:
        """``host:port unit N`` or ``serial_port baud unit N``."""
        if self.host is not None:
            return f"{self.host}:{self.port} unit {self.unit}"
        return f"{self.serial_port} {self.baudrate} baud unit {self.unit}"

    def __repr__(self) -> str:
        return f"EnergyMeter({self.name!r}, {self.map.name!r}, {self.address!r})"

    # -- session ------------------------------------------------------------------------------------
    def open(self) -> "EnergyMeter":
        """Connect (and, for SunSpec, locate the metering model). Idempotent.

        Raises ``InstrumentUnreachable`` naming the meter, its address and the cause.
        """
        with self._lock:
            if self._client is None:
                self._connect()
            if self.map.sunspec is not None and self._base is None:
                self._scan()
        return self

    def _connect(self) -> None:
        try:
            if self.host is not None:
                client: Any = ModbusTcpClient(self.host, port=self.port, timeout=self.timeout_s, retries=0)
            else:
                client = ModbusSerialClient(
                    self.serial_port, framer=FramerType.RTU, baudrate=self.baudrate, parity=self.parity,
                    timeout=self.timeout_s, retries=0,
                )
            connected = client.connect()
        except (OSError, ValueError, ModbusException) as exc:
            raise InstrumentUnreachable(self.name, self.address, f"cannot connect: {exc}") from exc
        if not connected:
            client.close()
            cause = "refused, unreachable or no such port" if self.host is not None else "cannot open the serial port"
            raise InstrumentUnreachable(self.name, self.address, f"cannot connect ({cause})")
        self._client = client

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def close(self) -> None:
        """Close the connection. ``open()`` (or any read) connects again."""
        with self._lock:
            self._drop()

    def __enter__(self) -> "EnergyMeter":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- raw reads ----------------------------------------------------------------------------------
    def read_registers(self, address: int, count: int, table: str | None = None) -> list[int]:
        """``count`` registers from ``address`` of ``table`` (``"input"``/``"holding"``; default: the map's)."""
        if count > self.map.max_registers:
            raise ValueError(
                f"{self.name}: {count} registers exceed the {self.map.model}'s limit of {self.map.max_registers} per read"
            )
        with self._lock:
            return self._read(address, count, table or self.map.table)

    def _read(self, address: int, count: int, table: str, retry: bool = True) -> list[int]:
        try:
            regs = self._read_once(address, count, table, retry)
        except InstrumentError as exc:
            self.transcript.append((time.time(), table, address, count, f"error: {exc}"))
            raise
        self.transcript.append((time.time(), table, address, count, " ".join(f"{r:04x}" for r in regs)))
        return regs

    def _read_once(self, address: int, count: int, table: str, retry: bool) -> list[int]:
        what = f"{table} registers {address}..{address + count - 1}"
        if self._client is None:
            self._connect()
        client = self._client
        assert client is not None
        try:
            if table == "input":
                rr = client.read_input_registers(address, count=count, device_id=self.unit)
            else:
                rr = client.read_holding_registers(address, count=count, device_id=self.unit)
        except (ConnectionException, OSError) as exc:
            self._drop()
            if retry:
                log.info("%s (%s): reconnecting after %s", self.name, self.address, exc)
                try:
                    return self._read_once(address, count, table, retry=False)
                except InstrumentUnreachable as again:
                    raise InstrumentUnreachable(self.name, self.address, f"connection lost, reconnect failed: {again.message}") from exc
            raise InstrumentUnreachable(self.name, self.address, f"connection lost reading {what}: {exc}") from exc
        except ModbusIOException as exc:
            self._drop()  # a late reply must not be read as the answer to the next request
            if "No response" in str(exc):
                raise InstrumentUnreachable(
                    self.name, self.address, f"no reply reading {what} within {self.timeout_s:g} s"
                ) from exc
            raise InstrumentProtocolError(self.name, self.address, f"bad reply reading {what}: {exc}") from exc
        except ModbusException as exc:
            self._drop()
            raise InstrumentProtocolError(self.name, self.address, f"bad reply reading {what}: {exc}") from exc
        if rr.isError():
            code = int(getattr(rr, "exception_code", 0))
            raise InstrumentReportedError(
                self.name, self.address, code,
                f"Modbus exception {code} ({MODBUS_EXCEPTIONS.get(code, 'unknown')}) reading {what}",
            )
        regs = list(rr.registers)
        if len(regs) != count:
            raise InstrumentProtocolError(self.name, self.address, f"asked for {count} registers ({what}), got {len(regs)}")
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
            models: list[tuple[int, int]] = []
            address = base + 2
            for _ in range(_MAX_MODELS):
                model_id, length = self._read(address, 2, "holding")
                if model_id == 0xFFFF:
                    break
                models.append((model_id, address))
                if model_id == spec.model and length != spec.length:
                    raise InstrumentProtocolError(
                        self.name, self.address, f"SunSpec model {model_id} at {address} has length {length}, not {spec.length}"
                    )
                address += 2 + length
            found = [a for m, a in models if m == spec.model]
            if not found:
                listed = ", ".join(str(m) for m, _ in models) or "none"
                raise InstrumentProtocolError(
                    self.name, self.address, f"SunSpec device at {base} has no model {spec.model} (models: {listed})"
                )
            self._models, self._base, self._plans = models, found[0], {}
            return
        raise InstrumentProtocolError(self.name, self.address, f"no SunSpec \"SunS\" marker at {', '.join(tried)}")

    def sunspec_models(self) -> list[int]:
        """The SunSpec model ids the device lists, in chain order (``[]`` for other maps)."""
        if self.map.sunspec is None:
            return []
        self.open()
        return [m for m, _ in self._models]

    # -- reading --------------------------------------------------------------------------------------
    def read(self) -> MeterValues:
        """Every quantity, in as few requests as the meter allows (each within its read limit)."""
        values = self._values(tuple(self.map.points))

        def phases(kind: str) -> tuple[float, float, float]:
            return tuple(values.get(f"{kind}_l{k}", math.nan) for k in (1, 2, 3))  # type: ignore[return-value]

        return MeterValues(
            voltage=phases("voltage"), current=phases("current"), power=phases("power"),
            total_power=values.get("total_power", math.nan), frequency=values.get("frequency", math.nan),
            import_kwh=values.get("import_energy", math.nan), export_kwh=values.get("export_energy", math.nan),
        )

    def read_point(self, name: str) -> float:
        """One quantity by its map name (``total_power`` [W], ``current_l1`` [A], ``import_energy`` [kWh],
        ...), with its scale factor where it has one, in one request."""
        if name not in self.map.points:
            raise KeyError(f"{self.map.model} has no point {name!r}; it has {', '.join(self.map.points)}")
        return self._values((name,))[name]

    def read_total_power(self) -> float:
        """Total active power [W] (one request)."""
        return self.read_point("total_power")

    def _values(self, names: tuple[str, ...]) -> dict[str, float]:
        m = self.map
        with self._lock:
            if m.sunspec is not None and self._base is None:
                if self._client is None:
                    self._connect()
                self._scan()
            base = self._base or 0
            plan = self._plans.get(names)
            if plan is None:
                plan = self._plans[names] = m.reads(names, base)
            regs: dict[int, int] = {}
            for address, count in plan:
                regs.update(enumerate(self._read(address, count, m.table), start=address))
        return m.decode(regs, names, base)

    def identify(self) -> MeterIdentity:
        """Model, maker and serial number as the meter reports them (SunSpec: Mn, Md, SN of model 1)."""
        self.open()
        ident = self.map.identity
        with self._lock:
            if self.map.sunspec is not None:
                common = next((a for m, a in self._models if m == 1), None)
                if common is None:
                    raise InstrumentProtocolError(self.name, self.address, "SunSpec device has no common model 1")
                block = self._read(common, 2 + self.map.sunspec.common_length, "holding")
                text = {
                    key: decode_string(block[p.address:p.address + p.count])
                    for key, p in (("maker", ident.manufacturer), ("model", ident.model_name), ("serial", ident.serial))
                    if p is not None
                }
                return MeterIdentity(text.get("model", ""), text.get("maker", ""), text.get("serial", ""))
            serial, code = "", None
            if ident.serial is not None:
                p = ident.serial
                regs = self._read(p.address, p.width, ident.table)
                serial = decode_string(regs) if p.type == "string" else str(int(self.map.decode_point(p, regs)))
            if ident.model_code is not None:
                p = ident.model_code
                code = int(self.map.decode_point(p, self._read(p.address, p.width, ident.table)))
            model = ident.model_codes.get(code, self.map.model) if code is not None else self.map.model
            return MeterIdentity(model, self.map.maker, serial, code)

    # -- asyncio side -------------------------------------------------------------------------------
    async def aread(self) -> MeterValues:
        """``read()`` in a worker thread."""
        return await asyncio.to_thread(self.read)

    async def aread_point(self, name: str) -> float:
        """``read_point()`` in a worker thread."""
        return await asyncio.to_thread(self.read_point, name)

    async def aidentify(self) -> MeterIdentity:
        """``identify()`` in a worker thread."""
        return await asyncio.to_thread(self.identify)


__all__ = ["EnergyMeter", "MODBUS_EXCEPTIONS", "MeterIdentity", "MeterValues"]
