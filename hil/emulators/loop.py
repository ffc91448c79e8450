"""One asyncio event loop in a background thread, shared by the emulators of a rig.

pytest tests and the CLI are synchronous; the emulators are asyncio servers. ``EmulatorLoop`` runs the
loop in a daemon thread and lets synchronous code run coroutines on it with ``run()``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class EmulatorLoop:
    """A running event loop in its own thread. Use as a context manager or call ``close()``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="emulators", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run ``coro`` on the loop and wait up to ``timeout`` seconds for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        if self.loop.is_closed():
            return

        async def _cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.run(_cancel_all(), timeout=5.0)
        except Exception:  # noqa: BLE001 - closing must not raise
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5.0)
        if not self.loop.is_running():
            self.loop.close()

    def __enter__(self) -> "EmulatorLoop":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
