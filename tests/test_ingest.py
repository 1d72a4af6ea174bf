"""The dataset contract: the real sample passes, and every kind of bad input is named."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REAL_SAMPLE, rewrite_csv, set_csv_cell

from componentx.data import layout, readouts, synthetic
from componentx.data.ingest import ingest
from componentx.data.readouts import read_header
from componentx.errors import DatasetError

REAL_TTE = {0: 510.0, 2: 281.8, 3: 293.4}  # from the sample's README: all censored


def real_sample_dataset(folder: Path, tiny: Path) -> Path:
    """The real 276-row sample as train readouts, with the tiny synthetic val/test splits."""
    folder.mkdir()
    shutil.copy(REAL_SAMPLE, folder / "train_operational_readouts.csv")
    pd.DataFrame({"vehicle_id": list(REAL_TTE), "length_of_study_time_step": list(
        REAL_TTE.values()), "in_study_repair": 0}).to_csv(folder / "train_tte.csv", index=False)
    for split in ("validation", "test"):
        for name in (layout.readouts_file(split), layout.labels_file(split)):
            shutil.copy(tiny / name, folder / name)
    return folder


def test_real_sample_passes_the_reader(tmp_path, tiny_csv_dataset):
    folder = real_sample_dataset(tmp_path / "real", tiny_csv_dataset)
    summary = ingest(folder, tmp_path / "out", num_classes=5)
    assert summary.rows["train"] == 276
    assert summary.vehicles["train"] == 3
    assert len(summary.feature_columns) == 105
    table = pq.read_table(tmp_path / "out" / "readouts" / "train")  # every bucket
    assert table.column_names == read_header(REAL_SAMPLE)
    original = pd.read_csv(REAL_SAMPLE)
    pd.testing.assert_frame_equal(table.to_pandas(), original, check_dtype=True)


def test_synthetic_header_is_the_real_header(tiny_csv_dataset):
    real = read_header(REAL_SAMPLE)
    for split in layout.SPLITS:
        assert read_header(tiny_csv_dataset / layout.readouts_file(split)) == real
    real_dtypes = pd.read_csv(REAL_SAMPLE, nrows=50).dtypes
    synthetic_dtypes = pd.read_csv(tiny_csv_dataset / layout.readouts_file("train")).dtypes
    assert list(synthetic_dtypes) == list(real_dtypes)


def test_ingest_writes_typed_parquet(dataset, tmp_path):
    summary = ingest(dataset, tmp_path / "out", num_classes=5)
    assert summary.train_target == "tte"
    assert summary.spec_columns == [f"Spec_{i}" for i in range(8)]
    assert summary.feature_columns == synthetic.feature_columns()
    readouts = pd.read_parquet(tmp_path / "out" / "readouts" / "validation")
    assert readouts["vehicle_id"].dtype == "int64"
    assert (readouts.dtypes.iloc[1:] == "float64").all()
    keys = readouts[["vehicle_id", "time_step"]].to_numpy()
    assert (pd.DataFrame(keys).sort_values([0, 1]).to_numpy() == keys).all()
    saved = json.loads((tmp_path / "out" / "schema.json").read_text())
    assert saved["vehicles"] == {"train": 60, "validation": 40, "test": 40}


def test_a_bucket_s_per_vehicle_tables_are_its_vehicles_and_code_as_the_split_s(dataset,
                                                                                 tmp_path):
    from componentx.compute import bucket_of
    from componentx.data.specs import vehicle_codes

    compute = {"buckets": 3, "workers": 1, "memory_per_worker": "auto"}
    summary = ingest(dataset, tmp_path / "out", num_classes=5, compute=compute)
    for kind, split in (("specs", "train"), ("specs", "test"), ("tte", "train"),
                        ("labels", "validation")):
        whole = pd.read_parquet(tmp_path / "out" / f"{split}_{kind}.parquet")
        parts = [pd.read_parquet(layout.bucket_file(tmp_path / "out" / kind, split, b))
                 for b in range(3)]
        pd.testing.assert_frame_equal(pd.concat(parts).sort_values("vehicle_id").reset_index(
            drop=True), whole.sort_values("vehicle_id").reset_index(drop=True))
        for bucket, part in enumerate(parts):
            ids = part["vehicle_id"].to_numpy()
            assert len(ids) and (bucket_of(ids, 3) == bucket).all()
            if kind == "specs":
                columns = summary.spec_columns
                assert (vehicle_codes(tmp_path / "out", split, columns, ids, bucket)
                        == vehicle_codes(tmp_path / "out", split, columns, ids)).all()


def test_a_byte_order_mark_and_reordered_columns_ingest_as_the_plain_files(dataset, tmp_path):
    """Files as spreadsheet programs and other tools write them: a UTF-8 byte-order mark, the
    columns in another order than train's (matched by name)."""
    plain = tmp_path / "plain"
    ingest(dataset, plain, num_classes=5)
    readouts = dataset / "validation_operational_readouts.csv"
    frame = pd.read_csv(readouts)
    columns = list(frame.columns)
    frame[[*columns[::-1]]].to_csv(readouts, index=False)  # time_step, vehicle_id last
    for path in (readouts, dataset / "train_specifications.csv", dataset / "train_tte.csv"):
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    other = tmp_path / "other"
    ingest(dataset, other, num_classes=5)
    for part in sorted((plain / "readouts").rglob("*.parquet")):
        pd.testing.assert_frame_equal(pd.read_parquet(part),
                                      pd.read_parquet(other / part.relative_to(plain)))
    for table in ("train_specs.parquet", "train_tte.parquet"):
        if (plain / table).exists():
            pd.testing.assert_frame_equal(pd.read_parquet(plain / table),
                                          pd.read_parquet(other / table))


