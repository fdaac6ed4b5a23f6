"""Administrator-defined query attributes: indexed, searchable, backfilled by a reindex."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from tests.integration.test_qido_corpus import (
    STUDIES,
    Corpus,
    StudySpec,
    loaded_archive,
    synthetic_instances,
)

pytestmark = pytest.mark.integration

PROTOCOL_NAME = "00181030"


async def _reindex(dsn: str, data_dir: Path) -> str:
    env = {
        **os.environ,
        "SKYPACS_INDEX__DSN": dsn,
        "SKYPACS_QIDO__EXTRA_QUERY_TAGS": f'["{PROTOCOL_NAME}"]',
        "SKYPACS_DATA_DIR": str(data_dir),
    }
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("skypacs")),
        "reindex",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    return output.decode()


async def test_extra_query_attribute_backfilled_then_kept_current(
    pg_server_dsn: str, pg_template: str, tmp_path: Path
) -> None:
    tags = [PROTOCOL_NAME]
    async with loaded_archive(
        pg_server_dsn, pg_template, tmp_path, extra_query_tags=tags
    ) as archive:
        # Configured but not yet reindexed: the values are not there.
        assert await archive.studies({"ProtocolName": "CHEST*"}) == set()
        dsn = archive.runtime.settings.index.dsn
        assert dsn is not None
        output = await _reindex(dsn.get_secret_value(), tmp_path / "cli")
        assert "00181030" in output
        assert "5 value(s)" in output

        assert await archive.studies({"ProtocolName": "CHEST*"}) == {"smith_john"}
        assert await archive.studies({"00181030": "*ROUTINE"}) == {"smythe_jane"}
        series = await archive.get("/series", {"ProtocolName": "BRAIN_ROUTINE"})
        assert {r["0020000E"]["Value"][0] for r in series.json()} == {
            archive.corpus.series[("smythe_jane", 1)],
            archive.corpus.series[("smythe_jane", 99)],
        }
        instances = await archive.get("/instances", {"ProtocolName": "CHEST_LOW_DOSE"})
        expected = {
            *archive.corpus.instances[("smith_john", 1)],
            *archive.corpus.instances[("smith_john", 2)],
        }
        assert {r["00080018"]["Value"][0] for r in instances.json()} == expected

        # Stored after the reindex: indexed on the way in.
        fresh = Corpus()
        spec = StudySpec(
            "fresh", "New^Patient", "N001", "20240101", "080000", "ACC-N", "CT Fresh",
            STUDIES[0].series[:1], protocol="FRESH_PROTOCOL",
        )  # fmt: skip
        await archive.store(synthetic_instances(fresh, [spec]))
        found = await archive.get("/studies", {"ProtocolName": "FRESH*"})
        assert [r["0020000D"]["Value"][0] for r in found.json()] == [fresh.studies["fresh"]]
        assert await archive.studies({"ProtocolName": "CHEST*"}) == {"smith_john"}
