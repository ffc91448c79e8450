"""Energy meters: the driver's exact Modbus requests, the emulator from a plain pymodbus client, and the
driver against the emulator over TCP and RTU-over-TCP, with faults."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest
from pymodbus.client import ModbusTcpClient

from hil.emulators.loop import EmulatorLoop
from hil.emulators.modbus_meter import ModbusMeterEmulator
from hil.instruments.energy_meter import EnergyMeter
from hil.instruments.errors import InstrumentReportedError, InstrumentUnreachable
from hil.plant import Plant, Port, Site


def f32(*values: float) -> bytes:
    return b"".join(struct.pack(">f", v) for v in values)


class ScriptedModbus:
    """A Modbus TCP peer that expects an exact sequence of request PDUs and answers with recorded ones."""

    def __init__(self, script: list[tuple[str, bytes]], unit: int = 1) -> None:
        self.script = list(script)
        self.unit = unit
        self.failures: list[str] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            while self.script:
                header = conn.recv(7)
                if len(header) < 7:
                    self.failures.append("connection closed early")
                    return
                tid, _, length, unit = struct.unpack(">HHHB", header)
                pdu = conn.recv(length - 1)
                expected, reply = self.script.pop(0)
                if pdu.hex().upper() != expected.replace(" ", "") or unit != self.unit:
                    self.failures.append(f"expected unit {self.unit} {expected}, got unit {unit} {pdu.hex().upper()}")
                conn.sendall(struct.pack(">HHHB", tid, 0, len(reply) + 1, unit) + reply)

    def done(self) -> None:
        self.thread.join(timeout=2.0)
        self.sock.close()
        assert not self.failures, self.failures
        assert not self.script, f"never requested: {self.script}"


def scripted_meter(model: str, script: list[tuple[str, bytes]], unit: int = 1) -> tuple[EnergyMeter, ScriptedModbus]:
    peer = ScriptedModbus(script, unit)
    return EnergyMeter(model, host="127.0.0.1", port=peer.port, unit=unit, name="m1", timeout_s=1.0), peer


# -- exact exchanges -------------------------------------------------------------------------------------
def test_sdm630_reads_one_float_big_endian_exact() -> None:
    meter, peer = scripted_meter("sdm630", [("04 0034 0002", bytes([4, 4]) + f32(6000.0))])
    assert meter.open().read_point("total_power") == 6000.0
    meter.close()
    peer.done()


def test_sdm630_full_read_is_two_requests_within_80_registers_exact() -> None:
    block = bytearray(152)
    for k, v in enumerate((230.0, 231.0, 229.0, 10.0, 11.0, 12.0, 2300.0, 2541.0, 2748.0)):
        block[4 * k:4 * k + 4] = f32(v)
    block[0x34 * 2:0x34 * 2 + 4] = f32(7589.0)
    block[0x46 * 2:0x46 * 2 + 12] = f32(49.98, 12.5, 0.25)
    meter, peer = scripted_meter("sdm630", [
        ("04 0000 004C", bytes([4, 152]) + bytes(block)),
        ("04 0156 0002", bytes([4, 4]) + f32(12.75)),
    ], unit=7)
    meter.unit = 7
    values = meter.open().read()
    assert values.voltage == (230.0, 231.0, 229.0) and values.current == (10.0, 11.0, 12.0)
    assert values.total_power == 7589.0 and values.frequency == pytest.approx(49.98)
    assert (values.import_kwh, values.export_kwh) == (12.5, 0.25)
    meter.close()
    peer.done()


def test_em24_int32_low_word_first_and_split_reads_exact() -> None:
    meter, peer = scripted_meter("em24", [
        ("04 0000 0002", bytes([4, 4, 0x08, 0xFD, 0x00, 0x00])),  # 2301 -> 230.1 V, LSW first
        ("04 0000 002A", bytes([4, 84]) + bytes(84)),
        ("04 0033 001D", bytes([4, 58]) + bytes(58)),
    ])
    meter.open()
    assert meter.read_point("voltage_l1") == pytest.approx(230.1)
    meter.read()  # 80 registers exceed the EM24's 50: two requests
    meter.close()
    peer.done()


def test_sunspec_scan_and_scale_factor_exact() -> None:
    meter, peer = scripted_meter("sunspec", [
        ("03 9C40 0002", bytes([3, 4, 0x53, 0x75, 0x6E, 0x53])),  # 40000: "SunS"
        ("03 9C42 0002", bytes([3, 4, 0, 1, 0, 66])),  # model 1, length 66
        ("03 9C86 0002", bytes([3, 4, 0, 203, 0, 105])),  # 40070: model 203, length 105
        ("03 9CF1 0002", bytes([3, 4, 0xFF, 0xFF, 0, 0])),  # 40177: end
        ("03 9C98 0005", bytes([3, 10, 0x04, 0x4C, 0, 0, 0, 0, 0, 0, 0, 1])),  # W = 1100 x 10^1
    ], unit=10)
    meter.unit = 10
    assert meter.open().read_point("total_power") == 11000.0
    meter.close()
    peer.done()


def test_exception_response_is_a_typed_error_exact() -> None:
    meter, peer = scripted_meter("sdm630", [("04 0034 0002", bytes([0x84, 0x02]))])
    with pytest.raises(InstrumentReportedError) as err:
        meter.open().read_point("total_power")
    assert err.value.code == 2 and "illegal data address" in str(err.value) and "m1 (127.0.0.1:" in str(err.value)
    meter.close()
    peer.done()


def test_unreachable_meter_names_itself() -> None:
    meter = EnergyMeter("sdm630", host="127.0.0.1", port=9, unit=3, name="m9", timeout_s=0.5)
    with pytest.raises(InstrumentUnreachable, match=r"m9 \(127.0.0.1:9 unit 3\): cannot connect"):
        meter.open()


# -- the emulator from a plain pymodbus client ---------------------------------------------------------
@pytest.fixture
def site_plant() -> Plant:
    return Plant([Port("p1")], Site(unmanaged_w=(1000.0, 2000.0, 3000.0)))


@pytest.fixture
def emulator(emulator_loop: EmulatorLoop, site_plant: Plant) -> Iterator[ModbusMeterEmulator]:
    emu = ModbusMeterEmulator(site_plant, {1: ("sdm630", "site"), 2: ("em24", "site"), 10: ("sunspec", "site")}, latency=0.0)
    emulator_loop.run(emu.start())
    yield emu
    emulator_loop.run(emu.stop())


def test_plain_client_reads_sdm630_floats(emulator: ModbusMeterEmulator) -> None:
    client = ModbusTcpClient(emulator.host, port=emulator.port, retries=0, timeout=1)
    assert client.connect()
    try:
        rr = client.read_input_registers(0x000C, count=6, device_id=1)
        assert not rr.isError()
        powers = [client.convert_from_registers(rr.registers[k:k + 2], client.DATATYPE.FLOAT32) for k in (0, 2, 4)]
        assert powers == [1000.0, 2000.0, 3000.0]
        unmapped = client.read_input_registers(0x0100, count=2, device_id=1)
        assert unmapped.isError() and unmapped.exception_code == 2
        oversize = client.read_input_registers(0, count=60, device_id=2)  # EM24 serves 80, answers at most 50
        assert oversize.isError() and oversize.exception_code == 3
    finally:
        client.close()


def test_plain_client_finds_sunspec_models_1_and_203(emulator: ModbusMeterEmulator) -> None:
    client = ModbusTcpClient(emulator.host, port=emulator.port, retries=0, timeout=1)
    assert client.connect()
    try:
        assert client.read_holding_registers(40000, count=2, device_id=10).registers == [0x5375, 0x6E53]
        address, models = 40002, []
        while True:
            model_id, length = client.read_holding_registers(address, count=2, device_id=10).registers
            if model_id == 0xFFFF:
                break
            models.append(model_id)
            address += 2 + length
        assert models == [1, 203]
        w, sf = client.read_holding_registers(40088, count=5, device_id=10).registers[::4]
        assert w * 10 ** (sf - 0x10000 if sf >= 0x8000 else sf) == 6000
    finally:
        client.close()


# -- driver against emulator ------------------------------------------------------------------------------
@pytest.mark.parametrize(("unit", "model"), [(1, "sdm630"), (2, "em24"), (10, "sunspec")])
def test_driver_reads_what_the_plant_measures(emulator: ModbusMeterEmulator, unit: int, model: str) -> None:
    meter = EnergyMeter(model, host=emulator.host, port=emulator.port, unit=unit, name=model).open()
    try:
        values = meter.read()
        assert values.voltage == pytest.approx((230.0, 230.0, 230.0), abs=0.1)
        assert values.power == pytest.approx((1000.0, 2000.0, 3000.0), abs=10.0)
        assert values.current == pytest.approx((1000 / 230, 2000 / 230, 3000 / 230), abs=0.1)
        assert values.total_power == pytest.approx(6000.0, abs=10.0) and values.frequency == pytest.approx(50.0)
        assert meter.identify().serial
    finally:
        meter.close()


def test_energy_counts_up_as_the_plant_runs(emulator: ModbusMeterEmulator, site_plant: Plant) -> None:
    meter = EnergyMeter("sunspec", host=emulator.host, port=emulator.port, unit=10).open()
    site_plant.step(3600.0)  # an hour at 6 kW
    assert meter.read().import_kwh == pytest.approx(6.0, abs=0.01)
    meter.close()


def test_fault_gain_frozen_and_no_reply(emulator: ModbusMeterEmulator, site_plant: Plant) -> None:
    meter = EnergyMeter("sdm630", host=emulator.host, port=emulator.port, unit=1, timeout_s=0.3).open()
    faults = emulator.faults(1)
    try:
        faults.gain = 0.8
        assert meter.read_point("total_power") == pytest.approx(4800.0)
        faults.frozen = True
        site_plant.site.unmanaged_w = (0.0, 0.0, 0.0)
        assert meter.read_point("total_power") == pytest.approx(4800.0)
        faults.clear()
        assert meter.read_point("total_power") == 0.0
        faults.no_reply = True
        start = time.monotonic()
        with pytest.raises(InstrumentUnreachable, match="no reply"):
            meter.read_point("total_power")
        assert time.monotonic() - start < 2.0
        faults.clear()
        assert meter.read_point("frequency") == 50.0
        assert emulator.faults(2).gain == 1.0, "faults are per unit"
    finally:
        faults.clear()
        meter.close()


def test_fault_dropped_connection_and_garbage(emulator: ModbusMeterEmulator) -> None:
    meter = EnergyMeter("sdm630", host=emulator.host, port=emulator.port, unit=1, timeout_s=0.3).open()
    faults = emulator.faults(1)
    try:
        faults.drop_connection = True
        with pytest.raises(InstrumentUnreachable):
            meter.read_point("frequency")
        faults.clear()
        assert meter.read_point("frequency") == 50.0
        faults.garbage_reply = True
        with pytest.raises((InstrumentUnreachable, InstrumentReportedError)):
            meter.read_point("frequency")
        faults.clear()
        assert meter.read_point("frequency") == 50.0
    finally:
        faults.clear()
        meter.close()


def test_latency_setting(emulator: ModbusMeterEmulator) -> None:
    meter = EnergyMeter("sdm630", host=emulator.host, port=emulator.port, unit=1).open()
    emulator.latency = 0.05
    start = time.monotonic()
    meter.read_point("frequency")
    assert time.monotonic() - start >= 0.05
    emulator.latency = 0.0
    meter.close()


def test_rtu_framing_over_tcp(emulator_loop: EmulatorLoop, site_plant: Plant) -> None:
    emu = ModbusMeterEmulator(site_plant, {5: ("sdm630", "site")}, latency=0.0, framer="rtu")
    emulator_loop.run(emu.start())
    meter = EnergyMeter("sdm630", serial_port=f"socket://{emu.host}:{emu.port}", unit=5, name="rtu", timeout_s=1.0)
    try:
        assert meter.open().read().total_power == pytest.approx(6000.0)
        assert "socket://" in meter.address and "unit 5" in meter.address
    finally:
        meter.close()
        emulator_loop.run(emu.stop())


@pytest.mark.asyncio
async def test_async_wrappers(emulator: ModbusMeterEmulator) -> None:
    meter = EnergyMeter("em24", host=emulator.host, port=emulator.port, unit=2).open()
    assert (await meter.aread()).total_power == pytest.approx(6000.0)
    assert (await meter.aidentify()).model == "EM24"
    meter.close()
