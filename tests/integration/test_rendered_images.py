"""Rendered images through the WADO app on a real Postgres and blob store.

Every pydicom test image is stored through STOW and rendered: the size, the
Pillow mode and the pixels a user would look at are checked, along with windows,
viewports, frames, multipart answers, PDF documents and refused bombs.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import AsyncIterator
from io import BytesIO
from pathlib import Path

import numpy as np
import psutil
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid

from tests.integration.stow_helpers import make_settings, part10, with_new_uids
from tests.integration.wado_helpers import Archive, open_archive, split_multipart

pytestmark = pytest.mark.integration

PNG = "image/png"
IDENTIFYING = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
#: Files whose pixel data pydicom itself cannot decode (they answer 422, checked below).
UNDECODABLE = {"JPEG-lossy.dcm", "JPEG2000-embedded-sequence-delimiter.dcm"}


@pytest.fixture
async def archive(pg_dsn: str, tmp_path: Path) -> AsyncIterator[Archive]:
    storage = {"backend": "filesystem", "filesystem": {"fsync": False}}
    settings = make_settings(pg_dsn, tmp_path, storage, duplicate_policy="overwrite")
    async with open_archive(settings) as opened:
        yield opened


def _read(path: str | Path, *, pixels: bool = True) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, stop_before_pixels=not pixels)


def _testdata(name: str) -> Dataset:
    path = get_testdata_file(name)
    assert isinstance(path, str)
    return with_new_uids(_read(path))


def _url(ds: Dataset) -> str:
    return (
        f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )


def _image(body: bytes) -> Image.Image:
    image = Image.open(BytesIO(body))
    image.load()
    return image


def _renderable_corpus() -> list[Path]:
    """pydicom test images that are valid Part 10 files with pixel data pydicom decodes."""
    found = []
    for name in sorted(get_testdata_files("*.dcm")):
        path = Path(name)
        if not os.path.isfile(path) or path.read_bytes()[128:132] != b"DICM":
            continue
        header = _read(path, pixels=False)
        if not all(header.get(k) for k in IDENTIFYING) or "Rows" not in header:
            continue
        try:
            _read(path).pixel_array  # noqa: B018
        except Exception:
            continue
        found.append(path)
    return found


async def _render_check(archive: Archive, path: Path) -> str | None:
    header = _read(path, pixels=False)
    await archive.store([path.read_bytes()])
    response = await archive.get(_url(header) + "/rendered", Accept=PNG)
    if response.status_code != 200:
        return f"{path.name}: {response.status_code} {response.text[:160]}"
    image = _image(response.content)
    colour = int(header.get("SamplesPerPixel", 1)) == 3 or (
        header.PhotometricInterpretation == "PALETTE COLOR"
    )
    expected = ((int(header.Columns), int(header.Rows)), "RGB" if colour else "L")
    if (image.size, image.mode) != expected:
        return f"{path.name}: {image.size} {image.mode}, expected {expected}"
    return None


async def test_every_pydicom_image_renders_with_its_size_and_mode(archive: Archive) -> None:
    corpus = _renderable_corpus()
    assert len(corpus) > 40
    problems = [p for path in corpus if (p := await _render_check(archive, path))]
    assert problems == []


def _ct() -> Dataset:
    return _testdata("CT_small.dcm")


def _modality_values(ds: Dataset) -> np.ndarray:
    return ds.pixel_array.astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


async def _render_array(archive: Archive, path: str, **query: str) -> np.ndarray:
    response = await archive.wado.get(f"/dicom-web{path}", params=query, headers={"Accept": PNG})
    assert response.status_code == 200, response.text
    assert response.headers["cross-origin-resource-policy"] == "cross-origin"
    return np.asarray(_image(response.content), dtype=float)


async def test_window_is_applied_as_asked(archive: Archive) -> None:
    ct = _ct()
    await archive.store([part10(ct)])
    values = _modality_values(ct)
    region = (slice(40, 90), slice(40, 90))
    center, width = float(np.median(values[region])), 200.0
    shown = await _render_array(archive, _url(ct) + "/rendered", window=f"{center},{width}")
    expected = np.clip(((values - (center - 0.5)) / (width - 1) + 0.5) * 255, 0, 255)
    assert abs(shown[region].mean() - expected[region].mean()) < 1.5
    dark = await _render_array(archive, _url(ct) + "/rendered", window="5000,10")
    bright = await _render_array(archive, _url(ct) + "/rendered", window="-5000,10,sigmoid")
    assert dark[region].mean() == 0
    assert bright[region].mean() > 254
    narrow = await _render_array(archive, _url(ct) + "/rendered", window=f"{center},20")
    assert narrow[region].std() > shown[region].std()


async def test_dataset_window_is_the_default_and_monochrome1_is_inverted(archive: Archive) -> None:
    ct = _ct()
    ct.WindowCenter, ct.WindowWidth = 40, 400
    inverted = with_new_uids(ct)
    inverted.PhotometricInterpretation = "MONOCHROME1"
    await archive.store([part10(ct), part10(inverted)])
    default = await _render_array(archive, _url(ct) + "/rendered")
    explicit = await _render_array(archive, _url(ct) + "/rendered", window="40,400")
    assert np.array_equal(default, explicit)
    flipped = await _render_array(archive, _url(inverted) + "/rendered")
    assert np.array_equal(flipped, 255 - default)


async def test_viewport_keeps_the_aspect_ratio_and_crops(archive: Archive) -> None:
    tall = _testdata("JPEG2000.dcm")  # 1024 rows x 256 columns
    ct = _ct()
    await archive.store([part10(tall), part10(ct)])
    fitted = await _render_array(archive, _url(tall) + "/rendered", viewport="200,200")
    assert fitted.shape == (200, 50)
    cropped = await _render_array(archive, _url(ct) + "/rendered", viewport="64,64,0,0,64,32")
    assert cropped.shape == (32, 64)
    whole = await _render_array(archive, _url(ct) + "/rendered")
    assert abs(cropped.mean() - whole[:32, :64].mean()) < 3


def _multiframe(frames: int) -> Dataset:
    """A native 16-bit multi-frame image whose frame k is the constant 1000 * k."""
    ds = _ct()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Rows, ds.Columns, ds.NumberOfFrames = 32, 48, frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    pixels = np.stack([np.full((32, 48), 1000 * k, dtype=np.uint16) for k in range(1, frames + 1)])
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = "OW"
    return ds


async def test_frame_n_of_a_multiframe_object_renders_frame_n(archive: Archive) -> None:
    cine = _multiframe(4)
    await archive.store([part10(cine)])
    window = {"window": "2500,5000,linear-exact"}
    third = await _render_array(archive, _url(cine) + "/frames/3/rendered", **window)
    assert third.shape == (32, 48)
    assert abs(third.mean() - (3000 - 2500) / 5000 * 255 - 127.5) < 1
    response = await archive.wado.get(
        f"/dicom-web{_url(cine)}/frames/1,4/rendered",
        params=window,
        headers={"Accept": 'multipart/related; type="image/png"'},
    )
    parts = split_multipart(response)
    means = [np.asarray(_image(body), dtype=float).mean() for _, body in parts]
    assert [ct for ct, _ in parts] == [PNG, PNG]
    assert means == pytest.approx([(1000 / 5000) * 255, (4000 / 5000) * 255], abs=1)
    beyond = await archive.get(_url(cine) + "/frames/5/rendered", Accept=PNG)
    assert beyond.status_code == 400


async def test_series_renders_as_multipart_and_single_image_when_asked(archive: Archive) -> None:
    first = _ct()
    second = with_new_uids(first, study=first.StudyInstanceUID, series=first.SeriesInstanceUID)
    await archive.store([part10(first), part10(second)])
    series = f"/studies/{first.StudyInstanceUID}/series/{first.SeriesInstanceUID}"
    response = await archive.get(series + "/rendered")
    assert response.headers["content-type"].startswith('multipart/related; type="image/jpeg"')
    parts = split_multipart(response)
    assert len(parts) == 2
    assert all(_image(body).format == "JPEG" for _, body in parts)
    study = await archive.get(f"/studies/{first.StudyInstanceUID}/rendered", Accept="image/jpeg")
    assert study.headers["content-type"] == "image/jpeg"
    assert _image(study.content).size == (128, 128)
    gif = await archive.get(_url(first) + "/rendered", Accept="image/gif")
    assert _image(gif.content).format == "GIF"
    refused = await archive.get(series + "/rendered", Accept="application/dicom")
    assert refused.status_code == 406


async def test_quality_changes_the_jpeg(archive: Archive) -> None:
    ct = _ct()
    await archive.store([part10(ct)])
    low = await archive.wado.get(f"/dicom-web{_url(ct)}/rendered", params={"quality": "5"})
    high = await archive.wado.get(f"/dicom-web{_url(ct)}/rendered", params={"quality": "100"})
    assert len(low.content) < len(high.content)
    bad = await archive.wado.get(f"/dicom-web{_url(ct)}/rendered", params={"quality": "0"})
    assert bad.status_code == 400


def _pdf_instance(document: bytes) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.104.1"
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientID, ds.MIMETypeOfEncapsulatedDocument = "DOC", "PDF-1", "application/pdf"
    ds.EncapsulatedDocument = document + (b"\x00" if len(document) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(document)
    return ds


async def test_encapsulated_pdf_is_served_as_pdf(archive: Archive) -> None:
    document = b"%PDF-1.4\n" + b"1 0 obj << >> endobj\n" * 300 + b"%%EOF\n"
    pdf = _pdf_instance(document + b"!")
    await archive.store([part10(pdf)])
    response = await archive.get(_url(pdf) + "/rendered", Accept="application/pdf")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    assert response.content == document + b"!"
    as_image = await archive.get(_url(pdf) + "/rendered", Accept="image/jpeg")
    assert as_image.status_code == 406


def _encapsulated(rows: int, columns: int, frame: bytes) -> Dataset:
    ds = _ct()
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    return ds


def _jpeg(rows: int, columns: int) -> bytes:
    buffer = BytesIO()
    Image.fromarray(np.full((rows, columns), 90, dtype=np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


async def test_bombs_and_corrupt_pixels_are_refused_with_4xx(archive: Archive) -> None:
    huge = _encapsulated(65_000, 65_000, _jpeg(16, 16))
    tiny = _jpeg(64, 64)
    sof = tiny.index(b"\xff\xc0")
    liar = _encapsulated(64, 64, tiny[: sof + 5] + b"\xea\x60\xea\x60" + tiny[sof + 9 :])
    corrupt = _encapsulated(64, 64, b"\xff\xd8\xff\xe0" + os.urandom(600))
    await archive.store([part10(huge), part10(liar), part10(corrupt)])
    process = psutil.Process()
    before = process.memory_info().rss
    statuses = []
    for ds in (huge, liar, corrupt):
        for path in ("/rendered", "/frames/1/rendered", "/thumbnail"):
            statuses.append((await archive.get(_url(ds) + path, Accept="image/jpeg")).status_code)
    assert statuses[:3] == [413, 413, 413]
    assert all(400 <= status < 500 for status in statuses)
    assert process.memory_info().rss - before < 200 * 1024 * 1024
