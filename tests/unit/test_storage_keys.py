"""Key, prefix and range rules shared by every blob store backend."""

from __future__ import annotations

import pytest

from skypacs.errors import BadRequest
from skypacs.storage import InvalidRange, resolve_range, validate_key, validate_prefix

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("key", ["a", "v1/ab/1.2.840.10008.dcm", "A-b_c.d/e", "x" * 512, "0/1/2/3"])
def test_valid_keys_pass(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize(
    "key",
    ["", "/a", "a/", "a//b", "..", "a/../b", "./a", "a/.b", "-a", "a b", "a@data", "é", "x" * 513],
)
def test_unsafe_keys_fail(key: str) -> None:
    with pytest.raises(ValueError, match="invalid blob key"):
        validate_key(key)


@pytest.mark.parametrize("prefix", ["", "a", "a/", "v1/ab", "v1/ab/"])
def test_prefixes_of_valid_keys_pass(prefix: str) -> None:
    assert validate_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["/", "../", "a//", "a/.", "a b"])
def test_bad_prefixes_fail(prefix: str) -> None:
    with pytest.raises(ValueError, match="invalid blob key prefix"):
        validate_prefix(prefix)


@pytest.mark.parametrize(
    ("size", "start", "end", "expected"),
    [
        (10, 0, None, (0, 10)),
        (10, 3, 7, (3, 7)),
        (10, 9, None, (9, 10)),
        (10, 10, None, (10, 10)),
        (10, 4, 99, (4, 10)),
        (0, 0, None, (0, 0)),
        (0, 0, 5, (0, 0)),
    ],
)
def test_ranges_resolve_half_open(
    size: int, start: int, end: int | None, expected: tuple[int, int]
) -> None:
    assert resolve_range(size, start, end) == expected


@pytest.mark.parametrize(("size", "start", "end"), [(10, 11, None), (10, -1, None), (10, 5, 4)])
def test_bad_ranges_are_invalid_range(size: int, start: int, end: int | None) -> None:
    with pytest.raises(InvalidRange) as caught:
        resolve_range(size, start, end)
    assert isinstance(caught.value, BadRequest)
    assert caught.value.status_code == 400