def test_train_labels_instead_of_tte(dataset, tmp_path):
    tte = pd.read_csv(dataset / "train_tte.csv")
    (dataset / "train_tte.csv").unlink()
    tte.rename(columns={"in_study_repair": "class_label"})[["vehicle_id", "class_label"]].to_csv(
        dataset / "train_labels.csv", index=False)
    summary = ingest(dataset, tmp_path / "out", num_classes=5)
    assert summary.train_target == "labels"
    assert (tmp_path / "out" / "train_labels.parquet").exists()


def test_specifications_are_optional(dataset, tmp_path):
    for split in layout.SPLITS:
        (dataset / layout.specifications_file(split)).unlink()
    summary = ingest(dataset, tmp_path / "out", num_classes=5)
    assert summary.spec_columns == []


TRAIN = "train_operational_readouts.csv"
VALIDATION = "validation_operational_readouts.csv"


def drop_column(name):
    def edit_file(path):
        frame = pd.read_csv(path, dtype=str)
        frame.drop(columns=[name]).to_csv(path, index=False)
    return edit_file


def add_column(name):
    def edit_file(path):
        frame = pd.read_csv(path, dtype=str)
        frame[name] = "1"
        frame.to_csv(path, index=False)
    return edit_file


def duplicate_row(line):
    def edit_file(path):
        rewrite_csv(path, lambda header, body: [*body[: line - 1], body[line - 2],
                                                *body[line - 1:]])
    return edit_file


def truncate(keep_header):
    def edit_file(path):
        text = path.read_text().splitlines()[0] + "\n" if keep_header else ""
        path.write_text(text)
    return edit_file


def cell(line, column, value):
    return lambda path: set_csv_cell(path, line, column, value)


def delete(path):
    path.unlink()


def shorten_study(path):
    set_csv_cell(path, 2, "length_of_study_time_step", "0.2")


def drop_readouts_of_first_vehicle(path):
    rewrite_csv(path, lambda header, body: [row for row in body if row[0] != body[0][0]])


