"""Emulated energy meters on Modbus TCP (pymodbus 3.16.1 server), reading the plant.

One server carries several meters, one per unit id, as an RS-485 line behind a gateway would. Each
meter serves exactly the address ranges of its register map (anything else: exception 02), refuses
reads longer than its model allows (exception 03), and computes its registers from the plant when they
are read, so every answer is fresh. Fault injection per unit: latency, no reply, late reply, garbage
reply, dropped connection, frozen values, gain error. Optionally RTU framing over TCP, reachable as
``socket://127.0.0.1:PORT`` by a serial client.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from functools import partial

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from hil.emulators.faults import Faults
from hil.instruments.register_map import SUNS, RegisterMap, encode_string, load_map
from hil.plant import MeterReading, Plant

log = logging.getLogger(__name__)

MODBUS_TCP_LATENCY_S = 0.002
"""Default reply latency of a meter behind a Modbus TCP gateway [s]."""
_COMMON_LENGTH = 66


class _Meter:
    """One emulated meter: its map, its plant point and its faults."""

    def __init__(self, plant: Plant, unit: int, model: str, point: str) -> None:
        self.plant = plant
        self.unit = unit
        self.map: RegisterMap = load_map(model)
        self.point = point
        self.faults = Faults()
        self.serial = f"{unit:03d}{zlib.crc32(point.encode()) % 100000:05d}"
        self.reads = 0
        self._frozen: MeterReading | None = None
        self.sunspec_base = self.map.sunspec.bases[0] if self.map.sunspec else 0
        self.model_base = self.sunspec_base + 2 + 2 + _COMMON_LENGTH if self.map.sunspec else 0

    def device(self, action: object) -> SimDevice:
        bits = [SimData(65520, values=[False] * 16, datatype=DataType.BITS)]
        tables: dict[str, list[SimData]] = {"input": [], "holding": []}
        for start, end in self._served(self.map.table):
            tables[self.map.table].append(SimData(start, values=[0] * (end - start), datatype=DataType.REGISTERS, readonly=True))
        ident = self.map.identity
        if self.map.sunspec is None:
            for start, end in ident.blocks:
                tables[ident.table].append(SimData(start, values=self._identity_registers(start, end), datatype=DataType.REGISTERS, readonly=True))
        for entries in tables.values():
            if not entries:
                entries.append(SimData(65534, datatype=DataType.INVALID))
        return SimDevice(id=self.unit, simdata=(bits, list(bits), tables["holding"], tables["input"]), action=action)  # type: ignore[arg-type]

    def _served(self, table: str) -> list[tuple[int, int]]:
        if self.map.sunspec is not None:
            end = self.model_base + 2 + self.map.sunspec.length + 2
            return [(self.sunspec_base, end)]
        return list(self.map.blocks)

    def _identity_registers(self, start: int, end: int) -> list[int]:
        regs = [0] * (end - start)
        ident = self.map.identity
        if ident.serial is not None:
            p = ident.serial
            data = encode_string(self.serial, p.count) if p.type == "string" else self.map.encode(p, float(self.serial))
            regs[p.address - start:p.address - start + len(data)] = data
        if ident.model_code is not None:
            regs[ident.model_code.address - start] = 0x0070
        return regs

    def reading(self) -> MeterReading:
        if self.faults.frozen and self._frozen is not None:
            return self._frozen
        r = self.plant.reading(self.point)
        g = self.faults.gain
        if g != 1.0:
            r = MeterReading(r.voltage, tuple(x * g for x in r.current), tuple(x * g for x in r.power),  # type: ignore[arg-type]
                             r.frequency, r.import_wh, r.export_wh)
        self._frozen = r
        return r

    def fill(self, start: int, registers: list[int]) -> None:
        """Write the current values of every point into ``registers`` (the table starting at ``start``)."""
        r = self.reading()
        m = self.map
        values = {
            "voltage_l1": r.voltage[0], "voltage_l2": r.voltage[1], "voltage_l3": r.voltage[2],
            "current_l1": r.current[0], "current_l2": r.current[1], "current_l3": r.current[2],
            "current_total": sum(r.current), "power_l1": r.power[0], "power_l2": r.power[1], "power_l3": r.power[2],
            "total_power": r.total_power, "frequency": r.frequency,
            "import_energy": r.import_wh / 1000.0, "export_energy": r.export_wh / 1000.0,
            "total_energy": (r.import_wh + r.export_wh) / 1000.0,
        }
        base = self.model_base
        if m.sunspec is not None:
            self._fill_sunspec(start, registers)
            for offset, sf in m.sunspec.scale_factors.items():
                registers[base + offset - start] = sf & 0xFFFF
        for name, p in m.points.items():
            exponent = m.sunspec.scale_factors[p.scale_factor] if m.sunspec and p.scale_factor is not None else 0
            value = values[name] * (1000.0 if p.unit == "Wh" else 1.0)
            regs = m.encode(p, value, exponent)
            at = base + p.address - start
            registers[at:at + len(regs)] = regs

    def _fill_sunspec(self, start: int, registers: list[int]) -> None:
        spec = self.map.sunspec
        assert spec is not None
        b = self.sunspec_base - start
        registers[b:b + 2] = list(SUNS)
        registers[b + 2:b + 4] = [1, _COMMON_LENGTH]
        common = [0] * _COMMON_LENGTH
        common[0:16] = encode_string("evhil", 16)
        common[16:32] = encode_string("emulated 203", 16)
        common[40:48] = encode_string("1.0", 8)
        common[48:64] = encode_string(self.serial, 16)
        common[64] = self.unit
        registers[b + 4:b + 4 + _COMMON_LENGTH] = common
        m = self.model_base - start
        if registers[m] != spec.model:  # first fill: the model header, unimplemented points, the end marker
            registers[m:m + 2] = [spec.model, spec.length]
            registers[m + 2:m + 2 + spec.length] = [0x8000] * spec.length
            registers[m + 2 + 36:m + 2 + 52] = [0] * 16  # acc32 energies: 0 = not implemented
            registers[m + 2 + 53:m + 2 + 55] = [0, 0]  # Evt bitfield
            registers[m + 2 + spec.length:m + 4 + spec.length] = [0xFFFF, 0]


class ModbusMeterEmulator:
    """Serves emulated meters ``{unit: (model, plant point)}`` on ``host`` (127.0.0.1), ``port`` (0: free)."""

    def __init__(
        self, plant: Plant, units: dict[int, tuple[str, str]], *, host: str = "127.0.0.1", port: int = 0,
        latency: float | None = None, framer: str = "socket",
    ) -> None:
        self.plant = plant
        self.meters = {unit: _Meter(plant, unit, model, point) for unit, (model, point) in units.items()}
        self.host = host
        self.port = port
        self.latency = MODBUS_TCP_LATENCY_S if latency is None else latency
        self.framer = FramerType.RTU if framer == "rtu" else FramerType.SOCKET
        self._server: ModbusTcpServer | None = None

    def faults(self, unit: int) -> Faults:
        """Fault controls of the meter at ``unit``."""
        return self.meters[unit].faults

    async def start(self) -> None:
        if self.port == 0:
            self.port = await _free_port(self.host)
        devices = [m.device(partial(self._action, m)) for m in self.meters.values()]
        self._server = ModbusTcpServer(
            devices, framer=self.framer, address=(self.host, self.port), trace_packet=self._trace_packet,
            trace_connect=self._trace_connect,
        )
        await self._server.serve_forever(background=True)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
            self._server = None

    async def _action(self, meter: _Meter, fc: int, start: int, address: int, count: int, registers: list[int],
                      set_values: list[int] | list[bool] | None) -> ExcCodes | None:
        if set_values is not None:
            return None
        f = meter.faults
        meter.reads += 1
        while f.no_reply or f.drop_connection:
            if f.drop_connection:
                self._drop_all()
            await asyncio.sleep(0.02)
        delay = self.latency + f.latency + f.late_reply
        if delay > 0:
            await asyncio.sleep(delay)
        limit = meter.map.max_registers
        if count > limit:
            return ExcCodes.ILLEGAL_VALUE
        if fc == meter.map.function_code:
            meter.fill(start, registers)
        return None

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if sending and any(m.faults.garbage_reply for m in self.meters.values()):
            return data[:7] + bytes(b ^ 0x5A for b in data[7:]) if self.framer is FramerType.SOCKET else data[::-1]
        return data

    def _trace_connect(self, connected: bool) -> None:
        if connected and any(m.faults.drop_connection for m in self.meters.values()):
            asyncio.get_running_loop().call_soon(self._drop_all)

    def _drop_all(self) -> None:
        if self._server is None:
            return
        for conn in list(self._server.active_connections.values()):
            if conn.transport is not None:
                conn.transport.close()


async def _free_port(host: str) -> int:
    """A port nobody listens on now (pymodbus does not report the port it bound for port 0)."""
    server = await asyncio.start_server(lambda r, w: None, host, 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return port

