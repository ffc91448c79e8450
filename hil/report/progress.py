"""Live progress of a long run on the terminal (rich): the test running now, how many passed, failed,
errored and were skipped out of how many, the time elapsed, and the rig the test runs on: its simulated
time against real time (its clock scale), the instruments in use and any fault injected into them.

``hil run`` starts pytest as a child process and follows the run journal it writes
(``hil.report.run_record``), printing pytest's own output above the progress line. When standard output
is not a terminal (CI logs, a pipe) there is no progress display and pytest writes straight through.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

REFRESH_S = 0.1
"""How often the display follows the journal [s]."""


def wanted(stream: IO[str]) -> bool:
    """Show live progress on ``stream``? Only on a terminal that can redraw a line."""
    try:
        return stream.isatty() and os.environ.get("TERM", "") != "dumb"
    except (AttributeError, ValueError):
        return False


@dataclass
class ProgressState:
    """What the display shows, folded from journal events."""

    total: int | None = None
    current: str | None = None
    counts: dict[str, int] = field(default_factory=lambda: {"pass": 0, "fail": 0, "error": 0, "skip": 0})
    rigs: list[dict[str, Any]] = field(default_factory=list)
    """The running rigs, from the last ``status`` event."""

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def apply(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "collected":
            self.total = int(event["total"])
        elif kind == "test_start":
            self.current = str(event["nodeid"])
        elif kind == "test":
            verdict = event["test"]["verdict"]
            self.counts[verdict] = self.counts.get(verdict, 0) + 1
            if self.current == event["test"]["nodeid"]:
                self.current = None
        elif kind == "status":
            self.rigs = list(event.get("rigs", []))

    def rig_text(self) -> str:
        """``rig: 85 s simulated (x10), 14/15 instruments, faults: site no_reply`` for the newest rig."""
        if not self.rigs:
            return ""
        r = self.rigs[-1]
        scale = f" (x{r['scale']:g})" if r.get("scale", 1) != 1 else ""
        faults = "; ".join(f"{name} {' '.join(fields)}" for name, fields in (r.get("faults") or {}).items())
        return (f"{r['rig']}: {r['sim_s']:.0f} s simulated{scale}, {r['in_use']}/{r['instruments']} instruments"
                + (f", [red]faults: {faults}[/]" if faults else ""))

    def counts_text(self) -> str:
        c = self.counts
        return (f"[green]{c['pass']} passed[/] [red]{c['fail']} failed[/] [yellow]{c['error']} errors[/] "
                f"[dim]{c['skip']} skipped[/]")


class JournalFollower:
    """Reads the events appended to a journal since the last call (whole lines only)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def new_events(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        events = []
        for line in lines:
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return events


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3):]


def run_with_progress(command: Sequence[str], journal: Path, console: Console, *, env: dict[str, str],
                      clock_scale: float | None = None) -> int:
    """Run ``command`` (pytest writing ``journal``) with a live progress line; returns its exit status."""
    proc = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    assert proc.stdout is not None
    lines: queue.Queue[bytes | None] = queue.Queue()

    def pump(stream: IO[bytes]) -> None:
        for line in iter(stream.readline, b""):
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=pump, args=(proc.stdout,), daemon=True)
    reader.start()
    state = ProgressState()
    follower = JournalFollower(journal)
    clock = f" clock x{clock_scale:g}" if clock_scale and clock_scale != 1 else ""
    progress = Progress(SpinnerColumn(), TextColumn("{task.fields[current]}"), BarColumn(bar_width=24),
                        MofNCompleteColumn(), TextColumn("{task.fields[counts]}"), TimeElapsedColumn(),
                        TextColumn("[dim]{task.fields[rig]}"), console=console, transient=True, refresh_per_second=8)
    task = progress.add_task("run", total=None, current="collecting", counts=state.counts_text(), rig=clock)
    output_done = False

    def follow() -> bool:
        """Print what pytest wrote, update the line; True once pytest has exited and said everything."""
        nonlocal output_done
        try:
            while not output_done:
                line = lines.get_nowait()
                if line is None:
                    output_done = True
                else:
                    progress.console.print(Text.from_ansi(line.decode("utf-8", "replace").rstrip("\r\n")))
        except queue.Empty:
            pass
        for event in follower.new_events():
            state.apply(event)
        idle = "finishing" if state.total is not None and state.total == state.done else ""
        progress.update(task, total=state.total, completed=state.done, counts=state.counts_text(),
                        current=_shorten(state.current or idle, max(20, console.width // 3)),
                        rig=state.rig_text() or clock)
        return output_done and proc.poll() is not None

    with progress:
        while True:
            try:  # Ctrl-C reaches pytest too, which winds down and reports: keep following it
                if follow():
                    break
                time.sleep(REFRESH_S)
            except KeyboardInterrupt:
                continue
    return proc.wait()
