"""Where a raw log's rows come from: a CSV (optionally gzipped) or Parquet file read in record
batches of at most ``chunk_rows`` rows, named by the file's own columns."""

from __future__ import annotations

import csv
import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from driftrec.ingest.format import LogFormat
from driftrec.ingest.results import LogLoadError, one_line


class Source:
    """Yields record batches of at most ``chunk_rows`` rows, named by the file's columns."""

    columns: list[str]  # the file's column names
    total_rows: int | None = None

    def batches(self, wanted: list[str]) -> Iterator[pa.RecordBatch]:
        """The file's rows in order, with only the ``wanted`` columns."""
        raise NotImplementedError

    def fraction(self) -> float | None:
        """How much of the file has been read (0..1), for progress; None when unknown."""
        return None

    def bad_lines(self) -> list[tuple[str, str]]:
        """(text, what is wrong) of the malformed CSV lines met since the last call."""
        return []


class ParquetSource(Source):
    """A Parquet file, read by row groups in batches of ``chunk_rows`` (its ``schema`` already read)."""

    def __init__(self, path: Path, schema: pa.Schema, chunk_rows: int):
        self.path, self.chunk_rows = path, chunk_rows
        self.columns = list(schema.names)
        self._file = pq.ParquetFile(path)
        self.total_rows = self._file.metadata.num_rows
        self._done = 0

    def batches(self, wanted: list[str]) -> Iterator[pa.RecordBatch]:
        for batch in self._file.iter_batches(batch_size=self.chunk_rows, columns=wanted):
            self._done += batch.num_rows
            yield batch

    def fraction(self) -> float | None:
        return self._done / self.total_rows if self.total_rows else None


class CsvSource(Source):
    """A CSV file (gzipped if it ends in .gz), streamed by pyarrow with every column read as text.

    A line with the wrong number of fields is skipped and kept for :meth:`bad_lines`; the header is
    read on construction, so an unreadable or empty file fails here with a one-line
    :class:`LogLoadError`.
    """

    def __init__(self, path: Path, fmt: LogFormat, chunk_rows: int):
        self.path, self.fmt, self.chunk_rows = path, fmt, chunk_rows
        self._gzip = path.suffix == ".gz"
        opener = gzip.open if self._gzip else open
        try:
            with opener(path, "rt", newline="", encoding="utf-8-sig") as handle:  # type: ignore[operator]
                header = next(csv.reader(handle, delimiter=fmt.delimiter), None)
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            raise LogLoadError(f"log file '{path}': cannot read the CSV header ({one_line(err)})") from None
        if not header:
            raise LogLoadError(f"log file '{path}' is empty (no header row)")
        self.columns = list(header)
        self._raw: pa.NativeFile | None = None
        self._size = max(path.stat().st_size, 1)
        self._bad: list[tuple[str, str]] = []

    def _on_invalid(self, row: Any) -> str:
        # pyarrow calls this for a line with the wrong number of fields; its row number is unknown
        # while streaming, so the line is remembered, skipped, and located later by the loader
        self._bad.append((str(row.text), f"expected {row.expected_columns} fields, got {row.actual_columns}"))
        return "skip"

    def batches(self, wanted: list[str]) -> Iterator[pa.RecordBatch]:
        block = int(min(max(self.chunk_rows * 64, 1 << 20), 64 << 20))
        self._raw = pa.OSFile(str(self.path))
        stream: pa.NativeFile = pa.CompressedInputStream(self._raw, "gzip") if self._gzip else self._raw
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(block_size=block, use_threads=True),
            parse_options=pacsv.ParseOptions(delimiter=self.fmt.delimiter, invalid_row_handler=self._on_invalid),
            # every column as text: the loader parses (and reports) values itself, and type
            # inference on the first block would break on a later block's odd value
            convert_options=pacsv.ConvertOptions(column_types={name: pa.string() for name in wanted},
                                                 include_columns=wanted, strings_can_be_null=False,
                                                 quoted_strings_can_be_null=False))
        try:
            for batch in reader:
                for lo in range(0, batch.num_rows, self.chunk_rows):
                    yield batch.slice(lo, self.chunk_rows)
        finally:
            reader.close()
            self._raw.close()

    def fraction(self) -> float | None:
        if self._raw is None or self._raw.closed:
            return None
        return min(self._raw.tell() / self._size, 1.0)

    def bad_lines(self) -> list[tuple[str, str]]:
        out, self._bad = self._bad, []
        return out

    def line_numbers(self, texts: set[str]) -> dict[str, list[int]]:
        """The 1-based numbers of the lines equal to each of ``texts`` (malformed rows), by one pass."""
        wanted = {text.rstrip("\r\n") for text in texts}
        found: dict[str, list[int]] = {}
        opener = gzip.open if self._gzip else open
        with opener(self.path, "rt", newline="", encoding="utf-8-sig", errors="replace") as handle:  # type: ignore[operator]
            for number, line in enumerate(handle, start=1):
                line = line.rstrip("\r\n")
                if line in wanted:
                    found.setdefault(line, []).append(number)
        return found


def is_parquet(path: Path) -> bool:
    """Whether ``path`` is read as Parquet: by its suffix, else by its magic bytes."""
    if path.suffix.lower() in (".parquet", ".pq"):
        return True
    if path.suffix.lower() in (".csv", ".tsv", ".txt", ".gz"):
        return False
    with open(path, "rb") as handle:
        return handle.read(4) == b"PAR1"

