"""A charging session on one port of the rig: the EV starts over CAN, the power source delivers, and the port
meter measures what the source says it delivers. Runs unchanged against emulated and real rigs (``--rig``).

The samples are attached as a table and a plot; the SCPI, Modbus and CAN transcripts of the session are
attached by the instrument fixtures.
"""

from __future__ import annotations

import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from hil.instruments.energy_meter import EnergyMeter  # noqa: E402
from hil.instruments.ev_simulator import EVSimulator  # noqa: E402
from hil.instruments.power_source import PowerSource  # noqa: E402
from hil.report.measurement import Measurements  # noqa: E402
from hil.rig.rig import Rig  # noqa: E402

CURRENT_A = 40.0
VOLTAGE_V = 400.0
SAMPLE_S = 0.2
DURATION_S = 4.0


def test_meter_follows_the_power_source_through_a_session(rig: Rig, power_source: PowerSource, meter: EnergyMeter,
                                                          ev: EVSimulator, measurements: Measurements) -> None:
    spec = rig.spec
    port = next(s.port for s in spec.power_sources if s.name == power_source.name)
    if next(m.point for m in spec.meters if m.name == meter.name) != port or next(
            e.port for e in spec.ev_simulators if e.name == ev.name) != port:
        pytest.skip(f"rig {spec.name!r}: the first power source, meter and EV simulator are not on one port")
    measurements.parameter("port", port)
    ev.plug_in()
    ev.start()
    power_source.set_current(CURRENT_A)
    power_source.set_voltage(VOLTAGE_V)
    power_source.output(True)
    t0 = time.monotonic()
    samples: list[tuple[float, float, float, float]] = []  # time [s], source current [A], source power, meter power [W]
    try:
        while time.monotonic() - t0 < DURATION_S:
            m = power_source.measure()
            samples.append((time.monotonic() - t0, m.current, m.voltage * m.current, meter.read().total_power))
            time.sleep(SAMPLE_S)
    finally:
        power_source.safe_state()
        ev.stop()
    flowing = [s for s in samples if s[1] > 0.9 * CURRENT_A]
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot([s[0] for s in samples], [s[2] / 1000 for s in samples], label="source V x I")
    ax.plot([s[0] for s in samples], [s[3] / 1000 for s in samples], "--", label="port meter")
    ax.set_xlabel("time [s]")
    ax.set_ylabel("power [kW]")
    ax.legend(loc="lower right")
    ax.set_title(f"charging session on {port}")
    fig.tight_layout()
    measurements.figure(fig, f"power on {port}: source against meter")
    plt.close(fig)
    measurements.record("samples with the EV drawing the set current", len(flowing), "", low=3)
    if flowing:
        worst = max(abs(meter_w - source_w) / source_w * 100 for _, _, source_w, meter_w in flowing[1:] or flowing)
        measurements.record("meter against source power, worst sample", worst, "%", high=5.0)
