"""The benchmark corpus: same spec, same bytes; valid CT a viewer would open."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pydicom
import pytest
from bench.corpus import CorpusSpec, generate, load_cached

pytestmark = pytest.mark.unit

SMALL = CorpusSpec(studies=2, series=2, instances=3, rows=32, columns=24, seed=7)


def digests(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*.dcm"))
    }


def test_same_spec_writes_identical_files(tmp_path: Path) -> None:
    first = generate(SMALL, tmp_path / "a")
    second = generate(SMALL, tmp_path / "b")
    assert digests(first.root) == digests(second.root)
    assert len(digests(first.root)) == SMALL.instance_count
    assert [s.study_uid for s in first.studies] == [s.study_uid for s in second.studies]


def test_another_seed_gives_other_uids_and_pixels(tmp_path: Path) -> None:
    base = generate(SMALL, tmp_path / "a")
    other = generate(CorpusSpec(**{**SMALL.__dict__, "seed": 8}), tmp_path / "b")
    assert {i.sop_uid for i in base.instances()}.isdisjoint(i.sop_uid for i in other.instances())
    first_base = next(base.instances()).path
    first_other = next(other.instances()).path
    assert pydicom.dcmread(first_base).PixelData != pydicom.dcmread(first_other).PixelData


def test_instances_are_16_bit_ct_with_the_listed_uids(tmp_path: Path) -> None:
    corpus = generate(SMALL, tmp_path)
    study = corpus.studies[1]
    entry = study.series[1].instances[2]
    ds = pydicom.dcmread(entry.path)
    assert ds.SOPInstanceUID == entry.sop_uid
    assert ds.SeriesInstanceUID == study.series[1].series_uid
    assert ds.StudyInstanceUID == study.study_uid
    assert ds.PatientID == study.patient_id
    assert str(ds.PatientName) == study.patient_name
    assert ds.Modality == "CT"
    assert ds.pixel_array.shape == (32, 24)
    assert ds.pixel_array.dtype.itemsize == 2
    assert entry.size == entry.path.stat().st_size


def test_uids_are_unique_and_valid(tmp_path: Path) -> None:
    corpus = generate(SMALL, tmp_path)
    uids = [i.sop_uid for i in corpus.instances()]
    uids += [s.series_uid for st in corpus.studies for s in st.series]
    uids += [st.study_uid for st in corpus.studies]
    assert len(set(uids)) == len(uids)
    assert all(len(uid) <= 64 and uid.replace(".", "").isdigit() for uid in uids)


def test_cached_corpus_is_reused_and_a_changed_spec_is_not(tmp_path: Path) -> None:
    corpus = generate(SMALL, tmp_path)
    assert load_cached(SMALL, tmp_path) == corpus
    assert load_cached(CorpusSpec(**{**SMALL.__dict__, "instances": 4}), tmp_path) is None


def test_damaged_cache_is_rewritten(tmp_path: Path) -> None:
    corpus = generate(SMALL, tmp_path)
    victim = next(corpus.instances()).path
    victim.write_bytes(b"truncated")
    assert load_cached(SMALL, tmp_path) is None
    assert generate(SMALL, tmp_path) == corpus
    assert pydicom.dcmread(victim).SOPInstanceUID == next(corpus.instances()).sop_uid


def test_expected_query_answers(tmp_path: Path) -> None:
    spec = CorpusSpec(studies=12, series=1, instances=1, rows=8, columns=8)
    corpus = generate(spec, tmp_path)
    assert corpus.studies_matching_name("BENCH000*") == 10
    assert corpus.studies_matching_name("BENCH0011*") == 1
    assert corpus.studies_in_date_range("20200101", "20201231") == 9
