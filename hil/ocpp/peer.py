"""One side of an OCPP conversation as a test sees it: the trace across reconnections, scripted answers,
expectations with strict or lenient matching, forbidden actions.

``Peer`` is shared by the CSMS harness (``csms.Session``, the charge point under test seen from evhil's
CSMS) and the scripted charge point (``scripted.ScriptedChargePoint``, a CSMS under test seen from evhil's
charge point), so both kinds of suites read the same way. Times: seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from hil.ocpp.conformance import ConformanceFailure, matches, show
from hil.ocpp.rpc import NO_REPLY, CallError, Connection, Frame, Handler, NoReply, Trace, bounded

Answer = Mapping[str, Any] | Callable[[dict[str, Any]], Any] | NoReply | CallError
"""A scripted answer: a payload, a function of the request payload, ``NO_REPLY`` or a ``CallError``."""


class Peer:
    """The other side of one OCPP connection (``id`` names it in failures; ``where`` says how it is reached)."""

    def __init__(self, peer_id: str, where: str = "") -> None:
        self.id = peer_id
        self.where = where
        self.trace = Trace()
        self.connection: Connection | None = None
        self.connections = 0
        """WebSocket connections so far."""
        self.findings: list[str] = []
        """The other side's protocol violations, in words."""
        self.forbidden: set[str] = set()
        self.violations: list[Frame] = []
        """Received CALLs of a forbidden action."""
        self._scripted: dict[str, list[Answer]] = {}
        self._consumed: set[int] = set()
        self._connected = asyncio.Event()
        self.trace.listen(self._watch)

    def connected_now(self, connection: Connection) -> None:
        """Record a new connection (the harness or the scripted client calls this)."""
        self.connection = connection
        self.connections += 1
        self._connected.set()

    # -- state -----------------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self.connection is not None and not self.connection.closed

    async def wait_connected(self, timeout: float = 10.0, after: int | None = None) -> None:
        """Wait until the charge point is connected (with ``after``: until connection number > after)."""
        deadline = time.monotonic() + timeout
        while not (self.connected and (after is None or self.connections > after)):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConformanceFailure(f"{self.id} did not connect ({self.where}) within {timeout:g} s")
            self._connected.clear()
            try:
                await asyncio.wait_for(self._connected.wait(), min(remaining, 0.5))
            except asyncio.TimeoutError:
                pass

    def _watch(self, frame: Frame) -> None:
        if frame.direction == "received" and frame.is_call and frame.action in self.forbidden:
            self.violations.append(frame)

    def forbid(self, *actions: str) -> None:
        """From now on, any CALL of these actions from the other side fails the next expectation."""
        self.forbidden.update(actions)

    def allow(self, *actions: str) -> None:
        self.forbidden.difference_update(actions)

    def _check_forbidden(self) -> None:
        if self.violations:
            f = self.violations[0]
            raise ConformanceFailure(f"{self.id} sent {f.action} {show(f.payload)}, which this test forbids")

    # -- answers ---------------------------------------------------------------------------------------
    def answer(self, action: str, *answers: Answer) -> None:
        """Give these answers to the next CALLs of ``action``, one each, before the defaults resume."""
        self._scripted.setdefault(action, []).extend(answers)

    def handler(self, action: str, default: Callable[[Any, dict[str, Any]], Any] | None) -> Handler:
        """The handler of ``action``: the scripted answers first, then ``default(self, payload)``."""
        async def handle(payload: dict[str, Any]) -> Any:
            queue = self._scripted.get(action)
            if queue:
                answer = queue.pop(0)
                if isinstance(answer, CallError):
                    raise answer
                if isinstance(answer, NoReply):
                    return NO_REPLY
                result = answer(payload) if callable(answer) else dict(answer)
                return await result if isinstance(result, Awaitable) else result
            if default is None:
                raise CallError("NotSupported", f"no default answer to {action} here")
            return default(self, payload)
        return handle

    # -- CSMS-initiated messages --------------------------------------------------------------------------
    async def call(self, action: str, payload: Mapping[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send a CALL to the other side and return its answer (``CallError`` on a CALLERROR)."""
        if self.connection is None or self.connection.closed:
            raise ConformanceFailure(f"cannot send {action}: {self.id} is not connected")
        return await self.connection.call(action, payload, timeout=timeout)

    async def call_expect(self, action: str, payload: Mapping[str, Any], *statuses: str,
                          timeout: float | None = None) -> dict[str, Any]:
        """``call`` and require the answer's ``status`` to be one of ``statuses``; returns the answer."""
        answer = await self.call(action, payload, timeout)
        if answer.get("status") not in statuses:
            raise ConformanceFailure(f"{action} answered {answer.get('status')}, expected {' or '.join(statuses)}")
        return answer

    async def drop(self) -> None:
        """Close the WebSocket from this side."""
        if self.connection is not None:
            await self.connection.close(1001, "closed by the test")
            await bounded(self.connection.wait_closed(), 10.0)

    # -- expectations ------------------------------------------------------------------------------------
    async def expect(self, action: str, match: Mapping[str, Any] | Callable[[dict[str, Any]], bool] | None = None,
                     *, timeout: float = 10.0, strict: bool = False) -> dict[str, Any]:
        """Wait for a CALL of ``action`` from the other side whose payload matches ``match``.

        Lenient (default): an earlier unconsumed matching CALL counts. Strict: only CALLs arriving from
        now on count, and one of ``action`` that does not match fails at once. Returns the payload.
        """
        frame = await self.expect_frame(action, match, timeout=timeout, strict=strict)
        return frame.payload

    async def expect_frame(self, action: str, match: Any = None, *, timeout: float = 10.0,
                           strict: bool = False) -> Frame:
        """``expect`` returning the whole frame (with its arrival time)."""
        self._check_forbidden()

        def ok(frame: Frame) -> bool:
            return frame.is_call and frame.direction == "received" and frame.action == action and (
                match is None or matches(match, frame.payload))

        start = len(self.trace.frames)
        if not strict:
            for k, frame in enumerate(self.trace.frames):
                if k not in self._consumed and ok(frame):
                    self._consumed.add(k)
                    return frame
        arrived: asyncio.Queue[int] = asyncio.Queue()
        stop = self.trace.listen(lambda f: arrived.put_nowait(len(self.trace.frames) - 1))
        deadline = time.monotonic() + timeout
        try:
            index = start
            while True:
                while index < len(self.trace.frames):
                    frame = self.trace.frames[index]
                    if index not in self._consumed and ok(frame):
                        self._consumed.add(index)
                        self._check_forbidden()
                        return frame
                    if strict and frame.is_call and frame.direction == "received" and frame.action == action:
                        raise ConformanceFailure(f"expected {action} matching {show(match)}, received {action} "
                                                 f"{show(frame.payload)}")
                    index += 1
                self._check_forbidden()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ConformanceFailure(self._timeout_message(action, match, timeout))
                try:
                    await asyncio.wait_for(arrived.get(), remaining)
                except asyncio.TimeoutError:
                    pass
        finally:
            stop()

    async def expect_none(self, action: str | None = None, *, within: float,
                          match: Mapping[str, Any] | None = None) -> None:
        """Fail if the other side sends a CALL of ``action`` (any action if None) within ``within`` s."""
        start = len(self.trace.frames)
        await asyncio.sleep(within)
        for frame in self.trace.frames[start:]:
            if (frame.is_call and frame.direction == "received" and (action is None or frame.action == action)
                    and (match is None or matches(match, frame.payload))):
                raise ConformanceFailure(f"expected no {action or 'message'} for {within:g} s, received "
                                         f"{frame.action} {show(frame.payload)}")

    def _timeout_message(self, action: str, match: Any, timeout: float) -> str:
        seen = [f for f in self.trace.calls() if f.action == action][-3:]
        others = [f"{f.action} {show(f.payload, 160)}" for f in self.trace.calls()[-4:]]
        text = f"expected {action}" + (f" matching {show(match)}" if match is not None else "")
        text += f" within {timeout:g} s"
        if seen:
            text += "; received " + "; ".join(f"{action} {show(f.payload, 200)}" for f in seen)
        elif others:
            text += "; last messages received: " + "; ".join(others)
        else:
            text += "; nothing received" + ("" if self.connected else " (not connected)")
        return text

    def consume_all(self) -> None:
        """Mark every frame so far as seen (lenient expectations then look only at new CALLs)."""
        self._consumed.update(range(len(self.trace.frames)))
