"""componentx predict on bundles written by the export code from an ingested dataset: ONNX
parity for every architecture, the same checks as ingest with one-line errors, --at, unknown
categories, buckets, risk_class from params, no torch with ONNX, and no code run on load."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
from conftest import PARAMS, model_config, set_csv_cell

from componentx.data.features import HISTORY_CHANNELS, compute_stats
from componentx.data.ingest import ingest
from componentx.data.readouts import ArrivingFile, line_blocks
from componentx.decisions.calibration import Calibrator
from componentx.decisions.metrics import OFFICIAL_COST
from componentx.errors import BundleError, DatasetError, UserError
from componentx.sequence.candidate import SequenceModel
from componentx.sequence.models import build_model
from componentx.serving.bundle import BUNDLE_FORMAT, read_meta, write_bundle
from componentx.serving.export import common_meta
from componentx.serving.scoring import predict, score_readouts

FEATURES = ["c_0", "h_0", "h_1"]
REPORT = {"cost_total": 10.0, "cost_total_ci": [5.0, 15.0], "cost_always_0": 20.0}


def readouts(seed: int = 0, vehicles: int = 12, first: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for vehicle in range(first, first + vehicles):
        n = int(rng.integers(1, 15))
        times = np.cumsum(rng.integers(1, 30, n)) * 0.2
        values = np.cumsum(rng.gamma(2.0, 10.0, (n, 3)), axis=0)
        values[rng.random((n, 3)) < 0.1] = np.nan
        rows.append(pd.DataFrame({"vehicle_id": vehicle, "time_step": np.round(times, 1),
                                  **{f: values[:, j] for j, f in enumerate(FEATURES)}}))
    return pd.concat(rows, ignore_index=True)


def specifications(vehicles: int = 12, first: int = 0, categories: int = 3) -> pd.DataFrame:
    return pd.DataFrame({"vehicle_id": range(first, first + vehicles),
                         "Spec_0": [f"Cat{v % categories}" for v in range(vehicles)]})


def ingested(folder):
    """A small dataset in the layout (train knows Spec_0's Cat0 and Cat1), ingested."""
    raw = folder / "raw"
    raw.mkdir(parents=True)
    for split, first in (("train", 100), ("validation", 200), ("test", 300)):
        frame = readouts(1 if split == "train" else first, first=first)
        frame.to_csv(raw / f"{split}_operational_readouts.csv", index=False)
        specifications(first=first, categories=2).to_csv(raw / f"{split}_specifications.csv",
                                                         index=False)
        last = frame.groupby("vehicle_id")["time_step"].max()
        if split == "train":
            pd.DataFrame({"vehicle_id": last.index, "length_of_study_time_step": last + 60,
                          "in_study_repair": 0}).to_csv(raw / "train_tte.csv", index=False)
        else:
            pd.DataFrame({"vehicle_id": last.index, "class_label": 0}).to_csv(
                raw / f"{split}_labels.csv", index=False)
    ingest(raw, folder / "ingested", "auto", PARAMS["labels"]["windows"])
    return folder / "ingested"


def make_bundle(folder, arch="lstm", risk_class=1, **model):
    """A sequence bundle written the way the export stage writes one (the candidate's
    files, its meta from ``common_meta`` with params.yaml), around an untrained network."""
    frame = readouts(1)
    stats = compute_stats(frame[FEATURES].to_numpy(), frame["time_step"].to_numpy(),
                          frame["vehicle_id"].to_numpy(), FEATURES, ["c_0"], "both")
    torch.manual_seed(0)
    config = model_config(**{"arch": arch, "n_features": len(stats.names)
                             + len(HISTORY_CHANNELS) + 1, "hidden_size": 16, "head_hidden": 8,
                             "conv_channels": 8, "num_heads": 2, "window": 8, **model})
    network = build_model(config).eval()
    calibrator = Calibrator("temperature", 1.7, np.zeros(5),
                            np.log([0.97, 0.005, 0.005, 0.005, 0.015]) - np.log(0.2))
    params = {**PARAMS, "window": {"size": 8}, "fleet": {**PARAMS["fleet"],
                                                         "risk_class": risk_class}}
    candidate = SequenceModel({})
    candidate.module, candidate.config, candidate.stats, candidate.size = (
        network, config.to_dict(), stats, 8)
    candidate.train_priors = np.full(5, 0.2)
    candidate.train_config = {"loss": "cross_entropy", "label_smoothing": 0.0}
    candidate.best_epoch, candidate.epochs, candidate.history = 1, 1, []
    fitted = folder.parent / f"{folder.name}-fitted"
    fitted.mkdir()
    candidate.save(fitted)
    write_bundle(folder, fitted, {
        **common_meta(params, ingested(folder.parent / f"{folder.name}-data")),
        "kind": "sequence", "title": "sequence model", "description": candidate.describe(),
        "fit": candidate.report(), "calibration": calibrator.to_dict(), "shipped": True,
        "metrics": {"validation": REPORT, "test": REPORT, "gate": {"split": "validation"}}})
    return folder


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("bundle") / "bundle")


