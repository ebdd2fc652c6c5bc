"""Read CSV/TSV and JSON-lines manifests row by row, so that one bad row is that row's problem, not the file's.

Strings stay strings: only an empty cell is null (`NA`, `null`, `nan`, `N/A`, `None` are text), and every column
that names a role (id, text, media, label, split) is read as text. Bytes that are not UTF-8 are kept as lone
surrogates (Python's surrogateescape) and the row is rejected by validation with the column and byte named; a
JSON line that does not parse is rejected with its line number. Metadata types (int64, float64, bool, else
string) are inferred from the whole file in a first pass, so every value fits its column.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import pyarrow as pa

from mmpt.errors import DataError

# The per-row parse failures travel in this extra key of a batch: None, or (kind, reason, where) per row.
INVALID = "\x00invalid"
_INT = re.compile(r"[+-]?(0|[1-9][0-9]*)")
_FLOAT = re.compile(r"[+-]?((0|[1-9][0-9]*)(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT64 = (-(1 << 63), (1 << 63) - 1)

OpenBinary = Callable[[], IO[bytes]]


@dataclass(frozen=True)
class TextScan:
    """What the first pass learned: the columns in order with their types, and the number of data rows."""

    schema: pa.Schema
    rows: int


def scan(kind: str, open_binary: OpenBinary, name: str) -> TextScan:
    """First pass: column names (the CSV header, or every JSON key in order of appearance), types, row count."""
    if kind == "jsonl":
        return _scan_json(open_binary, name)
    header: list[str] = []
    guesses: list[_TypeGuess] = []
    undecided: list[int] = []
    rows = 0
    for fields, _ in _csv_rows(open_binary, name, _delimiter(kind), header):
        if rows == 0:
            guesses = [_TypeGuess(json=False) for _ in header]
            undecided = list(range(len(header)))
        rows += 1
        if fields is None:
            continue
        decided = False
        for i in undecided:
            if fields[i]:
                decided |= not guesses[i].see(fields[i])
        if decided:  # a column known to be text needs no more looks
            undecided = [i for i in undecided if guesses[i].candidates]
    if not header:
        raise DataError(f"manifest is empty: {name}")
    if not guesses:
        guesses = [_TypeGuess(json=False) for _ in header]
    return TextScan(pa.schema([pa.field(c, g.dtype()) for c, g in zip(header, guesses, strict=True)]), rows)


def _scan_json(open_binary: OpenBinary, name: str) -> TextScan:
    columns: dict[str, _TypeGuess] = {}
    rows = 0
    for values, _ in _json_rows(open_binary, name):
        rows += 1
        for column, value in (values or {}).items():
            guess = columns.get(column)
            if guess is None:
                guess = columns[column] = _TypeGuess(json=True)
            guess.see(value)
    if not columns:
        raise DataError(f"manifest is empty: {name}")
    return TextScan(pa.schema([pa.field(c, g.dtype()) for c, g in columns.items()]), rows)


def batches(
    kind: str, open_binary: OpenBinary, name: str, schema: pa.Schema, size: int
) -> Iterator[dict[str, list]]:
    """Second pass: column -> values per batch of `size` rows (CSV metadata parsed to its inferred type), with
    INVALID holding each row's parse failure or None."""
    names = schema.names
    if kind == "jsonl":
        for chunk in _chunked(_json_rows(open_binary, name), size):
            objects = [v or {} for v, _ in chunk]
            batch: dict[str, list] = {column: [v.get(column) for v in objects] for column in names}
            batch[INVALID] = [problem for _, problem in chunk]
            yield batch
        return
    header: list[str] = []
    empty: list[str] | None = None
    parsers = [_PARSERS.get(str(f.type)) for f in schema]
    for chunk in _chunked(_csv_rows(open_binary, name, _delimiter(kind), header), size):
        if empty is None:
            empty = [""] * len(header)
        cells = zip(*[fields if fields is not None else empty for fields, _ in chunk], strict=True)
        out: dict[str, list] = {}
        for column, values, parse in zip(names, cells, parsers, strict=True):
            if parse is None:
                out[column] = [v if v else None for v in values]
            else:
                out[column] = [parse(v) if v else None for v in values]
        out[INVALID] = [problem for _, problem in chunk]
        yield out


_PARSERS: dict[str, Callable[[str], Any]] = {"int64": int, "double": float, "bool": _BOOLS.__getitem__}
Problem = tuple[str, str, str]


