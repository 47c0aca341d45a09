"""Kubernetes quantities and how figures are rounded."""

from __future__ import annotations

from decimal import Decimal

import pytest

from fovea.domain.units import format_gb, parse_quantity, round_half_up


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("16Gi", Decimal(16 * 2**30)),
        ("512Mi", Decimal(512 * 2**20)),
        ("1Ki", Decimal(1024)),
        ("500m", Decimal("0.5")),
        ("2", Decimal(2)),
        ("1.5G", Decimal(1_500_000_000)),
        ("1e3", Decimal(1000)),
        ("12E-1", Decimal("1.2")),
        (4, Decimal(4)),
        (0.25, Decimal("0.25")),
    ],
)
def test_parse_quantity(text: object, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "Gi", "16 GiB", "lots", "1.2.3", True, "--1"])
def test_malformed_quantities_are_refused(text: object) -> None:
    with pytest.raises(ValueError, match="not a quantity"):
        parse_quantity(text)


def test_rounding_is_half_up_as_people_expect() -> None:
    assert round_half_up(0.25, 1) == 0.3  # round() would give 0.2
    assert round_half_up(18.25, 1) == 18.3
    assert round_half_up(24 * 0.8, 1) == 19.2
    assert round_half_up(0.125, 2) == 0.13


@pytest.mark.parametrize(
    ("value", "text"), [(8.0, "8.0"), (0.25, "0.25"), (19.200000000000003, "19.2"), (0.5, "0.5")]
)
def test_format_gb(value: float, text: str) -> None:
    assert format_gb(value) == text
