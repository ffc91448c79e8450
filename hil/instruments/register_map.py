"""Energy-meter register maps, loaded from ``profiles/meters/<model>.yaml``.

A map is data: the register table (input registers, FC04, or holding registers, FC03), the word order,
the largest read the meter accepts, the address ranges it serves, each point's address, type and scaling
(a fixed factor, or a SunSpec scale-factor register) and where the meter keeps its identity. The driver
decodes with ``RegisterMap.decode`` and plans its reads with ``RegisterMap.reads``; the emulator serves
the register image of ``RegisterMap.encode``. Both sides use this one definition, so they always agree.

Values are exchanged in one set of units whatever the meter stores: V, A, W, Hz and kWh for energies
(a map point in Wh, as in SunSpec, is converted).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

MAP_DIR = Path(__file__).resolve().parent / "profiles" / "meters"

Table = Literal["input", "holding"]
PointType = Literal["float32", "int32", "uint32", "int16", "uint16", "acc32", "string"]
FUNCTION_CODE: dict[str, int] = {"holding": 3, "input": 4}
"""Modbus read function code of each register table."""
WIDTH: dict[str, int] = {"float32": 2, "int32": 2, "uint32": 2, "acc32": 2, "int16": 1, "uint16": 1}
"""Registers per value."""
NOT_IMPLEMENTED: dict[str, int] = {"int16": 0x8000, "uint16": 0xFFFF, "acc32": 0, "float32": 0x7FC00000}
"""SunSpec "not implemented" sentinels (raw)."""
SUNS = (0x5375, 0x6E53)
"""The "SunS" marker at a SunSpec base address."""
SUNSPEC_END = (0xFFFF, 0)
"""The model ID and length that end a SunSpec model chain."""

Image = dict[int, dict[int, list[int]]]
"""A register image: ``{function code: {start address: registers}}``."""


class MapError(ValueError):
    """A register map is missing or malformed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Point(_Strict):
    """One quantity: where it is, how it is stored, how to scale it. Value = raw x scale x 10^SF."""

    address: int
    """Protocol (0-based) address; SunSpec: offset from the model's ID register."""
    type: PointType
    unit: str = ""
    """What the meter stores: V, A, W, Hz, kWh or Wh."""
    scale: float = 1.0
    scale_factor: int | None = None
    """SunSpec: offset of the scale-factor register (int16 exponent of 10)."""
    count: int = 1
    """Registers of a string."""

    @property
    def width(self) -> int:
        return self.count if self.type == "string" else WIDTH[self.type]


class Identity(_Strict):
    """Where the meter keeps its serial number and model code (SunSpec: offsets in common model 1)."""

    table: Table = "holding"
    blocks: list[tuple[int, int]] = []
    """Address ranges ``[start, end)`` the meter serves in ``table`` for its identity."""
    serial: Point | None = None
    model_code: Point | None = None
    model_codes: dict[int, str] = {}
    """Model code -> model name; the emulator reports the first code."""
    manufacturer: Point | None = None
    model_name: Point | None = None


class SunSpec(_Strict):
    """SunSpec layout: base addresses to scan, the metering model and its emulated scale factors."""

    bases: list[int]
    model: int
    length: int
    common_length: int = 66
    scale_factors: dict[int, int]
    """Scale factors the emulator serves, by offset from the model ID register."""
    zero_ranges: list[tuple[int, int]] = []
    """Offsets ``[start, end)`` whose "not implemented" value is 0 (acc32, bitfields); others: 0x8000."""


