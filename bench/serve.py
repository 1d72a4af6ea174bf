"""Benchmark: `componentx serve` under a bounded load on loopback, one server worker, for each
candidate's bundle of a `dvc repro`ed workspace.

For each bundle it starts the server (no fleet page), sends ``--warmup`` one-vehicle JSON
requests, reads the server's resident memory, then sends ``--requests`` one-vehicle requests
(test vehicles, round robin: each its readouts and specifications) from ``--concurrency``
client threads, each on a kept-alive connection, and stops. It prints requests per second,
p50 and p99 latency, errors, the resident memory after warm-up and at the end; then, per
vehicle, the whole test split in one streamed CSV request (its specifications as columns,
the body in the client's memory before the clock starts) against `componentx predict` of the
same readouts and specifications files: as the command runs it, in a new process, timed
from the end of its imports (the interpreter's start-up, with every library a bundle uses) to
its output written (the first call's compilation of numba's transforms counted in it); and again
in this process, repeated, the bundle loaded anew each time but everything else warm. The
medians of ``--rounds`` of each, alternated, in wall time and in CPU time (user and system,
every thread: the server's process for the request, receiving included), both per vehicle.

    python bench/serve.py [--requests 10000] [--concurrency 16] [--bundles models/bundles/*]

With ``--against REVISION``, only the one-vehicle load, run ``--rounds`` times per bundle
against a server of REVISION's code (its ``src``, the same bundles) and one of this
checkout's, alternated, so that the machine's drift hits both: requests per second and p99
of each, pooled over the rounds, and their ratios.

    python bench/serve.py --against 6d7f814 --requests 3000 --rounds 3
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

from componentx.serving import scoring


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def one_vehicle_bodies(limit: int = 500) -> list[bytes]:
    """JSON bodies of test vehicles, each its readouts and specifications."""
    readouts = pd.read_parquet("data/ingested/readouts/test")
    specs_path = Path("data/ingested/test_specs.parquet")
    specs = pd.read_parquet(specs_path) if specs_path.exists() else None
    bodies = []
    for vehicle, rows in list(readouts.groupby("vehicle_id"))[:limit]:
        payload = {"readouts": json.loads(rows.to_json(orient="records"))}
        if specs is not None:
            payload["specifications"] = json.loads(
                specs[specs["vehicle_id"] == vehicle].to_json(orient="records"))
        bodies.append(json.dumps(payload).encode())
    return bodies


def post(connection: http.client.HTTPConnection, body: bytes, kind: str = "application/json"
         ) -> int:
    connection.request("POST", "/v1/score", body=body, headers={"Content-Type": kind})
    response = connection.getresponse()
    response.read()
    return response.status


def load(port: int, bodies: list[bytes], requests: int, concurrency: int
         ) -> tuple[np.ndarray, int, float]:
    """Latencies (s) of ``requests`` requests from ``concurrency`` threads, errors, seconds."""
    latencies, errors, lock = [], [0], threading.Lock()
    counter = iter(range(requests))

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                number = next(counter, None)
            if number is None:
                return
            start = time.perf_counter()
            try:
                ok = post(connection, bodies[number % len(bodies)]) == 200
            except OSError:
                ok = False
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            took = time.perf_counter() - start
            with lock:
                latencies.append(took)
                errors[0] += not ok

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return np.asarray(latencies), errors[0], time.perf_counter() - start


def test_split_csv(folder: Path) -> tuple[Path, Path, Path]:
    """The test split's readouts and specifications as CSV files, and both in one (the API's
    CSV: specification columns on every readout)."""
    readouts = pd.read_parquet("data/ingested/readouts/test")
    specs = pd.read_parquet("data/ingested/test_specs.parquet")
    paths = folder / "readouts.csv", folder / "specs.csv", folder / "both.csv"
    readouts.to_csv(paths[0], index=False)
    specs.to_csv(paths[1], index=False)
    readouts.merge(specs, on="vehicle_id").to_csv(paths[2], index=False)
    return paths


PREDICT_IN_A_NEW_PROCESS = """
import sys, time
from pathlib import Path
import lightgbm, onnxruntime  # every library a bundle's candidate imports
import sktime.transformations.rocket, sktime.transformations.rocket._minirocket_multi_var_numba
from componentx.serving import scoring
start, cpu = time.perf_counter(), time.process_time()
scoring.predict(*map(Path, sys.argv[1:]))
print(time.perf_counter() - start, time.process_time() - cpu)
"""


def predict_in_a_new_process(bundle: Path, readouts: Path, specs: Path, out: Path
                             ) -> tuple[float, float]:
    """Seconds `componentx predict` takes after its interpreter's start-up, and its CPU
    seconds (user and system, every thread)."""
    done = subprocess.run([sys.executable, "-c", PREDICT_IN_A_NEW_PROCESS, str(bundle),
                           str(readouts), str(specs), str(out)], capture_output=True, text=True,
                          check=True)
    wall, cpu = done.stdout.split()[-2:]
    return float(wall), float(cpu)


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def start_server(bundle: Path, folder: str, source: Path | None = None
                 ) -> tuple[subprocess.Popen, int]:
    """`componentx serve` of ``bundle`` (no fleet page: run in ``folder``) on a free port,
    once it answers; the package's code from ``source`` (a ``src`` folder) where given."""
    port = free_port()
    env = {**os.environ, "COMPONENTX_LOG": "WARNING"}
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source),
                                                          env.get("PYTHONPATH")]))
    server = subprocess.Popen(
        [sys.executable, "-m", "componentx", "serve", "--bundle", str(bundle.resolve()),
         "--port", str(port)], cwd=folder, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True, env=env)
    deadline = time.time() + 120
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return server, port
        except OSError:
            time.sleep(0.3)
        if time.time() > deadline:
            stop(server)
            raise RuntimeError(f"{bundle}: the server did not start")


