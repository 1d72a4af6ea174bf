"""`componentx serve` as a fleet-management system and a reliability engineer use it: a real
server on loopback scoring what `componentx predict` scores, refusing bad requests with a 4xx
that names the problem, guarding any other address with a token, flagging drift, and a fleet
page opened in a real headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ENV, ROOT, TINY, dvc, make_repo, sh

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """`componentx serve` in its own process group, stopped at the end."""

    def __init__(self, repo: Path, *args: str, env: dict | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "componentx", "serve", "--port", str(self.port), *args],
            cwd=repo, env={**ENV, "COMPONENTX_LOG": "INFO", **(env or {})},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        deadline = time.time() + 120
        while True:
            try:
                if request(f"{self.url}/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert self.process.poll() is None, self.process.stdout.read()
            assert time.time() < deadline, "the server did not start"
            time.sleep(0.3)

    def fleet(self, token: str | None = None) -> dict:
        deadline = time.time() + 120
        while True:
            status, body = request(f"{self.url}/v1/fleet", token=token)
            if status == 200:
                return body
            assert time.time() < deadline, body
            time.sleep(0.5)

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(30)


def request(url: str, body: bytes | None = None, kind: str = "application/json",
            token: str | None = None, headers: dict | None = None) -> tuple[int, object]:
    """The status and the body (JSON where it is) of one request."""
    sent = {"Content-Type": kind, **({"Authorization": f"Bearer {token}"} if token else {}),
            **(headers or {})}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=sent),
                                    timeout=300) as response:
            status, data, content = response.status, response.read(), response.headers
    except urllib.error.HTTPError as error:
        status, data, content = error.code, error.read(), error.headers
    if content.get("content-type", "").startswith("application/json"):
        return status, json.loads(data)
    return status, data.decode()


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A pipeline run, and the test split as CSV files (its readouts with their
    specifications as columns too, the way the API takes them)."""
    repo = make_repo(tmp_path_factory.mktemp("serve") / "project", TINY)
    dvc(repo, "repro")
    raw = repo / "fleet-csv"
    syn = TINY["synthetic"]
    sh(repo, sys.executable, "-m", "componentx", "synthetic", "--out", str(raw), "--n-train",
       str(syn["n_train"]), "--n-validation", str(syn["n_validation"]), "--n-test",
       str(syn["n_test"]))
    readouts = pd.read_csv(raw / "test_operational_readouts.csv")
    specs = pd.read_csv(raw / "test_specifications.csv")
    readouts.merge(specs, on="vehicle_id").to_csv(raw / "test_with_specs.csv", index=False)
    folder = repo / "week"  # a folder of readouts for the page
    folder.mkdir()
    shutil.copy(raw / "test_operational_readouts.csv", folder / "readouts.csv")
    shutil.copy(raw / "test_specifications.csv", folder / "specifications.csv")
    return repo


@pytest.fixture(scope="module")
def server(project) -> Server:
    (project / "scratch").mkdir()  # its temporary files, to be seen
    running = Server(project, "--readouts", "week", env={"TMPDIR": str(project / "scratch")})
    yield running
    running.stop()


def vehicle_payload(project: Path, vehicle: int, scale: float = 1.0) -> dict:
    raw = project / "fleet-csv"
    readouts = pd.read_csv(raw / "test_operational_readouts.csv")
    specs = pd.read_csv(raw / "test_specifications.csv")
    rows = readouts[readouts["vehicle_id"] == vehicle].copy()
    features = [c for c in rows.columns if c not in ("vehicle_id", "time_step")]
    rows[features] = rows[features] * scale
    return {"readouts": json.loads(rows.to_json(orient="records")),
            "specifications": json.loads(specs[specs["vehicle_id"] == vehicle].to_json(
                orient="records"))}


