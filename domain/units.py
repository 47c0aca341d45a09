"""Units: sizes as the contract writes them, Kubernetes quantities, and one rounding rule.

**GB means GiB.** In the contract, every message, the CLI, the board and the
docs, "GB" is 1024**3 bytes, "MB" 1024**2 and "KB" 1024, as in the original
model service: 512 MB is 0.5 GB. This module is the one place that says so,
and the one formatter and parser of sizes:

- `round_gb`: the one rounding rule. A size is rounded half up to two decimals
  of GB; a size that is not zero but would round to 0.0 keeps two significant
  digits instead (0.000072), so a tiny model never reads as empty. Every size
  figure a person or a program reads (API JSON, status fields, tables) follows it.
- `format_gb` / `format_size`: that figure as text ("0.06", "0.06 GB"), one
  trailing zero trimmed ("24.0", "19.2", "0.25"); `format_bytes` picks B, KB,
  MB or GB for byte counts (downloads, caches) by the same rule.
- `parse_size`: what people type ("24GB", "24 GiB", "24Gi", "512MB", "512Mi");
  GB, GiB and Gi are the same unit here. Bare decimal suffixes ("24G") are
  refused: in a Kubernetes quantity they mean 10**9.

Only the standard library: the command line imports this module.
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

__all__ = [
    "GIB",
    "KIB",
    "MIB",
    "SIZE_UNITS",
    "format_bytes",
    "format_gb",
    "format_size",
    "parse_quantity",
    "parse_size",
    "round_gb",
    "round_half_up",
]

KIB: int = 1024
MIB: int = 1024**2
GIB: int = 1024**3  # "GB" everywhere in this project
TIB: int = 1024**4

GB_PLACES = 2
# What `parse_size` accepts, and what each unit is in bytes (the contract's binary units).
SIZE_UNITS: dict[str, int] = {
    "B": 1,
    "KB": KIB,
    "KiB": KIB,
    "Ki": KIB,
    "MB": MIB,
    "MiB": MIB,
    "Mi": MIB,
    "GB": GIB,
    "GiB": GIB,
    "Gi": GIB,
    "TB": TIB,
    "TiB": TIB,
    "Ti": TIB,
}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$")
_UNITS_CASELESS = {unit.lower(): unit for unit in SIZE_UNITS}

# Suffixes of resource.Quantity (k8s.io/apimachinery): binary, decimal, exponent.
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1)}
_DECIMAL.update({"k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9)})
_DECIMAL.update({"T": Decimal(10**12), "P": Decimal(10**15), "E": Decimal(10**18)})
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|[KMGTPE]i|[numkMGTPE]?)$")


def parse_quantity(value: object) -> Decimal:
    """A Kubernetes quantity ("16Gi", "500m", "2", 4) as a Decimal; ValueError if malformed."""
    if isinstance(value, bool):
        raise ValueError(f"not a quantity: {value!r}")
    if isinstance(value, int | float):
        return Decimal(str(value))
    text = str(value).strip()
    match = _QUANTITY.match(text)
    if match is None:
        raise ValueError(f"not a quantity: {value!r}")
    number, suffix = match.groups()
    try:
        base = Decimal(number)
    except InvalidOperation as exc:
        raise ValueError(f"not a quantity: {value!r}") from exc
    if suffix in _BINARY:
        return base * _BINARY[suffix]
    if suffix[:1] in ("e", "E"):
        return base * (Decimal(10) ** int(suffix[1:]))
    return base * _DECIMAL[suffix]


def parse_size(text: str, *, default_unit: str | None = None) -> int:
    """Bytes of a typed size: "24GB", "24 GiB", "24Gi", "1.5 GB", "512MB" (GB = GiB).

    Units are case-insensitive and binary (see the module docstring); a bare
    number takes `default_unit`, or is refused when there is none. ValueError
    names what is accepted.
    """
    match = _SIZE.match(str(text))
    unit = None
    if match is not None:
        unit = _UNITS_CASELESS.get(match[2].lower()) if match[2] else default_unit
    if match is None or unit is None:
        raise ValueError(
            f"not a size: {text!r}: expected a number and a unit, e.g. 24GB, 24GiB, 512MB "
            "(GB = GiB = Gi = 1024^3 bytes; MB = MiB = Mi = 1024^2)"
        )
    return round(Decimal(match[1]) * SIZE_UNITS[unit])


def round_half_up(value: float, places: int = 1) -> float:
    """Round as people do (0.25 -> 0.3 at one place), not to even; for reported figures."""
    quantum = Decimal(1).scaleb(-places)
    return float(Decimal(repr(value)).quantize(quantum, rounding=ROUND_HALF_UP))


def _places(value: float) -> int:
    """Two decimals; more for a size that is not zero but would round to 0 (2 significant)."""
    magnitude = abs(value)
    if magnitude == 0 or magnitude >= 0.5 * 10**-GB_PLACES:
        return GB_PLACES
    return 1 - math.floor(math.log10(magnitude))


def round_gb(value: float) -> float:
    """A GB figure by the one rounding rule (module docstring): 0.0625 -> 0.06, 102.44 -> 102.44."""
    return round_half_up(float(value), _places(float(value)))


def _number(value: float) -> str:
    places = _places(value)
    text = format(Decimal(repr(round_half_up(value, places))), f".{places}f")
    if places > GB_PLACES:  # a tiny size: its significant digits only
        return text.rstrip("0")
    return text[:-1] if text.endswith("0") else text


def format_gb(value: float) -> str:
    """A GB figure as text, by the one rule: "24.0", "19.2", "0.25", "0.06", "0.000072"."""
    return _number(float(value))


def format_size(gib: float | None) -> str:
    """A size given in GB as text with its unit: "0.06 GB"; None (not known) is "-"."""
    return "-" if gib is None else f"{format_gb(gib)} GB"


def format_bytes(count: float | None) -> str:
    """A byte count with the largest unit it fills: "512 B", "1.5 KB", "64.0 MB", "2.31 GB"."""
    value = float(count or 0)
    if abs(value) < KIB:
        return f"{value:.0f} B"
    for unit, size in (("GB", GIB), ("MB", MIB), ("KB", KIB)):
        if abs(value) >= size:
            return f"{_number(value / size)} {unit}"
    raise AssertionError("unreachable")
