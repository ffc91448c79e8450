"""A charge point's link to its CSMS: connecting, reconnect back-off, a cuttable network, the offline queue.

The ``ocpp`` library has none of this; the OCPP rules implemented here:

- reconnect back-off (2.0.1 Part 4 §5.3, used for 1.6 too): the first wait is ``wait_minimum`` plus a
  random part up to ``random_range``; after each failed attempt the wait doubles, at most ``repeat_times``
  times, then stays;
- transaction-related messages are queued while offline and delivered in order once connected; a message
  the CSMS fails to process (CALLERROR or no answer) is retried up to ``attempts`` times in all, waiting
  ``interval x number of transmissions so far`` before each retry, then discarded (1.6 §3.7.1, 2.0.1 E13).

Those waits run on a ``Clock`` (real time by default; a ``ScaledClock`` on emulated rigs), and so do the
dates a charge point writes and judges profiles by (``Calendar``). Waits that only pace the emulator's own
polling, and the WebSocket timeouts, stay in wall-clock time.

Times: seconds (simulated seconds of the clock, where it applies).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from hil.clock import Clock, RealClock
from hil.ocpp.rpc import SUBPROTOCOLS, CallError, CallTimeout, Connection, ConnectionClosed, Handler, Trace, bounded
from hil.ocpp.schemas import Version
from hil.ocpp.smart_charging import format_datetime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Calendar:
    """Dates on a clock: ``epoch`` (UTC) plus the clock's simulated time, so every charge point and the CSMS
    on one scaled clock agree on timestamps and on when a charging profile is valid.

    ``Calendar.of(clock)`` takes as epoch the wall-clock date at which the clock read 0; on a real clock
    ``now()`` is the wall-clock date. A ``ManualClock`` (infinite scale) is not for event-loop emulators.
    """

    clock: Clock
    epoch: datetime

    @classmethod
    def of(cls, clock: Clock) -> "Calendar":
        return cls(clock, datetime.now(timezone.utc) - timedelta(seconds=clock.now() / clock.scale))

    def now(self) -> datetime:
        """The simulated date and time (UTC)."""
        return self.epoch + timedelta(seconds=self.clock.now())

    def iso(self) -> str:
        """``now()`` as OCPP writes it (RFC 3339, ``Z``)."""
        return format_datetime(self.now())

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of simulated time without blocking the event loop."""
        if seconds > 0:
            await asyncio.sleep(seconds / self.clock.scale)


@dataclass
class BackOff:
    """Reconnect back-off [s]: ``wait_minimum`` + random(0..``random_range``), doubled up to ``repeat_times``."""

    wait_minimum: float = 1.0
    random_range: float = 0.0
    repeat_times: int = 3

    def wait(self, failures: int, rng: random.Random) -> float:
        """The wait before the next attempt after ``failures`` consecutive failed attempts."""
        doubling = min(failures, self.repeat_times)
        return self.wait_minimum * (2 ** doubling) + rng.uniform(0.0, self.random_range)


@dataclass
class Retry:
    """How often a failed transaction message is sent in all, and the base interval [s] between tries."""

    attempts: int = 3
    interval: float = 60.0


@dataclass
class Queued:
    """A transaction-related message waiting for delivery."""

    action: str
    payload: dict[str, Any]
    on_result: Callable[[dict[str, Any]], None] | None = None
    transmissions: int = 0
    created_offline: bool = False


class Offline(ConnectionError):
    """The charge point is not connected to its CSMS."""