class RegisterMap(_Strict):
    """One meter family's Modbus map."""

    name: str = ""
    """The file stem the map was loaded from (``sdm630``)."""
    maker: str
    model: str
    table: Table
    max_registers: int
    """Largest read the meter answers [registers]."""
    word_order: Literal["big", "little"]
    blocks: list[tuple[int, int]] = []
    """Address ranges ``[start, end)`` served in ``table`` (SunSpec: derived from the model chain)."""
    points: dict[str, Point]
    identity: Identity = Identity()
    sunspec: SunSpec | None = None

    @property
    def function_code(self) -> int:
        """3 (holding registers) or 4 (input registers)."""
        return FUNCTION_CODE[self.table]

    # -- one value <-> registers ----------------------------------------------------------------------
    def encode_point(self, point: Point, value: float, exponent: int = 0) -> list[int]:
        """Registers holding ``value`` (in the point's own unit); ``exponent`` is the SunSpec SF.

        Integers are rounded and clamped to their type; NaN gives the SunSpec "not implemented" value.
        """
        if point.type == "string":
            raise TypeError("use encode_string for strings")
        if point.type == "float32":
            regs = list(struct.unpack(">HH", struct.pack(">f", value)))
            return regs if self.word_order == "big" else regs[::-1]
        if math.isnan(value):
            raw = NOT_IMPLEMENTED.get(point.type, 0)
            regs = [raw] if WIDTH[point.type] == 1 else [raw >> 16, raw & 0xFFFF]
            return regs if self.word_order == "big" or len(regs) == 1 else regs[::-1]
        raw = round(value / point.scale / 10.0**exponent)
        if point.type in ("int16", "uint16"):
            low, high = (-0x8000, 0x7FFF) if point.type == "int16" else (0, 0xFFFF)
            return [min(max(raw, low), high) & 0xFFFF]
        if point.type == "acc32":
            raw %= 1 << 32
        low, high = (-(1 << 31), (1 << 31) - 1) if point.type == "int32" else (0, (1 << 32) - 1)
        raw = min(max(raw, low), high) & 0xFFFFFFFF
        regs = [raw >> 16, raw & 0xFFFF]
        return regs if self.word_order == "big" else regs[::-1]

    def decode_point(self, point: Point, regs: list[int], exponent: int = 0) -> float:
        """The value of ``point`` (in its own unit) from its registers; NaN for SunSpec "not implemented"."""
        if point.type in ("int16", "uint16"):
            raw = regs[0]
            if self.sunspec is not None and raw == NOT_IMPLEMENTED[point.type]:
                return math.nan
            if point.type == "int16" and raw >= 0x8000:
                raw -= 0x10000
            return raw * point.scale * 10.0**exponent
        high, low = (regs[0], regs[1]) if self.word_order == "big" else (regs[1], regs[0])
        raw = high << 16 | low
        if point.type == "float32":
            return struct.unpack(">f", struct.pack(">I", raw))[0] * point.scale
        if point.type == "int32" and raw >= 1 << 31:
            raw -= 1 << 32
        return raw * point.scale * 10.0**exponent

    # -- whole meter <-> register image ---------------------------------------------------------------
    def served(self) -> dict[str, list[tuple[int, int]]]:
        """Address ranges ``[start, end)`` a meter of this map serves, by table (SunSpec at its first base)."""
        out: dict[str, list[tuple[int, int]]] = {"input": [], "holding": []}
        if self.sunspec is not None:
            base = self.sunspec.bases[0]
            out["holding"].append((base, self.model_address(base) + 2 + self.sunspec.length + 2))
        else:
            out[self.table].extend(self.blocks)
            out[self.identity.table].extend(self.identity.blocks)
        return out

    def model_address(self, base: int) -> int:
        """SunSpec: address of the metering model's ID register when the "SunS" marker is at ``base``,
        with only common model 1 before it (the emulator's layout; a driver walks the chain instead)."""
        assert self.sunspec is not None
        return base + 2 + 2 + self.sunspec.common_length

    def encode(
        self, values: Mapping[str, float], *, serial: str = "0", manufacturer: str | None = None,
        model_name: str | None = None, device_address: int = 1,
    ) -> Image:
        """The whole register image of a meter showing ``values``: ``{function code: {start: registers}}``.

        ``values`` maps point names to V, A, W, Hz, kWh; missing points read as zero (SunSpec: "not
        implemented"). The image includes the identity registers (``serial``; SunSpec: Mn/Md/SN/DA of
        common model 1 from ``manufacturer``/``model_name``, default the map's maker and model).
        """
        image: Image = {}
        for table, ranges in self.served().items():
            for start, end in ranges:
                image.setdefault(FUNCTION_CODE[table], {})[start] = [0] * (end - start)
        if self.sunspec is not None:
            self._encode_sunspec(image[3], values, serial, manufacturer or self.maker, model_name or self.model,
                                 device_address)
            return image
        self._write(image[self.function_code], self.points.items(), values)
        ident = self.identity
        if ident.blocks:
            regs = image[FUNCTION_CODE[ident.table]]
            if ident.serial is not None:
                p = ident.serial
                data = encode_string(serial, p.count) if p.type == "string" else self.encode_point(p, float(serial))
                _put(regs, p.address, data)
            if ident.model_code is not None and ident.model_codes:
                _put(regs, ident.model_code.address, self.encode_point(ident.model_code, next(iter(ident.model_codes))))
        return image

    def _write(self, regs: dict[int, list[int]], points: Iterable[tuple[str, Point]], values: Mapping[str, float],
               base: int = 0, exponents: Mapping[int, int] | None = None) -> None:
        for name, p in points:
            value = values.get(name, math.nan if self.sunspec is not None else 0.0)
            if p.unit == "Wh":
                value *= 1000.0
            exponent = exponents[p.scale_factor] if exponents and p.scale_factor is not None else 0
            _put(regs, base + p.address, self.encode_point(p, value, exponent))

    def _encode_sunspec(self, regs: dict[int, list[int]], values: Mapping[str, float], serial: str,
                        manufacturer: str, model_name: str, device_address: int) -> None:
        spec = self.sunspec
        assert spec is not None
        base = spec.bases[0]
        _put(regs, base, list(SUNS))
        common = [1, spec.common_length] + [0] * spec.common_length
        ident = self.identity
        for p, text in ((ident.manufacturer, manufacturer), (ident.model_name, model_name), (ident.serial, serial)):
            if p is not None:
                common[p.address:p.address + p.count] = encode_string(text, p.count)
        common[2 + spec.common_length - 1] = device_address  # DA, the last register of model 1
        _put(regs, base + 2, common)
        model = self.model_address(base)
        body = [0x8000] * spec.length
        for start, end in spec.zero_ranges:
            body[start - 2:end - 2] = [0] * (end - start)
        for offset, sf in spec.scale_factors.items():
            body[offset - 2] = sf & 0xFFFF
        _put(regs, model, [spec.model, spec.length, *body, *SUNSPEC_END])
        self._write(regs, self.points.items(), values, model, spec.scale_factors)

    def reads(self, names: Iterable[str], base: int = 0) -> list[tuple[int, int]]:
        """The requests ``(address, count)`` that cover points ``names`` and their scale factors: contiguous
        within one served block, each at most ``max_registers`` long, as few as possible. ``base``
        (SunSpec): the address of the metering model's ID register."""
        points = [self.points[n] for n in names]
        needed = [(base + p.address, p.width) for p in points]
        needed += [(base + sf, 1) for sf in {p.scale_factor for p in points if p.scale_factor is not None}]
        if self.sunspec is not None:
            blocks = [(base, base + 2 + self.sunspec.length)]
        else:
            blocks = list(self.blocks)
        return spans(needed, blocks, self.max_registers)

    def decode(self, registers: Mapping[int, int], names: Iterable[str] | None = None, base: int = 0) -> dict[str, float]:
        """Values (V, A, W, Hz, kWh) of points ``names`` (default: all) from ``registers`` (address ->
        register, as read with ``reads``). ``base`` (SunSpec): the metering model's ID register address."""
        out: dict[str, float] = {}
        for name in self.points if names is None else names:
            p = self.points[name]
            exponent: int | float = 0
            if p.scale_factor is not None:
                sf = registers[base + p.scale_factor]
                exponent = math.nan if sf == 0x8000 else (sf - 0x10000 if sf >= 0x8000 else sf)
            a = base + p.address
            if isinstance(exponent, float):  # scale factor not implemented
                value = math.nan
            else:
                value = self.decode_point(p, [registers[a + k] for k in range(p.width)], exponent)
            out[name] = value / 1000.0 if p.unit == "Wh" else value
        return out


