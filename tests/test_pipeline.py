"""End to end through the real DVC CLI, in a temporary git repository with tiny sizes."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ENV, TINY, commit, dvc, make_repo, set_params, sh, stages_run

from componentx.candidates.registry import BUILTIN
from componentx.data import synthetic
from componentx.data.labels import class_from_ttf

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
AFTER_FIT = {"evaluate", "gate", "explain", "fleet", "export"}  # every candidate's outputs

@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    path = make_repo(tmp_path_factory.mktemp("e2e") / "project", TINY)
    first = dvc(path, "repro")
    assert stages_run(first.stdout) == {"ingest", "labels", "windowing", "stats", "inputs",
                                        "pretrain", "fit_gbdt", "fit_rocket",
                                        "fit_multirocket", "fit_sequence", "evaluate", "gate",
                                        "explain", "fleet", "export", "plots_page"}
    commit(path, "first run")
    return path


def test_repro_builds_everything_and_then_does_nothing(repo):
    report = json.loads((repo / "metrics/candidates/sequence.json").read_text())
    for split in ("validation", "test"):
        assert report[split]["cost_always_0"] > 0
        for rule in ("argmax", "expected_cost"):
            assert "cost_total_ci" in report[split][rule]
    assert (repo / "models/candidates/sequence/model.onnx").exists()
    assert not (repo / "models/.resume/sequence").exists()  # a finished fit keeps no work
    reports = {c.name: json.loads((repo / f"metrics/candidates/{c.name}.json").read_text())
               for c in BUILTIN}
    for split in ("validation", "test"):  # same shape: dvc metrics show puts them side by side
        assert all(set(r[split]) == set(report[split]) for r in reports.values())
    assert all(r["selection"]["mode"] == "validation" for r in reports.values())
    comparison = (repo / "metrics/comparison.md").read_text()
    assert all(f"| {c.title} |" in comparison for c in BUILTIN)
    gate = json.loads((repo / "metrics/gate.json").read_text())
    assert gate["split"] == "validation" and gate["reference"] is None
    cost = np.array(yaml.safe_load((repo / "params.yaml").read_text())["evaluate"]
                    ["cost_matrix"], dtype=float)
    ranked = {row["name"]: row for row in gate["candidates"]}
    assert set(ranked) == {c.name for c in BUILTIN} and gate["chosen"] == gate["ship"]
    for candidate in BUILTIN:  # each ranked on its own validation decisions
        frame = pd.read_parquet(repo / "data/predictions" / candidate.name / "validation.parquet")
        spent = cost[frame["class_label"], frame["predicted"]].sum()
        assert ranked[candidate.name]["cost_total"] == pytest.approx(spent)
    assert gate["candidates"][0]["name"] == gate["chosen"]
    # the shipped block is the shipped candidate's own metrics file's, key for key
    assert gate["shipped"]["name"] == gate["ship"]
    for split in ("validation", "test"):
        assert set(gate["shipped"][split]) == set(report[split])
        assert gate["shipped"][split]["cost_total"] == pytest.approx(
            reports[gate["ship"]][split]["cost_total"])
    shipped = json.loads((repo / "models/bundle/bundle.json").read_text())["kind"]
    assert shipped == gate["ship"]
    predictions = pd.read_parquet(repo / "data/predictions/sequence/test.parquet")
    assert len(predictions) == 80
    again = dvc(repo, "repro")
    assert stages_run(again.stdout) == set()
    status = dvc(repo, "status")
    assert "up to date" in status.stdout


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"train": {"lr": 0.004}}, {"fit_sequence", *AFTER_FIT}),
    ({"features": {"transform": "increments"}},
     {"stats", "inputs", "pretrain", "fit_sequence", "fit_rocket", "fit_multirocket",
      *AFTER_FIT}),
    ({"gbdt": {"k": 3}}, {"fit_gbdt", *AFTER_FIT}),
    ({"rocket": {"seed": 1}}, {"fit_rocket", *AFTER_FIT}),
    ({"evaluate": {"calibration": "bias_temperature"}}, AFTER_FIT),
    ({"gate": {"ece_tolerance": 0.5}}, {"gate", "export"}),  # the fleet view reads no verdict
    ({"fleet": {"target_fa": 2}}, {"export", "fleet"}),  # export records every param
])
def test_a_param_reruns_only_the_stages_that_read_it(repo, overrides, expected):
    set_params(repo, overrides)
    try:
        assert stages_run(dvc(repo, "repro").stdout) == expected
    finally:
        sh(repo, "git", "checkout", "--", "params.yaml")
        dvc(repo, "repro")
    assert stages_run(dvc(repo, "repro").stdout) == set()


def test_the_fleet_holdout_is_seen_by_no_model_and_scored_by_both(repo):
    fleet = pd.read_parquet(repo / "data/labels/fleet")  # every bucket's file
    held = set(fleet["vehicle_id"])
    assert 0 < len(held) and fleet.groupby("vehicle_id")["repaired"].first().any()
    train_labels = pd.read_parquet(repo / "data/labels/train")
    assert held.isdisjoint(train_labels["vehicle_id"])  # no training labels
    train_rows = np.concatenate([np.load(f) for f in (repo / "data/windows/train").glob(
        "*.vehicle.npy")])
    assert held.isdisjoint(train_rows)  # no readouts in the train arrays ...
    stats = json.loads((repo / "data/stats.json").read_text())
    assert stats["count"][stats["names"].index("171_0")] == len(train_rows)  # ... nor in stats
    assert set(np.concatenate([np.load(f) for f in (repo / "data/windows/fleet").glob(
        "*.vehicle.npy")])) == held
    report = json.loads((repo / "metrics/fleet.json").read_text())
    assert report["available"] and report["vehicles"] == len(held)
    repaired = int(fleet.groupby("vehicle_id")["repaired"].first().sum())
    assert report["repairs"] == repaired
    for model in ("sequence", "gbdt", "rocket", "multirocket"):
        detected = report[model]["detection_rate"] * repaired
        assert detected == pytest.approx(round(detected))  # a count of detected repairs
        assert list(report[model]["sensitivity_at_false_alarms_per_1000"]) == [
            "10", "5", "2.5", "1"]
    trajectories = pd.read_parquet(repo / "data/fleet/trajectories.parquet")
    assert len(trajectories) == len(fleet) and trajectories["risk_sequence"].between(0, 1).all()
    shown = dvc(repo, "metrics", "show").stdout
    assert "metrics/fleet.json" in shown and "sequence.detection_rate" in shown


def test_experiments_metrics_diff_and_plots(repo):
    run = dvc(repo, "exp", "run", "-n", "faster", "-S", "train.lr=0.005")
    assert stages_run(run.stdout) == {"fit_sequence", *AFTER_FIT}
    shown = dvc(repo, "exp", "show", "--csv").stdout
    assert "faster" in shown and "0.005" in shown
    assert "test.expected_cost.cost_total" in shown
    changed = dvc(repo, "metrics", "diff").stdout
    assert "metrics/candidates/sequence.json" in changed and "validation.log_loss" in changed
    everything = dvc(repo, "metrics", "diff", "--all").stdout
    assert "test.expected_cost.cost_total" in everything
    out = repo / "plots_html"
    dvc(repo, "plots", "show", "-o", str(out))
    html = (out / "index.html").read_text()
    for plot in ("confusion_test", "pr_validation", "roc_test", "reliability_validation",
                 "cost_test", "loss", "learning_rate", "attributions.png", "fleet_detection",
                 "fleet_lead_times", "trajectories.png"):
        assert plot in html


def test_queued_experiments_both_finish(repo):
    sh(repo, "git", "checkout", "--", ".")
    for lr in ("0.0011", "0.0012"):
        dvc(repo, "exp", "run", "--queue", "-S", f"train.lr={lr}")
    dvc(repo, "queue", "start", "-j", "1")
    deadline = time.time() + 600
    while time.time() < deadline:
        status = dvc(repo, "queue", "status").stdout
        if not re.search(r"\b(Queued|Running)\b", status):
            break
        time.sleep(3)
    dvc(repo, "queue", "stop", check=False)
    assert "Failed" not in status, status
    assert status.count("Success") == 2, status
    shown = dvc(repo, "exp", "show", "--csv").stdout
    assert "0.0011" in shown and "0.0012" in shown


def labelled_dataset(folder: Path) -> None:
    """A tiny dataset shipping train_labels.csv instead of train_tte.csv."""
    synthetic.generate(folder, 150, 80, 80, seed=5, progress=False)
    tte = pd.read_csv(folder / "train_tte.csv")
    last = pd.read_csv(folder / "train_operational_readouts.csv",
                       usecols=["vehicle_id", "time_step"]).groupby("vehicle_id").max()
    ttf = tte["length_of_study_time_step"].to_numpy() - last.loc[tte["vehicle_id"]].to_numpy()[:, 0]
    classes = np.where(tte["in_study_repair"] == 1, class_from_ttf(ttf, [6, 12, 24, 48]), 0)
    pd.DataFrame({"vehicle_id": tte["vehicle_id"], "class_label": classes}).to_csv(
        folder / "train_labels.csv", index=False)
    (folder / "train_tte.csv").unlink()


def test_csv_dataset_with_train_labels(tmp_path):
    repo = make_repo(tmp_path / "csv_project", {**TINY, "data": {"source": "csv"}})
    labelled_dataset(repo / "data" / "raw")
    dvc(repo, "repro")
    labels = json.loads((repo / "metrics/labels.json").read_text())
    assert sum(labels["train"].values()) == 150  # one label per vehicle
    given = pd.read_csv(repo / "data/raw/test_labels.csv")["class_label"].to_numpy()
    report = json.loads((repo / "metrics/candidates/sequence.json").read_text())
    official = np.array(yaml.safe_load((repo / "params.yaml").read_text())["evaluate"]
                        ["cost_matrix"])
    assert report["test"]["cost_always_0"] == official[given, 0].sum()

    readouts = repo / "data/raw/validation_operational_readouts.csv"
    lines = readouts.read_text().splitlines()
    fields = lines[5].split(",")
    fields[3] = "oops"
    lines[5] = ",".join(fields)
    readouts.write_text("\n".join(lines) + "\n")
    failed = dvc(repo, "repro", check=False)
    assert failed.returncode != 0
    assert "validation_operational_readouts.csv, column '666_0', line 6" in failed.stderr
    assert not (repo / "data/ingested").exists()
    assert not list((repo / "data").glob(".ingested*"))


def test_sigkill_mid_epoch_then_repro_resumes_to_the_same_metrics(tmp_path):
    import psutil
    import torch

    overrides = {**TINY, "synthetic": {"n_train": 400, "n_validation": 80, "n_test": 80},
                 "train": {"epochs": 6, "batch_size": 16, "patience": 10, "monitor": "loss",
                           "min_steps": 0}}
    repo = make_repo(tmp_path / "killed", overrides)
    env = {**ENV, "COMPONENTX_LOG": "INFO"}
    process = subprocess.Popen([sys.executable, "-m", "dvc", "repro"], cwd=repo, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    last = repo / "models/.resume/sequence/last.pt"
    deadline = time.time() + 300
    killed = None
    while time.time() < deadline and process.poll() is None and killed is None:
        if last.exists():
            epoch = torch.load(last, weights_only=True)["state"]["epoch"]
            if 1 <= epoch < 6:
                for child in psutil.Process(process.pid).children(recursive=True):
                    if "stages/fit.py sequence" in " ".join(child.cmdline()):
                        child.kill()  # SIGKILL
                        killed = epoch
        time.sleep(0.05)
    output = process.communicate()[0]
    assert killed is not None, output
    assert process.returncode != 0
    resumed = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=repo, env=env,
                             capture_output=True, text=True)
    logs = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, logs
    assert f"resuming from {last.relative_to(repo)} after epoch {killed}" in logs
    metrics, fitted = repo / "metrics/candidates/sequence.json", repo / "models/candidates/sequence"
    interrupted_metrics = metrics.read_text()
    history = json.loads((fitted / "sequence.json").read_text())["history"]
    assert [h["epoch"] for h in history] == list(range(1, 7))
    assert not last.exists()  # the finished fit's work is gone

    dvc(repo, "repro", "-f", "-s", "fit_sequence")  # from scratch, uninterrupted
    dvc(repo, "repro")
    assert metrics.read_text() == interrupted_metrics
    assert json.loads((fitted / "sequence.json").read_text())["history"] == history


def test_two_processes_through_torchrun(repo):
    sh(repo, "git", "checkout", "--", ".")
    run = dvc(repo, "exp", "run", "-n", "two-procs", "-S", "train.nproc=2")
    assert "fit_sequence" in stages_run(run.stdout)
    fitted = json.loads((repo / "models/candidates/sequence/sequence.json").read_text())
    assert fitted["train_config"]["nproc"] == 2
    assert fitted["epochs"] == TINY["train"]["epochs"]
    assert json.loads((repo / "dvclive/sequence/metrics.json").read_text())["step"] == 1


def test_pretraining_then_fine_tuning_completes(repo):
    import torch

    sh(repo, "git", "checkout", "--", ".")
    run = dvc(repo, "exp", "run", "-n", "pretrained", "-S", "pretrain.epochs=1",
              "-S", "train.init=pretrained")
    assert {"pretrain", "fit_sequence"} <= stages_run(run.stdout)
    pretrained = torch.load(repo / "models/pretrained.pt", weights_only=True)
    assert pretrained["encoder"] is not None and len(pretrained["history"]) == 1
    fitted = json.loads((repo / "models/candidates/sequence/sequence.json").read_text())
    assert fitted["train_config"]["init"] == "pretrained"
    sh(repo, "git", "checkout", "--", ".")
    dvc(repo, "checkout", "--force")


def test_corrupt_checkpoint_is_one_clear_line(repo):
    sh(repo, "git", "checkout", "--", ".")
    work = repo / "models/.resume/sequence"
    work.mkdir(parents=True)
    (work / "last.pt").write_bytes(b"\x00 half-written")
    failed = dvc(repo, "repro", "-f", "-s", "fit_sequence", check=False)
    assert failed.returncode != 0
    assert "models/.resume/sequence/last.pt cannot be read" in failed.stderr
    assert "delete it" in failed.stderr and "Traceback" not in failed.stderr
    shutil.rmtree(work)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rest(url: str, payload: dict | None = None) -> dict:
    from urllib.request import Request, urlopen

    data = None if payload is None else json.dumps(payload).encode()
    request = Request(url, data=data, headers={"Content-Type": "application/json"})
    with urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_tracking_to_mlflow_served_as_the_readme_says_and_to_tensorboard(repo, tmp_path):
    """The run's metrics in the default local SQLite store, read back through the REST API of
    `mlflow ui` started with the README's command on loopback; TensorBoard's event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sh(repo, "git", "checkout", "--", ".")
    dvc(repo, "exp", "run", "-n", "tracked", "-S", "tracking.mlflow=true",
        "-S", "tracking.tensorboard=true")
    assert (repo / "mlflow.db").is_file()
    port = free_port()
    server = subprocess.Popen(["mlflow", "ui", "--backend-store-uri", "sqlite:///mlflow.db",
                               "--host", "127.0.0.1", "--port", str(port)], cwd=repo, env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    api = f"http://127.0.0.1:{port}/api/2.0/mlflow"
    try:
        deadline = time.time() + 120
        while True:
            try:
                experiment = rest(f"{api}/experiments/get-by-name?experiment_name=componentx")
                break
            except OSError:
                assert server.poll() is None and time.time() < deadline, "mlflow ui did not start"
                time.sleep(1)
        runs = rest(f"{api}/runs/search", {"experiment_ids": [
            experiment["experiment"]["experiment_id"]]})["runs"]
        names = sorted(run["info"]["run_name"] for run in runs)  # one per candidate
        assert [name.split("-")[2] for name in names] == ["gbdt", "multirocket", "rocket",
                                                          "sequence"]
        run = next(r for r in runs if "-sequence-" in r["info"]["run_name"])
        name = run["info"]["run_name"]  # fit opened it, evaluate found it again
        assert re.fullmatch(r"[0-9a-f]{8}-w8-sequence-[0-9a-f]{6}", name)
        params = {p["key"]: p["value"] for p in run["data"]["params"]}
        assert params["train.epochs"] == "2" and params["window.size"] == "8"
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        report = json.loads((repo / "metrics/candidates/sequence.json").read_text())
        assert metrics["test.cost_total"] == report["test"]["cost_total"]
        history = rest(f"{api}/metrics/get-history?run_id={run['info']['run_id']}"
                       "&metric_key=validation.loss")["metrics"]
        assert [m["step"] for m in history] == [1, 2]
        artifacts = {a["path"] for folder in ("evaluation", "checkpoints") for a in rest(
            f"{api}/artifacts/list?run_id={run['info']['run_id']}&path={folder}")["files"]}
        assert {"evaluation/summary_validation.png", "evaluation/sequence.json",
                "checkpoints/best.pt"} <= artifacts
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    events = EventAccumulator(str(repo / "tensorboard" / name))
    events.Reload()
    assert [e.step for e in events.Scalars("validation.loss")] == [1, 2]
    assert "test.cost_total" in events.Tags()["scalars"]
    ignored = sh(repo, "git", "status", "--porcelain").stdout
    assert "mlflow.db" not in ignored and "mlruns" not in ignored and "tensorboard" not in ignored


def test_plots_page_renders_offline_in_headless_chromium(repo, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    sh(repo, "git", "checkout", "--", ".")
    out = tmp_path / "plots"
    dvc(repo, "plots", "show", "-o", str(out))
    page = (out / "index.html").read_text()
    assert "cdn.jsdelivr" not in page and "<script src=" not in page
    dom = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--proxy-server=127.0.0.1:9",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=30000",
         "--dump-dom", (out / "index.html").as_uri()],
        capture_output=True, text=True, timeout=120).stdout
    for plot, mark in (("confusion_test", "mark-rect"), ("pr_test", "mark-line")):
        start = dom.index(f'id="{plot}"')
        end = dom.find("<div", start + 1)
        drawn = dom[start:end if end > 0 else None]
        geometry = "".join(re.findall(r'<path[^>]*\sd="([^"]*)"', drawn))
        assert "<svg" in drawn and f'class="{mark}' in drawn, plot
        assert len(geometry) > 200, (plot, drawn[:3000])
    pngs = tmp_path / "pngs"
    sh(repo, sys.executable, "-m", "componentx", "plots", "--out", str(pngs))
    for plot in ("confusion_test", "pr_validation", "loss", "plots_explain_attributions"):
        image = pngs / "png" / f"{plot}.png"
        assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and image.stat().st_size > 2000


