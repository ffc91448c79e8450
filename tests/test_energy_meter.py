"""Energy meters: the register maps, the driver's exact Modbus requests, the emulator from a plain pymodbus
client, and the driver against the emulator over TCP and RTU-over-TCP, with faults."""

from __future__ import annotations

import math
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from pymodbus.client import ModbusTcpClient

from hil.emulators.loop import EmulatorLoop
from hil.emulators.modbus_meter import ModbusMeterEmulator
from hil.instruments.energy_meter import EnergyMeter
from hil.instruments.errors import InstrumentProtocolError, InstrumentReportedError, InstrumentUnreachable
from hil.instruments.register_map import MODELS, load_map
from hil.plant import Plant, Port, Site


def f32(*values: float) -> bytes:
    return b"".join(struct.pack(">f", v) for v in values)


def eventually(check: Callable[[], bool], timeout: float = 2.0) -> None:
    """Wait until ``check()`` holds (the emulator updates its registers every few ms)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


# -- register maps -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", MODELS)
def test_map_round_trip_and_read_plan(model: str) -> None:
    m = load_map(model)
    values = {name: 0.0 for name in m.points} | {
        "voltage_l1": 230.1, "current_l2": 12.3, "power_l3": -2500.0, "total_power": 7590.0, "frequency": 49.98,
        "import_energy": 1234.5,
    }
    base = m.model_address(m.sunspec.bases[0]) if m.sunspec else 0
    image = m.encode(values, serial="4711")
    regs = {a + k: r for a, block in image[m.function_code].items() for k, r in enumerate(block)}
    plan = m.reads(m.points, base)
    assert all(count <= m.max_registers for _, count in plan)
    decoded = m.decode({a: regs[a] for start, count in plan for a in range(start, start + count)}, base=base)
    tol = {"sdm630": 1e-3, "em24": 0.06, "sunspec": 10.0}[model]
    for name in ("voltage_l1", "current_l2", "power_l3", "total_power", "frequency", "import_energy"):
        assert decoded[name] == pytest.approx(values[name], abs=tol), name


def test_map_layouts_are_the_documented_ones() -> None:
    sdm, em24, sunspec = load_map("sdm630"), load_map("em24"), load_map("sunspec")
    assert (sdm.function_code, sdm.word_order, sdm.max_registers, sdm.points["total_power"].address) == (4, "big", 80, 0x34)
    assert (em24.function_code, em24.word_order, em24.points["export_energy"].address) == (4, "little", 0x4E)
    assert em24.encode_point(em24.points["voltage_l1"], 230.1) == [2301, 0]  # LSW first
    assert sdm.encode_point(sdm.points["voltage_l1"], 230.0) == [0x4366, 0x0000]
    image = sunspec.encode({})[3][40000]
    assert image[:4] == [0x5375, 0x6E53, 1, 66] and image[70:72] == [203, 105] and image[177:179] == [0xFFFF, 0]
    assert sunspec.points["import_energy"].unit == "Wh"


# -- exact exchanges with a scripted peer -----------------------------------------------------------------------
class ScriptedModbus:
    """A Modbus TCP peer that expects an exact sequence of requests (unit id + PDU) and answers with
    canned PDUs; it also checks the MBAP header (protocol id 0, length)."""

    def __init__(self, script: list[tuple[str, bytes]], unit: int = 1) -> None:
        self.script = list(script)
        self.unit = unit
        self.failures: list[str] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _recv(self, conn: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n and (chunk := conn.recv(n - len(data))):
            data += chunk
        return data

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            while self.script:
                header = self._recv(conn, 7)
                if len(header) < 7:
                    self.failures.append("connection closed early")
                    return
                tid, protocol, length, unit = struct.unpack(">HHHB", header)
                pdu = self._recv(conn, length - 1)
                expected, reply = self.script.pop(0)
                got = f"unit {unit} {pdu.hex().upper()}"
                if protocol != 0 or got != f"unit {self.unit} {expected.replace(' ', '')}":
                    self.failures.append(f"expected unit {self.unit} {expected}, got {got} (protocol {protocol})")
                conn.sendall(struct.pack(">HHHB", tid, 0, len(reply) + 1, unit) + reply)

    def done(self) -> None:
        self.thread.join(timeout=2.0)
        self.sock.close()
        assert not self.failures, self.failures
        assert not self.script, f"never requested: {self.script}"


def scripted_meter(model: str, script: list[tuple[str, bytes]], unit: int = 1) -> tuple[EnergyMeter, ScriptedModbus]:
    peer = ScriptedModbus(script, unit)
    return EnergyMeter(model, host="127.0.0.1", port=peer.port, unit=unit, name="m1", timeout_s=1.0), peer


def test_sdm630_reads_one_float_big_endian_exact() -> None:
    meter, peer = scripted_meter("sdm630", [
        ("04 0000 0002", bytes([4, 4, 0x43, 0x66, 0x00, 0x00])),  # 230.0 V
        ("04 0034 0002", bytes([4, 4]) + f32(6000.0)),
    ])
    meter.open()
    assert meter.read_point("voltage_l1") == 230.0
    assert meter.read_total_power() == 6000.0
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
        ("03 FC00 0002", bytes([3, 4, 0x00, 0x01, 0xE2, 0x40])),  # serial 123456
        ("03 FC02 0001", bytes([3, 2, 0x00, 0x70])),
    ], unit=7)
    values = meter.open().read()
    assert values.voltage == (230.0, 231.0, 229.0) and values.current == (10.0, 11.0, 12.0)
    assert values.power == (2300.0, 2541.0, 2748.0) and values.total_power == 7589.0
    assert values.frequency == pytest.approx(49.98) and (values.import_kwh, values.export_kwh) == (12.5, 0.25)
    identity = meter.identify()
    assert identity.summary == "Eastron SDM630 serial 123456" and identity.model_code == 0x70
    meter.close()
    peer.done()


def test_em24_int32_low_word_first_split_reads_and_identity_exact() -> None:
    meter, peer = scripted_meter("em24", [
        ("04 0000 0002", bytes([4, 4, 0x08, 0xFD, 0x00, 0x00])),  # 2301 -> 230.1 V, LSW first
        ("04 0000 002A", bytes([4, 84]) + bytes(84)),  # 80 registers exceed the EM24's 50: two requests
        ("04 0033 001D", bytes([4, 58, 0x01, 0xF4, 0x30, 0x39, 0x00, 0x00]) + bytes(52)),  # 50.0 Hz, 1234.5 kWh
        ("03 5000 0007", bytes([3, 14]) + b"BX12345".ljust(14, b"\0")),
        ("03 000B 0001", bytes([3, 2, 0x06, 0x70])),  # 1648
    ], unit=3)
    meter.open()
    assert meter.read_point("voltage_l1") == pytest.approx(230.1)
    values = meter.read()
    assert values.frequency == 50.0 and values.import_kwh == pytest.approx(1234.5)
    identity = meter.identify()
    assert (identity.maker, identity.model, identity.serial) == ("Carlo Gavazzi", "EM24DINAV23XE1X", "BX12345")
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
    assert meter.open().read_point("total_power") == 11000.0
    assert meter.sunspec_models() == [1, 203]
    meter.close()
    peer.done()


def test_sunspec_scan_falls_back_to_base_0_and_reads_common_model_exact() -> None:
    common = bytearray(136)
    common[0:4] = bytes([0, 1, 0, 66])
    common[4:10], common[36:44], common[100:105] = b"Acme\0\0", b"M203-X\0\0", b"S-42\0"
    meter, peer = scripted_meter("sunspec", [
        ("03 9C40 0002", bytes([0x83, 0x02])),  # exception 02 at 40000
        ("03 0000 0002", bytes([3, 4, 0x53, 0x75, 0x6E, 0x53])),
        ("03 0002 0002", bytes([3, 4, 0, 1, 0, 66])),
        ("03 0046 0002", bytes([3, 4, 0, 203, 0, 105])),
        ("03 00B1 0002", bytes([3, 4, 0xFF, 0xFF, 0, 0])),
        ("03 0002 0044", bytes([3, 136]) + bytes(common)),
    ])
    identity = meter.open().identify()
    assert (identity.maker, identity.model, identity.serial) == ("Acme", "M203-X", "S-42")
    assert identity.summary == "Acme M203-X serial S-42"
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
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]  # bound, then closed: nobody listens there
    meter = EnergyMeter("sdm630", host="127.0.0.1", port=port, unit=3, name="m9", timeout_s=0.5)
    with pytest.raises(InstrumentUnreachable, match=rf"m9 \(127.0.0.1:{port} unit 3\): cannot connect"):
        meter.open()


# -- the emulator from a plain pymodbus client -----------------------------------------------------------------
@pytest.fixture
def site_plant() -> Plant:
    return Plant([Port("p1")], Site(unmanaged_w=(1000.0, 2000.0, 3000.0)))


@pytest.fixture
def emulator(emulator_loop: EmulatorLoop, site_plant: Plant) -> Iterator[ModbusMeterEmulator]:
    emu = ModbusMeterEmulator(
        site_plant, {1: ("sdm630", "site"), 2: ("em24", "site"), 10: ("sunspec", "site")}, latency=0.0,
        update_period=0.01,
    )
    emulator_loop.run(emu.start())
    yield emu
    emulator_loop.run(emu.stop())


@pytest.fixture
def client(emulator: ModbusMeterEmulator) -> Iterator[ModbusTcpClient]:
    c = ModbusTcpClient(emulator.host, port=emulator.port, retries=0, timeout=1)
    assert c.connect()
    yield c
    c.close()


def test_plain_client_reads_sdm630_floats(client: ModbusTcpClient) -> None:
    rr = client.read_input_registers(0x0000, count=18, device_id=1)
    assert not rr.isError()
    floats = [client.convert_from_registers(rr.registers[k:k + 2], client.DATATYPE.FLOAT32) for k in range(0, 18, 2)]
    assert floats[:3] == [230.0, 230.0, 230.0] and floats[6:] == [1000.0, 2000.0, 3000.0]
    assert floats[3:6] == pytest.approx([1000 / 230, 2000 / 230, 3000 / 230])


def test_plain_client_gets_modbus_exceptions(client: ModbusTcpClient) -> None:
    unmapped = client.read_input_registers(0x0100, count=2, device_id=1)
    assert unmapped.isError() and unmapped.exception_code == 2
    straddling = client.read_input_registers(0x004A, count=4, device_id=1)  # runs past the served block
    assert straddling.isError() and straddling.exception_code == 2
    oversize = client.read_input_registers(0, count=60, device_id=2)  # EM24 serves 80, answers at most 50
    assert oversize.isError() and oversize.exception_code == 3
    write = client.write_register(0xFC00, 5, device_id=1)
    assert write.isError() and write.exception_code == 2
    ok = client.read_holding_registers(0xFC00, count=3, device_id=1)
    assert not ok.isError() and ok.registers[2] == 0x0070


def test_plain_client_finds_sunspec_models_1_and_203(client: ModbusTcpClient) -> None:
    assert client.read_holding_registers(40000, count=2, device_id=10).registers == [0x5375, 0x6E53]
    address, models = 40002, []
    while True:
        model_id, length = client.read_holding_registers(address, count=2, device_id=10).registers
        if model_id == 0xFFFF:
            break
        models.append((model_id, address, length))
        address += 2 + length
    assert models == [(1, 40002, 66), (203, 40070, 105)] and address == 40177
    w, sf = client.read_holding_registers(40088, count=5, device_id=10).registers[::4]
    assert w * 10 ** (sf - 0x10000 if sf >= 0x8000 else sf) == 6000
    assert client.read_holding_registers(39998, count=2, device_id=10).exception_code == 2


# -- driver against emulator -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("unit", "model"), [(1, "sdm630"), (2, "em24"), (10, "sunspec")])
def test_driver_reads_what_the_plant_measures(emulator: ModbusMeterEmulator, unit: int, model: str) -> None:
    meter = EnergyMeter(model, host=emulator.host, port=emulator.port, unit=unit, name=model).open()
    try:
        values = meter.read()
        assert values.voltage == pytest.approx((230.0, 230.0, 230.0), abs=0.1)
        assert values.power == pytest.approx((1000.0, 2000.0, 3000.0), abs=10.0)
        assert values.current == pytest.approx((1000 / 230, 2000 / 230, 3000 / 230), abs=0.1)
        assert values.total_power == pytest.approx(6000.0, abs=10.0) and values.frequency == pytest.approx(50.0)
        assert (values.import_kwh, values.export_kwh) == (0.0, 0.0)
        identity = meter.identify()
        assert identity.serial and identity.serial in identity.summary
    finally:
        meter.close()


def test_driver_identifies_sunspec_from_model_1(emulator: ModbusMeterEmulator) -> None:
    meter = EnergyMeter("sunspec", host=emulator.host, port=emulator.port, unit=10).open()
    identity = meter.identify()
    assert (identity.maker, identity.model) == ("evhil", "emulated SunSpec 203")
    assert identity.serial == emulator.meters[10].serial and meter.sunspec_models() == [1, 203]
    meter.close()


def test_energy_counts_up_as_the_plant_runs(emulator: ModbusMeterEmulator, site_plant: Plant) -> None:
    meters = [EnergyMeter(model, host=emulator.host, port=emulator.port, unit=unit).open()
              for unit, model in ((1, "sdm630"), (2, "em24"), (10, "sunspec"))]
    site_plant.step(3600.0)  # an hour at 6 kW
    for meter in meters:
        eventually(lambda: meter.read().import_kwh > 5.9)
        assert meter.read().import_kwh == pytest.approx(6.0, abs=0.1)
        meter.close()


def test_compute_on_read_is_always_fresh(emulator_loop: EmulatorLoop, site_plant: Plant) -> None:
    emu = ModbusMeterEmulator(site_plant, {1: ("sdm630", "site")}, latency=0.0, update_period=0)
    emulator_loop.run(emu.start())
    meter = EnergyMeter("sdm630", host=emu.host, port=emu.port, unit=1).open()
    try:
        assert meter.read_total_power() == 6000.0
        site_plant.site.unmanaged_w = (0.0, 0.0, 500.0)
        assert meter.read_total_power() == 500.0
    finally:
        meter.close()
        emulator_loop.run(emu.stop())


def test_fault_gain_and_frozen(emulator: ModbusMeterEmulator, site_plant: Plant) -> None:
    meter = EnergyMeter("sdm630", host=emulator.host, port=emulator.port, unit=1, timeout_s=0.3).open()
    faults = emulator.faults(1)
    try:
        faults.gain = 0.8
        eventually(lambda: meter.read_total_power() == pytest.approx(4800.0))
        assert meter.read().current[0] == pytest.approx(0.8 * 1000 / 230)
        assert emulator.faults(2).gain == 1.0, "faults are per unit"
        faults.frozen = True
        time.sleep(0.05)
        site_plant.site.unmanaged_w = (0.0, 0.0, 0.0)
        time.sleep(0.1)  # ten update periods
        assert meter.read_total_power() == pytest.approx(4800.0)
        faults.clear()
        eventually(lambda: meter.read_total_power() == 0.0)
    finally:
        faults.clear()
        meter.close()


def test_fault_no_reply_times_out_then_recovers(emulator: ModbusMeterEmulator) -> None:
    meter = EnergyMeter("sdm630", host=emulator.host, port=emulator.port, unit=1, name="m1", timeout_s=0.3).open()
    faults = emulator.faults(1)
    try:
        faults.no_reply = True
        start = time.monotonic()
        with pytest.raises(InstrumentUnreachable, match=r"m1 \(127.0.0.1:\d+ unit 1\): no reply reading input registers 70..71 within 0.3 s"):
            meter.read_point("frequency")
        assert time.monotonic() - start < 0.6, "one timeout, no hidden retries"
    finally:
        faults.clear()
    assert meter.read_point("frequency") == 50.0
    meter.close()


def test_fault_late_reply_is_not_taken_for_the_next_answer(emulator: ModbusMeterEmulator) -> None:
    meter = EnergyMeter("sdm630", host=emulator.host, port=emulator.port, unit=1, timeout_s=0.2).open()
    faults = emulator.faults(1)
    faults.late_reply = 0.4
    with pytest.raises(InstrumentUnreachable, match="no reply"):
        meter.read_point("voltage_l1")
    faults.clear()
    assert meter.read_point("frequency") == 50.0  # not the stale voltage reply
    time.sleep(0.3)
    assert meter.read_point("frequency") == 50.0
    meter.close()


def test_fault_dropped_connection_then_reconnect(emulator: ModbusMeterEmulator) -> None:
    meter = EnergyMeter("sdm630", host=emulator.host, port=emulator.port, unit=1, timeout_s=0.3).open()
    other = EnergyMeter("em24", host=emulator.host, port=emulator.port, unit=2, timeout_s=0.3).open()
    faults = emulator.faults(1)
    try:
        faults.drop_connection = True
        with pytest.raises(InstrumentUnreachable, match="connection lost"):
            meter.read_point("frequency")
        assert other.read_point("frequency") == 50.0, "only the connection of the faulty unit is dropped"
        faults.clear()
        assert meter.read_point("frequency") == 50.0  # reconnects by itself
    finally:
        faults.clear()
        meter.close()
        other.close()


def test_one_drop_is_healed_by_the_reconnect(emulator: ModbusMeterEmulator, emulator_loop: EmulatorLoop) -> None:
    meter = EnergyMeter("em24", host=emulator.host, port=emulator.port, unit=2).open()
    assert meter.read_point("frequency") == 50.0

    async def drop_all() -> None:
        assert emulator._server is not None
        for conn in list(emulator._server.active_connections.values()):
            conn.transport.close()

    emulator_loop.run(drop_all())
    assert meter.read_point("frequency") == 50.0  # the dropped connection is re-opened once, silently
    meter.close()


def test_fault_garbage_reply_is_a_protocol_error(emulator: ModbusMeterEmulator) -> None:
    meter = EnergyMeter("sunspec", host=emulator.host, port=emulator.port, unit=10, timeout_s=0.3).open()
    faults = emulator.faults(10)
    try:
        faults.garbage_reply = True
        with pytest.raises(InstrumentProtocolError, match="bad reply"):
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
    emu = ModbusMeterEmulator(site_plant, {5: ("sdm630", "site"), 6: ("sunspec", "site")}, latency=0.0, framer="rtu")
    emulator_loop.run(emu.start())
    meter = EnergyMeter("sdm630", serial_port=f"socket://{emu.host}:{emu.port}", unit=5, name="rtu", timeout_s=1.0,
                        baudrate=115200)
    sunspec = EnergyMeter("sunspec", serial_port=f"socket://{emu.host}:{emu.port}", unit=6, baudrate=115200)
    try:
        assert meter.open().read().total_power == pytest.approx(6000.0)
        assert meter.address == f"socket://{emu.host}:{emu.port} 115200 baud unit 5"
        assert meter.identify().model == "SDM630"
        assert sunspec.open().read().total_power == pytest.approx(6000.0) and sunspec.sunspec_models() == [1, 203]
    finally:
        sunspec.close()
        meter.close()
        emulator_loop.run(emu.stop())


async def test_async_wrappers(emulator: ModbusMeterEmulator) -> None:
    meter = EnergyMeter("em24", host=emulator.host, port=emulator.port, unit=2).open()
    assert (await meter.aread()).total_power == pytest.approx(6000.0)
    assert (await meter.aread_point("frequency")) == 50.0
    assert (await meter.aidentify()).model == "EM24DINAV23XE1X"
    meter.close()


def test_missing_quantities_are_nan() -> None:
    assert math.isnan(load_map("sunspec").decode({40092: 0x8000, 40088: 100}, ["total_power"], base=40070)["total_power"])