def _put(regs: dict[int, list[int]], address: int, data: list[int]) -> None:
    """Write ``data`` at ``address`` into whichever block of ``regs`` holds it."""
    for start, block in regs.items():
        if start <= address and address + len(data) <= start + len(block):
            block[address - start:address - start + len(data)] = data
            return
    raise MapError(f"registers {address}..{address + len(data) - 1} lie outside the served blocks")


def encode_string(text: str, registers: int) -> list[int]:
    """ASCII text, two characters per register, NUL-padded."""
    data = text.encode("ascii", "replace")[: registers * 2].ljust(registers * 2, b"\0")
    return [data[k] << 8 | data[k + 1] for k in range(0, len(data), 2)]


def decode_string(regs: list[int]) -> str:
    """Text of ASCII registers (two characters each), up to the first NUL, stripped."""
    return b"".join(bytes([r >> 8, r & 0xFF]) for r in regs).split(b"\0")[0].decode("ascii", "replace").strip()


def spans(needed: Iterable[tuple[int, int]], blocks: list[tuple[int, int]], max_registers: int) -> list[tuple[int, int]]:
    """Group ``(address, width)`` items into reads ``(address, count)``: contiguous within one served
    block (any when ``blocks`` is empty), each at most ``max_registers`` long, as few as possible."""
    out: list[tuple[int, int]] = []
    for address, width in sorted(set(needed)):
        end = address + width
        if out:
            start, count = out[-1]
            if end <= start + count:
                continue
            same_block = not blocks or any(b0 <= start and end <= b1 for b0, b1 in blocks)
            if same_block and end - start <= max_registers:
                out[-1] = (start, end - start)
                continue
        out.append((address, width))
    return out


def map_names() -> list[str]:
    """Models with a map file: the names ``load_map`` accepts."""
    return sorted(p.stem for p in MAP_DIR.glob("*.yaml"))


MODELS: tuple[str, ...] = tuple(map_names())
"""Meter models available (file stems in ``profiles/meters``)."""


@lru_cache(maxsize=None)
def load_map(name: str) -> RegisterMap:
    """Load the map of meter model ``name`` (a file stem in ``profiles/meters``)."""
    path = MAP_DIR / f"{name}.yaml"
    if not path.is_file():
        raise MapError(f"unknown meter model {name!r}; known: {', '.join(map_names())}")
    try:
        return RegisterMap.model_validate({**yaml.safe_load(path.read_text()), "name": name})
    except (yaml.YAMLError, ValidationError) as exc:
        raise MapError(f"{path}: {exc}") from exc


__all__ = [
    "FUNCTION_CODE", "Identity", "Image", "MODELS", "MapError", "Point", "RegisterMap", "SUNS", "SunSpec",
    "decode_string", "encode_string", "load_map", "map_names", "spans",
]
