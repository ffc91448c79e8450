"""CAN request/response round trips per second across the socketcand hub to the emulated EV: the
EVSimulator driver's ``ping()`` next to raw python-can sending the same frame, in the same run.

Run: ``python benchmarks/bench_can.py [--seconds 2]``.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable

import can

from hil.emulators.can_hub import CanHub
from hil.emulators.ev import EmulatedEV
from hil.emulators.loop import EmulatorLoop
from hil.instruments.ev_simulator import EVSimulator
from hil.plant import Plant, Port

logging.getLogger("can.interfaces.socketcand.socketcand").setLevel(logging.ERROR)


def rate(fn: Callable[[], object], seconds: float) -> float:
    for _ in range(20):
        fn()
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()
        n += 1
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per figure [s]")
    args = parser.parse_args()
    with EmulatorLoop() as loop:
        hub = CanHub()
        loop.run(hub.start())

        plant = Plant([Port("p1")])
        ev_bus = can.Bus(**hub.address("ev"))
        ev = EmulatedEV(plant, "p1", ev_bus)  # also sends its three 10 Hz frames throughout
        ev.start()

        # Raw baseline: plain python-can sends the ping command frame and reads until the status echoes it.
        raw = can.Bus(**hub.address("ev"))
        counter = [0]

        def raw_round_trip() -> None:
            counter[0] = (counter[0] + 1) % 256
            raw.send(can.Message(arbitration_id=0x6F0, data=bytes([counter[0], 5, 255, 255, 0, 0, 0, 0]), is_extended_id=False))
            while True:
                reply = raw.recv(timeout=1.0)
                if reply is None:
                    raise TimeoutError("the emulated EV did not answer")
                if reply.arbitration_id == 0x6F1 and reply.data[0] == counter[0]:
                    return

        base = rate(raw_round_trip, args.seconds)
        raw.shutdown()

        # Driver: EVSimulator.ping(), the same request and reply, encoded and decoded through the DBC.
        sim = EVSimulator(interface="socketcand", channel="ev", bus_kwargs={"host": hub.host, "port": hub.port}).open()
        ours = rate(sim.ping, args.seconds)
        sim.close()
        ev.stop()
        ev_bus.shutdown()
        loop.run(hub.stop())
    print(f"{'operation':44} {'raw python-can rt/s':>20} {'driver rt/s':>12} {'ratio':>6}")
    print(f"{'CAN request/response over socketcand hub':44} {base:20.0f} {ours:12.0f} {ours / base:6.2f}")


if __name__ == "__main__":
    main()
