"""The candidate interface and its registry: a candidate of one's own, in one module, flows
unchanged through fit, cross-validation, the gate, export, `componentx predict`, the fleet
view, the model card and `componentx compare`; unknown candidates are clear errors."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ENV, ROOT, TINY, commit, dvc, make_repo, sh, stages_run

from componentx.candidates import registry
from componentx.errors import BundleError, ParamsError, UserError
from componentx.serving.bundle import read_meta

TOY = ROOT / "tests" / "data" / "toy_candidate.py"


@pytest.fixture
def toy_registered(monkeypatch):
    """The toy module importable and named in COMPONENTX_CANDIDATES, for this test."""
    monkeypatch.syspath_prepend(str(TOY.parent))
    monkeypatch.setenv(registry.PLUGINS_VARIABLE, "toy_candidate")
    yield
    registry._registered.pop("toy", None)
    registry._plugins_loaded.discard("toy_candidate")


def test_an_unknown_candidate_is_one_clear_error(monkeypatch):
    with pytest.raises(UserError, match=r"no candidate named 'xgb' is registered \(known: gbdt, "
                                        r"multirocket, rocket, sequence\)"):
        registry.registration("xgb")
    with pytest.raises(ParamsError, match="gate.candidates: no candidate named 'xgb'"):
        registry.chosen({"gate": {"candidates": ["gbdt", "xgb"]}})
    monkeypatch.setenv(registry.PLUGINS_VARIABLE, "no_such_module")
    with pytest.raises(UserError, match="COMPONENTX_CANDIDATES names 'no_such_module', which "
                                        "cannot be imported"):
        registry.registered()


def test_a_candidate_of_one_s_own_is_registered_with_its_params(toy_registered):
    assert registry.registration("toy").title == "nearest centroid"
    assert registry.candidate_class("toy").__name__ == "NearestCentroid"
    params = {"gate": {"candidates": ["gbdt", "toy"]}, "toy": {"temperature": 0}}
    with pytest.raises(ParamsError, match="toy.temperature must be a number > 0, got 0"):
        registry.chosen(params)
    params["toy"]["temperature"] = 2.0
    assert [r.name for r in registry.chosen(params)] == ["gbdt", "toy"]


def test_a_bundle_of_an_unregistered_candidate_is_refused(tmp_path):
    (tmp_path / "bundle.json").write_text(json.dumps({"format": 4, "kind": "toy"}))
    with pytest.raises(BundleError, match="its candidate 'toy' is not registered here"):
        read_meta(tmp_path)


def toy_project(path: Path) -> tuple[Path, dict]:
    """A project whose gate has a fourth candidate, the toy: its module beside the package,
    its params section, its name in gate.candidates and a fit stage; and the environment that
    names it."""
    repo = make_repo(path, TINY)
    shutil.copy(TOY, repo / "src" / TOY.name)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["gate"]["candidates"].append("toy")
    params["toy"] = {"temperature": 1.0}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
    stage = json.loads(json.dumps(pipeline["stages"]["fit_rocket"]).replace("rocket", "toy"))
    stage["deps"] = [d.replace("src/componentx/toy", "src/toy_candidate.py")
                     for d in stage["deps"]]
    pipeline["stages"]["fit_toy"] = stage
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    commit(repo, "a fourth candidate")
    return repo, {**ENV, registry.PLUGINS_VARIABLE: "toy_candidate",
                  "PYTHONPATH": str(repo / "src")}


def predicted(repo: Path, env: dict, bundle: str, out: Path) -> pd.DataFrame:
    """`componentx predict` of the test readouts (the synthetic fleet's CSV files) by
    ``bundle``."""
    raw = repo / "synthetic-csv"
    if not raw.exists():
        syn = TINY["synthetic"]
        sh(repo, sys.executable, "-m", "componentx", "synthetic", "--out", str(raw),
           "--n-train", str(syn["n_train"]), "--n-validation", str(syn["n_validation"]),
           "--n-test", str(syn["n_test"]), env=env)
    sh(repo, sys.executable, "-m", "componentx", "predict", "--bundle", bundle, "--readouts",
       str(raw / "test_operational_readouts.csv"), "--specifications",
       str(raw / "test_specifications.csv"), "--out", str(out), env=env)
    return pd.read_csv(out)


def same_decisions(ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    probs = [c for c in theirs.columns if c.startswith("prob_")]
    assert ours["vehicle_id"].tolist() == theirs["vehicle_id"].tolist()
    assert np.abs(ours[probs].to_numpy() - theirs[probs].to_numpy()).max() <= 1e-9
    assert (ours["decision"].to_numpy() == theirs["predicted"].to_numpy()).all()


@pytest.mark.e2e
@pytest.mark.slow
def test_a_toy_candidate_flows_through_the_whole_pipeline(tmp_path):
    repo, env = toy_project(tmp_path / "project")
    assert "fit_toy" in stages_run(dvc(repo, "repro", env=env).stdout)
    report = json.loads((repo / "metrics/candidates/toy.json").read_text())
    assert report["selection"]["mode"] == "validation"
    assert report["validation"]["cost_always_0"] > 0 and 0 <= report["test"]["accuracy"] <= 1
    gate = json.loads((repo / "metrics/gate.json").read_text())
    assert {row["name"] for row in gate["candidates"]} == {"gbdt", "rocket", "multirocket",
                                                           "sequence", "toy"}
    assert "| nearest centroid | validation |" in (repo / "metrics/comparison.md").read_text()
    bundle = repo / "models/bundles/toy"
    meta = json.loads((bundle / "bundle.json").read_text())
    assert meta["kind"] == "toy" and {"toy.npz", "toy.json", "fit.json"} <= set(meta["files"])
    card = (bundle / "model_card.md").read_text()
    assert "nearest class centroid of a window's mean readouts" in card
    assert f"validation {report['validation']['cost_total']:,.0f}" in card
    fleet = json.loads((repo / "metrics/fleet.json").read_text())
    assert fleet["toy"]["repairs"] == fleet["repairs"]
    assert "risk_toy" in pd.read_parquet(repo / "data/fleet/trajectories.parquet")
    same_decisions(predicted(repo, env, "models/bundles/toy", tmp_path / "toy.csv"),
                   pd.read_parquet(repo / "data/predictions/toy/test.parquet"))
    commit(repo, "four candidates")

    # Cross-validated, the toy alone in the gate: it ships, and its bundle scores as its
    # stage did; compare finds it in both runs.
    run = dvc(repo, "exp", "run", "-n", "toy-cv", "-S", "selection.cross_validate_below=100000",
              "-S", "gate.candidates=[toy]", env=env)
    assert "fit_toy" in stages_run(run.stdout)
    gate = json.loads((repo / "metrics/gate.json").read_text())
    assert gate["selection"]["mode"] == "cross_validation" and gate["ship"] == "toy"
    assert json.loads((repo / "models/bundle/bundle.json").read_text())["kind"] == "toy"
    cross_validated = json.loads((repo / "metrics/candidates/toy.json").read_text())
    assert cross_validated["selection"]["folds"] == 5
    assert cross_validated["validation"]["cost_total"] != report["validation"]["cost_total"]
    same_decisions(predicted(repo, env, "models/bundle", tmp_path / "shipped.csv"),
                   pd.read_parquet(repo / "data/predictions/toy/test.parquet"))
    assert "has no attributions" in sh(repo, sys.executable, "-m", "dvc", "repro", "-f", "-s",
                                       "explain", env={**env, "COMPONENTX_LOG": "INFO"}).stderr
    table = sh(repo, sys.executable, "-m", "componentx", "compare", "--candidate", "toy",
               env=env).stdout
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()
            if line.startswith("| ") and "experiment" not in line and "---" not in line}
    assert set(rows) == {"HEAD", "toy-cv"} and all("| toy |" in row for row in rows.values())
    assert f"{cross_validated['validation']['cost_total']:,.0f}" in rows["toy-cv"]


@pytest.fixture(scope="module")
def small_project(tmp_path_factory) -> Path:
    """A tiny project whose data stages ran, its windows few enough to cross-validate."""
    repo = make_repo(tmp_path_factory.mktemp("folds") / "project",
                     {**TINY, "selection": {"cross_validate_below": 100_000}})
    dvc(repo, "repro", "pretrain")
    return repo


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("name", [r.name for r in registry.BUILTIN])
def test_a_held_fold_s_labels_never_reach_its_out_of_fold_logits(small_project, monkeypatch,
                                                                  name):
    """Every candidate through the one path: the fold models fitted with the held fold's
    labels permuted give the very same out-of-fold logits, and a fold ensemble scores the
    mean of its members, before and after saving."""
    from componentx.candidates.folders import CandidateFolders
    from componentx.candidates.interface import FoldEnsemble, PipelineData
    from componentx.candidates.phase import ModelPhase, score
    from componentx.decisions.selection import plan_selection

    monkeypatch.chdir(small_project)
    params = yaml.safe_load((small_project / "params.yaml").read_text())
    data = PipelineData(params["window"]["size"])
    selection = plan_selection(data.windows, params["selection"])
    assert selection.cross_validated
    windows = data.labelled(selection.splits)
    _, fitted_on, held = next(iter(selection.split_folds()))
    phase = ModelPhase(name, params, data, CandidateFolders(), live=False)
    model = phase.fit_tuned_inside(windows.subset(fitted_on), "fold0")
    logits = score(model, windows.subset(held), "cpu")
    labels = windows.index["class_label"].to_numpy().copy()
    shuffled = labels.copy()
    shuffled[held] = np.random.default_rng(0).permutation(labels[held])
    assert (shuffled[held] != labels[held]).any()
    permuted = type(windows)(data, windows.index.assign(class_label=shuffled))
    again = phase.fit_tuned_inside(permuted.subset(fitted_on), "fold0")
    np.testing.assert_array_equal(score(again, permuted.subset(held), "cpu"), logits)

    ensemble = FoldEnsemble([model, again])
    np.testing.assert_allclose(score(ensemble, windows.subset(held), "cpu"), logits)
    folder = small_project / "ensemble" / name
    folder.mkdir(parents=True)
    ensemble.save(folder)
    loaded = registry.load_candidate(name, folder)
    np.testing.assert_allclose(score(loaded, windows.subset(held), "cpu"), logits, atol=1e-5)


@pytest.mark.e2e
@pytest.mark.slow
def test_a_candidate_that_declines_its_data_is_left_out_and_says_why(small_project,
                                                                     monkeypatch, tmp_path):
    from componentx.candidates.folders import CandidateFolders
    from componentx.candidates.interface import PipelineData
    from componentx.candidates.phase import fit_candidate

    monkeypatch.chdir(small_project)
    params = yaml.safe_load((small_project / "params.yaml").read_text())
    params["multirocket"]["max_windows"] = 10
    folders = CandidateFolders(models=tmp_path / "models", logits=tmp_path / "logits")
    fit_candidate("multirocket", params, PipelineData(params["window"]["size"]), folders)
    report = folders.fit_report("multirocket")
    assert "more than multirocket.max_windows (10)" in report["declined"]
    assert report["selection"]["mode"] == "cross_validation"
    params["gate"]["candidates"] = ["multirocket"]
    fitted, declined = folders.fitted(params)
    assert fitted == [] and set(declined) == {"multirocket"}


@pytest.mark.e2e
@pytest.mark.slow
def test_cross_validated_a_fit_that_tunes_nothing_ships_its_refit_one_that_tunes_its_folds(
        small_project, monkeypatch, tmp_path):
    """MiniRocket (tunes nothing): out-of-fold logits from the fold models, the test logits
    from the same fit on every selection window; the GBDT (tunes): its fold models."""
    from componentx.candidates.folders import CandidateFolders
    from componentx.candidates.interface import FoldEnsemble, PipelineData
    from componentx.candidates.phase import ModelPhase, fit_candidate, score
    from componentx.decisions.selection import plan_selection

    monkeypatch.chdir(small_project)
    params = yaml.safe_load((small_project / "params.yaml").read_text())
    data = PipelineData(params["window"]["size"])
    selection = plan_selection(data.windows, params["selection"])
    folders = CandidateFolders(models=tmp_path / "models", logits=tmp_path / "logits",
                               resume=tmp_path / "resume")
    for name, fitted_as in (("rocket", "refit"), ("gbdt", "folds")):
        fit_candidate(name, params, data, folders)
        assert folders.fit_report(name)["fitted_as"] == fitted_as
        ensemble = (folders.models / name / FoldEnsemble.META).is_file()
        assert ensemble == (fitted_as == "folds")
    with np.load(folders.logits / "rocket.npz") as saved:
        selection_logits, test_logits = saved["selection"], saved["test"]
    phase = ModelPhase("rocket", params, data, folders, live=False)
    windows = data.labelled(selection.splits)
    refit = phase.fit(windows, None, "again")
    np.testing.assert_allclose(score(refit, data.labelled("test"), "cpu"), test_logits)
    _, fitted_on, held = next(iter(selection.split_folds()))
    fold = phase.fit(windows.subset(fitted_on), None, "fold")
    np.testing.assert_allclose(score(fold, windows.subset(held), "cpu"),
                               selection_logits[held])


@pytest.mark.e2e
@pytest.mark.slow
def test_cross_validated_the_sequence_model_fits_its_folds_in_two_processes(tmp_path):
    """``train.nproc: 2`` with cross-validation: every fold trained under torchrun, the main
    process ships the fold models (the other process has none to ensemble)."""
    repo = make_repo(tmp_path / "project", {
        **TINY, "selection": {"cross_validate_below": 100_000}, "train": {
            **TINY["train"], "nproc": 2, "epochs": 1}})
    dvc(repo, "repro", "fit_sequence")
    report = json.loads((repo / "models/candidates/sequence/fit.json").read_text())
    assert report["fitted_as"] == "folds" and report["selection"]["mode"] == "cross_validation"
    ensemble = json.loads((repo / "models/candidates/sequence/ensemble.json").read_text())
    assert ensemble["members"] == report["selection"]["folds"]
