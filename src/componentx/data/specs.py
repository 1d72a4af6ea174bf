"""Specifications as integer codes: the one coding every model, the bundle and scoring use.

The categories of each column are learned on train (sorted, as text); a vehicle's code is the
category's position plus one, and 0 stands for a missing or never-seen category. A column of
``n`` categories therefore has ``n + 1`` codes (its cardinality).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from componentx.data.layout import ID, bucket_file
from componentx.errors import DatasetError
from componentx.runtime import atomic_write_json

VOCABULARIES = "vocabularies.json"  # in an ingested folder: the train vocabularies


def vocabularies(train: Mapping[str, Sequence], columns: Sequence[str]) -> dict[str, list[str]]:
    """Sorted categories per column, from the train specifications (a table or a mapping of
    columns: every value, or only the distinct ones); missing values are not categories."""
    return {column: sorted({str(v) for v in train[column] if v is not None and v == v})
            for column in columns}


def write_vocabularies(train: pa.Table, folder: Path) -> None:
    """The vocabularies of the train specifications table (its first column the vehicle id),
    as ``folder/vocabularies.json``: what a bucket's task reads instead of the table."""
    columns = train.column_names[1:]
    found = vocabularies({c: pc.unique(train.column(c)).to_pylist() for c in columns}, columns)
    atomic_write_json(Path(folder) / VOCABULARIES, found)


def cardinalities(vocabulary: Mapping[str, list[str]]) -> list[int]:
    """Codes per column: its categories plus the unknown code 0."""
    return [len(categories) + 1 for categories in vocabulary.values()]


def encode(vocabulary: Mapping[str, list[str]], values: Mapping[str, Sequence]
           ) -> tuple[np.ndarray, dict[str, int]]:
    """Codes (rows, columns) of ``values`` (a table or a mapping of columns), and per column
    the number of present values whose category was never seen in training (coded 0)."""
    columns = list(vocabulary)
    rows = len(values[columns[0]]) if columns else 0
    codes = np.zeros((rows, len(columns)), dtype=np.int64)
    unknown = {}
    for j, column in enumerate(columns):
        code_of = {category: code for code, category in enumerate(vocabulary[column], 1)}
        codes[:, j] = [0 if v is None or v != v else code_of.get(str(v), -1)
                       for v in values[column]]
        unseen = codes[:, j] < 0  # present, never seen in training
        unknown[column] = int(unseen.sum())
        codes[unseen, j] = 0
    return codes, unknown


def train_vocabularies(ingested: Path, columns: Sequence[str]) -> dict[str, list[str]]:
    """The vocabularies of an ingested dataset (``vocabularies.json``, a few categories per
    column, read once per process and file version)."""
    if not columns:
        return {}
    path = Path(ingested) / VOCABULARIES
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise DatasetError(path, "missing: the ingested data predate it (run `dvc repro "
                           "ingest`)") from None
    cached = _vocabularies_of(path.resolve(), stat.st_ino, stat.st_mtime_ns, stat.st_size)
    return {column: list(cached[column]) for column in columns}


@functools.lru_cache(maxsize=8)
def _vocabularies_of(path: Path, inode: int, mtime_ns: int, size: int
                     ) -> dict[str, list[str]]:
    return json.loads(path.read_text())


def vehicle_codes(ingested: Path, split: str, columns: Sequence[str], vehicles: np.ndarray,
                  bucket: int | None = None) -> np.ndarray:
    """Codes (len(vehicles), columns) of the given vehicles of an ingested split (0 where a
    vehicle has no specifications), all of vehicle bucket ``bucket`` where it is given (then
    only that bucket's specifications are read); only their rows are coded."""
    codes = np.zeros((len(vehicles), len(columns)), dtype=np.int64)
    if not columns:
        return codes
    path = (Path(ingested) / f"{split}_specs.parquet" if bucket is None
            else bucket_file(Path(ingested) / "specs", split, bucket))
    table = pq.read_table(path, columns=[ID, *columns])
    position = pd.Index(table.column(ID).to_numpy()).get_indexer(vehicles)
    found = position >= 0
    codes[found] = encode(train_vocabularies(ingested, columns),
                          table.take(position[found]).to_pydict())[0]
    return codes
