"""Blob keys of instance versions: grouped into shared prefixes, spread over many."""

from __future__ import annotations

import pytest

from skypacs.index.instances import BLOB_KEY_GROUP, blob_key_for
from skypacs.storage import validate_key

pytestmark = pytest.mark.unit


def _prefix(version: int) -> str:
    return blob_key_for(version).rsplit("/", 1)[0]


def test_key_names_the_version_under_two_hex_prefixes() -> None:
    key = blob_key_for(12345)
    assert validate_key(key) == key
    top, first, second, name = key.split("/")
    assert top == "v1"
    assert len(first) == len(second) == 2
    int(first + second, 16)
    assert name == "12345.dcm"


def test_a_group_of_consecutive_versions_shares_one_prefix() -> None:
    start = 7 * BLOB_KEY_GROUP
    assert {_prefix(v) for v in range(start, start + BLOB_KEY_GROUP)} == {_prefix(start)}


def test_groups_spread_over_many_prefixes() -> None:
    groups = 4096
    prefixes = {_prefix(g * BLOB_KEY_GROUP) for g in range(groups)}
    # 4,096 groups hashed into 65,536 prefixes: only a few may collide.
    assert len(prefixes) > groups * 0.95
    assert len({p.split("/")[1] for p in prefixes}) == 256
