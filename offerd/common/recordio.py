"""RecordIO, the framing of Mesos' v1 streaming HTTP APIs.

Each record is its length in bytes as ASCII decimal digits, a newline, then the
record itself: ``b"5\\nhello"``. Mesos uses it for the scheduler's and executor's
event streams and for the agent's container input/output streams (see
https://mesos.apache.org/documentation/latest/recordio/).

The decoder is incremental: an HTTP body arrives in chunks that cut records (and
their length prefixes) anywhere. A malformed prefix or an oversized record fails
the decoder for good, since the stream has lost its framing.
"""

from __future__ import annotations

from typing import Iterable, List

# A generous bound for one Call or Event; callers streaming container I/O may
# pass their own.
DEFAULT_MAX_RECORD_SIZE = 16 * 1024 * 1024


class RecordIOError(ValueError):
    """The stream is not valid RecordIO (or breaks the size limit)."""


def encode(record: bytes) -> bytes:
    """One record with its length prefix."""
    if not isinstance(record, (bytes, bytearray, memoryview)):
        raise TypeError(f"a RecordIO record is bytes, not {type(record).__name__}")
    record = bytes(record)
    return b"%d\n" % len(record) + record


def encode_all(records: Iterable[bytes]) -> bytes:
    return b"".join(encode(r) for r in records)


class Decoder:
    """Feed it chunks of a RecordIO stream; it hands back complete records."""

    def __init__(self, max_record_size: int = DEFAULT_MAX_RECORD_SIZE):
        if max_record_size < 0:
            raise ValueError("max_record_size must be >= 0")
        self.max_record_size = max_record_size
        # A prefix longer than the limit's own digits is too big whatever it says.
        self._max_prefix_digits = len(str(max_record_size))
        self._buffer = bytearray()
        self._pending = None  # length of the record being read, once its prefix is in
        self._failed = None

    @property
    def failed(self):
        """The error that stopped the decoder, or None."""
        return self._failed

    def feed(self, chunk: bytes) -> List[bytes]:
        """Add bytes; return the records completed by them (maybe none)."""
        if self._failed is not None:
            raise RecordIOError(f"decoder already failed: {self._failed}")
        self._buffer += chunk
        records = []
        try:
            while True:
                if self._pending is None:
                    self._pending = self._read_prefix()
                    if self._pending is None:
                        break
                if len(self._buffer) < self._pending:
                    break
                records.append(bytes(self._buffer[: self._pending]))
                del self._buffer[: self._pending]
                self._pending = None
        except RecordIOError as e:
            self._failed = str(e)
            self._buffer.clear()
            raise
        return records

    def finish(self) -> None:
        """The stream ended: fail if it stopped inside a record or a prefix."""
        if self._failed is not None:
            raise RecordIOError(f"decoder already failed: {self._failed}")
        if self._pending is not None:
            raise RecordIOError(
                f"stream ended inside a record: {len(self._buffer)} of {self._pending} bytes"
            )
        if self._buffer:
            raise RecordIOError(f"stream ended inside a length prefix: {bytes(self._buffer)[:32]!r}")

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a record."""
        return len(self._buffer)

    def _read_prefix(self):
        newline = self._buffer.find(b"\n")
        head = self._buffer if newline < 0 else self._buffer[:newline]
        if not head.isdigit():
            bad = next((bytes([c]) for c in head if not 0x30 <= c <= 0x39), None)
            if bad is not None:
                raise RecordIOError(
                    f"malformed record length {bytes(head)[:32]!r}: {bad!r} is not a decimal digit"
                )
        if len(head) > self._max_prefix_digits:
            raise RecordIOError(
                f"record length prefix {bytes(head)[:32]!r}... is longer than "
                f"{self._max_prefix_digits} digits (max record size {self.max_record_size})"
            )
        if newline < 0:
            return None
        if not head:
            raise RecordIOError("malformed record length: empty prefix before the newline")
        length = int(head)
        if length > self.max_record_size:
            raise RecordIOError(
                f"record of {length} bytes exceeds the maximum record size {self.max_record_size}"
            )
        del self._buffer[: newline + 1]
        return length


def decode_all(data: bytes, max_record_size: int = DEFAULT_MAX_RECORD_SIZE) -> List[bytes]:
    """All records of a complete stream; raises on any trailing partial record."""
    decoder = Decoder(max_record_size)
    records = decoder.feed(data)
    decoder.finish()
    return records
