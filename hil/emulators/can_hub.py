"""A socketcand-protocol hub: one emulated CAN bus per channel, shared by processes over TCP.

python-can's ``socketcand`` interface connects to it unchanged (``can.Bus(interface="socketcand",
host=..., port=..., channel="can0")``), exactly as it would to a socketcand daemon in front of a real
adapter. The hub speaks the subset python-can uses: it greets ``< hi >``, answers ``< open CH >`` and
``< rawmode >`` with ``< ok >`` and ``< echo >`` with ``< echo >``, and fans every ``< send ID DLC B0 ... >``
out to the *other* clients on the same channel as ``< frame ID SECS.USECS HEXDATA >``. Malformed input is
logged and skipped; it never stops the hub.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)


RAW_GRACE_S = 0.05
"""After a client's ``< rawmode >`` is answered, frames are relayed to it this much later [s]."""


@dataclass(eq=False)
class _Client:
    writer: asyncio.StreamWriter
    channel: str | None = None
    raw: bool = False
    """In raw mode: frames are relayed to it (not before, or they would corrupt its handshake)."""
    held: list[bytes] | None = None
    """Frames waiting for the end of its handshake (``None``: delivered at once)."""
    peer: str = ""


class CanHub:
    """The hub. ``await start()`` binds ``host`` (127.0.0.1) on ``port`` (0: a free one); see ``.port``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, latency: float = 0.0) -> None:
        self.host = host
        self.port = port
        self.latency = latency
        """Delay before a frame reaches the other clients [s] (a 500 kbit/s frame takes about 0.25 ms)."""
        self.frames = 0
        """Frames relayed since start."""
        self._clients: set[_Client] = set()
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for client in list(self._clients):
            client.writer.close()
        await self._server.wait_closed()
        self._server = None

    def address(self, channel: str) -> dict[str, object]:
        """Keyword arguments for ``can.Bus`` to join ``channel`` of this hub."""
        return {"interface": "socketcand", "host": self.host, "port": self.port, "channel": channel}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = _Client(writer, peer=str(writer.get_extra_info("peername")))
        self._clients.add(client)
        writer.write(b"< hi >")
        buffer = ""
        try:
            await writer.drain()
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                buffer += chunk.decode("ascii", "replace")
                while True:
                    start = buffer.find("<")
                    if start < 0:
                        buffer = ""
                        break
                    end = buffer.find(">", start)
                    if end < 0:
                        buffer = buffer[start:]
                        if len(buffer) > 512:
                            log.warning("can hub: %s sent an unterminated command; discarded", client.peer)
                            buffer = ""
                        break
                    self._command(client, buffer[start + 1:end].split())
                    buffer = buffer[end + 1:]
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._clients.discard(client)
            writer.close()

    def _command(self, client: _Client, words: list[str]) -> None:
        if not words:
            return
        verb = words[0]
        if verb == "open" and len(words) == 2:
            client.channel = words[1]
            client.writer.write(b"< ok >")
        elif verb == "rawmode" and len(words) == 1 and client.channel is not None:
            client.writer.write(b"< ok >")
            # python-can reads this reply with a single recv() and wants exactly "< ok >": a frame relayed
            # right behind it on a busy channel would land in the same read and break the handshake. Frames
            # for it are held back for a moment and then delivered.
            client.raw, client.held = True, []
            asyncio.get_running_loop().call_later(RAW_GRACE_S, _release, client)
        elif verb == "echo":
            client.writer.write(b"< echo >")
        elif verb == "send" and client.raw:
            frame = _frame(words)
            if frame is None:
                log.warning("can hub: malformed send from %s: %s", client.peer, " ".join(words))
                client.writer.write(b"< error malformed send >")
                return
            self._relay(client, *frame)
        else:
            log.warning("can hub: unknown or out-of-order command from %s: %s", client.peer, " ".join(words))
            client.writer.write(b"< error unknown command >")

    def _relay(self, sender: _Client, can_id: str, data: bytes) -> None:
        now = time.time()
        line = f"< frame {can_id} {now:.6f} {data.hex().upper()} >".encode("ascii")
        self.frames += 1
        receivers = [c for c in self._clients if c is not sender and c.raw and c.channel == sender.channel]
        if self.latency > 0:
            asyncio.get_running_loop().call_later(self.latency, _deliver, receivers, line)
        else:
            _deliver(receivers, line)


def _deliver(receivers: list[_Client], line: bytes) -> None:
    for client in receivers:
        if client.held is not None:
            client.held.append(line)
        elif not client.writer.is_closing():
            client.writer.write(line)


def _release(client: _Client) -> None:
    held, client.held = client.held or [], None
    if held and not client.writer.is_closing():
        client.writer.write(b"".join(held))


def _frame(words: list[str]) -> tuple[str, bytes] | None:
    """``send ID DLC B0 B1 ...`` -> (ID as sent, data), or None if malformed."""
    if len(words) < 3:
        return None
    can_id, dlc_text, byte_texts = words[1], words[2], words[3:]
    try:
        value = int(can_id, 16)
        dlc = int(dlc_text, 16)
        data = bytes(int(b, 16) for b in byte_texts)
    except ValueError:
        return None
    if len(can_id) not in (3, 8) or value > 0x1FFFFFFF or not 0 <= dlc <= 8 or len(data) != dlc:
        return None
    return can_id.upper(), data
