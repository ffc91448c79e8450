"""SCPI round trips per second: the PowerSource driver against raw pyvisa, same emulator, same run.

Run: ``python benchmarks/bench_scpi.py [--seconds 2]``. The emulator's latency is set to 0 so the figures
measure software overhead; a real instrument adds 1 to 15 ms per round trip.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import pyvisa

from hil.emulators.loop import EmulatorLoop
from hil.emulators.scpi import ScpiEmulator
from hil.instruments.limits import SoftLimits
from hil.instruments.power_source import PowerSource
from hil.plant import Plant, Port


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds``."""
    for _ in range(50):
        fn()
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(50):
            fn()
        n += 50
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per figure [s]")
    args = parser.parse_args()
    plant = Plant([Port("p1")])
    with EmulatorLoop() as loop:
        emu = ScpiEmulator(plant, "p1", "keysight_rp7900", latency=0.0)
        loop.run(emu.start())
        rm = pyvisa.ResourceManager("@py")
        raw = rm.open_resource(emu.resource, read_termination="\n", write_termination="\n", timeout=2000)
        driver = PowerSource(emu.resource, "keysight_rp7900", SoftLimits(500, 100, 50_000), name="bench").open()
        rows = [
            ("*IDN?", lambda: raw.query("*IDN?"), lambda: driver.query("*IDN?")),
            ("MEAS:VOLT? (driver: typed voltage)", lambda: float(raw.query("MEAS:VOLT?")), driver.measure_voltage),
            ("measure V, I, P (one compound query)",
             lambda: [float(x) for x in raw.query("MEAS:VOLT?;:MEAS:CURR?;:MEAS:POW?").split(";")], driver.measure),
        ]
        print(f"{'operation':42} {'raw pyvisa rt/s':>16} {'driver rt/s':>12} {'ratio':>6}")
        for label, base, ours in rows:
            b = rate(base, args.seconds)
            d = rate(ours, args.seconds)
            print(f"{label:42} {b:16.0f} {d:12.0f} {d / b:6.2f}")
        driver.close()
        raw.close()
        rm.close()
        loop.run(emu.stop())


if __name__ == "__main__":
    main()
