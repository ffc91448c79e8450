"""Modbus reads per second: the EnergyMeter driver against a plain pymodbus client, same emulator, same run.

Run: ``python benchmarks/bench_modbus.py [--seconds 2]``. Emulator latency 0 (a real SDM630 on RS-485 at
9600 baud needs about 190 ms for a 76-register read).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from pymodbus.client import ModbusTcpClient

from hil.emulators.loop import EmulatorLoop
from hil.emulators.modbus_meter import ModbusMeterEmulator
from hil.instruments.energy_meter import EnergyMeter
from hil.plant import Plant, Port, Site


def rate(fn: Callable[[], object], seconds: float) -> float:
    for _ in range(20):
        fn()
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(10):
            fn()
        n += 10
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per figure [s]")
    args = parser.parse_args()
    plant = Plant([Port("p1")], Site(unmanaged_w=(1000.0, 2000.0, 3000.0)))
    with EmulatorLoop() as loop:
        emu = ModbusMeterEmulator(plant, {1: ("sdm630", "site")}, latency=0.0)
        loop.run(emu.start())
        raw = ModbusTcpClient(emu.host, port=emu.port, retries=0, timeout=1)
        raw.connect()
        meter = EnergyMeter("sdm630", host=emu.host, port=emu.port, unit=1).open()

        def raw_total_power() -> float:
            rr = raw.read_input_registers(0x34, count=2, device_id=1)
            return float(raw.convert_from_registers(rr.registers, raw.DATATYPE.FLOAT32))

        def raw_full() -> list[int]:
            return raw.read_input_registers(0, count=76, device_id=1).registers + raw.read_input_registers(0x156, count=2, device_id=1).registers

        rows = [
            ("total power (1 request, 2 registers)", raw_total_power, meter.read_total_power),
            ("full reading (2 requests, 78 registers)", raw_full, meter.read),
        ]
        print(f"{'operation':42} {'raw pymodbus reads/s':>21} {'driver reads/s':>15} {'ratio':>6}")
        for label, base, ours in rows:
            b = rate(base, args.seconds)
            d = rate(ours, args.seconds)
            print(f"{label:42} {b:21.0f} {d:15.0f} {d / b:6.2f}")
        meter.close()
        raw.close()
        loop.run(emu.stop())


if __name__ == "__main__":
    main()
