"""Kubernetes quantities and how figures are rounded."""

from __future__ import annotations

from decimal import Decimal

import pytest

from fovea.domain.units import (
    GIB,
    MIB,
    format_bytes,
    format_gb,
    format_size,
    parse_quantity,
    parse_size,
    round_gb,
    round_half_up,
)


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


# --- the one size formatter, rounding rule and parser (GB = 1024^3 bytes) ---------------------


@pytest.mark.parametrize(
    ("gib", "rounded", "text"),
    [
        (0.0625, 0.06, "0.06 GB"),  # a 64 MB option: the same figure in list, ps, validate, kubectl
        (102.4, 102.4, "102.4 GB"),  # a validate summary's "allowed" as its field says it
        (23.84, 23.84, "23.84 GB"),
        (24.0, 24.0, "24.0 GB"),
        (0.125, 0.13, "0.13 GB"),  # half up
        (0.000072, 0.000072, "0.000072 GB"),  # tiny but not zero: two significant digits
        (0.004999, 0.005, "0.005 GB"),
        (0.0, 0.0, "0.0 GB"),
    ],
)
def test_one_rounding_rule_for_sizes(gib: float, rounded: float, text: str) -> None:
    assert round_gb(gib) == rounded
    assert format_size(gib) == text
    assert format_gb(gib) == text.removesuffix(" GB")


def test_an_unknown_size_is_a_dash() -> None:
    assert format_size(None) == "-"


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1536, "1.5 KB"),
        (64 * MIB, "64.0 MB"),
        (int(2.31 * GIB), "2.31 GB"),
        (None, "0 B"),
    ],
)
def test_byte_counts_use_the_contracts_binary_units(count: int | None, text: str) -> None:
    assert format_bytes(count) == text


@pytest.mark.parametrize(
    ("typed", "count"),
    [
        ("24GB", 24 * GIB),
        ("24 GiB", 24 * GIB),
        ("24gi", 24 * GIB),
        ("1.5GB", 3 * GIB // 2),
        ("512MB", 512 * MIB),
        ("512Mi", 512 * MIB),
        ("1KB", 1024),
    ],
)
def test_sizes_are_typed_as_they_are_printed(typed: str, count: int) -> None:
    assert parse_size(typed) == count


@pytest.mark.parametrize("gib", [24.0, 0.5, 102.4, 0.06])
def test_a_printed_size_reads_back(gib: float) -> None:
    assert parse_size(format_size(gib)) == round(gib * GIB)


@pytest.mark.parametrize("typed", ["24G", "24", "", "GB", "24 parsecs", "-1GB", "1.2.3GB"])
def test_a_size_without_a_binary_unit_is_refused(typed: str) -> None:
    with pytest.raises(ValueError, match=r"not a size: .*GB = GiB = Gi = 1024\^3 bytes"):
        parse_size(typed)


def test_a_bare_number_takes_the_default_unit_when_one_is_given() -> None:
    assert parse_size("8", default_unit="GB") == 8 * GIB
