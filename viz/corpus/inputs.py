"""A corpus file read into texts: plain text (one text per line), CSV, JSONL or Parquet with a text column.
Rows that can't be read (empty, not UTF-8, not text) are listed with why, never fatal."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

FORMATS = ("txt", "csv", "jsonl", "parquet")
SAMPLE = Path(__file__).resolve().parents[2] / "data" / "corpus-sample.txt"  # data/README.md: source, licence


@dataclass(frozen=True)
class BadRow:
    row: int  # 1-based line or row number in the file
    reason: str


@dataclass
class Corpus:
    """Texts in file order, each with its row number, and the rows left out."""

    name: str
    rows: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    bad: list[BadRow] = field(default_factory=list)

    def add(self, row: int, value: object) -> None:
        if not isinstance(value, str):
            self.bad.append(BadRow(row, "not text" if value is not None else "missing"))
        elif not value.strip():
            self.bad.append(BadRow(row, "empty"))
        else:
            self.rows.append(row)
            self.texts.append(value)


def _lines(data: bytes, corpus: Corpus) -> None:
    for number, line in enumerate(data.split(b"\n"), 1):
        line = line.removesuffix(b"\r")
        if number == data.count(b"\n") + 1 and not line:
            break  # the file's final newline
        try:
            corpus.add(number, line.decode("utf-8"))
        except UnicodeDecodeError as err:
            corpus.bad.append(BadRow(number, f"not UTF-8 (byte {err.start})"))


def _table(frame: pd.DataFrame, column: str, corpus: Corpus) -> None:
    if column not in frame.columns:
        raise ValueError(f"no column named {column!r}; the file has: {', '.join(map(str, frame.columns))}")
    for number, value in enumerate(frame[column].tolist(), 1):
        corpus.add(number, None if value is None or value != value else value)  # NaN: missing


def _jsonl(data: bytes, column: str, corpus: Corpus) -> None:
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            corpus.bad.append(BadRow(number, "empty"))
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            corpus.bad.append(BadRow(number, f"not a JSON line ({type(err).__name__})"))
            continue
        corpus.add(number, record.get(column) if isinstance(record, dict) else None)


def read_corpus(data: bytes, name: str, column: str = "text") -> Corpus:
    """Texts from a file's bytes; the format from the name's extension (.txt and unknown: one text per line).
    Raises ValueError for a table without the text column or a file that isn't the format it says."""
    corpus = Corpus(name)
    kind = name.rsplit(".", 1)[-1].lower() if "." in name else "txt"
    if kind == "csv":
        try:
            frame = pd.read_csv(io.BytesIO(data), dtype=object, keep_default_na=False, encoding_errors="strict")
        except (UnicodeDecodeError, pd.errors.ParserError) as err:
            raise ValueError(f"not a readable CSV file ({type(err).__name__})") from err
        _table(frame, column, corpus)
    elif kind == "jsonl":
        _jsonl(data, column, corpus)
    elif kind == "parquet":
        try:
            frame = pd.read_parquet(io.BytesIO(data))
        except Exception as err:  # pyarrow raises several kinds for a broken file
            raise ValueError(f"not a readable Parquet file ({type(err).__name__})") from err
        _table(frame, column, corpus)
    else:
        _lines(data, corpus)
    return corpus


def read_path(path: Path, column: str = "text") -> Corpus:
    return read_corpus(Path(path).read_bytes(), Path(path).name, column)


def sample_corpus(size: int) -> Corpus:
    """The first `size` sentences of the offline sample (data/README.md)."""
    corpus = read_path(SAMPLE)
    return Corpus(f"sample-{size}.txt", corpus.rows[:size], corpus.texts[:size], [])