@pytest.fixture
def files(tmp_path):
    readouts(0).to_csv(tmp_path / "readouts.csv", index=False)
    specifications().to_csv(tmp_path / "specs.csv", index=False)
    return tmp_path / "readouts.csv", tmp_path / "specs.csv"


def run(bundle, files, tmp_path, engine="auto", **options):
    out = tmp_path / "decisions.csv"
    report = predict(bundle, files[0], files[1], out, engine, **options)
    return pd.read_csv(out), report


VARIANTS = [("lstm", {}), ("lstm", {"bidirectional": True, "num_layers": 2}),
            ("lstm", {"pooling": "mean"}), ("cnn_lstm", {}), ("attention_lstm", {}),
            ("transformer", {}), ("fcn", {}),
            ("lstm", {"max_steps": 3}), ("transformer", {"max_steps": 2})]  # patches


@pytest.mark.parametrize(("arch", "model"), VARIANTS,
                         ids=[f"{a}{'-' if m else ''}{'-'.join(m)}" for a, m in VARIANTS])
def test_onnx_matches_torch_for_every_architecture(tmp_path, files, arch, model):
    folder = make_bundle(tmp_path / arch, arch, **model)
    onnx, _ = run(folder, files, tmp_path, "onnx")
    reference, _ = run(folder, files, tmp_path, "torch")
    probs = [c for c in onnx.columns if c.startswith("prob_")]
    assert np.abs(onnx[probs].to_numpy() - reference[probs].to_numpy()).max() <= 1e-4
    assert (onnx["decision"] == reference["decision"]).all()


def test_decisions_file_by_hand(bundle, files, tmp_path):
    decisions, report = run(bundle, files, tmp_path)
    assert list(decisions.columns) == ["vehicle_id", "time_step",
                                       *[f"prob_{c}" for c in range(5)],
                                       *[f"expected_cost_{c}" for c in range(5)],
                                       "decision", "risk_failure_within_48"]
    frame = readouts(0)
    last = frame.groupby("vehicle_id")["time_step"].max()
    assert decisions["vehicle_id"].tolist() == list(range(12))
    assert np.allclose(decisions["time_step"], last.to_numpy())  # the last readout
    probs = decisions[[f"prob_{c}" for c in range(5)]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1)
    expected = probs @ np.array(OFFICIAL_COST, dtype=float)
    assert np.allclose(decisions[[f"expected_cost_{c}" for c in range(5)]], expected)
    assert (decisions["decision"] == expected.argmin(axis=1)).all()
    assert np.allclose(decisions["risk_failure_within_48"], probs[:, 1:].sum(axis=1))
    assert report.unknown_categories == {"Spec_0": 4}  # Cat2 was never seen in training


