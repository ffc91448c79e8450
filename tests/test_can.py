"""CAN: the DBC against known vectors, the socketcand hub from plain python-can clients, the emulated EV
and charger ECU, and the EVSimulator driver (exact frames on a virtual bus, and across the hub)."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator

import can
import pytest

from hil.emulators.can_hub import CanHub
from hil.emulators.charger_ecu import EmulatedChargerECU
from hil.emulators.ev import EmulatedEV
from hil.emulators.faults import ALL_IDS
from hil.emulators.loop import EmulatorLoop
from hil.instruments.chademo import SimState, load_dbc
from hil.instruments.errors import InstrumentProtocolError, InstrumentUnreachable
from hil.instruments.ev_simulator import EVSimulator
from hil.plant import Plant


def virtual(channel: str) -> can.BusABC:
    return can.Bus(interface="virtual", channel=channel, receive_own_messages=False)


def frames_for(bus: can.BusABC, seconds: float) -> dict[int, list[can.Message]]:
    seen: dict[int, list[can.Message]] = {}
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        msg = bus.recv(timeout=left)
        if msg is not None:
            seen.setdefault(msg.arbitration_id, []).append(msg)
    return seen


# -- DBC ------------------------------------------------------------------------------------------------
def test_dbc_decodes_the_reference_vector_little_endian() -> None:
    db = load_dbc()
    d = db.decode_message(0x102, bytes.fromhex("029A010000C95600"), decode_choices=False)
    assert (d["ProtocolNumber"], d["TargetBatteryVoltage"], d["ChargingCurrentRequest"], d["StateOfCharge"]) == (2, 410, 0, 86)
    assert (d["StatusChargingEnabled"], d["StatusContactorOpen"], d["StatusDischargeCompatible"]) == (1, 1, 1)
    assert db.encode_message(0x102, d) == bytes.fromhex("029A010000C95600"), "reserved bits must survive a round trip"


def test_dbc_multi_byte_fields_are_little_endian() -> None:
    data = load_dbc().encode_message(0x100, {"MinimumChargeCurrent": 0, "MinimumBatteryVoltage": 0,
                                             "MaximumBatteryVoltage": 435, "ChargedRateReference": 100})
    assert data[4:6] == bytes([0xB3, 0x01])


def test_dbc_fault_bits_in_specification_order() -> None:
    d = load_dbc().decode_message(0x102, bytes([2, 0, 0, 0, 0b00001, 0, 0, 0]), decode_choices=False)
    assert d["FaultOverVoltage"] == 1 and d["FaultVoltageDeviation"] == 0
    d = load_dbc().decode_message(0x102, bytes([2, 0, 0, 0, 0b10000, 0, 0, 0]), decode_choices=False)
    assert d["FaultVoltageDeviation"] == 1 and d["FaultOverVoltage"] == 0


# -- hub ------------------------------------------------------------------------------------------------
@pytest.fixture
def hub(emulator_loop: EmulatorLoop) -> Iterator[CanHub]:
    instance = CanHub()
    emulator_loop.run(instance.start())
    yield instance
    emulator_loop.run(instance.stop())


def test_hub_relays_between_plain_python_can_clients(hub: CanHub) -> None:
    a, b, other = can.Bus(**hub.address("can0")), can.Bus(**hub.address("can0")), can.Bus(**hub.address("can1"))
    try:
        a.send(can.Message(arbitration_id=0x123, data=b"\x01\x02\xff", is_extended_id=False))
        got = b.recv(timeout=2.0)
        assert got is not None and got.arbitration_id == 0x123 and bytes(got.data) == b"\x01\x02\xff"
        assert a.recv(timeout=0.2) is None, "a sender must not hear itself"
        assert other.recv(timeout=0.2) is None, "channels are separate buses"
        b.send(can.Message(arbitration_id=0x18FF50E5, data=b"", is_extended_id=True))
        got = a.recv(timeout=2.0)
        assert got is not None and got.is_extended_id and got.arbitration_id == 0x18FF50E5
    finally:
        for bus in (a, b, other):
            bus.shutdown()


def test_hub_survives_malformed_input(hub: CanHub) -> None:
    raw = socket.create_connection((hub.host, hub.port), timeout=2.0)
    try:
        assert raw.recv(64) == b"< hi >"
        raw.sendall(b"< open can0 >")
        assert raw.recv(64) == b"< ok >"
        raw.sendall(b"< send 7FFFFFFFF 9 zz >< bogus >garbage")
        assert b"error" in raw.recv(256)
    finally:
        raw.close()
    a, b = can.Bus(**hub.address("can0")), can.Bus(**hub.address("can0"))
    try:
        a.send(can.Message(arbitration_id=0x42, data=b"\x00", is_extended_id=False))
        assert b.recv(timeout=2.0) is not None
    finally:
        a.shutdown()
        b.shutdown()


# -- emulated EV and charger ---------------------------------------------------------------------------------
@pytest.fixture
def link(small_plant: Plant) -> Iterator[tuple[str, EmulatedEV, EmulatedChargerECU]]:
    channel = f"ev-{uuid.uuid4().hex}"
    ev_bus, ecu_bus = virtual(channel), virtual(channel)
    ev, ecu = EmulatedEV(small_plant, "p1", ev_bus), EmulatedChargerECU(small_plant, "p1", ecu_bus)
    ev.start()
    ecu.start()
    yield channel, ev, ecu
    ev.stop()
    ecu.stop()
    ev_bus.shutdown()
    ecu_bus.shutdown()


def test_emulated_ev_sends_its_frames_at_10_hz(link: tuple[str, EmulatedEV, EmulatedChargerECU], small_plant: Plant) -> None:
    channel, _, _ = link
    listener = virtual(channel)
    try:
        seen = frames_for(listener, 1.0)
    finally:
        listener.shutdown()
    for can_id in (0x100, 0x101, 0x102, 0x108, 0x109):
        assert 8 <= len(seen.get(can_id, [])) <= 12, {hex(k): len(v) for k, v in seen.items()}
    request = load_dbc().decode_message(0x102, seen[0x102][-1].data)
    battery = small_plant.port("p1").ev.battery  # type: ignore[union-attr]
    assert request["TargetBatteryVoltage"] == round(battery.max_voltage)
    assert request["StateOfCharge"] == round(battery.soc * 100)


@pytest.fixture
def driver(link: tuple[str, EmulatedEV, EmulatedChargerECU]) -> Iterator[EVSimulator]:
    sim = EVSimulator(interface="virtual", channel=link[0], name="ev1").open()
    yield sim
    sim.close()


def test_start_sequence_closes_the_contactor_when_energised(driver: EVSimulator, small_plant: Plant) -> None:
    assert driver.plug_in().state is SimState.PLUGGED
    assert driver.start().state is SimState.WAITING
    assert driver.ev_status().charging_enabled
    port = small_plant.port("p1")
    with small_plant.lock:
        port.stage.current_setpoint, port.stage.voltage_setpoint, port.stage.output_on = 20.0, 400.0, True
    status = driver.wait_for(lambda s: s.contactor_closed, timeout=3.0, what="contactor closed")
    assert status.state is SimState.CHARGING
    driver.wait_for(lambda s: s.battery_current > 15.0, timeout=3.0, what="current flowing")
    assert driver.charger_status().energised
    assert driver.stop().state is SimState.STOPPING
    with small_plant.lock:
        port.stage.output_on = False
    driver.wait_for(lambda s: s.state is SimState.STOPPED and not s.contactor_closed, timeout=3.0)
    assert driver.ev_status().stop_request


def test_output_off_is_a_charger_stop_for_the_ev(driver: EVSimulator, small_plant: Plant) -> None:
    driver.start()
    port = small_plant.port("p1")
    with small_plant.lock:
        port.stage.current_setpoint, port.stage.voltage_setpoint, port.stage.output_on = 10.0, 400.0, True
    driver.wait_for(lambda s: s.state is SimState.CHARGING, timeout=3.0)
    with small_plant.lock:
        port.stage.output_on = False
    driver.wait_for(lambda s: s.state is SimState.STOPPED, timeout=3.0, what="EV stopped")


def test_partial_and_total_silence(driver: EVSimulator, link: tuple[str, EmulatedEV, EmulatedChargerECU]) -> None:
    _, ev, ecu = link
    driver.configure(silence={0x102})
    rates = driver.identify(timeout=0.6).frames_seen
    assert 0x100 in rates and 0x101 in rates and 0x102 not in rates
    driver.configure()
    ev.faults.silent_ids = ALL_IDS
    with pytest.raises(InstrumentUnreachable, match="no EV frame"):
        driver.identify(timeout=0.6)
    ev.faults.clear()


def test_charger_flags_a_silent_ev_with_the_output_on(driver: EVSimulator, link: tuple[str, EmulatedEV, EmulatedChargerECU], small_plant: Plant) -> None:
    _, ev, ecu = link
    with small_plant.lock:
        small_plant.port("p1").stage.voltage_setpoint, small_plant.port("p1").stage.output_on = 50.0, True
    ev.faults.silent_ids = ALL_IDS
    deadline = time.monotonic() + 3.0
    while not driver.charger_status().system_malfunction and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ecu.ev_silent and driver.charger_status().stop_control
    ev.faults.clear()


def test_fault_flags_and_soc_reach_the_bus(driver: EVSimulator) -> None:
    driver.configure(soc=80, current_cap=30, faults={"high_temperature"})
    time.sleep(0.25)
    status = driver.ev_status()
    assert status.soc == 80 and status.faults == {"high_temperature"}
    with pytest.raises(ValueError, match="unknown EV fault"):
        driver.configure(faults={"on_fire"})


def test_driver_frames_exact() -> None:
    """What the driver puts on the wire for each command, against the recorded expected frames."""
    channel = f"exact-{uuid.uuid4().hex}"
    sim = EVSimulator(interface="virtual", channel=channel, reply_timeout=0.2).open()
    wire = virtual(channel)
    try:
        for call, expected in [
            (sim.plug_in, "0101FFFF00000000"),
            (sim.start, "0203FFFF00000000"),
            (lambda: sim.configure(soc=55, current_cap=100, faults={"overvoltage", "voltage_deviation"}, silence={0x102}),
             "0300376411040000"),
            (sim.stop, "0404FFFF00000000"),
        ]:
            with pytest.raises(InstrumentProtocolError, match="no EVSIM_Status"):
                call()  # nobody answers on this bus
            msg = wire.recv(timeout=1.0)
            assert msg is not None and msg.arbitration_id == 0x6F0 and not msg.is_extended_id
            assert bytes(msg.data).hex().upper() == expected
    finally:
        sim.close()
        wire.shutdown()


def test_driver_across_the_hub(hub: CanHub, small_plant: Plant) -> None:
    buses = [can.Bus(**hub.address("can7")) for _ in range(2)]
    ev, ecu = EmulatedEV(small_plant, "p1", buses[0]), EmulatedChargerECU(small_plant, "p1", buses[1])
    ev.start()
    ecu.start()
    sim = EVSimulator(interface="socketcand", channel="can7", bus_kwargs={"host": hub.host, "port": hub.port}).open()
    try:
        identity = sim.identify(timeout=1.0)
        for can_id in (0x100, 0x101, 0x102):
            assert identity.frames_seen[can_id] == pytest.approx(10.0, abs=1.5)
        assert "CHAdeMO EV protocol 2" in identity.summary
        assert sim.ping().state is SimState.PLUGGED
    finally:
        sim.close()
        ev.stop()
        ecu.stop()
        for bus in buses:
            bus.shutdown()


def test_unopenable_interface_names_the_ev() -> None:
    sim = EVSimulator(interface="socketcand", channel="can0", name="ev9", bus_kwargs={"host": "127.0.0.1", "port": 9})
    with pytest.raises(InstrumentUnreachable, match=r"ev9 \(socketcand 127.0.0.1:9 channel can0\)"):
        sim.open()


def test_latency_and_no_reply_of_the_simulator(driver: EVSimulator, link: tuple[str, EmulatedEV, EmulatedChargerECU]) -> None:
    _, ev, _ = link
    ev.latency = 0.05
    start = time.monotonic()
    driver.ping()
    assert time.monotonic() - start >= 0.05
    ev.latency = 0.0
    ev.faults.no_reply = True
    with pytest.raises(InstrumentProtocolError, match="no EVSIM_Status for PING"):
        driver.ping()
    ev.faults.clear()
    assert driver.ping().state is SimState.PLUGGED


def test_hub_latency_delays_delivery(emulator_loop: EmulatorLoop) -> None:
    hub = CanHub(latency=0.05)
    emulator_loop.run(hub.start())
    a, b = can.Bus(**hub.address("can0")), can.Bus(**hub.address("can0"))
    try:
        start = time.monotonic()
        a.send(can.Message(arbitration_id=0x10, data=b"\x01", is_extended_id=False))
        assert b.recv(timeout=2.0) is not None
        assert time.monotonic() - start >= 0.05
    finally:
        a.shutdown()
        b.shutdown()
        emulator_loop.run(hub.stop())
