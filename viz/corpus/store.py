"""A run's results queried with DuckDB straight from its Parquet files (no server, nothing loaded whole)."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pandas as pd

from viz.corpus.engine import read_spec
from viz.corpus.reading import SCORES, in_context

WINDOW = 8  # tokens of context either side of a cell's query and key


class CorpusStore:
    """Views over one run: scores, cells, tokens, failed (per shard, glued), texts, bad (the file's rows)."""

    def __init__(self, run: Path) -> None:
        self.run = Path(run)
        self.spec = read_spec(self.run)
        self.db = duckdb.connect()
        shards = self.run / "shards"
        for table in ("scores", "cells", "tokens", "failed"):
            files = sorted(shards.glob(f"[0-9]*/{table}.parquet"))
            if files:
                listed = ", ".join(_quoted(p) for p in files)
                self.db.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet([{listed}], union_by_name=true)")
            else:
                empty = {"scores": "text_id BIGINT, layer SMALLINT, head SMALLINT", "cells": "text_id BIGINT",
                         "tokens": "text_id BIGINT, position BIGINT, token VARCHAR", "failed": "text_id BIGINT,"
                         " reason VARCHAR"}[table]  # fmt: skip
                self.db.execute(f"CREATE TABLE {table} ({empty})")
        for table in ("texts", "bad"):
            path = _quoted(self.run / f"{table}.parquet")
            self.db.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet({path})")

    def query(self, sql: str, *params) -> pd.DataFrame:
        return self.db.execute(sql, list(params)).df()

    def report(self) -> dict:
        """What the run holds: texts read, left out (and why), bytes on disk."""
        read = self.query("SELECT count(DISTINCT text_id) AS n FROM tokens").n[0]
        failed = self.query("SELECT text_id, reason FROM failed ORDER BY text_id")
        bad = self.query("SELECT row, reason FROM bad ORDER BY row")
        rows = self.query("SELECT text_id, row FROM texts").set_index("text_id").row
        left_out = [{"row": int(r), "reason": why} for r, why in bad.itertuples(index=False)]
        left_out += [{"row": int(rows[t]), "reason": why} for t, why in failed.itertuples(index=False)]
        on_disk = sum(p.stat().st_size for p in self.run.rglob("*") if p.is_file())
        index = sum(p.stat().st_size for p in self.run.glob("index-L*") if p.is_file())
        return {"model": self.spec.model, "source": self.spec.source, "texts_in_file": self.spec.n_texts + len(bad),
                "texts_read": int(read), "left_out": sorted(left_out, key=lambda r: r["row"]),
                "bytes_on_disk": on_disk, "index_bytes": index, "layers_indexed": list(self.spec.layers)}  # fmt: skip

    # ---------------------------------------------------------------- heads across texts
    def head_summary(self, measure: str) -> pd.DataFrame:
        """Per head: mean, spread (standard deviation) and texts of `measure` over the corpus."""
        column = _measure(measure)
        return self.query(
            f'SELECT layer, head, avg("{column}") AS mean, stddev_samp("{column}") AS spread, count(*) AS texts '
            "FROM scores GROUP BY layer, head ORDER BY layer, head"
        )

    def head_scores(self, layer: int, head: int) -> pd.DataFrame:
        """Every text's scores for one head."""
        return self.query("SELECT * FROM scores WHERE layer = ? AND head = ? ORDER BY text_id", layer, head)

    def text_scores(self, text_id: int) -> pd.DataFrame:
        return self.query("SELECT * FROM scores WHERE text_id = ? ORDER BY layer, head", text_id)

    def top_texts(self, layer: int, head: int, measure: str, k: int = 10) -> pd.DataFrame:
        """The texts where this head scores highest on `measure`."""
        column = _measure(measure)
        return self.query(
            f'SELECT s.text_id, s."{column}" AS score, t.text FROM scores s JOIN texts t USING (text_id) '
            f'WHERE layer = ? AND head = ? ORDER BY s."{column}" DESC, s.text_id LIMIT ?', layer, head, k,
        )  # fmt: skip

    # ---------------------------------------------------------------- top contexts
    def top_cells(self, layer: int, head: int, k: int = 20) -> pd.DataFrame:
        """The head's k strongest (query, key) cells over the corpus (between the texts' own tokens: `top_cells`)."""
        return self.query(
            "SELECT text_id, query, key, weight FROM cells WHERE layer = ? AND head = ? "
            "ORDER BY weight DESC, text_id, query, key LIMIT ?", layer, head, k,
        )  # fmt: skip

    def tokens(self, text_id: int) -> list[str]:
        return self.query("SELECT token FROM tokens WHERE text_id = ? ORDER BY position", text_id).token.tolist()

    def text(self, text_id: int) -> str:
        return str(self.query("SELECT text FROM texts WHERE text_id = ?", text_id).text[0])

    def contexts(self, layer: int, head: int, k: int = 20, window: int = WINDOW) -> pd.DataFrame:
        """`top_cells` as a reader scans them: the tokens around query and key, the query in «», the key in [ ]."""
        cells = self.top_cells(layer, head, k)
        out = []
        for text_id, query, key, weight in cells.itertuples(index=False):
            tokens = self.tokens(int(text_id))
            context = in_context(tokens, {query: "«{}»", key: "[{}]"}, window)
            out.append({"weight": float(weight), "query": tokens[query], "key": tokens[key],
                        "key − query": int(key - query), "context": context, "text_id": int(text_id)})  # fmt: skip
        return pd.DataFrame(out, columns=["weight", "query", "key", "key − query", "context", "text_id"])


def _quoted(path: Path) -> str:
    """A path as an SQL string literal (the runs folder is the user's choice: it may hold a quote)."""
    return "'" + path.as_posix().replace("'", "''") + "'"


def _measure(name: str) -> str:
    if name not in SCORES:  # column names go into SQL: only the known ones
        raise ValueError(f"unknown measure {name!r}")
    return name


def load_report(run: Path) -> dict | None:
    path = Path(run) / "report.json"
    return json.loads(path.read_text()) if path.exists() else None
