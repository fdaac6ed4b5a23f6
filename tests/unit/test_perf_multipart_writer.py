"""The multipart writer's announced length and its release of part bodies."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from skypacs.dicomweb.multipart import OutPart, multipart_length, write_multipart

pytestmark = pytest.mark.unit

BOUNDARY = "0123456789abcdef"
DICOM = "application/dicom; transfer-syntax=1.2.840.10008.1.2.1"


class Body:
    """A streamed part body that remembers whether it was released."""

    def __init__(self, size: int, chunk: int = 1000) -> None:
        self.data = bytes(index % 251 for index in range(size))
        self.chunk = chunk
        self.closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.data), self.chunk):
            yield self.data[start : start + self.chunk]

    async def aclose(self) -> None:
        self.closed = True


async def _parts(bodies: list[Body]) -> AsyncIterator[OutPart]:
    for body in bodies:
        yield OutPart(DICOM, body)


@pytest.mark.parametrize("sizes", [[], [0], [1], [4321, 0, 70_000], [65_537] * 3])
async def test_length_is_the_written_size(sizes: list[int]) -> None:
    bodies = [Body(size) for size in sizes]
    written = b"".join([chunk async for chunk in write_multipart(_parts(bodies), BOUNDARY)])
    assert len(written) == multipart_length([(DICOM, size) for size in sizes], BOUNDARY)
    assert all(body.closed for body in bodies)


async def test_in_memory_parts_keep_their_bytes() -> None:
    async def parts() -> AsyncIterator[OutPart]:
        yield OutPart(DICOM, b"small")
        yield OutPart(DICOM, b"x" * 100_000)

    written = b"".join([chunk async for chunk in write_multipart(parts(), BOUNDARY)])
    assert written.count(b"small") == 1
    assert b"x" * 100_000 in written
    assert len(written) == multipart_length([(DICOM, 5), (DICOM, 100_000)], BOUNDARY)


async def test_a_response_stopped_early_releases_the_part_being_sent() -> None:
    bodies = [Body(10_000), Body(10_000)]
    stream = write_multipart(_parts(bodies), BOUNDARY)
    await anext(stream)  # delimiter and headers
    await anext(stream)  # first chunk of the first body
    await stream.aclose()  # the client went away
    assert bodies[0].closed
    assert not bodies[1].closed  # never opened by the writer