def _chunked(rows: Iterator[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _delimiter(kind: str) -> str:
    return "\t" if kind == "tsv" else ","


def _csv_rows(
    open_binary: OpenBinary, name: str, delimiter: str, header: list[str]
) -> Iterator[tuple[list[str] | None, Problem | None]]:
    """The data records as lists aligned with the header (filled into `header`), or None and the problem."""
    _allow_large_fields()
    with open_binary() as raw:
        handle = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")
        reader = csv.reader(handle, delimiter=delimiter)
        for fields in reader:
            if not fields:  # a blank line
                continue
            if not header:
                header.extend(_header(fields, name))
                continue
            if len(fields) != len(header):
                where = f"{name} line {reader.line_num}"
                yield None, ("bad_row", f"line has {len(fields)} fields, the header has {len(header)}", where)
                continue
            yield fields, None


def _header(fields: list[str], name: str) -> list[str]:
    for column in fields:
        try:
            column.encode("utf-8")
        except UnicodeEncodeError:
            raise DataError(f"the header of {name} is not valid UTF-8; save the manifest as UTF-8") from None
    duplicates = sorted({c for c in fields if fields.count(c) > 1})
    if duplicates:
        raise DataError(f"the header of {name} repeats column {duplicates[0]!r}; column names must be unique")
    return fields


def _json_rows(open_binary: OpenBinary, name: str) -> Iterator[tuple[dict[str, Any] | None, Problem | None]]:
    """Each non-blank line as a JSON object, or None and why it is not one."""
    with open_binary() as raw:
        for number, line in enumerate(raw, start=1):
            if number == 1:
                line = line.removeprefix(b"\xef\xbb\xbf")
            if not line.strip():
                continue
            where = f"{name} line {number}"
            try:
                text = line.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                byte = f"byte 0x{line[exc.start]:02X} at offset {exc.start}"
                yield None, ("bad_text", f"line is not valid UTF-8 ({byte})", where)
                continue
            try:
                value = json.loads(text)
            except (json.JSONDecodeError, RecursionError) as exc:
                if number == 1 and text.lstrip().startswith("["):
                    raise DataError(
                        f"{name} is one JSON array; write one JSON object per line (JSON lines)"
                    ) from None
                detail = (
                    f"{exc.msg} at column {exc.colno}"
                    if isinstance(exc, json.JSONDecodeError)
                    else "too deep"
                )
                yield None, ("bad_json", f"line is not valid JSON: {detail}", where)
                continue
            if not isinstance(value, dict):
                yield None, ("bad_json", f"line holds a JSON {type(value).__name__}, not an object", where)
                continue
            yield value, None


def _allow_large_fields() -> None:
    # The csv module refuses fields over 128 KiB by raising mid-file; oversized values are refused per row by
    # validation instead (its limit is configurable), so the parser must let them through.
    if csv.field_size_limit() < sys.maxsize:
        csv.field_size_limit(sys.maxsize)


class _TypeGuess:
    """Narrows a column's type as values are seen: CSV text that all reads as int64, float64 or bool becomes
    that type; JSON values keep theirs (ints widen to float); anything else, or mixed, is a string column."""

    def __init__(self, json: bool) -> None:
        self.json = json
        self.seen = False
        self.candidates = {"int", "float", "bool"}

    def see(self, value: Any) -> bool:
        """Narrow by one value; False once the column can only be text."""
        if value is None or not self.candidates:
            return bool(self.candidates)
        self.seen = True
        if self.json:
            kind = _json_kind(value)
            self.candidates &= {"int", "float"} if kind == "int" else {kind}
            return bool(self.candidates)
        if value not in _BOOLS:
            self.candidates.discard("bool")
        if "int" in self.candidates and not (_INT.fullmatch(value) and _INT64[0] <= int(value) <= _INT64[1]):
            self.candidates.discard("int")
            if _INT.fullmatch(value):  # an integer too large for int64 is kept exactly, as text
                self.candidates.discard("float")
        if "float" in self.candidates and not _FLOAT.fullmatch(value):
            self.candidates.discard("float")
        return bool(self.candidates)

    def dtype(self) -> pa.DataType:
        """The narrowest type every value fits; a column with no values at all is text."""
        if self.seen:
            for name, dtype in (("int", pa.int64()), ("float", pa.float64()), ("bool", pa.bool_())):
                if name in self.candidates:
                    return dtype
        return pa.string()


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if _INT64[0] <= value <= _INT64[1] else "text"
    if isinstance(value, float):
        return "float"
    return "text"