BAD_INPUTS = {
    "missing readouts": (TRAIN, delete, TRAIN, None, None, "file not found"),
    "missing tte": ("train_tte.csv", delete, "train_tte", None, None, "exactly one of"),
    "empty file": (VALIDATION, truncate(False), VALIDATION, None, None, "empty"),
    "header only": ("test_labels.csv", truncate(True), "test_labels", None, 2, "no data rows"),
    "missing column": ("train_tte.csv", drop_column("in_study_repair"), "train_tte",
                       "in_study_repair", 1, "missing column"),
    "extra column": ("validation_labels.csv", add_column("comment"), "validation_labels",
                     "comment", 1, "unexpected column"),
    "columns differ between splits": (VALIDATION, drop_column("459_3"), VALIDATION, None, 1,
                                      "differ from the train split"),
    "missing time column": (TRAIN, drop_column("time_step"), TRAIN, "time_step", 1, "missing"),
    "non-numeric feature": (TRAIN, cell(7, "837_0", "12x"), TRAIN, "837_0", 7, "'12x'"),
    "non-numeric id": (VALIDATION, cell(4, "vehicle_id", "A7"), VALIDATION, "vehicle_id", 4,
                       "not an integer"),
    "infinite value": (TRAIN, cell(5, "171_0", "inf"), TRAIN, "171_0", 5, "infinite"),
    "duplicate readout": (TRAIN, duplicate_row(6), TRAIN, "time_step", 7, "duplicate"),
    "negative time": (TRAIN, cell(3, "time_step", "-0.2"), TRAIN, "time_step", 3, "negative"),
    "NaN time": (VALIDATION, cell(9, "time_step", "nan"), VALIDATION, "time_step", 9,
                 "missing value"),
    "missing id": (TRAIN, cell(2, "vehicle_id", ""), TRAIN, "vehicle_id", 2, "missing value"),
    "label out of range": ("test_labels.csv", cell(3, "class_label", "5"), "test_labels",
                           "class_label", 3, "out of range"),
    "fractional label": ("test_labels.csv", cell(3, "class_label", "1.5"), "test_labels",
                         "class_label", 3, "not an integer"),
    "repair flag not 0/1": ("train_tte.csv", cell(4, "in_study_repair", "2"), "train_tte",
                            "in_study_repair", 4, "0 or 1"),
    "study ends before last readout": ("train_tte.csv", shorten_study, "train_tte",
                                       "length_of_study_time_step", 2, "before vehicle"),
    "labelled vehicle without readouts": (TRAIN, drop_readouts_of_first_vehicle, "train_tte",
                                          "vehicle_id", 2, "has no readouts"),
    "unknown vehicle in readouts": ("validation_labels.csv", lambda p: rewrite_csv(
        p, lambda h, b: b[1:]), "validation_labels", "vehicle_id", None, "not listed"),
    "duplicate vehicle in labels": ("validation_labels.csv", duplicate_row(3),
                                    "validation_labels", "vehicle_id", 4, "more than once"),
    "spec for unknown vehicle": ("test_specifications.csv", cell(2, "vehicle_id", "999999"),
                                 "test_specifications", "vehicle_id", 2, "has no readouts"),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_is_named(case, dataset, tmp_path):
    file, damage, named_file, column, line, message = BAD_INPUTS[case]
    damage(dataset / file)
    with pytest.raises(DatasetError) as error:
        ingest(dataset, tmp_path / "out", num_classes=5)
    text = str(error.value)
    assert named_file in text
    assert message in text
    if column is not None:
        assert f"column '{column}'" in text
    if line is not None:
        assert f"line {line}" in text, text


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="dataset folder not found"):
        ingest(tmp_path / "nowhere", tmp_path / "out", num_classes=5)


def test_decreasing_cumulative_values_warn_with_count(dataset, tmp_path, caplog):
    def edit(header, body):
        column = header.index("666_0")
        body[3][column] = "0.0"  # vehicle's 3rd readout drops below the 2nd
        return body
    assert pd.read_csv(dataset / TRAIN).groupby("vehicle_id").size().iloc[0] > 4

    def train_warning() -> int:
        summary = ingest(dataset, tmp_path / "out", num_classes=5)
        found = [w for w in summary.warnings if w.startswith(TRAIN)]
        return int(re.search(r"(\d+) decreasing steps", found[0]).group(1)) if found else 0

    before = train_warning()  # the synthetic fleet has rare counter resets of its own
    rewrite_csv(dataset / TRAIN, edit)
    with caplog.at_level(logging.WARNING):
        assert train_warning() == before + 1
    assert "decreasing" in caplog.text


@pytest.mark.parametrize("content", [
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xd8",  # a binary file
    "vehicle_id,time_step\n1,0.5\n".encode("utf-16"),  # text, but not UTF-8
])
def test_a_file_that_is_not_utf8_text_is_named(dataset, tmp_path, content):
    path = dataset / "validation_operational_readouts.csv"
    path.write_bytes(content)
    with pytest.raises(DatasetError) as error:
        ingest(dataset, tmp_path / "out", num_classes=5)
    message = str(error.value)
    assert message.startswith(str(path)) and ("not UTF-8" in message or "NUL" in message)
    assert "\n" not in message