def test_the_api_scores_what_predict_scores_for_every_test_vehicle(project, server, tmp_path):
    raw = project / "fleet-csv"
    out = tmp_path / "predicted.csv"
    sh(project, sys.executable, "-m", "componentx", "predict", "--bundle", "models/bundle",
       "--readouts", str(raw / "test_operational_readouts.csv"), "--specifications",
       str(raw / "test_specifications.csv"), "--out", str(out))
    predicted = pd.read_csv(out)
    body = (raw / "test_with_specs.csv").read_bytes()
    status, answer = request(f"{server.url}/v1/score", body, "text/csv")
    assert status == 200, answer
    # sent in chunks of unknown total length (Transfer-Encoding: chunked): the same answer
    pieces = (body[start:start + 4096] for start in range(0, len(body), 4096))
    assert request(f"{server.url}/v1/score", pieces, "text/csv") == (status, answer)
    served = answer["vehicles"]
    assert [v["vehicle_id"] for v in served] == predicted["vehicle_id"].tolist()
    probs = np.array([v["probabilities"] for v in served])
    columns = [c for c in predicted.columns if c.startswith("prob_")]
    assert np.abs(probs - predicted[columns].to_numpy()).max() <= 1e-6
    assert [v["decision"] for v in served] == predicted["decision"].tolist()
    risk = answer["risk"]
    assert np.abs(np.array([v["risk"] for v in served]) - predicted[risk]).max() <= 1e-6
    costs = [c for c in predicted.columns if c.startswith("expected_cost_")]
    assert np.abs(np.array([v["expected_cost"] for v in served])
                  - predicted[costs].to_numpy()).max() <= 1e-6
    # every test vehicle as JSON records: the same numbers
    readouts = pd.read_csv(raw / "test_operational_readouts.csv")
    specs = pd.read_csv(raw / "test_specifications.csv")
    status, records = request(f"{server.url}/v1/score", json.dumps(
        {"readouts": json.loads(readouts.to_json(orient="records")),
         "specifications": json.loads(specs.to_json(orient="records"))}).encode())
    assert status == 200, records
    as_json = records["vehicles"]
    assert [v["vehicle_id"] for v in as_json] == predicted["vehicle_id"].tolist()
    assert [v["decision"] for v in as_json] == predicted["decision"].tolist()
    assert np.abs(np.array([v["probabilities"] for v in as_json])
                  - predicted[columns].to_numpy()).max() <= 1e-6


