"""The plant: what the emulators serve is physics, not canned values."""

from __future__ import annotations

import pytest

from hil.clock import ManualClock, ScaledClock
from hil.plant import EV, Battery, Plant, PlantRunner, Port, PowerStage, Protection, Regulation, Site


def charging_port(v: float = 400.0, i: float = 50.0, soc: float = 0.3) -> Port:
    port = Port("p1", stage=PowerStage(voltage_setpoint=v, current_setpoint=i, output_on=True),
                ev=EV(battery=Battery(soc=soc), contactor_closed=True))
    return port


def run(plant: Plant, seconds: float, dt: float = 0.01) -> None:
    for _ in range(round(seconds / dt)):
        plant.step(dt)


def test_constant_current_into_battery_charges_it() -> None:
    plant = Plant([charging_port()])
    run(plant, 2.0)
    port = plant.port("p1")
    assert port.stage.regulation is Regulation.CC
    assert port.stage.current == pytest.approx(50.0)
    assert port.stage.voltage == pytest.approx(port.ev.battery.ocv() + 50.0 * port.ev.battery.internal_resistance)
    soc_before = port.ev.battery.soc
    run(plant, 60.0, dt=0.1)
    gained_kwh = (port.ev.battery.soc - soc_before) * port.ev.battery.capacity_kwh
    assert gained_kwh == pytest.approx(port.stage.power * 60 / 3.6e6, rel=0.02)


def test_set_voltage_below_battery_gives_no_current() -> None:
    plant = Plant([charging_port(v=300.0)])
    run(plant, 1.0)
    assert plant.port("p1").stage.current == 0.0


def test_power_limit_gives_constant_power() -> None:
    port = charging_port(i=200.0)
    port.stage.power_setpoint = 10_000.0
    plant = Plant([port])
    run(plant, 2.0)
    assert port.stage.regulation is Regulation.CP
    assert port.stage.power == pytest.approx(10_000.0, rel=1e-6)


def test_current_slews() -> None:
    plant = Plant([charging_port()])
    plant.step(0.01)
    assert 0 < plant.port("p1").stage.current <= 500.0 * 0.01 + 1e-9


def test_over_voltage_trips_and_latches() -> None:
    stage = PowerStage(voltage_setpoint=60.0, output_on=True, ovp_level=50.0)
    plant = Plant([Port("p1", stage=stage, ev=None)])
    run(plant, 0.5)
    assert Protection.OVER_VOLTAGE in stage.tripped
    assert not stage.output_on and stage.voltage == 0.0
    stage.output_on = True
    run(plant, 0.1)
    assert stage.voltage == 0.0, "a latched protection must hold the output off"
    stage.clear_protection()
    stage.ovp_level = 100.0
    stage.output_on = True
    run(plant, 0.5)
    assert stage.voltage == pytest.approx(60.0)


def test_taper_above_transition_soc() -> None:
    b = Battery(soc=0.9, max_current=100.0, taper_soc=0.8)
    assert b.current_request() == pytest.approx(50.0)
    assert Battery(soc=0.5).current_request() == Battery().max_current
    assert Battery(soc=1.0).current_request() == 0.0


def test_site_meter_sums_ports_and_unmanaged_load() -> None:
    a, b = charging_port(), charging_port()
    b.name = "p2"
    b.ev.phases = (1,)
    plant = Plant([a, b], Site(unmanaged_w=(1000.0, 0.0, 0.0)))
    run(plant, 2.0)
    site = plant.reading("site")
    assert site.total_power == pytest.approx(a.stage.power + b.stage.power + 1000.0)
    assert site.power[0] == pytest.approx(a.stage.power / 3 + b.stage.power + 1000.0)
    assert site.current[1] == pytest.approx(a.stage.power / 3 / 230.0)
    assert plant.reading("p1").total_power == pytest.approx(a.stage.power)


def test_energy_counter_integrates() -> None:
    plant = Plant([charging_port()])
    run(plant, 10.0, dt=0.05)
    r = plant.reading("p1")
    assert r.import_wh == pytest.approx(r.total_power * 10 / 3600, rel=0.02)
    assert r.export_wh == 0.0


def test_runner_follows_the_clock() -> None:
    plant = Plant([charging_port()])
    with PlantRunner(plant, ScaledClock(10.0), period=0.01):
        import time

        time.sleep(0.3)
    assert 2.0 <= plant.time <= 4.5


def test_manual_clock() -> None:
    clock = ManualClock()
    clock.advance(1.5)
    assert clock.now() == 1.5
    clock.sleep(0)
