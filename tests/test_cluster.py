"""Fleets larger than one machine, through the real dvc CLI: the same outputs whatever the
buckets and the Dask cluster (local worker processes, or a scheduler and workers started apart
and named by DASK_SCHEDULER_ADDRESS); a worker killed mid-stage; a killed training run whose
processes die with it and resume exactly."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import ENV, TINY, dvc, make_repo, sh

from componentx.data.layout import SPLITS, DatasetSummary
from componentx.data.window_set import load_window_set
from componentx.data.windowing import WINDOW_SPLITS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SMALL = {**TINY, "synthetic": {"n_train": 300, "n_validation": 120, "n_test": 120}}
METRICS = ("labels", "candidates/sequence", "candidates/rocket", "candidates/multirocket",
           "candidates/gbdt", "gate", "fleet")


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rows(folder: Path, sort: list[str]) -> pa.Table:
    """Every bucket's file of a per-row output folder, in one order."""
    return pq.read_table(folder).sort_by([(c, "ascending") for c in sort])


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """The small fleet in one bucket in this process, and in seven buckets on a LocalCluster
    of two worker processes."""
    root = tmp_path_factory.mktemp("cluster")
    found = {}
    for name, compute in (("one", {"buckets": 1, "workers": 1}),
                          ("many", {"buckets": 7, "workers": 2})):
        found[name] = make_repo(root / name, {**SMALL, "compute": compute})
        dvc(found[name], "repro")
    return found


def test_buckets_and_a_local_cluster_give_the_same_outputs(runs):
    one, many = runs["one"], runs["many"]
    summaries = [DatasetSummary.load(r / "data/ingested/schema.json") for r in (one, many)]
    assert (summaries[0].buckets, summaries[1].buckets) == (1, 7)
    assert summaries[0].digest == summaries[1].digest and summaries[0].rows == summaries[1].rows
    for split in SPLITS:  # ingested readouts, bit for bit
        assert rows(one / "data/ingested/readouts" / split, ["vehicle_id", "time_step"]).equals(
            rows(many / "data/ingested/readouts" / split, ["vehicle_id", "time_step"]))
    for split in (*SPLITS, "fleet"):  # labels
        assert rows(one / "data/labels" / split, ["vehicle_id", "ref_time"]).equals(
            rows(many / "data/labels" / split, ["vehicle_id", "ref_time"]))
    assert (one / "data/stats.json").read_bytes() == (many / "data/stats.json").read_bytes()
    specs = summaries[0].spec_columns
    for split in WINDOW_SPLITS:  # windows in the same global order, their inputs bit for bit
        sets = [load_window_set(r / "data/windows", r / "data/inputs", r / "data/ingested",
                                split, specs, TINY["window"]["size"],
                                "train" if split == "fleet" else None) for r in (one, many)]
        columns = ["vehicle_id", "ref_time", "class_label", "length"]
        pd.testing.assert_frame_equal(sets[0].windows[columns], sets[1].windows[columns])
        everything = np.arange(len(sets[0]))
        assert np.array_equal(sets[0].arrays(everything), sets[1].arrays(everything)), split
    for name in METRICS:  # and so the same models, evaluations, gate and fleet
        assert (one / f"metrics/{name}.json").read_text() == (
            many / f"metrics/{name}.json").read_text(), name


