"""Load a rig file into a ``RigSpec``; every problem becomes one ``RigFileError`` line.

The line reads ``FILE:LINE: FIELD: PROBLEM`` so a lab engineer can jump straight to it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from hil.rig.model import RigSpec

DEFAULT_RIG = Path(__file__).resolve().parents[2] / "rigs" / "emulated.yaml"


class RigFileError(Exception):
    """A rig file that cannot be used. ``str()`` is the one line to show the user."""

    def __init__(self, path: Path | str, problem: str, field: str | None = None, line: int | None = None) -> None:
        problem = " ".join(problem.split())
        self.path = str(path)
        self.problem = problem
        self.field = field
        self.line = line
        where = self.path + (f":{line}" if line else "")
        super().__init__(f"{where}: {field + ': ' if field else ''}{problem}")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_rig(path: Path | str) -> RigSpec:
    """Read and validate a rig file. Raises ``RigFileError`` naming file, line, field and problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RigFileError(path, "no such file") from None
    except IsADirectoryError:
        raise RigFileError(path, "is a directory, not a rig file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RigFileError(path, f"cannot be read: {exc}") from None
    return parse_rig(text, path)


def parse_rig(text: str, path: Path | str = "<rig>") -> RigSpec:
    """Validate rig-file text; ``path`` only names the source in errors."""
    try:
        root = yaml.compose(text, Loader=_StrictLoader)
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - _StrictLoader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise RigFileError(path, f"YAML: {exc.problem or exc.context}", line=line) from None
    except yaml.YAMLError as exc:
        raise RigFileError(path, f"YAML: {exc}") from None
    if data is None:
        raise RigFileError(path, "is empty; a rig file needs at least a name")
    if not isinstance(data, dict):
        raise RigFileError(path, f"top level must be a mapping of sections, not a {type(data).__name__}", line=1)
    try:
        return RigSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if not loc:
            loc = _loc_from_message(message)
        field = _format_loc(loc) if loc else None
        if err["type"] == "extra_forbidden":
            message = f"unknown key {loc[-1]!r}"
            if len(exc.errors()) > 1:
                message += f" (and {len(exc.errors()) - 1} more problem(s))"
        elif len(exc.errors()) > 1:
            message += f" (and {len(exc.errors()) - 1} more problem(s))"
        raise RigFileError(path, message, field=field, line=_line_of(root, loc)) from None


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _loc_from_message(message: str) -> tuple[Any, ...]:
    m = re.match(r"(\w+)\[(\d+)\]", message)
    return (m.group(1), int(m.group(2))) if m else ()


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at ``loc`` (or of its deepest existing parent)."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    child = key if part == loc[-1] and not isinstance(value, (yaml.MappingNode, yaml.SequenceNode)) else value
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
        if child is None:
            break
        node = child
        line = node.start_mark.line + 1
    return line