@dataclass
class Uplink:
    """Keeps a charge point connected to ``url`` (the CSMS base URL; the id is appended).

    ``on_connected(first)`` runs after each successful connection (``first`` is True only for the first
    one after start or ``reboot``); it is where the charge point sends BootNotification or its status.
    The back-off and the retry intervals are waits on ``clock`` (simulated seconds).
    """

    url: str
    cs_id: str
    version: Version
    handlers: dict[str, Handler]
    on_connected: Callable[[bool], Awaitable[None]]
    password: str | None = None
    tls: ssl.SSLContext | None = None
    backoff: BackOff = field(default_factory=BackOff)
    retry: Retry = field(default_factory=Retry)
    response_timeout: float = 30.0
    validate: bool = True
    seed: int = 0
    trace: Trace = field(default_factory=Trace)
    clock: Clock = field(default_factory=RealClock)
    on_failure: Callable[[int], None] | None = None
    """Called with the number of consecutive failed connection attempts after each one (a station uses it
    to fall back to another network profile, changing ``url``)."""

    def __post_init__(self) -> None:
        self.connection: Connection | None = None
        self.queue: list[Queued] = []
        self.attempts = 0
        """Connection attempts so far (successful or not)."""
        self.attempt_times: list[float] = []
        """Clock time [s] of every connection attempt, for back-off checks."""
        self.journal: list[Queued] = []
        """Every transaction-related message queued since creation, in order: what the charge point
        produced (payloads as finally sent), to compare with what the CSMS received."""
        self.calendar = Calendar.of(self.clock)
        self._rng = random.Random(self.seed)
        self._network = asyncio.Event()
        self._network.set()
        self._online = asyncio.Event()
        self._queue_changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: asyncio.Task[None] | None = None
        self._stopping = False
        self._first = True
        self.boot_accepted = asyncio.Event()
        """Set by the charge point when the CSMS accepted its BootNotification; the queue waits for it."""

    # -- life cycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        self._stopping = False
        self._tasks = [asyncio.ensure_future(self._keep_connected()), asyncio.ensure_future(self._deliver())]

    async def stop(self) -> None:
        """Close the connection, then end the tasks (closing first lets the receive loop end by itself)."""
        self._stopping = True
        conn = self.connection
        if conn is not None:
            await conn.close()
        tasks = [*self._tasks, *([self._runner] if self._runner is not None else [])]
        for task in tasks:
            task.cancel()
        self._network.set()  # wake a loop waiting for the network, so it sees the stop
        self._queue_changed.set()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=5.0)
            if stuck:
                log.warning("%s: uplink tasks did not stop: %s", self.cs_id, [t.get_coro().__qualname__ for t in stuck])
        self._tasks, self._runner, self.connection = [], None, None
        self._online.clear()

    @property
    def online(self) -> bool:
        return self._online.is_set()

    async def wait_online(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._online.wait(), timeout)

    # -- the network ------------------------------------------------------------------------------------
    async def cut(self) -> None:
        """Lose the network: the socket is aborted (no close handshake) and no reconnect is tried."""
        self._network.clear()
        conn = self.connection
        if conn is not None:
            transport = getattr(getattr(conn.ws, "transport", None), "abort", None)
            if transport is not None:
                transport()
            else:
                await conn.close()
            await bounded(conn.wait_closed(), 10.0)

    def restore(self) -> None:
        """The network is back: reconnecting resumes (after the back-off)."""
        self._network.set()

    async def reconnect(self, first: bool) -> None:
        """Drop the connection and connect again (``first``: as after a reboot)."""
        self._first = first
        if first:
            self.boot_accepted.clear()
        conn = self.connection
        if conn is not None:
            await conn.close(1000, "reboot")
            await bounded(conn.wait_closed(), 10.0)

    async def _keep_connected(self) -> None:
        failures = 0
        while not self._stopping:
            await self._network.wait()
            if self._stopping:
                return
            self.attempts += 1
            self.attempt_times.append(self.clock.now())
            headers = {}
            if self.password is not None:
                token = base64.b64encode(f"{self.cs_id}:{self.password}".encode()).decode()
                headers["Authorization"] = f"Basic {token}"
            try:
                ws: ClientConnection = await connect(
                    self.url.rstrip("/") + "/" + self.cs_id, subprotocols=[SUBPROTOCOLS[self.version]],  # type: ignore[list-item]
                    additional_headers=headers, ssl=self.tls, open_timeout=5, ping_interval=None, max_size=2**22,
                )
            except (OSError, asyncio.TimeoutError, Exception) as exc:  # noqa: BLE001 - refused, 503, TLS...
                wait = self.backoff.wait(failures, self._rng)
                failures += 1
                log.info("%s: cannot connect to %s (%s); next attempt in %.1f s", self.cs_id, self.url, exc, wait)
                if self.on_failure is not None:
                    self.on_failure(failures)
                await self.calendar.sleep(wait)
                continue
            if ws.subprotocol != SUBPROTOCOLS[self.version]:
                log.warning("%s: CSMS did not agree to %s", self.cs_id, SUBPROTOCOLS[self.version])
                await ws.close()
                await self.calendar.sleep(self.backoff.wait(failures, self._rng))
                failures += 1
                continue
            failures = 0
            conn = Connection(ws, self.version, self.handlers, self.trace, validate=self.validate,
                              response_timeout=self.response_timeout, name=f"{self.cs_id}->CSMS")
            self.connection = conn
            runner = self._runner = asyncio.ensure_future(conn.run())
            self._online.set()
            first, self._first = self._first, False
            try:
                await self.on_connected(first)
            except (ConnectionClosed, CallTimeout, CallError) as exc:
                log.info("%s: start-up exchange failed: %s", self.cs_id, exc)
            self._queue_changed.set()
            await runner
            self._online.clear()
            self.connection = None
            if self._network.is_set():
                wait = self.backoff.wait(0, self._rng)
                failures = 1
                await self.calendar.sleep(wait)

    # -- sending ----------------------------------------------------------------------------------------
    async def call(self, action: str, payload: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send a CALL now; raises ``Offline`` when not connected."""
        conn = self.connection
        if conn is None or conn.closed:
            raise Offline(f"{self.cs_id}: offline, {action} not sent")
        return await conn.call(action, payload, timeout=timeout)

    def enqueue(self, action: str, payload: dict[str, Any],
                on_result: Callable[[dict[str, Any]], None] | None = None) -> Queued:
        """Queue a transaction-related message for in-order delivery."""
        item = Queued(action, payload, on_result, created_offline=not self.online)
        self.queue.append(item)
        self.journal.append(item)
        self._queue_changed.set()
        return item

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until the queue is empty."""
        async def empty() -> None:
            while self.queue:
                await asyncio.sleep(0.02)
        await asyncio.wait_for(empty(), timeout)

    async def _deliver(self) -> None:
        while not self._stopping:
            if not self.queue:
                self._queue_changed.clear()
                await self._queue_changed.wait()
                continue
            await self._online.wait()
            await self.boot_accepted.wait()
            item = self.queue[0]
            try:
                item.transmissions += 1
                result = await self.call(item.action, item.payload)
            except (Offline, ConnectionClosed):
                item.transmissions -= 1  # not a failure of the CSMS to process it
                await asyncio.sleep(0.05)
                continue
            except (CallError, CallTimeout) as exc:
                if item.transmissions >= self.retry.attempts:
                    log.warning("%s: %s discarded after %d transmissions: %s", self.cs_id, item.action,
                                item.transmissions, exc)
                    self.queue.pop(0)
                else:
                    await self.calendar.sleep(self.retry.interval * item.transmissions)
                continue
            self.queue.pop(0)
            if item.on_result is not None:
                item.on_result(result)