def test_a_window_set_of_many_buckets_reads_under_a_low_file_limit(runs):
    """Seven buckets, fourteen files; the soft and hard limits leave room for two more open files:
    the window set reads every window, the same as without the limits."""
    specs = DatasetSummary.load(runs["many"] / "data/ingested/schema.json").spec_columns
    code = ("import gc, os, resource, sys\n"
            "from pathlib import Path\n"
            "import numpy as np\n"
            "from componentx.data.window_set import load_window_set\n"
            "def load():\n"
            "    return load_window_set(*[Path('data', f) for f in ('windows', 'inputs', "
            f"'ingested')], 'train', {specs!r}, {TINY['window']['size']})\n"
            "load()  # the modules it imports, imported\n"
            "gc.collect()\n"
            "room = len(os.listdir('/dev/fd')) + 1  # two more than are open after the listing\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (room, room))\n"
            "found = load()\n"
            "np.save(sys.argv[1], found.arrays(np.arange(len(found))))\n")
    limited = runs["many"].parent / "limited.npy"
    result = subprocess.run([sys.executable, "-c", code, str(limited)], cwd=runs["many"],
                            env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    found = load_window_set(runs["many"] / "data/windows", runs["many"] / "data/inputs",
                            runs["many"] / "data/ingested", "train", specs,
                            TINY["window"]["size"])
    np.testing.assert_array_equal(np.load(limited), found.arrays(np.arange(len(found))))


def test_a_bucket_s_task_reads_only_its_own_bucket_s_files(runs, tmp_path, monkeypatch):
    """One bucket of the test split and of the fleet holdout scored by each fitted candidate,
    in a copy of the project where every other bucket's files and every whole-split table
    (window index, labels, time-to-event, specifications) are deleted: the same logits as in
    the project itself, and the same trajectories from the fleet view's task."""
    from componentx.candidates.folders import CandidateFolders
    from componentx.candidates.interface import PipelineData, bucket_task
    from componentx.candidates.phase import saved_logits
    from componentx.params import load_params
    from componentx.serving.fleet import candidate_bundles, score_fleet_bucket

    source, copy = runs["many"], tmp_path / "copy"
    for folder in ("data", "models/candidates"):
        shutil.copytree(source / folder, copy / folder)
    fitted = [p.parent.name for p in sorted((source / "models/candidates").glob("*/fit.json"))
              if "declined" not in json.loads(p.read_text())]
    monkeypatch.chdir(source)
    data = PipelineData(TINY["window"]["size"])
    tasks, positions = {}, {}
    for split in ("test", "fleet"):
        windows = data.labelled(split)
        bucket, positions[split] = next((b, p) for _, b, p in windows.groups() if b == 1)
        tasks[split] = bucket, windows.index.iloc[positions[split]]

    def logits(root: Path) -> dict[tuple[str, str], np.ndarray]:
        data = PipelineData(TINY["window"]["size"])
        return {(split, name): bucket_task(saved_logits, data, split, bucket, index, (
            name, root / "models/candidates" / name, "cpu"))
            for split, (bucket, index) in tasks.items() for name in fitted}

    expected = logits(source)
    for name in fitted:  # what the fit stage scored: the same bucket by the same files
        with np.load(source / f"data/logits/{name}.npz") as saved:
            np.testing.assert_allclose(expected[("test", name)],
                                       saved["test"][positions["test"]], rtol=0, atol=1e-6)
    removed = [p for p in (copy / "data").rglob("*") if p.is_file() and (
        (p.name[:4].isdigit() and p.name[:4] != "0001")
        or p.name.endswith(("_windows.parquet", "_labels.parquet", "_tte.parquet",
                            "_specs.parquet")))]
    for path in removed:
        path.unlink()
    assert len(removed) > 20 and len(fitted) >= 3
    bundles = {name: (copy / "models/candidates" / name, bundle.meta,
                      bundle.calibrator.to_dict())
               for name, bundle in candidate_bundles(load_params(), CandidateFolders(),
                                                     data).items()}
    monkeypatch.chdir(copy)
    found = logits(copy)
    for key, values in expected.items():
        np.testing.assert_array_equal(found[key], values, err_msg=str(key))
    # the fleet view's task: its bucket's trajectories as the stage wrote them
    (tmp_path / "fleet").mkdir()
    score_fleet_bucket(PipelineData(TINY["window"]["size"]), Path("data/labels"), 1, bundles,
                       "cpu", tmp_path / "fleet")
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "fleet/0001.parquet"),
        pd.read_parquet(source / "data/fleet/trajectories.parquet/0001.parquet"))


