"""Viewers' searches through the Python dicomweb-client against a real ``skypacs serve``.

The server runs on its own data dir (embedded Postgres) so the result sets are
exactly the corpus stored here through STOW-RS.
"""

from __future__ import annotations

from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient

from tests.fixtures.skypacs import ServerProcess, start_server
from tests.integration.test_qido_corpus import (
    EVERY,
    Corpus,
    charset_instances,
    synthetic_instances,
)

pytestmark = pytest.mark.integration

SMITHS = {"smith_john", "smith_anna", "smith_long"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Corpus]]:
    process = start_server(Path(tmp_path_factory.mktemp("qido-e2e")) / "var")
    try:
        corpus = Corpus()
        files = synthetic_instances(corpus) + charset_instances(corpus)
        datasets = [pydicom.dcmread(BytesIO(data)) for data in files]
        response = DICOMwebClient(url=process.dicomweb).store_instances(datasets=datasets)
        assert len(response.ReferencedSOPSequence) == len(datasets)
        yield process, corpus
    finally:
        process.stop()


def _labels(corpus: Corpus, results: list[dict[str, Any]]) -> list[str]:
    return [corpus.label_of(r["0020000D"]["Value"][0]) for r in results]


def test_ohif_study_list_request(server: tuple[ServerProcess, Corpus]) -> None:
    process, corpus = server
    client = DICOMwebClient(url=process.dicomweb)
    results = client.search_for_studies(
        search_filters={"00100010": "*smi*"},
        fields=["00081030", "00080060"],
        fuzzymatching=False,
        limit=101,
        offset=0,
    )
    assert set(_labels(corpus, results)) == SMITHS
    for result in results:
        assert result["00081030"]["Value"]
        assert "Value" not in result["00080060"]
    # The same request as OHIF spells it: one comma-separated includefield.
    query = "limit=101&offset=0&fuzzymatching=false&includefield=00081030%2C00080060&00100010=*smi*"
    response = httpx.get(f"{process.dicomweb}/studies?{query}", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/dicom+json"
    assert set(_labels(corpus, response.json())) == SMITHS


def test_slicer_paging_loop_sees_every_study_once(server: tuple[ServerProcess, Corpus]) -> None:
    process, corpus = server
    client = DICOMwebClient(url=process.dicomweb)
    seen: list[str] = []
    offset = 0
    while True:
        page = client.search_for_studies(offset=offset, limit=2)
        if not page:
            break
        seen.extend(_labels(corpus, page))
        offset += len(page)
        assert offset <= 2 * len(EVERY), "paging does not end"
    assert sorted(seen) == sorted(EVERY)


def test_slicer_paging_with_a_filter(server: tuple[ServerProcess, Corpus]) -> None:
    process, corpus = server
    client = DICOMwebClient(url=process.dicomweb)
    seen: list[str] = []
    offset = 0
    while page := client.search_for_studies(
        search_filters={"StudyDate": "20190101-"}, offset=offset, limit=1
    ):
        seen.extend(_labels(corpus, page))
        offset += len(page)
        assert offset <= 20, "paging does not end"
    assert sorted(seen) == sorted(
        {"smith_john", "smythe_jane", "muller", "smith_anna", "smith_long"}
    )


def test_series_and_instances_through_the_client(server: tuple[ServerProcess, Corpus]) -> None:
    process, corpus = server
    client = DICOMwebClient(url=process.dicomweb)
    study = corpus.studies["smith_john"]
    series = client.search_for_series(study_instance_uid=study)
    assert {s["0020000E"]["Value"][0] for s in series} == {
        corpus.series[("smith_john", 1)],
        corpus.series[("smith_john", 2)],
    }
    axial = corpus.series[("smith_john", 1)]
    instances = client.search_for_instances(study_instance_uid=study, series_instance_uid=axial)
    assert {i["00080018"]["Value"][0] for i in instances} == set(
        corpus.instances[("smith_john", 1)]
    )
    fuzzy = client.search_for_studies(search_filters={"PatientName": "muller"}, fuzzymatching=True)
    assert _labels(corpus, fuzzy) == ["muller"]
