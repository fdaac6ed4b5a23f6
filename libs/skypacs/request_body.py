"""Request bodies handed to the app as they were read (uvicorn's httptools protocol).

uvicorn appends each piece of a request body to a ``bytearray`` and copies it out
again as ``bytes`` for the app's ``receive()``: two copies of every byte, about a
megabyte of copying per stored instance of the benchmark's CT. With
:class:`PiecewiseBodyProtocol` the pieces are kept as the parser made them and a
lone piece (the usual case: uvicorn stops reading once a piece is waiting) goes
to the app as is; several are joined once.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class BodyPieces:
    """The pieces of a request body that await the app's ``receive()``.

    Stands in for the ``bytearray`` of uvicorn's request cycle: it grows with
    ``+=``, has a length, and ``bytes()`` gives its contents.
    """

    __slots__ = ("_pieces", "_size")

    def __init__(self, first: bytes = b"") -> None:
        self._pieces: list[bytes] = [first] if first else []
        self._size = len(first)

    def __iadd__(self, piece: bytes) -> BodyPieces:
        if piece:
            self._pieces.append(piece)
            self._size += len(piece)
        return self

    def __len__(self) -> int:
        return self._size

    def __bytes__(self) -> bytes:
        if len(self._pieces) == 1:
            return self._pieces[0]
        return b"".join(self._pieces)


class PiecewiseBodyProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol keeping request body pieces in a :class:`BodyPieces`."""

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if cycle is not None:
            pending: object = cycle.body
            if not isinstance(pending, BodyPieces):
                # A fresh cycle, or one whose body was just received: a bytearray.
                cycle.body = BodyPieces(bytes(cycle.body))  # type: ignore[assignment]
        super().on_body(body)