def test_the_gbdt_tunes_on_the_workers_as_on_gathered_features(runs, tmp_path, monkeypatch):
    """The GBDT fitted with LightGBM's Dask interface chooses its iteration from costs summed
    bucket by bucket on the workers: the tuning windows' features never reach the fitting
    process (gathering them raises here), and the costs are those replayed in this process
    on every tuning window's features at once."""
    from distributed import Client, LocalCluster

    from componentx.candidates.interface import FitData, PipelineData
    from componentx.compute import SCHEDULER_VARIABLE
    from componentx.decisions.metrics import check_cost_matrix
    from componentx.decisions.selection import inner_split
    from componentx.gbdt.candidate import GBDT
    from componentx.gbdt.model import staged_probabilities, validation_cost
    from componentx.params import load_params

    monkeypatch.chdir(runs["many"])
    params = load_params()
    data = PipelineData(params["window"]["size"])
    k = data.summary.num_classes
    cost = check_cost_matrix(params["evaluate"]["cost_matrix"], k)
    train = data.labelled("train")
    fit_rows, tune_rows = inner_split(train.split_codes, train.vehicles, train.labels,
                                      params["selection"]["seed"])
    tune = train.subset(tune_rows)
    gathered = GBDT.features

    def refused(self, windows, client):
        raise AssertionError(f"the features of {len(windows)} windows gathered")

    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        monkeypatch.setenv(SCHEDULER_VARIABLE, cluster.scheduler_address)
        monkeypatch.setattr(GBDT, "features", refused)
        model = GBDT(params).fit(FitData(train.subset(fit_rows), tune, k, cost,
                                         tmp_path / "work", "key", "run", client=client))
    monkeypatch.setattr(GBDT, "features", gathered)
    replayed = [validation_cost(probs, tune.labels, model.train_priors, cost)
                for probs in staged_probabilities(model.trees, model.features(tune, None), k)]
    assert len(replayed) == params["gbdt"]["max_iter"] and len(tune) > 20
    assert model.trees.tuning_costs == replayed


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory) -> tuple[str, list[subprocess.Popen]]:
    """A Dask scheduler and two workers, started as separate processes on loopback."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    folder = tmp_path_factory.mktemp("dask")
    dask = str(Path(sys.executable).parent / "dask")
    processes = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port",
                                   str(port), "--no-dashboard"], cwd=folder, env=ENV,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)]
    time.sleep(2)
    for _ in range(2):
        processes.append(subprocess.Popen(
            [dask, "worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard",
             "--local-directory", str(folder)], cwd=folder, env=ENV,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
    from distributed import Client

    with Client(address, timeout=60) as client:
        client.wait_for_workers(2, timeout=120)
    yield address, processes
    for process in processes:
        os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        process.wait(30)


def test_a_cluster_named_by_the_environment_gives_the_local_run_s_results(runs, scheduler,
                                                                         tmp_path):
    """The stages on a scheduler and two workers started apart: the data, the sequence model
    and its evaluation, and MiniRocket's, are the local run's exactly. The GBDT trains with
    LightGBM's Dask interface on both workers (how close that fit is to one in a single process is
    :func:`test_lightgbm_on_the_cluster_fits_as_in_this_process`'s matter: on a few hundred
    windows two such fits differ widely)."""
    repo = make_repo(tmp_path / "external", {**SMALL, "compute": {"buckets": 7, "workers": 2}})
    run = dvc(repo, "repro", env={**ENV, "DASK_SCHEDULER_ADDRESS": scheduler[0],
                                  "COMPONENTX_LOG": "INFO"})
    assert "LightGBM's Dask interface on 2 workers" in run.stderr
    local = runs["many"]
    assert (repo / "metrics/labels.json").read_text() == (
        local / "metrics/labels.json").read_text()
    for metrics in ("metrics/candidates/sequence.json", "metrics/candidates/rocket.json",
                    "metrics/candidates/multirocket.json"):  # not the GBDT's
        assert (repo / metrics).read_text() == (local / metrics).read_text()
    assert (repo / "data/stats.json").read_bytes() == (local / "data/stats.json").read_bytes()
    for split in ("validation", "test"):
        ours, theirs = (pd.read_parquet(r / f"data/predictions/gbdt/{split}.parquet")
                        for r in (repo, local))
        assert ours["vehicle_id"].tolist() == theirs["vehicle_id"].tolist()


def test_a_worker_killed_mid_stage_leaves_nothing_half_written(scheduler, tmp_path):
    """A worker process SIGKILLed while ingest runs on the cluster: its tasks run again (or
    the stage fails); no half-written output is left, and the next run gives the data of an
    undisturbed one."""
    fleet = {**SMALL, "synthetic": {"n_train": 3000, "n_validation": 300, "n_test": 300},
             "compute": {"buckets": 4, "workers": 2}}
    repo = make_repo(tmp_path / "killed", fleet)
    stage = subprocess.Popen([sys.executable, "-m", "dvc", "repro", "ingest"], cwd=repo,
                             env={**ENV, "DASK_SCHEDULER_ADDRESS": scheduler[0]},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    victims = [child for process in scheduler[1][1:]
               for child in psutil.Process(process.pid).children(recursive=True)]
    deadline = time.time() + 300
    while time.time() < deadline and stage.poll() is None and not list(
            (repo / "data").glob(".ingested.*/.parts/train/*.arrow")):
        time.sleep(0.05)
    assert stage.poll() is None, "ingest ended before a worker could be killed"
    victims[0].kill()
    stage.communicate(timeout=600)
    assert not list((repo / "data").glob(".ingested.*"))  # nothing half-written left
    dvc(repo, "repro", "ingest", env={**ENV, "DASK_SCHEDULER_ADDRESS": scheduler[0]})
    reference = make_repo(tmp_path / "undisturbed", fleet)
    dvc(reference, "repro", "ingest")
    assert DatasetSummary.load(repo / "data/ingested/schema.json").digest == \
        DatasetSummary.load(reference / "data/ingested/schema.json").digest


def survivors(repo: Path) -> list[psutil.Process]:
    """Processes still running in ``repo``: a stage, its torchrun, its ranks."""
    found = []
    for process in psutil.process_iter(["cwd", "cmdline"]):
        try:
            if process.info["cwd"] == str(repo) and process.pid != os.getpid():
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def test_killing_the_run_s_process_group_kills_its_ranks_and_repro_resumes_exactly(tmp_path):
    """SIGKILL to the whole `dvc repro` process group while train.nproc: 2 trains (torchrun
    starts its ranks in a session of their own): no process of the killed run survives, and
    the next `dvc repro` resumes to the metrics of an uninterrupted run."""
    overrides = {**TINY, "synthetic": {"n_train": 400, "n_validation": 80, "n_test": 80},
                 "train": {"epochs": 6, "batch_size": 15, "patience": 10, "monitor": "loss",
                           "min_steps": 0, "nproc": 2}}
    repo = make_repo(tmp_path / "killed", overrides)
    run = subprocess.Popen([sys.executable, "-m", "dvc", "repro"], cwd=repo, env=ENV,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    last, killed = repo / "models/.resume/sequence/last.pt", None
    deadline = time.time() + 600
    while time.time() < deadline and run.poll() is None and killed is None:
        if last.exists():
            try:
                epoch = torch.load(last, weights_only=True)["state"]["epoch"]
            except (RuntimeError, EOFError):  # being replaced
                continue
            if 1 <= epoch < 6:
                os.killpg(run.pid, signal.SIGKILL)
                killed = epoch
        time.sleep(0.05)
    run.wait()
    assert killed is not None
    deadline = time.time() + 3  # the kernel kills them at once; training would take longer
    while survivors(repo) and time.time() < deadline:
        time.sleep(0.2)
    assert not survivors(repo), [p.info["cmdline"] for p in survivors(repo)]
    resumed = sh(repo, sys.executable, "-m", "dvc", "repro",
                 env={**ENV, "COMPONENTX_LOG": "INFO"})
    assert "resuming from models/.resume/sequence/last.pt after epoch" in (
        resumed.stdout + resumed.stderr)
    metrics, fitted = repo / "metrics/candidates/sequence.json", repo / "models/candidates/sequence"
    interrupted = metrics.read_text()
    history = json.loads((fitted / "sequence.json").read_text())["history"]
    dvc(repo, "repro", "-f", "-s", "fit_sequence")  # from scratch, uninterrupted
    dvc(repo, "repro")
    assert metrics.read_text() == interrupted
    assert json.loads((fitted / "sequence.json").read_text())["history"] == history


def lightgbm_task(rows: int = 4000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Four classes decided by two features and a category, with noise."""
    rng = np.random.default_rng(seed)
    x = pd.DataFrame({"a": rng.normal(size=rows), "b": rng.normal(size=rows),
                      "s": rng.integers(0, 3, rows)})
    score = x["a"] + 0.5 * x["b"] + 0.3 * x["s"] + rng.normal(0, 0.5, rows)
    return x, np.digitize(score, [-0.5, 0.5, 1.2]).astype(np.int64)