def test_concurrent_requests_are_scored_together_and_as_each_alone(project, server):
    """A burst of one-vehicle requests, two of them for the same vehicle id with different
    readouts: each gets the answer it gets alone, and some were scored in one batch."""
    vehicles = pd.read_csv(project / "fleet-csv" / "test_specifications.csv")[
        "vehicle_id"].tolist()[:15]
    bodies = [json.dumps(vehicle_payload(project, v)).encode() for v in vehicles]
    bodies.append(json.dumps(vehicle_payload(project, vehicles[0], scale=1.5)).encode())
    alone = [request(f"{server.url}/v1/score", body)[1] for body in bodies]
    together: dict[int, object] = {}
    start = threading.Barrier(len(bodies))

    def send(i: int) -> None:
        start.wait()
        together[i] = request(f"{server.url}/v1/score", bodies[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, expected in enumerate(alone):
        status, answer = together[i]
        assert status == 200, answer
        got, want = answer["vehicles"][0], expected["vehicles"][0]
        assert got["vehicle_id"] == want["vehicle_id"] and got["decision"] == want["decision"]
        assert np.abs(np.subtract(got["probabilities"], want["probabilities"])).max() <= 1e-6
        assert answer["drift"] == expected["drift"]  # its own readouts' drift, none other's
    assert alone[0]["vehicles"][0]["probabilities"] != alone[-1]["vehicles"][0][
        "probabilities"]  # the same id, other readouts: another answer, kept apart
    metrics = request(f"{server.url}/metrics")[1]
    batches = {line.split(" ")[0]: float(line.split(" ")[1]) for line in metrics.splitlines()
               if line.startswith("componentx_score_batch_requests")}
    assert batches["componentx_score_batch_requests_count"] > batches[
        'componentx_score_batch_requests_bucket{le="1.0"}'], batches


def malformed(project: Path) -> list[tuple[str, bytes, str, int, str]]:
    """(name, body, content type, status, what the answer says)."""
    good = vehicle_payload(project, int(pd.read_csv(
        project / "fleet-csv" / "test_specifications.csv")["vehicle_id"].iloc[0]))

    def edited(change) -> bytes:
        payload = json.loads(json.dumps(good))
        change(payload)
        return json.dumps(payload).encode()

    feature = next(k for k in good["readouts"][0] if k not in ("vehicle_id", "time_step"))
    csv_body = (project / "fleet-csv" / "test_with_specs.csv").read_bytes()
    spec = next(k for k in good["specifications"][0] if k != "vehicle_id")
    return [
        ("bad JSON", b'{"readouts": [', "application/json", 400, "not JSON"),
        ("missing column", edited(lambda p: p["readouts"][1].pop(feature)),
         "application/json", 422, f"missing field '{feature}'"),
        ("extra column", edited(lambda p: p["readouts"][0].__setitem__("odd", 1)),
         "application/json", 422, "unexpected field 'odd'"),
        ("non-numeric value", edited(lambda p: p["readouts"][2].__setitem__(feature, "oops")),
         "application/json", 422, "value 'oops' is not a number"),
        ("infinity in JSON", edited(lambda p: p["readouts"][1].__setitem__(feature,
                                                                            float("inf"))),
         "application/json", 400, "not JSON"),
        ("infinite value in a CSV", csv_body.replace(b",0.0,", b",inf,", 1), "text/csv", 422,
         "infinite value inf is not allowed"),
        ("negative time", edited(lambda p: p["readouts"][0].__setitem__("time_step", -1)),
         "application/json", 422, "negative time_step"),
        ("duplicate readout", edited(lambda p: p["readouts"].append(p["readouts"][0])),
         "application/json", 422, "duplicate readout"),
        ("no specifications", edited(lambda p: p.pop("specifications")), "application/json",
         422, "uses the specifications"),
        ("a specification missing", edited(lambda p: p["specifications"][0].pop(spec)),
         "application/json", 422, f"missing field '{spec}'"),
        ("a vehicle id beyond 64 bits", edited(
            lambda p: p["specifications"][0].__setitem__("vehicle_id", 2**63)),
         "application/json", 422, "is not a 64-bit integer"),
        ("a specification that is an object", edited(
            lambda p: p["specifications"][0].__setitem__(spec, {"a": 1})),
         "application/json", 422, "is not text, a number or null"),
        ("specifications of another vehicle", edited(
            lambda p: p["specifications"].append({**p["specifications"][0],
                                                  "vehicle_id": 10**9})),
         "application/json", 422, "has specifications but no readouts"),
        ("not an object", b"[1, 2]", "application/json", 400, "expected a JSON object"),
        ("oversized JSON body", b"[" + b" " * (11 << 20) + b"]", "application/json", 413,
         "at most"),
        ("another content type", b"readouts", "text/plain", 415, "application/json or text/csv"),
        ("a CSV without its specifications", b"vehicle_id,time_step\n1,2\n", "text/csv", 422,
         "uses the specifications"),
    ]


def test_the_one_pass_parse_accepts_what_the_checks_accept_and_nothing_else():
    """A JSON body parsed and type-checked at once (TypedBody) gives the arrays the
    check-by-check parse gives, and refuses (for that parse to name the problem) every body
    the checks refuse: no bad value gets in by the fast way."""
    import msgspec
    import orjson

    from componentx.data.readouts import readout_records, readout_rows
    from componentx.errors import UserError
    from componentx.serving.server import READOUTS, typed_body

    features = ["171_0", "x y", "f0"]  # not identifiers; one named like the parser's own

    def body(*records: str, extra: str = "") -> bytes:
        return ('{"readouts": [' + ", ".join(records) + "]" + extra + "}").encode()

    def fast(raw: bytes) -> tuple:
        return readout_rows(*typed_body(tuple(features)).fields(raw)[:3], features, READOUTS)

    def checked(raw: bytes) -> tuple:  # the server's checks of the body's members first
        payload = orjson.loads(raw)
        if not isinstance(payload, dict) or set(payload) - {"readouts", "specifications"}:
            raise UserError("not an object of readouts and specifications")
        return readout_records(payload["readouts"], features, READOUTS)

    good = [body('{"vehicle_id": 2, "time_step": 1, "171_0": 1, "x y": null, "f0": 2.5}',
                 '{"f0": -0.0, "171_0": 1e3, "x y": 7, "time_step": 0.5, "vehicle_id": 2}',
                 '{"vehicle_id": 1, "time_step": 3, "171_0": 1, "171_0": 4, "x y": 1, '
                 '"f0": 0}', extra=', "specifications": null')]
    for raw in good:
        for got, want in zip(fast(raw), checked(raw), strict=True):
            np.testing.assert_array_equal(got, want)
            assert got.dtype == want.dtype
    bad = [body('{"vehicle_id": true, "time_step": 1, "171_0": 1, "x y": 1, "f0": 1}'),
           body('{"vehicle_id": 1.0, "time_step": 1, "171_0": 1, "x y": 1, "f0": 1}'),
           body('{"vehicle_id": 1, "time_step": false, "171_0": 1, "x y": 1, "f0": 1}'),
           body('{"vehicle_id": 1, "time_step": 1, "171_0": "1", "x y": 1, "f0": 1}'),
           body('{"vehicle_id": 1, "time_step": 1, "171_0": true, "x y": 1, "f0": 1}'),
           body('{"vehicle_id": 1, "time_step": 1, "171_0": [1], "x y": 1, "f0": 1}'),
           body('{"vehicle_id": 1, "time_step": 1, "171_0": 1, "x y": 1}'),
           body('{"vehicle_id": 1, "time_step": 1, "171_0": 1, "x y": 1, "f0": 1, "f1": 1}'),
           body('{"vehicle_id": 1, "time_step": -1, "171_0": 1, "x y": 1, "f0": 1}'),
           body('{"vehicle_id": 99999999999999999999, "time_step": 1, "171_0": 1, "x y": 1, '
                '"f0": 1}'),
           body('{"vehicle_id": 1, "time_step": 1, "171_0": 1, "x y": 1, "f0": 1}',
                '{"vehicle_id": 1, "time_step": 1, "171_0": 1, "x y": 1, "f0": 1}'),
           body(), body('{"vehicle_id": 1, "time_step": 1, "171_0": 1, "x y": 1, "f0": 1}',
                        extra=', "other": 1'), b'[]', b'{"readouts": 1}', b'{"readouts": [1]}']
    # specifications as the checks have them (orjson's numbers); too deep: refused
    one = '{"vehicle_id": 1, "time_step": 1, "171_0": 1, "x y": 1, "f0": 1}'
    raw = body(one, extra=', "specifications": [{"vehicle_id": 1, "s": 1234567890123456789012}]')
    assert typed_body(tuple(features)).fields(raw)[3] == orjson.loads(raw)["specifications"]
    with pytest.raises((msgspec.DecodeError, orjson.JSONDecodeError, RecursionError)):
        typed_body(tuple(features)).fields(body(one, extra=', "specifications": '
                                                 + "[" * 1100 + "]" * 1100))
    for raw in bad:
        with pytest.raises((msgspec.DecodeError, UserError)):
            fast(raw)
        with pytest.raises((UserError, KeyError)):
            checked(raw)


def test_malformed_requests_get_a_4xx_naming_the_problem_and_the_server_goes_on(project,
                                                                                 server):
    cases = malformed(project)
    assert len(cases) >= 16
    for name, body, kind, status, says in cases:
        got, answer = request(f"{server.url}/v1/score", body, kind)
        assert got == status, (name, got, answer)
        assert says in answer["error"], (name, answer)
        if got == 422 and "row" in answer and answer["row"] is not None \
                and name not in ("specifications of another vehicle",):
            assert answer.get("field"), (name, answer)
    # the row and the vehicle of a bad value are named, in JSON and in a CSV body
    bad = cases[3][1]
    got, answer = request(f"{server.url}/v1/score", bad)
    assert answer["row"] == 2 and answer["vehicle_id"] == json.loads(bad)["readouts"][2][
        "vehicle_id"]
    got, answer = request(f"{server.url}/v1/score", next(c[1] for c in cases
                                                         if c[0] == "infinite value in a CSV"),
                          "text/csv")
    lines = (project / "fleet-csv" / "test_with_specs.csv").read_text().splitlines()
    assert answer["row"] >= 2 and answer["vehicle_id"] == int(lines[answer["row"] - 1]
                                                              .split(",")[0])
    # a page of another site (DNS rebinding) does not reach an unguarded server
    got, answer = request(f"{server.url}/v1/fleet", headers={"Host": "evil.example"})
    assert got == 421 and "evil.example" in answer["error"]
    for path, status in (("/vehicles/999999999", 404), ("/static/../../etc/passwd", 404),
                         ("/vehicles/..%2f..%2fetc%2fpasswd", 404), ("/nowhere", 404),
                         ("/?page=x", 400)):
        assert request(f"{server.url}{path}")[0] == status, path
    # a client that stops in the middle of its CSV body, after its first blocks were handed
    # on to be scored: nothing left behind, still serving
    body = csv_body(project)
    rows = body[body.index(b"\n") + 1:]
    body += rows * (20 * 2**20 // len(rows))  # over the 16 MB a block holds
    scratch = project / "scratch"
    with socket.create_connection(("127.0.0.1", server.port)) as sending:
        sending.sendall(b"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/csv"
                        b"\r\nContent-Length: %d\r\n\r\n" % (2 * len(body)) + body)
        deadline = time.time() + 30
        while not list(scratch.glob("componentx-score-*/tmp*")):  # scoring's own folder
            assert time.time() < deadline, "the body's first blocks were not scored"
            time.sleep(0.05)
    deadline = time.time() + 30
    while list(scratch.glob("componentx-score-*")):
        assert time.time() < deadline, "the cut body's temporary files stay"
        time.sleep(0.2)
    assert request(f"{server.url}/healthz")[0] == 200


def csv_body(project: Path) -> bytes:
    return (project / "fleet-csv" / "test_with_specs.csv").read_bytes()


def test_drift_is_flagged_on_a_shifted_sample_and_not_on_the_test_split(project, server):
    raw = project / "fleet-csv"
    status, plain = request(f"{server.url}/v1/score",
                            (raw / "test_with_specs.csv").read_bytes(), "text/csv")
    assert status == 200 and plain["drift"]["flagged"] == [], plain["drift"]
    shifted = pd.read_csv(raw / "test_with_specs.csv")
    features = [c for c in shifted.columns if c[0].isdigit()]
    shifted[features[:5]] = shifted[features[:5]] * 3 + 100
    status, moved = request(f"{server.url}/v1/score", shifted.to_csv(index=False).encode(),
                            "text/csv")
    assert status == 200
    assert set(features[:5]) <= set(moved["drift"]["flagged"]), moved["drift"]["psi"]
    assert not set(moved["drift"]["flagged"]) - set(features[:5])


def test_healthz_answers_while_a_whole_fleet_request_scores(project, server):
    body = (project / "fleet-csv" / "test_with_specs.csv").read_bytes() * 1
    done = {}
    worker = threading.Thread(target=lambda: done.update(
        answer=request(f"{server.url}/v1/score", body, "text/csv")))
    worker.start()
    latencies = []
    while worker.is_alive():
        start = time.perf_counter()
        assert request(f"{server.url}/healthz")[0] == 200
        latencies.append(time.perf_counter() - start)
        time.sleep(0.05)
    worker.join()
    assert done["answer"][0] == 200 and latencies and max(latencies) < 1.0
    metrics = request(f"{server.url}/metrics")[1]
    assert 'componentx_requests_total{method="POST",route="/v1/score",status="200"}' in metrics
    assert "componentx_request_seconds_bucket" in metrics


def test_any_other_address_needs_a_token(project):
    refused = subprocess.run([sys.executable, "-m", "componentx", "serve", "--host", "0.0.0.0",
                              "--port", str(free_port())], cwd=project, env=ENV,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1
    assert "not a loopback address: give a token" in refused.stderr
    guarded = Server(project, "--readouts", "week", "--host", "0.0.0.0",
                     env={"COMPONENTX_TOKEN": "s3cret"})
    try:
        url = guarded.url
        assert request(f"{url}/v1/fleet")[0] == 401
        assert request(f"{url}/v1/fleet", token="wrong")[0] == 401
        assert request(f"{url}/")[0] == 401
        assert request(f"{url}/metrics")[0] == 401
        assert request(f"{url}/healthz")[0] == 200
        assert guarded.fleet(token="s3cret")["vehicles"] > 0
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        with opener.open(f"{url}/login") as response:  # the form
            assert 'name="token"' in response.read().decode()
        with pytest.raises(urllib.error.HTTPError, match="401"):
            opener.open(f"{url}/login", data=b"token=wrong")
        with opener.open(f"{url}/login", data=b"token=s3cret") as response:  # the cookie
            assert response.status == 200 and "vehicles" in response.read().decode()
        with opener.open(f"{url}/model") as response:
            assert "Model card" in response.read().decode()
    finally:
        guarded.stop()


def test_the_bundle_is_reloaded_when_exported_anew(project, tmp_path):
    served = tmp_path / "bundle"
    shutil.copytree(project / "models/bundles/gbdt", served)
    running = Server(project, "--bundle", str(served))  # the pipeline's fleet holdout
    try:
        assert request(f"{running.url}/healthz")[1]["model"] == "gbdt"
        holdout = pd.read_parquet(project / "data" / "fleet" / "trajectories.parquet")
        fleet = running.fleet()
        assert fleet["vehicles"] == holdout["vehicle_id"].nunique()
        vehicle = fleet["rows"][0]["vehicle_id"]
        page = request(f"{running.url}/vehicles/{vehicle}")[1]
        assert '<table id="features">' in page  # the GBDT's contributions
        replacement = tmp_path / ".bundle.new"
        shutil.copytree(project / "models/bundles/rocket", replacement)
        old = tmp_path / ".bundle.old"
        served.rename(old)
        replacement.rename(served)  # as export and promote replace a folder
        assert request(f"{running.url}/v1/fleet")[0] == 200  # the reload, then the rescoring
        health = request(f"{running.url}/healthz")[1]
        assert health["model"] == "rocket" and health["bundle_loads"] == 2
        deadline = time.time() + 120
        while "has no per-input attributions" not in request(
                f"{running.url}/vehicles/{vehicle}")[1]:
            assert time.time() < deadline, "the fleet was not rescored with the new bundle"
            time.sleep(0.5)
    finally:
        running.stop()


def test_the_fleet_page_in_headless_chromium(project, server, tmp_path):
    """A reliability engineer's visit: the riskiest vehicle first, opened, its trajectory
    drawn; no console error, no request beyond loopback; screenshots kept."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip("chromium and chromium-driver are not installed (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path}/p",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    server.fleet()  # scored
    out = tmp_path / "week.csv"
    sh(project, sys.executable, "-m", "componentx", "predict", "--readouts",
       "week/readouts.csv", "--specifications", "week/specifications.csv", "--out", str(out))
    predicted = pd.read_csv(out)
    risk = next(c for c in predicted.columns if c.startswith("risk_"))
    riskiest = int(predicted.sort_values([risk, "vehicle_id"], ascending=[False, True])[
        "vehicle_id"].iloc[0])
    browser = webdriver.Chrome(service=DriverService(driver), options=options)
    shots = Path(os.environ.get("COMPONENTX_SCREENSHOTS", ROOT / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    try:
        browser.set_window_size(1280, 1000)
        deadline = time.time() + 60
        while True:  # a page that says "Scoring the fleet: reload in a moment" is reloaded
            browser.get(f"{server.url}/")
            links = browser.find_elements(By.CSS_SELECTOR, "#fleet a.vehicle")
            if links or time.time() > deadline:
                break
            time.sleep(1)
        assert links and links[0].text == str(riskiest), browser.page_source[:3000]
        browser.save_screenshot(str(shots / "fleet.png"))
        links[0].click()
        assert browser.current_url.endswith(f"/vehicles/{riskiest}")
        chart = browser.find_element(By.CSS_SELECTOR, "#trajectory svg")
        assert chart.size["width"] > 300 and chart.find_elements(By.CSS_SELECTOR, "path")
        browser.save_screenshot(str(shots / "vehicle.png"))
        browser.get(f"{server.url}/model")
        assert "Model card" in browser.page_source
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
        events = [json.loads(e["message"])["message"] for e in browser.get_log("performance")]
        requested = {e["params"]["request"]["url"] for e in events
                     if e["method"] == "Network.requestWillBeSent"}
        network = {url for url in requested if url.split(":")[0] in ("http", "https", "ws",
                                                                      "wss")}
        assert f"{server.url}/static/style.css" in network
        assert all(url.startswith(server.url) for url in network), network
    finally:
        browser.quit()
    assert all((shots / name).stat().st_size > 10_000 for name in ("fleet.png", "vehicle.png"))


def test_strings_from_files_are_escaped_on_the_pages(project):
    """A category, a feature name, a model title and a fleet error that hold markup are shown
    as text, never run (the project's real bundle, its title replaced)."""
    from componentx.serving import pages
    from componentx.serving.bundle import Bundle
    from componentx.serving.live import FleetReadouts, FleetSnapshot

    evil = "<script>alert(1)</script>"
    bundle = Bundle.load(project / "models" / "bundle", "auto")
    bundle.meta["title"] = evil
    readouts = FleetReadouts(np.zeros((2, 1)), np.array([1.0, 2.0]), np.array([7, 7]),
                             np.zeros((2, 0), dtype=np.int64))
    snapshot = FleetSnapshot(readouts, np.array([0, 1]), np.array([0.1, 0.8]),
                             np.array([False, False]),
                             [{"vehicle_id": 7, "time_step": 2.0, "risk": 0.8, "decision": 1,
                               "expected_cost": 3.0, "triage": "watch", "readouts": 2}],
                             {"act now": 0, "watch": 1, "fine": 0}, 3.0, 9.0,
                             {"psi": {evil: 0.9}, "flagged": [evil], "threshold": 0.25,
                              "increments": 300, "min_increments": 200}, bundle)
    rendered = pages.fleet_page(snapshot, evil, evil, 1, 50, evil) + pages.vehicle_page(
        snapshot, 7, {"Spec_0": evil}, ([evil], np.array([0.5]), 1), "<svg></svg>") + \
        pages.vehicle_page(snapshot, 7, {}, evil, "<svg></svg>")
    assert evil not in rendered and "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered
