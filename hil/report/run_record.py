"""The run record: one JSON document per run for CI dashboards, and the journal it is made from.

While a run goes on, every event is appended to ``run-record.jsonl`` in the run folder and flushed to
disk at once (run start, tests collected, each test started, each test finished with its record, run
finish), so a crash mid-run loses nothing that finished. At the end the journal is folded into
``run-record.json``; ``hil report`` folds it again for a run that never finished (``complete: false``).

The document follows ``run-record.schema.json`` (JSON Schema, next to this module); ``schema_version``
changes whenever a field changes meaning or goes away.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
JOURNAL = "run-record.jsonl"
RECORD = "run-record.json"
SCHEMA = Path(__file__).with_name("run-record.schema.json")

INCOMPLETE_EXIT = (2, 3)
"""pytest's exit status when it was interrupted (Ctrl-C, SIGTERM) or failed internally."""
VERDICTS = ("pass", "fail", "error", "skip")
"""``pass``; ``fail``: the device under test failed; ``error``: the rig or the test failed, so the
product was not judged; ``skip``: not run (or an expected failure)."""


def now_iso() -> str:
    """The current time, ISO 8601 in UTC with milliseconds."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


class Journal:
    """Appends events (one JSON object a line) to a file, each flushed and synced before returning."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, event: str, **fields: Any) -> None:
        """Append ``{"event": event, "time": ..., **fields}``."""
        line = json.dumps({"event": event, "time": now_iso(), **fields}, separators=(",", ":"), default=str)
        with self._lock:
            if self._file.closed:
                return
            self._file.write(line + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        with self._lock:
            self._file.close()


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The events of a journal; a last line cut short by a crash is left out."""
    events: list[dict[str, Any]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and "event" in event:
            events.append(event)
    return events


def summary(tests: list[dict[str, Any]]) -> dict[str, int]:
    """Counts by verdict, and the total."""
    counts = Counter(t["verdict"] for t in tests)
    return {"total": len(tests), **{v: counts.get(v, 0) for v in VERDICTS}}


def fold(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The run record made from a journal's events."""
    start = next((e for e in events if e["event"] == "run_start"), {})
    finish = next((e for e in reversed(events) if e["event"] == "run_finish"), None)
    collected = next((e for e in reversed(events) if e["event"] == "collected"), None)
    tests: dict[str, dict[str, Any]] = {}
    for e in events:
        if e["event"] == "test":
            tests[e["test"]["nodeid"]] = e["test"]  # a rerun replaces the earlier attempt
    finished = set(tests)
    started = [e["nodeid"] for e in events if e["event"] == "test_start" and e["nodeid"] not in finished]
    complete = finish is not None and finish.get("exit_status") not in INCOMPLETE_EXIT
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run": {
            **start.get("run", {}),
            "started": start.get("time"),
            "finished": finish["time"] if finish else None,
            "complete": complete,
            "exit_status": finish.get("exit_status") if finish else None,
            "collected": collected.get("total") if collected else None,
            "interrupted_in": started[-1] if not complete and started else None,
        },
        "environment": (finish or {}).get("environment") or start.get("environment") or {},
        "summary": summary(list(tests.values())),
        "tests": list(tests.values()),
        "artefacts": start.get("artefacts", {}),
    }
    return record


def write_record(run_dir: Path) -> Path:
    """Fold ``run_dir``'s journal into ``run-record.json`` (written atomically); returns its path."""
    journal = run_dir / JOURNAL
    if not journal.is_file():
        raise FileNotFoundError(f"{run_dir}: no run journal {JOURNAL}: not a run folder of hil run?")
    target = run_dir / RECORD
    _write_atomically(target, fold(read_journal(journal)))
    return target


def _write_atomically(target: Path, record: dict[str, Any]) -> None:
    """Readers see the old file or the new one, never half of one."""
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, target)


def add_artefact(run_dir: Path, name: str, path: str) -> None:
    """Name a run-level file (e.g. ``html``: the built report, relative to the run folder) in the record."""
    target = run_dir / RECORD
    record = json.loads(target.read_text(encoding="utf-8"))
    record.setdefault("artefacts", {})[name] = path
    _write_atomically(target, record)


def load_schema() -> dict[str, Any]:
    """The JSON Schema of the run record."""
    return json.loads(SCHEMA.read_text(encoding="utf-8"))  # type: ignore[no-any-return]