@pytest.mark.parametrize("workers", [1, 2])
def test_lightgbm_on_the_cluster_fits_as_in_this_process(workers):
    """LightGBM's Dask interface on a LocalCluster against the fit in this process, with the
    same rows and the same rule for the iteration: the same predictions with one worker; with
    two (each bins features on its share), stated tolerance: test accuracy within 0.03 and
    mean absolute probability difference under 0.05."""
    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    from componentx.decisions.metrics import OFFICIAL_COST
    from componentx.decisions.priors import class_priors
    from componentx.gbdt.model import (
        fit_lightgbm_on_cluster,
        fit_tuned_trees,
        staged_confusions,
    )

    (x, y), (val_x, val_y), (test_x, test_y) = (lightgbm_task(seed=s) for s in range(3))
    cost = np.array(OFFICIAL_COST, dtype=float)[:4, :4]
    priors = np.bincount(y, minlength=4) / len(y)
    settings = {"library": "lightgbm", "max_iter": 60, "patience": 60, "learning_rate": 0.1,
                "max_leaf_nodes": 15, "min_samples_leaf": 20, "l2_regularization": 0.0,
                "seed": 0}
    local = fit_tuned_trees(x, y, None, val_x, val_y, priors, cost, ["s"], settings)
    frame = x.assign(label=y.astype(float), weight=1.0)
    with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        parts = dd.from_pandas(frame, npartitions=2)
        fitted = fit_lightgbm_on_cluster(
            client, parts, lambda trees: staged_confusions(
                trees, val_x, val_y, priors, class_priors(val_y, 4), cost),
            cost, ["s"], settings)
    ours, theirs = fitted.probabilities(test_x, 4), local.probabilities(test_x, 4)
    if workers == 1:
        assert fitted.iterations == local.iterations and np.array_equal(ours, theirs)
    else:
        accuracy = [(p.argmax(1) == test_y).mean() for p in (ours, theirs)]
        assert abs(accuracy[0] - accuracy[1]) <= 0.03 and accuracy[1] > 0.6
        assert np.abs(ours - theirs).mean() < 0.05