def test_the_risk_follows_the_bundled_risk_class(tmp_path, files):
    folder = make_bundle(tmp_path / "risk2", risk_class=2)
    assert read_meta(folder)["risk_class"] == 2
    decisions, _ = run(folder, files, tmp_path)
    probs = decisions[[f"prob_{c}" for c in range(5)]].to_numpy()
    assert np.allclose(decisions["risk_failure_within_24"], probs[:, 2:].sum(axis=1))
    assert "P(failure within 24)" in (folder / "model_card.md").read_text()


class Payload:
    """An object whose unpickling runs code: it creates a file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_bundle_that_would_run_code_is_refused_and_the_code_never_runs(bundle, files,
                                                                          tmp_path):
    import shutil

    evil = tmp_path / "evil"
    shutil.copytree(bundle, evil)
    marker = tmp_path / "payload-ran"
    saved = torch.load(evil / "model.pt", weights_only=True)
    torch.save({**saved, "extra": Payload(marker)}, evil / "model.pt")
    command = [sys.executable, "-m", "componentx", "predict", "--bundle", str(evil),
               "--readouts", str(files[0]), "--specifications", str(files[1]), "--out",
               str(tmp_path / "out.csv"), "--engine", "torch"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 1 and not marker.exists()
    assert "refused" in result.stderr
    assert "model.pt cannot be read: it holds objects beyond plain data" in result.stderr
    assert result.stderr.strip().count("\n") == 0
    (evil / "model.pt").unlink()
    shutil.copy(bundle / "model.pt", evil / "model.pt")
    (evil / "model.pkl").write_bytes(b"anything")
    with pytest.raises(BundleError, match="holds data only"):
        read_meta(evil)


def test_scoring_at_given_times_file_and_column(bundle, files, tmp_path):
    at = tmp_path / "at.csv"
    pd.DataFrame({"vehicle_id": [0, 0, 3], "time_step": [1000.0, 0.0, 1000.0]}).to_csv(
        at, index=False)
    decisions, _ = run(bundle, files, tmp_path, at=str(at))
    # Vehicle 0 at time 0 is before its first readout: nothing to score there.
    assert decisions["vehicle_id"].tolist() == [0, 3]
    frame = readouts(0)
    frame["score_here"] = 0
    frame.loc[[0, 5], "score_here"] = 1
    frame.to_csv(files[0], index=False)
    by_column, _ = run(bundle, files, tmp_path, at="score_here")
    assert by_column["time_step"].tolist() == frame.loc[[0, 5], "time_step"].tolist()


def test_a_byte_order_mark_or_reordered_columns_score_as_the_plain_file(bundle, files,
                                                                         tmp_path):
    plain, _ = run(bundle, files, tmp_path)
    frame = pd.read_csv(files[0])
    frame[["h_1", "time_step", "c_0", "vehicle_id", "h_0"]].to_csv(files[0], index=False)
    reordered, _ = run(bundle, files, tmp_path)
    pd.testing.assert_frame_equal(reordered, plain)
    text = files[0].read_text()
    files[0].write_bytes(b"\xef\xbb\xbf" + text.encode())  # as spreadsheet programs save
    files[1].write_bytes(b"\xef\xbb\xbf" + files[1].read_bytes())
    marked, _ = run(bundle, files, tmp_path)
    pd.testing.assert_frame_equal(marked, plain)


def test_specifications_as_columns_of_the_readouts_score_as_a_separate_file(bundle, files,
                                                                            tmp_path):
    plain, _ = run(bundle, files, tmp_path)
    carried = tmp_path / "carried.csv"
    pd.read_csv(files[0]).merge(pd.read_csv(files[1]), on="vehicle_id").to_csv(carried,
                                                                               index=False)
    one_file, _ = run(bundle, (carried, None), tmp_path)
    pd.testing.assert_frame_equal(one_file, plain)
    frame = pd.read_csv(carried)
    spec = next(c for c in frame.columns if c.startswith("Spec"))
    frame.loc[frame["vehicle_id"] == frame["vehicle_id"].iloc[0], spec] = ["x", "y"] + [
        "x"] * (int((frame["vehicle_id"] == frame["vehicle_id"].iloc[0]).sum()) - 2)
    frame.to_csv(carried, index=False)
    with pytest.raises(DatasetError, match=f"column '{spec}': vehicle .* has more than one"):
        run(bundle, (carried, None), tmp_path)
    pd.read_csv(files[0]).to_csv(carried, index=False)
    with pytest.raises(DatasetError, match="uses the specifications .* --specifications"):
        run(bundle, (carried, None), tmp_path)


def test_buckets_give_the_same_decisions(bundle, files, tmp_path):
    """Whole or in buckets, at each vehicle's last readout or at the times of an ``--at``
    file (each bucket's task gets its own vehicles' rows of it)."""
    frame = pd.read_csv(files[0])
    at = tmp_path / "at.csv"
    frame.groupby("vehicle_id", as_index=False)["time_step"].median().to_csv(at, index=False)
    small = files[0].stat().st_size / 4 / 2**20
    for times in (None, str(at)):
        whole, _ = run(bundle, files, tmp_path, at=times)
        split, report = run(bundle, files, tmp_path, memory_mb=small, at=times)
        assert report.buckets >= 4 and len(whole) == frame["vehicle_id"].nunique()
        pd.testing.assert_frame_equal(whole, split)


def arrive(path: Path, into: Path, block_bytes: int, expected: int | None,
           stop_at: int | None = None) -> tuple[ArrivingFile, threading.Thread]:
    """``path`` written to ``into`` in uneven chunks, a little at a time, from a thread
    (stopping short at ``stop_at`` bytes, where given), as a server receives a body."""
    data = path.read_bytes()[:stop_at]
    handle = into.open("wb")
    arriving = ArrivingFile(handle, expected, block_bytes)

    def write() -> None:
        sizes = np.random.default_rng(0).integers(1, 3 * block_bytes // 2, len(data))
        start = 0
        for size in sizes:
            arriving.write(data[start:start + size])
            start += size
            if start >= len(data):
                break
            time.sleep(0.002)
        arriving.close(complete=stop_at is None)
        handle.close()

    writer = threading.Thread(target=write)
    writer.start()
    return arriving, writer


def wait_for_a_block(arriving: ArrivingFile) -> None:
    deadline = time.time() + 30
    while not arriving.blocks:
        assert time.time() < deadline, "no block arrived"
        time.sleep(0.001)


@pytest.mark.parametrize("text", [
    b"a,b\n1,2\n3,4\n" * 40,  # the plain file
    b"a,b\r\n" + b"1,2\r\n3,4\r\n" * 40,  # Windows line ends
    b"a,b\n" + b"1,2\n" * 40 + b"5,6",  # no line break at the end
    b",".join(b"column%d" % i for i in range(60)) + b"\n" + b"1\n" * 40,  # a long header
    b"a,b\n1,2",  # one short line
    b"a,b",  # a header alone
])
def test_a_file_arriving_is_cut_where_the_whole_file_is(tmp_path, text):
    (tmp_path / "whole.csv").write_bytes(text)
    for chunk in (1, 7, 64):
        with (tmp_path / "arriving.csv").open("wb") as handle:
            arriving = ArrivingFile(handle, None, 16)
            for start in range(0, len(text), chunk):
                arriving.write(text[start:start + chunk])
            arriving.close()
        assert list(arriving.ranges()) == line_blocks(tmp_path / "whole.csv", 16), chunk


def test_a_file_scored_while_it_arrives_scores_as_the_whole_file(bundle, files, tmp_path):
    """Blocks cut as the file arrives are :func:`line_blocks`'s, and scoring them as they
    come (in buckets too) gives the decisions of the whole file."""
    block_bytes = files[0].stat().st_size // 7
    for memory_mb in (1024, files[0].stat().st_size / 3 / 2**20):
        arriving, writer = arrive(files[0], tmp_path / "body.csv", block_bytes,
                                  files[0].stat().st_size)
        wait_for_a_block(arriving)
        scored, report = score_readouts(bundle, tmp_path / "body.csv", files[1],
                                        memory_mb=memory_mb, arriving=arriving)
        writer.join()
        whole, whole_report = score_readouts(bundle, files[0], files[1], memory_mb=memory_mb)
        assert report.buckets == whole_report.buckets and report.readouts == len(
            pd.read_csv(files[0]))
        assert scored.equals(whole)
    ranges = []
    with (tmp_path / "again.csv").open("wb") as handle:
        cut = ArrivingFile(handle, None, block_bytes)
        data = files[0].read_bytes()
        for start in range(0, len(data), 1000):
            cut.write(data[start:start + 1000])
        cut.close()
        ranges = list(cut.ranges())
    assert len(ranges) >= 7 and ranges == line_blocks(files[0], block_bytes)


def test_a_file_that_stops_arriving_stops_its_scoring(bundle, files, tmp_path):
    size = files[0].stat().st_size
    arriving, writer = arrive(files[0], tmp_path / "body.csv", size // 7, size, size // 2)
    wait_for_a_block(arriving)
    with pytest.raises(OSError, match="ended early"):
        score_readouts(bundle, tmp_path / "body.csv", files[1], arriving=arriving)
    writer.join()


def test_a_scoring_task_carries_the_at_times_of_its_bucket_only():
    from componentx.compute import bucket_of
    from componentx.serving.scoring import tables_by_bucket

    ids = np.random.default_rng(0).choice(10**6, 300)
    at = pa.table({"vehicle_id": ids, "time_step": np.arange(300.0)})
    parts = tables_by_bucket(at, 7)
    assert len(parts) == 7 and sum(p.num_rows for p in parts) == 300
    for bucket, part in enumerate(parts):
        assert (bucket_of(part.column("vehicle_id").to_numpy(), 7) == bucket).all()
        mine = bucket_of(ids, 7) == bucket
        assert part.column("time_step").to_numpy().tolist() == np.arange(300.0)[mine].tolist()


def test_a_scoring_task_carries_the_specifications_of_its_bucket_only():
    from componentx.compute import bucket_of
    from componentx.serving.scoring import Specifications

    ids = np.sort(np.random.default_rng(0).choice(10**6, 500, replace=False))
    specs = Specifications(Path("specs.csv"), ids, np.arange(500)[:, None] * [1, 2], {})
    parts = specs.by_bucket(7)
    assert len(parts) == 7 and sum(len(p.ids) for p in parts) == 500
    for number, part in enumerate(parts):
        assert (bucket_of(part.ids, 7) == number).all() and (np.diff(part.ids) > 0).all()
        np.testing.assert_array_equal(part.codes_for(part.ids, Path("r.csv")),
                                      specs.codes_for(part.ids, Path("r.csv")))
    empty = Specifications(Path("specs.csv"), ids[:0], np.zeros((0, 2), dtype=np.int64), {})
    with pytest.raises(DatasetError, match=f"vehicle {ids[0]} has readouts .* no spec"):
        empty.codes_for(ids[:1], Path("r.csv"))


def on_lines(change):
    """An edit of a file through ``change`` of its list of lines."""
    def edit(path):
        lines = path.read_text().splitlines()
        change(lines)
        path.write_text("\n".join(lines) + "\n")
    return edit


def cell(line, column, value):
    """An edit setting the cell of ``column`` on a file ``line`` (the header is line 1)."""
    return lambda path: set_csv_cell(path, line, column, value)


def header(old, new):
    return on_lines(lambda lines: lines.__setitem__(0, lines[0].replace(old, new)))


@pytest.mark.parametrize(("which", "change", "says"), [
    (0, cell(5, "h_0", "oops"), "readouts.csv, column 'h_0', line 5: value 'oops' is not"),
    (0, cell(7, "c_0", "inf"), "readouts.csv, column 'c_0', line 7: infinite value inf is not "
     "allowed"),
    (0, cell(4, "vehicle_id", ""), "readouts.csv, column 'vehicle_id', line 4: missing"),
    (0, cell(4, "time_step", ""), "readouts.csv, column 'time_step', line 4: missing"),
    (0, cell(4, "time_step", "-1"), "line 4: negative time_step"),
    (0, on_lines(lambda lines: lines.append(lines[2])), "duplicate readout"),
    (0, header("h_1", "h_1,extra"),
     "column 'extra', line 1: columns differ from the model's: unexpected ['extra']"),
    (0, header(",h_1", ",h_9"),
     "column 'h_1', line 1: columns differ from the model's: missing ['h_1']"),
    (1, on_lines(lambda lines: lines.pop()), "vehicle 11 has readouts in"),
    (1, on_lines(lambda lines: lines.append("99,Cat0")),
     "vehicle 99 has specifications but no readouts"),
    (1, on_lines(lambda lines: lines.append("3,Cat1")),
     "specs.csv, column 'vehicle_id', line 14: vehicle 3 appears more than once"),
])
def test_bad_input_is_one_line_naming_file_column_and_line(bundle, files, tmp_path, which,
                                                           change, says):
    change(files[which])
    out = tmp_path / "decisions.csv"
    with pytest.raises(DatasetError) as error:
        predict(bundle, files[0], files[1], out)
    assert says in str(error.value) and "\n" not in str(error.value)
    assert not out.exists() and not list(tmp_path.glob(".decisions*"))


def test_lines_ended_with_cr_alone_are_one_line(bundle, files, tmp_path):
    old_mac = tmp_path / "readouts.csv"
    old_mac.write_bytes(files[0].read_bytes().replace(b"\n", b"\r"))
    with pytest.raises(DatasetError, match="no line break after the header") as error:
        run(bundle, (old_mac, files[1]), tmp_path)
    assert str(error.value).startswith(str(old_mac)) and "line 1" in str(error.value)


def test_the_command_exits_1_with_one_line_and_writes_nothing(bundle, files, tmp_path):
    files[0].write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff")
    out = tmp_path / "decisions.csv"
    result = subprocess.run([sys.executable, "-m", "componentx", "predict", "--bundle",
                             str(bundle), "--readouts", str(files[0]), "--specifications",
                             str(files[1]), "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "readouts.csv" in result.stderr
    assert not out.exists()


def test_the_onnx_engine_does_not_import_torch(bundle, files, tmp_path):
    code = ("import sys; from componentx.serving.scoring import predict\n"
            f"predict({str(bundle)!r}, {str(files[0])!r}, {str(files[1])!r}, "
            f"{str(tmp_path / 'x.csv')!r}, 'onnx')\n"
            "print(sorted(m for m in ('torch', 'sklearn', 'lightgbm') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_bundle_says_what_it_is(bundle):
    meta = read_meta(bundle)
    assert meta["kind"] == "sequence" and meta["format"] == BUNDLE_FORMAT == 4
    assert {"model.pt", "model.onnx", "bundle.json", "model_card.md"} <= {
        p.name for p in bundle.iterdir()}
    card = (bundle / "model_card.md").read_text()
    assert "Intended use" in card and "validation 10 (95% CI 5–15" in card
    assert json.loads((bundle / "bundle.json").read_text())["window_size"] == 8


@pytest.mark.parametrize(("damage", "engine", "says"), [
    (lambda b: (b / "model.pt").write_bytes(b"PK\x03\x04 cut"), "torch", "model.pt cannot be read"),
    (lambda b: (b / "model.onnx").unlink(), "onnx", "lacks ['model.onnx']"),
    (lambda b: (b / "model.onnx").write_bytes(b"\x08garbage"), "onnx", "cannot be loaded"),
    (lambda b: (b / "bundle.json").write_text("{not json"), "onnx", "not readable JSON"),
])
def test_a_damaged_bundle_is_one_line(bundle, files, tmp_path, damage, engine, says):
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(bundle, damaged)
    damage(damaged)
    with pytest.raises(BundleError, match=re.escape(says)) as error:
        predict(damaged, files[0], files[1], tmp_path / "out.csv", engine)
    assert "\n" not in str(error.value)


def test_a_missing_readouts_file_or_at_is_one_line(bundle, files, tmp_path):
    with pytest.raises(DatasetError, match="file not found"):
        predict(bundle, tmp_path / "nowhere.csv", files[1], tmp_path / "out.csv")
    with pytest.raises(UserError, match="neither a file nor a column"):
        predict(bundle, files[0], files[1], tmp_path / "out.csv", at="tims.csv")


def test_the_drift_reference_holds_one_bucket_of_increments_at_a_time(tmp_path):
    """Traced peak memory of the export's drift reference over 2 and 8 train buckets of the
    same size (8 MB of increments each): about the same (holding every bucket's increments at
    once would grow with them)."""
    import tracemalloc

    from componentx.data.layout import bucket_file
    from componentx.serving.export import drift_reference

    rng = np.random.default_rng(0)
    rows, features = 20_000, 50
    peaks = {}
    for buckets in (2, 8):
        windows = tmp_path / str(buckets)
        for bucket in range(buckets):
            base = str(bucket_file(windows, "train", bucket, ""))
            Path(base).parent.mkdir(parents=True, exist_ok=True)
            np.save(f"{base}.values.npy", rng.normal(size=(rows, features)).cumsum(axis=0))
            np.save(f"{base}.time.npy", np.arange(rows, dtype=np.float64))
            np.save(f"{base}.vehicle.npy", np.repeat(np.arange(rows // 100) + bucket * rows,
                                                     100))
        (windows / "manifest.json").write_text(json.dumps({"buckets": buckets}))
        tracemalloc.start()
        reference = drift_reference(windows, [f"f{j}" for j in range(features)], 1_000)
        peaks[buckets] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert np.asarray(reference["counts"]).sum(axis=1).tolist() == \
            [buckets * (rows - rows // 100)] * features
    assert peaks[8] < 1.5 * peaks[2], peaks


def test_drift_counted_by_group_is_each_groups_own(monkeypatch):
    """Increments binned for several groups of vehicles at once (blocks crossing groups and
    vehicles) give each group the counts and the report it gets alone."""
    from componentx.serving import drift

    monkeypatch.setattr(drift, "BLOCK_ROWS", 7)
    rng = np.random.default_rng(1)
    vehicles = np.repeat(np.arange(9), rng.integers(1, 6, size=9))
    times = np.concatenate([np.arange((vehicles == v).sum()) for v in range(9)]).astype(float)
    values = rng.gamma(1.0, size=(len(vehicles), 4)).cumsum(axis=0)
    values[rng.random(values.shape) < 0.1] = np.nan
    reference = drift.reference([drift.increments(values, times, vehicles)],
                                drift.increments(values, times, vehicles), list("abcd"))
    starts = np.array([0, 2, 3, 7])
    grouped = drift.increment_counts(values, times, vehicles, reference["edges"], starts)
    reports = drift.drift_reports(reference, grouped)
    for group, (low, high) in enumerate(zip(starts, [*starts[1:], 9], strict=True)):
        rows = (vehicles >= low) & (vehicles < high)
        alone = drift.increment_counts(values[rows], times[rows], vehicles[rows],
                                       reference["edges"])
        assert np.array_equal(grouped[group], alone)
        assert reports[group] == drift.drift_report(reference, alone)
    assert grouped.sum() > 0 and len({str(r["psi"]) for r in reports}) > 1
