"""OCPP message throughput: evhil's CSMS harness against a CSMS built on the ocpp library's defaults.

Both servers validate every message against the same schemas (the ones the ocpp 2.1.0 package ships):
the baseline with the library's ``ChargePoint`` routing (jsonschema, validation on a thread-pool hop,
its default), evhil with the compiled validators of ``hil.ocpp.schemas``. N emulated charge points
(raw OCPP-J over WebSockets, one CALL in flight each, alternating Heartbeat and MeterValues with four
sampled values) run in this process; the server runs in a child process, so each side has a core.

Prints per N: round trips per second and p50/p99 latency for both, and the ratio; then the validation
cost per message alone. Usage: ``python benchmarks/bench_ocpp.py [--seconds 3] [--clients 1,10,100,500]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone

METER_VALUES = {"connectorId": 1, "transactionId": 7, "meterValue": [{"timestamp": "2026-12-01T10:00:00Z",
                "sampledValue": [
                    {"value": "1234", "context": "Sample.Periodic", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
                    {"value": "7100.5", "context": "Sample.Periodic", "measurand": "Power.Active.Import", "unit": "W"},
                    {"value": "10.3", "context": "Sample.Periodic", "measurand": "Current.Import", "unit": "A", "phase": "L1"},
                    {"value": "229.8", "context": "Sample.Periodic", "measurand": "Voltage", "unit": "V", "phase": "L1-N"}]}]}


# -- servers (child process) ----------------------------------------------------------------------------
async def serve_harness() -> None:
    from hil.ocpp.csms import CSMS

    server = await CSMS(versions=("1.6",), response_timeout=60).start()
    print(server.port, flush=True)
    await asyncio.Event().wait()


async def serve_library() -> None:
    import ocpp.v16
    from ocpp.routing import on
    from ocpp.v16 import call_result
    from websockets.asyncio.server import serve

    class LibraryCSMS(ocpp.v16.ChargePoint):
        @on("Heartbeat")
        async def heartbeat(self) -> call_result.Heartbeat:
            return call_result.Heartbeat(current_time=datetime.now(timezone.utc).isoformat())

        @on("MeterValues")
        async def meter_values(self, connector_id: int, meter_value: list, **_: object) -> call_result.MeterValues:
            return call_result.MeterValues()

    async def handler(ws) -> None:  # type: ignore[no-untyped-def]
        cp = LibraryCSMS(ws.request.path.strip("/"), ws)
        try:
            await cp.start()
        except Exception:  # noqa: BLE001 - a client going away ends its loop
            pass

    async with serve(handler, "127.0.0.1", 0, subprotocols=["ocpp1.6"], ping_interval=None) as server:  # type: ignore[list-item]
        print(next(iter(server.sockets)).getsockname()[1], flush=True)
        await asyncio.Event().wait()


# -- clients (this process) -----------------------------------------------------------------------------
async def client(url: str, k: int, until: float, started: float, latencies: list[float]) -> int:
    from websockets.asyncio.client import connect

    done = 0
    async with connect(f"{url}CP{k:04d}", subprotocols=["ocpp1.6"], ping_interval=None, open_timeout=30) as ws:  # type: ignore[list-item]
        n = 0
        while time.perf_counter() < until:
            n += 1
            body = ("Heartbeat", {}) if n % 2 else ("MeterValues", METER_VALUES)
            t0 = time.perf_counter()
            await ws.send(json.dumps([2, f"{k}-{n}", body[0], body[1]]))
            json.loads(await ws.recv())
            t1 = time.perf_counter()
            if t0 >= started:
                latencies.append(t1 - t0)
                done += 1
    return done


async def measure(port: int, clients: int, seconds: float) -> tuple[float, float, float]:
    url = f"ws://127.0.0.1:{port}/"
    latencies: list[float] = []
    warm = 0.5
    start = time.perf_counter()
    started, until = start + warm, start + warm + seconds
    counts = await asyncio.gather(*(client(url, k, until, started, latencies) for k in range(clients)))
    elapsed = seconds
    latencies.sort()
    p50 = statistics.median(latencies) if latencies else float("nan")
    p99 = latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan")
    return sum(counts) / elapsed, p50 * 1000, p99 * 1000


def run_server(kind: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve", kind], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def validation_cost() -> list[tuple[str, float, float]]:
    """µs per request validation: the ocpp library's check (jsonschema; its default also adds a thread-pool
    hop per message, not counted here) vs the compiled one."""
    from ocpp.messages import Call
    from ocpp.messages import _validate_payload as validate_payload

    from hil.ocpp import schemas

    rows = []
    tx_event = {"eventType": "Updated", "timestamp": "2026-12-01T10:00:00Z", "triggerReason": "MeterValuePeriodic",
                "seqNo": 3, "transactionInfo": {"transactionId": "t-1", "chargingState": "Charging"},
                "evse": {"id": 1, "connectorId": 1},
                "meterValue": [{"timestamp": "2026-12-01T10:00:00Z", "sampledValue": [
                    {"value": 1234.0, "measurand": "Energy.Active.Import.Register", "context": "Sample.Periodic"},
                    {"value": 7100.5, "measurand": "Power.Active.Import", "context": "Sample.Periodic"}]}]}
    for version, action, payload in (("1.6", "MeterValues", METER_VALUES), ("2.0.1", "TransactionEvent", tx_event)):
        message = Call(unique_id="1", action=action, payload=payload)
        validate_payload(message, version)
        schemas.validate(version, action, "request", payload)  # type: ignore[arg-type]
        n = 2000
        t0 = time.perf_counter()
        for _ in range(n):
            validate_payload(message, version)
        lib = (time.perf_counter() - t0) / n * 1e6
        t0 = time.perf_counter()
        for _ in range(n):
            schemas.validate(version, action, "request", payload)  # type: ignore[arg-type]
        ours = (time.perf_counter() - t0) / n * 1e6
        rows.append((f"{version} {action}", lib, ours))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", choices=("harness", "library"))
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", default="1,10,100,500")
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve_harness() if args.serve == "harness" else serve_library())
        return
    print(f"{'charge points':>13} | {'library default rt/s':>20} {'p50 ms':>7} {'p99 ms':>7} | "
          f"{'evhil harness rt/s':>18} {'p50 ms':>7} {'p99 ms':>7} | {'ratio':>5}")
    for n in (int(x) for x in args.clients.split(",")):
        results = {}
        for kind in ("library", "harness"):
            proc, port = run_server(kind)
            try:
                results[kind] = asyncio.run(measure(port, n, args.seconds))
            finally:
                proc.kill()
                proc.wait()
        lib, ours = results["library"], results["harness"]
        print(f"{n:>13} | {lib[0]:>20,.0f} {lib[1]:>7.2f} {lib[2]:>7.2f} | {ours[0]:>18,.0f} {ours[1]:>7.2f} "
              f"{ours[2]:>7.2f} | {ours[0] / lib[0]:>5.2f}", flush=True)
    print("\nvalidation of one request (µs): ocpp library (jsonschema) vs evhil (compiled); target ratio >= 2")
    for name, lib_us, ours_us in validation_cost():
        print(f"  {name:22} {lib_us:8.1f} {ours_us:8.1f}   x{lib_us / ours_us:.1f}")


if __name__ == "__main__":
    main()