def test_auto_classes_with_time_to_event_refuse_a_label_beyond_the_windows(dataset, tmp_path):
    """labels.num_classes auto with train_tte.csv: the class count comes from labels.windows
    before any label file is read, so validation labels are checked against it."""
    set_csv_cell(dataset / "validation_labels.csv", 3, "class_label", "7")
    with pytest.raises(DatasetError) as error:
        ingest(dataset, tmp_path / "out", "auto", [6, 12, 24, 48])
    message = str(error.value)
    assert "validation_labels.csv" in message and "column 'class_label', line 3" in message
    assert "out of range 0..4" in message


def test_each_readouts_file_is_read_once(dataset, tmp_path, monkeypatch):
    """Blocks of 64 KB: the bytes read from each readouts CSV are its size, plus a line at
    each block's boundary and the header's look; a second pass would double them."""
    read: dict[str, int] = {}
    real_open = Path.open

    class Counted:
        def __init__(self, handle, name):
            self.handle, self.name = handle, name

        def __getattr__(self, attribute):
            return getattr(self.handle, attribute)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def __iter__(self):
            return self

        def __next__(self):
            return self._count(next(self.handle))

        def _count(self, data):
            read[self.name] += len(data.encode() if isinstance(data, str) else data)
            return data

        def read(self, *args):
            return self._count(self.handle.read(*args))

        def readline(self, *args):
            return self._count(self.handle.readline(*args))

    def counted_open(path, *args, **kwargs):
        handle = real_open(path, *args, **kwargs)
        if path.name.endswith("operational_readouts.csv"):
            read.setdefault(path.name, 0)
            return Counted(handle, path.name)
        return handle

    monkeypatch.setattr(readouts, "BLOCK_BYTES", 64 << 10)
    monkeypatch.setattr(Path, "open", counted_open)
    ingest(dataset, tmp_path / "out", 5, compute={"buckets": 3, "workers": 1,
                                                 "memory_per_worker": "auto"})
    assert len(read) == 3
    for name, count in read.items():
        size = (dataset / name).stat().st_size
        blocks = len(readouts.line_blocks(dataset / name, readouts.BLOCK_BYTES))
        assert size <= count <= size + (blocks + 1) * 16_384 + (64 << 10), (name, size, count)


@pytest.mark.parametrize(("damage", "line", "says"), [
    (lambda path: set_csv_cell(path, 700, "837_0", "12x"), 700, "column '837_0', line 700"),
    (lambda path: rewrite_csv(path, lambda header, body: [*body, body[698]]), None,
     "also on line 700"),
    (lambda path: (set_csv_cell(path, 700, "837_0", "12x"), rewrite_csv(
        path, lambda header, body: [*body[:98], [], *body[98:]])), 701,
     "column '837_0', line 701"),  # a blank line 100, in a block before the bad value's
])
def test_bad_input_in_a_block_in_the_middle_of_a_file_is_named(dataset, tmp_path, monkeypatch,
                                                                 damage, line, says):
    """Blocks of 64 KB, parsed on a LocalCluster of two worker processes: the error still
    names the file, the column and the file's line."""
    path = dataset / TRAIN
    monkeypatch.setattr(readouts, "BLOCK_BYTES", 64 << 10)
    assert len(readouts.line_blocks(path, readouts.BLOCK_BYTES)) > 5
    damage(path)
    with pytest.raises(DatasetError) as error:
        ingest(dataset, tmp_path / "out", 5, compute={"buckets": 3, "workers": 2,
                                                     "memory_per_worker": "auto"})
    assert str(error.value).startswith(str(path)) and says in str(error.value), error.value
    assert "\n" not in str(error.value)


def test_a_header_longer_than_a_parsing_block_is_read(tmp_path):
    """pyarrow's first parsing block must hold the header: a wide file's is made larger."""
    names = [f"{i:07d}_{'a_sensor_with_a_long_description_' * 6}" for i in range(
        3 * readouts.PARSE_BLOCK_BYTES // 2 // 208)]
    path = tmp_path / "wide.csv"
    path.write_text(",".join(names) + "\n" + ",".join(["1"] * len(names)) + "\n")
    assert len(path.read_text().splitlines()[0]) > readouts.PARSE_BLOCK_BYTES
    table = readouts.read_table(path, {name: pa.float64() for name in names[:3]})
    assert table.num_columns == len(names) and table.column(names[0]).to_pylist() == [1.0]