def stop(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(30)


def against(revision: str, bundles: list[Path], bodies: list[bytes], args: argparse.Namespace,
            folder: str) -> None:
    """The one-vehicle load against the code of ``revision`` and this checkout's, alternated
    ``args.rounds`` times per bundle (each time a new server, after the warm-up; each code
    first in every other round): requests per second and p99 of the pooled latencies of each,
    and their ratios."""
    source = Path(folder) / "against"
    source.mkdir()
    archive = subprocess.run(["git", "archive", revision, "src"], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    print(f"\n{args.requests:,} one-vehicle requests per round, {args.rounds} rounds "
          f"alternated: {revision} against this checkout\n")
    print(f"| bundle | requests/s, {revision} | requests/s, here | ratio | p99 ms, {revision} "
          "| p99 ms, here | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for bundle in bundles:
        runs: dict[str, tuple[list, int, float]] = {"then": ([], 0, 0.0), "now": ([], 0, 0.0)}
        for round_ in range(args.rounds):
            codes = (("then", source / "src"), ("now", None))
            for name, code in codes if round_ % 2 == 0 else codes[::-1]:  # each goes first
                server, port = start_server(bundle, folder, code)
                try:
                    load(port, bodies, args.warmup, args.concurrency)
                    latencies, errors, seconds = load(port, bodies, args.requests,
                                                      args.concurrency)
                finally:
                    stop(server)
                pooled, failed, took = runs[name]
                runs[name] = ([*pooled, *latencies], failed + errors, took + seconds)
        rates = {name: len(pooled) / took for name, (pooled, _, took) in runs.items()}
        p99 = {name: np.percentile(pooled, 99) * 1000 for name, (pooled, _, _) in runs.items()}
        assert not runs["then"][1] and not runs["now"][1], "errors under load"
        print(f"| {bundle.name} | {rates['then']:,.0f} | {rates['now']:,.0f} | "
              f"{rates['now'] / rates['then']:.2f} | {p99['then']:.1f} | {p99['now']:.1f} | "
              f"{p99['now'] / p99['then']:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5,
                        help="whole-split requests and predict runs, alternated (medians)")
    parser.add_argument("--bundles", type=Path, nargs="+",
                        default=sorted(Path("models/bundles").iterdir()))
    parser.add_argument("--against", metavar="REVISION",
                        help="only the one-vehicle load, alternated with the code of REVISION")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    bodies = one_vehicle_bodies()
    if args.against:
        with tempfile.TemporaryDirectory() as tmp:
            against(args.against, args.bundles, bodies, args, tmp)
        return
    print(f"commit {commit}; {args.requests:,} one-vehicle requests at concurrency "
          f"{args.concurrency}, one server worker, 2 cores\n")
    print("| bundle | requests/s | p50 ms | p99 ms | errors | RSS after warm-up MiB | RSS at "
          "the end MiB | test split streamed, ms/vehicle (CPU) | predict, ms/vehicle (CPU) | "
          "predict repeated in a warm process, ms/vehicle (CPU) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        readouts, specs, both = test_split_csv(Path(tmp))
        vehicles = pd.read_csv(specs)["vehicle_id"].nunique()
        for bundle in args.bundles:
            server, port = start_server(bundle, tmp)
            try:
                load(port, bodies, args.warmup, args.concurrency)
                process = psutil.Process(server.pid)
                warm = process.memory_info().rss / 2**20
                latencies, errors, seconds = load(port, bodies, args.requests,
                                                  args.concurrency)
                end = process.memory_info().rss / 2**20
                streamed, predicted, warm_predicted = [], [], []  # (wall, CPU) seconds
                body = both.read_bytes()
                out = Path(tmp) / "decisions.csv"
                for _ in range(args.rounds):  # alternated: the machine's noise hits each
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
                    start, cpu = time.perf_counter(), cpu_seconds(process)
                    status = post(connection, body, "text/csv")
                    streamed.append((time.perf_counter() - start, cpu_seconds(process) - cpu))
                    assert status == 200, status
                    predicted.append(predict_in_a_new_process(bundle, readouts, specs, out))
                    scoring._cached_bundle.cache_clear()  # the command loads its bundle
                    start, cpu = time.perf_counter(), time.process_time()
                    scoring.predict(bundle, readouts, specs, out)
                    warm_predicted.append((time.perf_counter() - start,
                                           time.process_time() - cpu))
                del body
            finally:
                stop(server)
            per_vehicle = [np.median(times, axis=0) / vehicles * 1000
                           for times in (streamed, predicted, warm_predicted)]
            p50, p99 = np.percentile(latencies, [50, 99]) * 1000
            print(f"| {bundle.name} | {len(latencies) / seconds:,.0f} | {p50:.1f} | {p99:.1f} | "
                  f"{errors} | {warm:,.0f} | {end:,.0f} | "
                  + " | ".join(f"{wall:.3f} ({cpu:.3f})" for wall, cpu in per_vehicle) + " |",
                  flush=True)


if __name__ == "__main__":
    main()
