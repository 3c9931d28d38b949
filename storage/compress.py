"""A page body compressed once, for both gzip files it goes into.

Each archived page's body is stored twice, compressed: as ``raw.html.gz`` and inside the
response record of the run's WARC file. At about 300 KB of HTML per news page, deflating
it is the costliest part of storing a page, so it is done once, and with ISA-L (Intel's
deflate, via ``isal``), which at its level 3 compresses news pages to 21.5% of their size in
1 ms where zlib's default level takes 7 ms for 19.2% (README, Throughput): the body
becomes a run of raw deflate blocks that ends byte-aligned and is not marked final
(:class:`DeflatedBody`), and each gzip member is assembled around that run. A deflate
stream is a sequence of blocks, and blocks compressed on their own refer back only to
their own bytes, so the WARC record's member is the record's headers deflated and flushed
to a byte boundary, then the body's blocks, then the record's tail and the final block
(as pigz joins blocks compressed in parallel). Any gzip reader reads both; the CRC-32 in
each trailer is computed over the member's own bytes.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from isal import isal_zlib

GZIP_LEVEL = 3
"""ISA-L compression level of stored bodies: its highest (0-3), the best ratio it offers, still
several times cheaper than zlib's level 1. The output is plain deflate: any gzip reader reads it."""

# A gzip header without a file name or time stamp (mtime 0, so equal bodies give equal
# files), from an unknown OS (RFC 1952: 255).
_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
# An empty final block with fixed Huffman codes: ends a deflate stream.
_FINAL_EMPTY_BLOCK = b"\x03\x00"


def _deflate(data: bytes, level: int, mode: int) -> bytes:
    compressor = isal_zlib.compressobj(level, isal_zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush(mode)


def _trailer(crc: int, size: int) -> bytes:
    return struct.pack("<II", crc & 0xFFFFFFFF, size & 0xFFFFFFFF)


@dataclass(frozen=True)
class DeflatedBody:
    """A body as raw deflate blocks, ready to be placed inside any gzip member."""

    blocks: bytes
    """Deflate blocks of the body alone: none final, the last one ending on a byte boundary."""
    crc: int
    """CRC-32 of the uncompressed body."""
    size: int
    """Length of the uncompressed body, in bytes."""

    @classmethod
    def of(cls, body: bytes, level: int = GZIP_LEVEL) -> DeflatedBody:
        """Compress ``body`` once."""
        body = bytes(body)
        return cls(_deflate(body, level, isal_zlib.Z_SYNC_FLUSH), zlib.crc32(body), len(body))

    def gzip(self) -> bytes:
        """The body alone as a gzip file (what ``gzip.compress`` would give, byte for byte
        different but equal when decompressed)."""
        return b"".join((_HEADER, self.blocks, _FINAL_EMPTY_BLOCK, _trailer(self.crc, self.size)))

    def gzip_between(self, head: bytes, tail: bytes, body: bytes,
                     level: int = GZIP_LEVEL) -> bytes:
        """One gzip member of ``head`` + the body + ``tail``. ``body`` is the uncompressed
        body again, for the member's CRC (checksumming is a hundred times cheaper than
        deflating); it must be the body these blocks were made from."""
        if len(body) != self.size or zlib.crc32(body) != self.crc:
            raise ValueError("the body given is not the one that was deflated")
        crc = zlib.crc32(tail, zlib.crc32(body, zlib.crc32(head)))
        return b"".join((
            _HEADER,
            _deflate(head, level, isal_zlib.Z_SYNC_FLUSH),
            self.blocks,
            _deflate(tail, level, isal_zlib.Z_FINISH),
            _trailer(crc, len(head) + self.size + len(tail)),
        ))
