"""The device under test as a process evhil starts: ``dut.launch`` in the rig file.

A product that is software (a CSMS, a charger's controller in a simulator, a site load manager) can be
started by the run instead of by hand: ``DutProcess(command, log)`` runs the shell command in its own
process group, its output appended to ``log``, and ``stop`` ends it (SIGTERM, then SIGKILL after
``STOP_TIMEOUT_S``) together with everything it started. ``wait_listening`` waits until the product
accepts connections on the host and port of a URL, so a suite does not start before it is up.

Times: wall-clock seconds.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

STOP_TIMEOUT_S = 5.0
"""How long the product has to exit on SIGTERM before it is killed."""


class DutProcessError(RuntimeError):
    """The product could not be started, or did not come up."""


class DutProcess:
    """``command`` (a shell command line) running as the device under test."""

    def __init__(self, command: str, log: Path | None = None) -> None:
        self.command = command
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "DutProcess":
        if self.log is not None:
            self.log.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115 - the child keeps its copy
        try:
            self.process = subprocess.Popen(self.command, shell=True, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            raise DutProcessError(f"dut.launch {self.command!r}: {exc}") from None
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        return self

    @property
    def exited(self) -> int | None:
        """Its exit status once it has ended, else None."""
        return None if self.process is None else self.process.poll()

    def wait_listening(self, url: str, timeout: float) -> None:
        """Wait until something accepts TCP connections at ``url``'s host and port; ``DutProcessError`` names
        the URL, and how the product ended if it did, after ``timeout``."""
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme in ("wss", "https") else 80)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    return
            except OSError:
                pass
            if self.exited is not None or time.monotonic() > deadline:
                why = f"it exited with status {self.exited}" if self.exited is not None else f"nothing within {timeout:g} s"
                tail = self.log_tail(5)
                raise DutProcessError(f"dut.launch {self.command!r}: not listening at {host}:{port}: {why}"
                                      + (f"; its log ends:\n{tail}" if tail else ""))
            time.sleep(0.05)

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines it wrote ('' without a log)."""
        if self.log is None or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """End it and everything it started: SIGTERM, then SIGKILL after ``STOP_TIMEOUT_S``."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            self.process.wait()

    def __enter__(self) -> "DutProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
