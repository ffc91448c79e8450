"""Emulated energy meters on Modbus TCP (pymodbus 3.16.1 server), measuring the plant.

One server carries several meters, one per unit id, as an RS-485 line behind a gateway would. Each
meter serves exactly the register image of its map (``RegisterMap.encode``): the measurement table and
its identity registers, nothing else.

Protocol behaviour, as real meters do:
- an address outside the served blocks: exception 02 (illegal data address);
- a read longer than the model's ``max_registers``: exception 03 (illegal data value);
- a write to any register: exception 02 (the emulated registers are read-only).

Values: a task re-encodes every meter from ``plant.reading(point)`` every ``update_period`` seconds and
writes it with ``server.async_setValues`` (like a meter's own update cycle). ``update_period=0`` encodes
on every read instead (always fresh).

Faults, per unit (``faults(unit)``): ``latency`` and ``late_reply`` delay the reply; ``no_reply`` holds
it until cleared (the client times out); ``drop_connection`` closes the TCP connection the request came
on (a reconnect is accepted, the next request for that unit is dropped again); ``garbage_reply`` keeps
the frame (MBAP header, or RTU address and a valid CRC) but answers with function code 0x55 and scrambled
data, so the client cannot decode the PDU (pymodbus over TCP: "Unable to decode", at once); ``frozen``
stops the updates (the last values are served again and again); ``gain`` scales currents and powers
(0.8 = reads 20 % low; voltage, frequency and energies are unaffected).

``framer="rtu"`` serves RTU framing over TCP: a serial client reaches it as ``socket://host:port``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from functools import partial
from typing import Any, Literal

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerRTU, FramerType
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from hil.emulators.faults import Faults
from hil.instruments.register_map import Image, RegisterMap, load_map
from hil.plant import Plant

log = logging.getLogger(__name__)

MODBUS_TCP_LATENCY_S = 0.002
"""Default reply latency of a meter behind a Modbus TCP gateway [s]."""
GARBAGE_FUNCTION_CODE = 0x55
"""Function code of a garbage reply: no such function, so the client cannot decode the PDU."""
_POLL_S = 0.01
"""How often a held reply checks whether its fault was cleared [s]."""


class _Meter:
    """One emulated meter: its map, its plant point, its faults and its serial number."""

    def __init__(self, plant: Plant, unit: int, model: str, point: str) -> None:
        self.plant = plant
        self.unit = unit
        self.map: RegisterMap = load_map(model)
        self.point = point
        self.faults = Faults()
        self.serial = f"{unit:03d}{zlib.crc32(point.encode()) % 100000:05d}"
        self.reads = 0
        """Read requests that reached this meter."""

    def values(self) -> dict[str, float]:
        """The plant's reading at this meter's point, in V, A, W, Hz, kWh, with the gain fault applied."""
        r = self.plant.reading(self.point)
        g = self.faults.gain
        current = [x * g for x in r.current]
        power = [x * g for x in r.power]
        out = {"frequency": r.frequency, "import_energy": r.import_wh / 1000.0, "export_energy": r.export_wh / 1000.0,
               "total_energy": (r.import_wh + r.export_wh) / 1000.0, "total_power": sum(power),
               "current_total": sum(current), "voltage_avg": sum(r.voltage) / 3.0}
        for k in range(3):
            out[f"voltage_l{k + 1}"] = r.voltage[k]
            out[f"current_l{k + 1}"] = current[k]
            out[f"power_l{k + 1}"] = power[k]
        return out

    def image(self) -> Image:
        return self.map.encode(self.values(), serial=self.serial, manufacturer="evhil",
                               model_name=f"emulated {self.map.model}", device_address=self.unit)

    def device(self, action: Any) -> SimDevice:
        """The pymodbus device: non-shared tables (coils, discrete inputs, holding, input)."""
        tables: dict[int, list[SimData]] = {3: [], 4: []}
        for fc, blocks in self.image().items():
            for start, regs in blocks.items():
                tables[fc].append(SimData(start, values=regs, datatype=DataType.REGISTERS))
        for entries in tables.values():
            if not entries:
                entries.append(SimData(65534, datatype=DataType.INVALID))
        bits = [SimData(65520, values=[False] * 16, datatype=DataType.BITS)]
        return SimDevice(id=self.unit, simdata=(bits, list(bits), tables[3], tables[4]), action=action)


class ModbusMeterEmulator:
    """Serves emulated meters ``{unit: (model, plant point)}`` on ``host``:``port`` (port 0: a free one;
    after ``start()`` ``port`` holds the bound port).

    ``latency`` [s] delays every reply (default ``MODBUS_TCP_LATENCY_S``); ``update_period`` [s] is the
    meters' update cycle (0: computed on every read); ``framer`` ``"socket"`` (Modbus TCP) or ``"rtu"``.
    """

    def __init__(
        self, plant: Plant, units: dict[int, tuple[str, str]], *, host: str = "127.0.0.1", port: int = 0,
        latency: float | None = None, update_period: float = 0.1, framer: Literal["socket", "rtu"] = "socket",
    ) -> None:
        self.plant = plant
        self.meters = {unit: _Meter(plant, unit, model, point) for unit, (model, point) in units.items()}
        self.host = host
        self.port = port
        self.latency = MODBUS_TCP_LATENCY_S if latency is None else latency
        self.update_period = update_period
        self.framer = FramerType.RTU if framer == "rtu" else FramerType.SOCKET
        self._server: ModbusTcpServer | None = None
        self._updater: asyncio.Task[None] | None = None
        self._internal = False
        """True while the emulator writes its own registers (the action callback lets those through)."""

    @property
    def address(self) -> str:
        """``host:port``."""
        return f"{self.host}:{self.port}"

    def faults(self, unit: int) -> Faults:
        """Fault controls of the meter at ``unit``."""
        return self.meters[unit].faults

    async def start(self) -> None:
        """Listen, load every meter's current values, start the update task."""
        devices = [m.device(partial(self._action, m)) for m in self.meters.values()]
        self._server = ModbusTcpServer(
            devices, framer=self.framer, address=(self.host, self.port), trace_packet=self._trace_packet,
        )
        await self._server.serve_forever(background=True)
        listener = self._server.transport
        sockets = getattr(listener, "sockets", None)
        if sockets:
            self.port = sockets[0].getsockname()[1]
        await self.update()
        if self.update_period > 0:
            self._updater = asyncio.create_task(self._update_forever(), name=f"modbus meters {self.address}")

    async def stop(self) -> None:
        """Stop updating and serving; held replies are released."""
        if self._updater is not None:
            self._updater.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._updater
            self._updater = None
        if self._server is not None:
            server, self._server = self._server, None
            await server.shutdown()

    async def __aenter__(self) -> "ModbusMeterEmulator":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- values -----------------------------------------------------------------------------------------
    async def update(self) -> None:
        """Write every meter's current values into the server (frozen meters keep theirs)."""
        server = self._server
        if server is None:
            return
        for meter in self.meters.values():
            if meter.faults.frozen:
                continue
            fc = meter.map.function_code
            for start, regs in meter.image()[fc].items():
                self._internal = True
                try:
                    await server.async_setValues(meter.unit, fc, start, regs)
                finally:
                    self._internal = False

    async def _update_forever(self) -> None:
        while True:
            await asyncio.sleep(self.update_period)
            try:
                await self.update()
            except Exception:  # noqa: BLE001 - a bad plant point must not kill the updates of the others
                log.exception("modbus meter emulator %s: update failed", self.address)

    # -- requests -----------------------------------------------------------------------------------------
    async def _action(self, meter: _Meter, fc: int, start: int, address: int, count: int, registers: list[int],
                      set_values: list[int] | list[bool] | None) -> ExcCodes | None:
        """pymodbus calls this for every access that passed address validation, internal writes included."""
        if self._internal:
            return None
        if set_values is not None:
            return ExcCodes.ILLEGAL_ADDRESS
        f = meter.faults
        meter.reads += 1
        while (f.no_reply or f.drop_connection) and self._server is not None:
            if f.drop_connection:
                self._drop_current()
            await asyncio.sleep(_POLL_S)
        delay = self.latency + f.latency + f.late_reply
        if delay > 0:
            await asyncio.sleep(delay)
        if count > meter.map.max_registers:
            return ExcCodes.ILLEGAL_VALUE
        if self.update_period <= 0 and fc == meter.map.function_code and not f.frozen:
            for block_start, regs in meter.image()[fc].items():
                at = block_start - start
                if 0 <= at and at + len(regs) <= len(registers):
                    registers[at:at + len(regs)] = regs
        return None

    def _drop_current(self) -> None:
        """Close the connection of the request being handled (every connection if it cannot be told)."""
        handler = _current_handler()
        if handler is not None and getattr(handler, "transport", None) is not None:
            handler.transport.close()
            return
        if self._server is not None:
            for conn in list(self._server.active_connections.values()):
                if conn.transport is not None:
                    conn.transport.close()

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if not sending or len(data) < 3:
            return data
        rtu = self.framer is FramerType.RTU
        unit = data[0] if rtu else data[6] if len(data) > 7 else -1
        meter = self.meters.get(unit)
        if meter is None or not meter.faults.garbage_reply:
            return data
        if rtu:
            frame = data[:1] + bytes([GARBAGE_FUNCTION_CODE]) + bytes(b ^ 0xA5 for b in data[2:-2])
            return frame + FramerRTU.compute_CRC(frame).to_bytes(2, "big")
        return data[:7] + bytes([GARBAGE_FUNCTION_CODE]) + bytes(b ^ 0xA5 for b in data[8:])


def _current_handler() -> Any:
    """The pymodbus connection handler running the current request (pymodbus 3.16.1 internals: the
    request task's coroutine is ``ServerRequestHandler.handle_request``)."""
    task = asyncio.current_task()
    coro = task.get_coro() if task is not None else None
    frame = getattr(coro, "cr_frame", None)
    return frame.f_locals.get("self") if frame is not None else None


__all__ = ["MODBUS_TCP_LATENCY_S", "ModbusMeterEmulator"]