def test_a_labelled_dataset_needs_no_windows_and_no_cost_matrix(tmp_path):
    """Three classes, train_labels.csv: num_classes inferred, zero_one costs, windows unused."""
    repo = make_repo(tmp_path / "three", {**TINY, "data": {"source": "csv"},
                                          "evaluate": {"bootstrap": 50,
                                                       "cost_matrix": "zero_one"}})
    folder = repo / "data" / "raw"
    labelled_dataset(folder)
    for split in ("train", "validation", "test"):
        labels = pd.read_csv(folder / f"{split}_labels.csv")
        labels["class_label"] = labels["class_label"].clip(upper=2)
        labels.to_csv(folder / f"{split}_labels.csv", index=False)
    run = dvc(repo, "repro", check=False)
    assert run.returncode == 0, run.stderr
    report = json.loads((repo / "metrics/candidates/sequence.json").read_text())
    assert set(report["test"]["per_class"]) == {"class_0", "class_1", "class_2"}
    given = pd.read_csv(folder / "test_labels.csv")["class_label"].to_numpy()
    assert report["test"]["cost_always_0"] == (given != 0).sum()  # zero_one: 1 per mistake


def synthetic_csv(repo: Path, folder: Path) -> Path:
    """The repo's synthetic fleet as the CSV files a user would score (componentx synthetic)."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    syn = params["synthetic"]
    sh(repo, sys.executable, "-m", "componentx", "synthetic", "--out", str(folder),
       "--n-train", str(syn["n_train"]), "--n-validation", str(syn["n_validation"]),
       "--n-test", str(syn["n_test"]), "--seed", str(syn["seed"]), "--signal", syn["signal"],
       "--strength", str(syn["strength"]),
       "--windows", *[str(w) for w in params["labels"]["windows"]])
    return folder


def test_risk_class_reaches_the_bundle_and_predict_reports_the_fleet_stage_risk(repo, tmp_path):
    sh(repo, "git", "checkout", "--", ".")
    dvc(repo, "exp", "run", "-n", "risk2", "-S", "fleet.risk_class=2")
    shipped = json.loads((repo / "models/bundle/bundle.json").read_text())
    assert shipped["risk_class"] == 2
    trajectories = pd.read_parquet(repo / "data/fleet/trajectories.parquet").sort_values(
        ["vehicle_id", "time"], kind="stable")  # a file per bucket, read in bucket order
    at = tmp_path / "at.csv"
    trajectories.rename(columns={"time": "time_step"})[["vehicle_id", "time_step"]].to_csv(
        at, index=False)
    fleet = synthetic_csv(repo, tmp_path / "fleet")
    out = tmp_path / "risk.csv"
    sh(repo, sys.executable, "-m", "componentx", "predict", "--bundle", "models/bundle",
       "--readouts", str(fleet / "train_operational_readouts.csv"), "--specifications",
       str(fleet / "train_specifications.csv"), "--at", str(at), "--out", str(out))
    ours = pd.read_csv(out)
    assert ours[["vehicle_id", "time_step"]].to_numpy().tolist() == \
        trajectories[["vehicle_id", "time"]].to_numpy().tolist()
    fleet_risk = trajectories[f"risk_{shipped['kind']}"].to_numpy()
    assert np.abs(ours["risk_failure_within_24"].to_numpy() - fleet_risk).max() <= 1e-6
    probs = ours[[f"prob_{c}" for c in range(5)]].to_numpy()
    assert np.allclose(ours["risk_failure_within_24"], probs[:, 2:].sum(axis=1))
    sh(repo, "git", "checkout", "--", ".")


def test_predict_reproduces_evaluate_and_the_artifact_is_registered(repo, tmp_path):
    sh(repo, "git", "checkout", "--", ".")
    dvc(repo, "checkout", "--force")  # the outputs of HEAD, which promote --version tags
    fleet = synthetic_csv(repo, tmp_path / "fleet")
    # the fit stage scored the test windows with each bundle's default engine (ONNX Runtime
    # for the sequence model): that one reproduces them, torch within the export's tolerance
    engines = {"sequence": {"onnx": 1e-6, "torch": 1e-4}, "gbdt": {"auto": 1e-6},
               "rocket": {"auto": 1e-6}, "multirocket": {"auto": 1e-6}}
    for candidate in BUILTIN:  # every kind of bundle reproduces its stage's test decisions
        kind = candidate.name
        theirs = pd.read_parquet(repo / "data/predictions" / kind / "test.parquet")
        for engine, tolerance in engines[kind].items():
            out = tmp_path / f"{kind}-{engine}.csv"
            sh(repo, sys.executable, "-m", "componentx", "predict", "--bundle",
               f"models/bundles/{kind}", "--readouts",
               str(fleet / "test_operational_readouts.csv"), "--specifications",
               str(fleet / "test_specifications.csv"), "--out", str(out), "--engine", engine)
            ours = pd.read_csv(out)
            assert ours["vehicle_id"].tolist() == theirs["vehicle_id"].tolist()
            probs = [f"prob_{c}" for c in range(5)]
            assert np.abs(ours[probs].to_numpy() - theirs[probs].to_numpy()).max() <= tolerance
            assert (ours["decision"].to_numpy() == theirs["predicted"].to_numpy()).all()
    shipped = json.loads((repo / "models/bundle/bundle.json").read_text())
    gate = json.loads((repo / "metrics/gate.json").read_text())
    assert shipped["shipped"]
    assert shipped["kind"] == gate["ship"]
    assert "Model card" in (repo / "models/bundle/model_card.md").read_text()
    sh(repo, sys.executable, "-m", "componentx", "promote", "--version", "v0.1.0",
       "--stage", "prod")
    assert json.loads((repo / "promoted/bundle.json").read_text()) == shipped
    for how in (["--rev", "v0.1.0"], ["--stage", "prod"]):
        out = tmp_path / f"artifact{how[0]}"
        dvc(repo, "artifacts", "get", str(repo), "componentx-model", *how, "-o", str(out))
        assert json.loads((out / "bundle.json").read_text()) == shipped
