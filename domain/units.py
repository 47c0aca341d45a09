"""Units: Kubernetes quantities, GiB, and how figures are rounded for people.

"GB" in the contract and in every message of this project means GiB
(1024**3 bytes), as in the original model service: 512 MB is 0.5 GB.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from fovea.domain.resources import GIB, MIB

__all__ = ["GIB", "MIB", "format_gb", "parse_quantity", "round_half_up"]

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


def round_half_up(value: float, places: int = 1) -> float:
    """Round as people do (0.25 -> 0.3 at one place), not to even; for reported figures."""
    quantum = Decimal(1).scaleb(-places)
    return float(Decimal(repr(value)).quantize(quantum, rounding=ROUND_HALF_UP))


def format_gb(value: float) -> str:
    """A GiB figure for a message: one decimal, two when the second one matters (0.25)."""
    two = f"{round_half_up(value, 2):.2f}"
    return two[:-1] if two.endswith("0") else two
