"""``componentx serve``: the shipped bundle behind a JSON scoring endpoint and a fleet page,
on Starlette and uvicorn.

- ``POST /v1/score``: readouts as JSON (``{"readouts": [...], "specifications": [...]}``, at
  most ``json_limit`` bytes) or as a CSV body of any size, streamed to disk and scored as
  ``componentx predict`` scores a file (the bundle's specification columns ride along in
  it, one value per vehicle), its blocks parsed while the rest arrives where its length is
  announced (:class:`~componentx.data.readouts.ArrivingFile`): for each vehicle, at its
  last readout, the calibrated probabilities, the decision, the failure risk and the
  expected cost of each decision, and the readouts' drift against training
  (:mod:`componentx.serving.drift`). The checks are ``predict``'s; a problem is a 4xx
  naming the field, the row (a JSON readout's index from 0, a CSV body's line, the header
  being line 1) and, in JSON, the vehicle. Concurrent JSON requests are scored together
  (:class:`Batcher`).
- ``GET /``, ``/vehicles/{id}``, ``/model``: the fleet page (:mod:`componentx.serving.pages`),
  ``GET /v1/fleet`` its data as JSON.
- ``GET /healthz`` (answers while a whole-fleet request scores: scoring runs in worker
  threads) and ``GET /metrics`` (request counts and latencies, Prometheus' text format).

Bound to 127.0.0.1 by default. On any other address a token is required (``--token`` or
``COMPONENTX_TOKEN``): the API takes it as ``Authorization: Bearer``, the page as a cookie
that the form at ``/login`` sets once; compared in constant time. Unguarded (loopback), it
answers only requests addressed to the loopback (the Host header), so no other site's page
can reach it through DNS rebinding. TLS is a reverse proxy's job.
No request names a file: the pages and the API read only the bundle and the readouts folder.
"""

from __future__ import annotations

import asyncio
import csv
import functools
import hmac
import ipaddress
import logging
import operator
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import msgspec
import numpy as np
import orjson
import pyarrow as pa

from componentx.candidates.interface import PipelineData
from componentx.compute import SCHEDULER_VARIABLE
from componentx.data.layout import ID, TIME
from componentx.data.readouts import ArrivingFile, readout_records, readout_rows
from componentx.decisions.rules import risk_column
from componentx.devices import resolve_device
from componentx.errors import BundleError, DatasetError, UserError
from componentx.serving import pages
from componentx.serving.bundle import Bundle
from componentx.serving.drift import drift_reports, increment_counts
from componentx.serving.live import LiveBundle, LiveFleet, describe_source
from componentx.serving.scoring import (
    Specifications,
    loaded_bundle,
    score_arrays,
    score_readouts,
    specifications_of,
)

log = logging.getLogger(__name__)
TOKEN_VARIABLE, COOKIE = "COMPONENTX_TOKEN", "componentx_token"
OPEN_PATHS = ("/healthz", "/login", "/static/style.css")
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; frame-ancestors 'none'; "
                               "form-action 'self'; base-uri 'none'",
    "x-content-type-options": "nosniff", "referrer-policy": "no-referrer",
    "x-frame-options": "DENY"}
SECURITY_HEADER_PAIRS = [(name.encode(), value.encode()) for name, value in
                         SECURITY_HEADERS.items()]
READOUTS, SPECIFICATIONS = Path("readouts"), Path("specifications")  # a JSON body's parts
STREAMED_BLOCK_BYTES = 16 << 20  # a CSV body is split as it arrives, in blocks of this size
CSV_SCORED_AT_ONCE = 4  # CSV requests scored at once; JSON requests never wait for them
INLINE_BYTES = 1 << 20  # a JSON body up to this size is parsed between requests, not aside


@dataclass
class ServeSettings:
    """What ``componentx serve`` serves: the bundle folder, the fleet (a folder of readouts,
    or the pipeline's holdout), the token, and the scoring engine and device."""

    bundle: Path
    readouts: Path | None = None
    pipeline: PipelineData | None = None
    token: str | None = None
    engine: str = "auto"
    device: str = "auto"
    json_limit: int = 10 << 20
    page_size: int = 50
    scratch: Path | None = None


@functools.lru_cache(maxsize=64)  # asked of every request's Host
def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or name) is this machine's loopback."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class RequestProblem(Exception):
    """A request the service refuses: its HTTP status and what to tell the caller."""

    def __init__(self, status: int, detail: dict) -> None:
        super().__init__(detail.get("error"))
        self.status, self.detail = status, detail


def problem(error: Exception, records: dict[str, Any] | None = None) -> RequestProblem:
    """The 4xx (or 503) of an error scoring a request: a :class:`DatasetError` names the
    field, the row and, where the row's vehicle can be read from the request's JSON
    ``records`` (per part: "readouts", "specifications"), the vehicle."""
    if isinstance(error, DatasetError):
        row = error.line
        detail: dict[str, Any] = {"error": f"{error.file}: {error.message}",
                                  "field": error.column, "row": row}
        given = (records or {}).get(str(error.file))
        if row is not None and isinstance(given, list) and 0 <= row < len(given) \
                and isinstance(given[row], dict) and ID in given[row]:
            detail["vehicle_id"] = given[row][ID]
        return RequestProblem(422, detail)
    if isinstance(error, BundleError):
        return RequestProblem(503, {"error": str(error)})
    return RequestProblem(400, {"error": str(error)})


def vehicle_on_line(path: Path, line: int) -> int | None:
    """The vehicle_id on ``line`` of a CSV file (the header being line 1), where it reads
    as one: for an error's answer, so the file is read only that far."""
    if line < 2:
        return None
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
        rows = csv.reader(handle)
        header = next(rows, [])
        for number, row in enumerate(rows, start=2):
            if number == line:
                try:
                    return int(row[header.index(ID)])
                except (ValueError, IndexError):
                    return None
    return None


@dataclass(frozen=True)
class ScoreRequest:
    """A JSON scoring request, checked against ``bundle``: its readouts sorted by vehicle
    and time (:func:`~componentx.data.readouts.readout_records`) and, where the model uses
    them, its vehicles' specifications (exactly its vehicles)."""

    bundle: Bundle
    ids: np.ndarray
    times: np.ndarray
    values: np.ndarray
    specs: Specifications | None


class Batcher:
    """Requests that arrive while a batch is being scored wait, and are scored together in
    the next (at most ``limit`` at once), by one call of ``score`` in a worker thread: a
    burst of one-vehicle requests costs one model call per batch, not one per request.
    ``score`` returns one answer per request, in order; an answer that is an exception is
    raised to its request alone."""

    def __init__(self, score: Callable[[list], list], limit: int = 64) -> None:
        self.score, self.limit = score, limit
        self.waiting: list[tuple[Any, asyncio.Future]] = []
        self.worker: asyncio.Task | None = None

    async def submit(self, item: Any) -> Any:
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((item, future))
        if self.worker is None:
            self.worker = asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        from starlette.concurrency import run_in_threadpool

        try:
            while self.waiting:
                batch = self.waiting[:self.limit]
                del self.waiting[:self.limit]
                try:
                    answers = await run_in_threadpool(self.score, [item for item, _ in batch])
                except Exception as error:  # a bug: every request of the batch learns it
                    answers = [error] * len(batch)
                for (_, future), answer in zip(batch, answers, strict=True):
                    if future.done():  # its client went away
                        continue
                    if isinstance(answer, Exception):
                        future.set_exception(answer)
                    else:
                        future.set_result(answer)
        finally:
            self.worker = None


@dataclass
class Service:
    """The state behind the app: the live bundle and fleet, and the request metrics."""

    settings: ServeSettings
    bundle: LiveBundle = field(init=False)
    fleet: LiveFleet = field(init=False)

    def __post_init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        settings = self.settings
        self.device = resolve_device(settings.device)
        self.bundle = LiveBundle(settings.bundle, settings.engine)
        self.fleet = LiveFleet(self.bundle, settings.readouts, settings.pipeline, self.device)
        self.source = describe_source(settings.readouts, settings.pipeline)
        self.registry = CollectorRegistry()
        self.requests = Counter("componentx_requests", "HTTP requests answered",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("componentx_request_seconds", "Time to answer a request",
                                 ["route"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                                          5, 10, 30))
        self.batches = Histogram("componentx_score_batch_requests", "JSON scoring requests "
                                 "scored together in one call of the model",
                                 registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64))

    def authorised(self, headers: dict[str, str], cookies: dict[str, str]) -> bool:
        """Whether a request carries the token (``Authorization: Bearer`` or the cookie),
        compared in constant time; every request is, without a token."""
        token = self.settings.token
        if token is None:
            return True
        given = headers.get("authorization", "")
        offered = given[7:] if given.lower().startswith("bearer ") else cookies.get(COOKIE, "")
        return hmac.compare_digest(offered.encode(), token.encode())

    def _respond(self, bundle: Bundle, table: pa.Table, drift: dict | None,
                 unknown: dict[str, int]) -> dict:
        meta = bundle.meta
        k = meta["num_classes"]
        risk = risk_column(meta["class_windows"], meta["risk_class"])
        columns = table.to_pydict()
        vehicles = [{"vehicle_id": columns[ID][i], "time_step": columns["time_step"][i],
                     "probabilities": [columns[f"prob_{c}"][i] for c in range(k)],
                     "decision": columns["decision"][i], "risk": columns[risk][i],
                     "expected_cost": [columns[f"expected_cost_{c}"][i] for c in range(k)]}
                    for i in range(table.num_rows)]
        return {"model": {"kind": meta["kind"], "title": meta["title"],
                          "commit": meta["provenance"]["code"]["commit"]},
                "risk": risk, "vehicles": vehicles, "unknown_categories": unknown,
                "drift": drift}

    def parse_json(self, body: bytes) -> ScoreRequest:
        """A JSON scoring request's body (see the module), checked against the current
        bundle; a problem is a :class:`RequestProblem`. Parsed and type-checked at once
        (:class:`TypedBody`); a body that is anything but plainly well-formed is parsed
        again, check by check, to say what is wrong with it."""
        bundle = self.bundle.current()
        try:
            ids, times, rows, specifications = typed_body(
                tuple(bundle.meta["feature_columns"])).fields(body)
            return self._request(bundle, readout_rows(ids, times, rows,
                                                      bundle.meta["feature_columns"],
                                                      READOUTS), specifications)
        except (msgspec.DecodeError, orjson.JSONDecodeError, RecursionError, UserError):
            return self._checked_request(bundle, body)

    def _checked_request(self, bundle: Bundle, body: bytes) -> ScoreRequest:
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            raise RequestProblem(400, {"error": f"the body is not JSON ({error})"}) from None
        if not isinstance(payload, dict) or "readouts" not in payload:
            raise RequestProblem(400, {"error": "expected a JSON object with \"readouts\" (a "
                                                "list of readouts) and, where the model uses "
                                                "them, \"specifications\""})
        extra = sorted(set(payload) - {"readouts", "specifications"})
        if extra:
            raise RequestProblem(400, {"error": f"unexpected member {extra[0]!r}",
                                       "field": extra[0]})
        try:
            return self._request(bundle, readout_records(
                payload["readouts"], bundle.meta["feature_columns"], READOUTS),
                payload.get("specifications"))
        except UserError as error:
            raise problem(error, payload) from None

    def _request(self, bundle: Bundle, readouts: tuple[np.ndarray, np.ndarray, np.ndarray],
                 specifications: Any) -> ScoreRequest:
        """The request of checked ``readouts`` (ids, times, values) and the records of
        ``specifications``, checked against ``bundle``'s (exactly the readouts' vehicles)."""
        meta = bundle.meta
        specs = None
        if meta["spec_columns"]:
            specs = specifications_of(spec_records(specifications, meta["spec_columns"]),
                                      meta, SPECIFICATIONS, 0)
            vehicles = np.unique(readouts[0])
            if not np.array_equal(specs.ids, vehicles):
                orphan = np.setdiff1d(specs.ids, vehicles)
                if orphan.size:
                    raise DatasetError(SPECIFICATIONS, f"vehicle {orphan[0]} has "
                                       "specifications but no readouts", ID)
                specs.codes_for(vehicles, READOUTS)  # names a vehicle without them
        return ScoreRequest(bundle, *readouts, specs)

    def score_requests(self, requests: list[ScoreRequest]) -> list[dict | RequestProblem]:
        """The answers to JSON requests, scored together in one call of the model (their
        vehicles renumbered, so that two requests' vehicles never mix), each by the bundle
        it was checked against."""
        bundle = requests[0].bundle
        if any(r.bundle is not bundle for r in requests):  # reloaded while they waited
            return [self.score_requests([r])[0] for r in requests]
        self.batches.observe(len(requests))
        own = [np.unique(r.ids, return_inverse=True) for r in requests]
        counts = [len(vehicles) for vehicles, _ in own]
        first = np.cumsum([0, *counts])
        specs = None
        if bundle.meta["spec_columns"]:
            specs = Specifications(SPECIFICATIONS, np.arange(first[-1]),
                                   np.concatenate([r.specs.codes for r in requests]), {})
        ids = np.concatenate([inverse + start for (_, inverse), start in
                              zip(own, first, strict=False)])
        times = np.concatenate([r.times for r in requests])
        values = np.concatenate([r.values for r in requests])
        try:
            scored = score_arrays(READOUTS, specs, ids, times, values, bundle, self.device)
        except UserError as error:  # the bundle's, not a request's: all were checked
            return [problem(error)] * len(requests)
        reference = bundle.meta.get("drift_reference")
        drifts = drift_reports(reference, increment_counts(
            values, times, ids, reference["edges"], first[:-1])) if reference else \
            [None] * len(requests)
        keys = scored.column(ID).to_numpy()
        bounds = np.searchsorted(keys, first)
        answers: list[dict | RequestProblem] = []
        for i, request in enumerate(requests):
            part = scored.slice(bounds[i], bounds[i + 1] - bounds[i])
            part = part.set_column(0, ID, pa.array(own[i][0][keys[bounds[i]:bounds[i + 1]]
                                                             - first[i]]))
            answers.append(self._respond(bundle, part, drifts[i],
                                         request.specs.unknown if request.specs else {}))
        return answers

    def score_csv(self, path: Path, arriving: ArrivingFile | None = None) -> dict:
        """The answer to a CSV scoring request, its body in ``path`` (the specifications,
        where the model uses them, as columns of the readouts; ``arriving`` while it is
        still being received), scored by the bundle loaded now; a bundle replaced meanwhile
        is a 503 to send again."""
        bundle = self.bundle.current()
        try:
            table, report = score_readouts(bundle.folder, path, None, self.settings.engine,
                                           device=self.device, scratch=path.parent,
                                           arriving=arriving)
            if loaded_bundle(bundle.folder, self.settings.engine) is not bundle:
                raise RequestProblem(503, {"error": "the bundle was replaced while this "
                                                    "request was scored: send it again"})
        except DatasetError as error:  # named as the caller knows it: the body
            answer = problem(DatasetError("body" if error.file == str(path) else error.file,
                                          error.message.replace(str(path), "the body"),
                                          error.column, error.line))
            if error.file == str(path) and error.line:
                answer.detail["vehicle_id"] = vehicle_on_line(path, error.line)
            raise answer from None
        except (UserError, OSError) as error:
            raise RequestProblem(503 if isinstance(error, (BundleError, OSError)) else 400, {
                "error": str(error).replace(str(path), "the body")}) from None
        return self._respond(bundle, table, report.drift, report.unknown_categories)


class TypedBody:
    """A JSON scoring body for a bundle's ``features``, parsed and type-checked in one pass
    by msgspec (each readout an object of exactly vehicle_id (an integer), time_step (a
    number) and every feature (a number or null)): what the check-by-check parse accepts,
    in about half its time; anything else raises, for that parse to say why."""

    def __init__(self, features: tuple[str, ...]) -> None:
        names = [f"f{j}" for j in range(len(features))]  # features need not be identifiers
        readout = msgspec.defstruct("Readout", [(ID, int), (TIME, float),
                                                *[(name, float | None) for name in names]],
                                    rename=dict(zip(names, features, strict=True)),
                                    forbid_unknown_fields=True)
        self.decoder = msgspec.json.Decoder(msgspec.defstruct(  # specifications: orjson's
            "Body", [("readouts", list[readout]), ("specifications", msgspec.Raw, None)],
            forbid_unknown_fields=True))
        self.row = operator.attrgetter(*names, TIME)  # time last, as readout_records has it

    def fields(self, body: bytes) -> tuple[list[int], list[float], list[tuple], Any]:
        """The readouts' vehicle ids, times and rows (:func:`readout_rows`), and the
        specifications as orjson parses them (records, or None), as the check-by-check
        parse has them."""
        parsed = self.decoder.decode(body)
        if not parsed.readouts:
            raise msgspec.ValidationError("no readouts")
        readouts = parsed.readouts
        return (list(map(operator.attrgetter(ID), readouts)),
                list(map(operator.attrgetter(TIME), readouts)), list(map(self.row, readouts)),
                None if parsed.specifications is None else orjson.loads(
                    memoryview(parsed.specifications)))


@functools.lru_cache(maxsize=4)
def typed_body(features: tuple[str, ...]) -> TypedBody:
    """The :class:`TypedBody` of a bundle's features, made once."""
    return TypedBody(features)


def spec_records(records: Any, columns: list[str]) -> dict[str, list]:
    """Specifications given as records (vehicle_id and each specification column: text,
    a number or null), as columns for
    :func:`~componentx.serving.scoring.specifications_of`."""
    if not isinstance(records, list) or not records:
        raise DatasetError(SPECIFICATIONS, f"this model uses the specifications {columns}: "
                           "give them as a list of objects")
    wanted = {ID, *columns}
    for row, record in enumerate(records):
        if not isinstance(record, dict) or record.keys() != wanted:
            keys = set(record) if isinstance(record, dict) else set()
            missing, extra = sorted(wanted - keys), sorted(keys - wanted)
            name = (missing or extra or [ID])[0]
            raise DatasetError(SPECIFICATIONS, f"{'missing' if missing else 'unexpected'} "
                               f"field {name!r}", name, row)
        if type(record[ID]) is not int or not -2**63 <= record[ID] < 2**63:
            raise DatasetError(SPECIFICATIONS, f"value {record[ID]!r} is not a 64-bit "
                               "integer", ID, row)
        bad = next((c for c in columns if type(record[c]) not in (str, int, float,
                                                                  type(None))), None)
        if bad is not None:
            raise DatasetError(SPECIFICATIONS, f"value {record[bad]!r} is not text, a number "
                               "or null", bad, row)
    return {ID: [r[ID] for r in records],
            **{c: [None if r[c] is None else str(r[c]) for r in records] for c in columns}}


def _json_response(content: Any, status: int = 200) -> Any:
    from starlette.responses import Response

    return Response(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), status,
                    media_type="application/json")


def create_app(settings: ServeSettings) -> Guard:
    """The Starlette app of :class:`ServeSettings`."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import HTMLResponse, RedirectResponse, Response
    from starlette.routing import Route

    service = Service(settings)
    service.fleet.refresh()
    batcher = Batcher(service.score_requests)
    scratch = settings.scratch or Path(tempfile.gettempdir())

    async def healthz(request: Request) -> Response:
        served = service.bundle.bundle  # the one loaded: a reload never holds this answer up
        return _json_response({"status": "ok", "model": served.meta["kind"],
                               "bundle_loads": service.bundle.loads})

    async def metrics(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(service.registry), media_type=CONTENT_TYPE_LATEST)

    async def style(request: Request) -> Response:
        return Response(pages.STYLE, media_type="text/css")

    async def login(request: Request) -> Response:
        if settings.token is None:
            return RedirectResponse("/", 303)
        if request.method == "GET":
            return HTMLResponse(pages.login_page())
        token = parse_qs((await request.body()).decode("utf-8", "replace")).get("token", [""])[0]
        if not hmac.compare_digest(token.encode(), settings.token.encode()):
            return HTMLResponse(pages.message_page("Not signed in", "That token is not "
                                                   "this server's."), 401)
        response = RedirectResponse("/", 303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
        return response

    def fleet_state() -> tuple[Any, int, str, str]:
        """The fleet's snapshot, or (None, status, title, why there is none)."""
        service.fleet.refresh()
        if service.fleet.snapshot is not None:
            return service.fleet.snapshot, 200, "", ""
        if service.fleet.error:
            return None, 503, "The fleet could not be scored", service.fleet.error
        if settings.readouts is None and settings.pipeline is None:
            return None, 404, "No fleet", ("Start the server with --readouts DIR (a folder of "
                                           "readouts) to see a fleet here; POST /v1/score "
                                           "scores readouts.")
        return None, 503, "Scoring the fleet", "Reload in a moment."

    def snapshot_or_page() -> Any:
        snapshot, status, title, why = fleet_state()
        if snapshot is not None:
            return snapshot
        return HTMLResponse(pages.message_page(title, why), 200 if status == 404 else status,
                            headers={"retry-after": "2"} if status == 503 else None)

    def page_number(request: Request) -> int:
        try:
            return int(request.query_params.get("page", "1"))
        except ValueError:
            raise RequestProblem(400, {"error": "page must be a number",
                                       "field": "page"}) from None

    async def fleet_page(request: Request) -> Response:
        snapshot = snapshot_or_page()
        if isinstance(snapshot, Response):
            return snapshot
        return HTMLResponse(pages.fleet_page(snapshot, service.source,
                                             request.query_params.get("q", "").strip(),
                                             page_number(request), settings.page_size,
                                             service.fleet.error))

    async def fleet_json(request: Request) -> Response:
        snapshot, status, title, why = fleet_state()
        if snapshot is None:
            return _json_response({"error": f"{title}: {why}"}, status)
        rows, matched, page, pages_count = snapshot.search(
            request.query_params.get("q", "").strip(), page_number(request), settings.page_size)
        return _json_response({"vehicles": matched, "page": page, "pages": pages_count,
                               "counts": snapshot.counts,
                               "expected_cost": snapshot.expected_cost,
                               "expected_cost_always_0": snapshot.expected_cost_always_0,
                               "drift": snapshot.drift, "error": service.fleet.error,
                               "rows": rows})

    def vehicle_html(snapshot: Any, vehicle: int, rows: np.ndarray) -> str:
        meta = snapshot.bundle.meta
        latest = rows[-1:]
        windows = snapshot.readouts.windows(latest, meta["window_size"])
        target = np.maximum(snapshot.decisions[latest], 1)  # the decision, or a failure
        try:
            found = snapshot.bundle.model.attributions(windows, target, service.device)
            features = None if found is None else (found[0], found[1][0], int(target[0]))
        except (UserError, OSError) as error:  # its folder replaced since it was loaded
            features = f"The attributions could not be computed now ({error})."
        vocabularies = meta["spec_vocabularies"]
        codes = snapshot.readouts.codes[rows[-1]]
        specs = {name: (vocabularies[name][code - 1] if code > 0 else "(not seen in training)")
                 for name, code in zip(meta["spec_columns"], codes, strict=True)}
        chart = pages.risk_chart(snapshot.readouts.times[rows], snapshot.risk[rows],
                                 snapshot.alarm[rows], meta.get("alarm"), "risk")
        return pages.vehicle_page(snapshot, vehicle, specs, features, chart)

    async def vehicle_page(request: Request) -> Response:
        snapshot = snapshot_or_page()
        if isinstance(snapshot, Response):
            return snapshot
        vehicle = request.path_params["vehicle"]
        try:
            rows = snapshot.vehicle_rows(vehicle)
        except KeyError:
            return HTMLResponse(pages.message_page("No such vehicle", f"Vehicle {vehicle} is "
                                                   "not in this fleet."), 404)
        return HTMLResponse(await run_in_threadpool(vehicle_html, snapshot, vehicle, rows))

    async def model_page(request: Request) -> Response:
        bundle = service.bundle.current()
        try:
            card = (Path(bundle.folder) / "model_card.md").read_text()
        except OSError:  # the folder is being replaced: the card of the one loaded is gone
            card = "The model card is being replaced with the bundle; reload in a moment."
        return HTMLResponse(pages.model_page(bundle.meta, card))

    async def score(request: Request) -> Response:
        try:
            return await score_body(request)
        except ClientDisconnect:  # nobody to answer
            log.info("a client went away before the end of its body")
            return Response(status_code=499)

    async def score_body(request: Request) -> Response:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "application/json":
            body, size = bytearray(), 0
            async for chunk in request.stream():  # to its end, so that the client hears why
                size += len(chunk)
                if size <= settings.json_limit:
                    body += chunk
            if size > settings.json_limit:
                raise RequestProblem(413, {"error": f"a JSON body is at most "
                                                    f"{settings.json_limit:,} bytes: send "
                                                    "larger batches as CSV (text/csv)"})
            if len(body) <= INLINE_BYTES:
                parsed = service.parse_json(bytes(body))
            else:
                parsed = await run_in_threadpool(service.parse_json, bytes(body))
            return _json_response(await batcher.submit(parsed))
        if kind in ("text/csv", "application/csv"):
            return _json_response(await score_csv_body(request))

        raise RequestProblem(415, {"error": "send readouts as application/json or text/csv"})

    csv_scoring: list[Any] = []  # the limiter of CSV requests scored at once, made in the loop

    def score_in_a_thread(path: Path, arriving: ArrivingFile) -> Any:
        from anyio import CapacityLimiter, to_thread

        csv_scoring[:] = csv_scoring or [CapacityLimiter(CSV_SCORED_AT_ONCE)]
        return to_thread.run_sync(service.score_csv, path, arriving, limiter=csv_scoring[0])

    async def score_csv_body(request: Request) -> dict:
        """A CSV body written to a temporary folder as it arrives; where its length is
        announced and no cluster is named (another host might not see a block yet), scored
        block by block from the first whole block on, else once it has all arrived."""
        length = request.headers.get("content-length")
        early = length is not None and not os.environ.get(SCHEDULER_VARIABLE)
        with tempfile.TemporaryDirectory(dir=scratch, prefix="componentx-score-") as tmp:
            path = Path(tmp) / "body.csv"
            with path.open("wb") as handle:
                arriving = ArrivingFile(handle, int(length) if early else None,
                                        STREAMED_BLOCK_BYTES)
                scored, received = None, False
                try:
                    async for chunk in request.stream():
                        arriving.write(chunk)
                        if early and scored is None and arriving.blocks:
                            scored = asyncio.ensure_future(score_in_a_thread(path, arriving))
                    arriving.close()
                    received = True
                finally:
                    if not received:  # the body stopped short, or could not be written
                        arriving.close(complete=False)
                        if scored is not None:  # it stops at the missing block
                            await asyncio.wait([scored])
                            if not isinstance(scored.exception(), RequestProblem | None):
                                log.warning("scoring a cut body: %s", scored.exception())
            return await (scored or score_in_a_thread(path, arriving))

    async def refused(request: Request, error: RequestProblem) -> Response:
        return _json_response(error.detail, error.status)

    routes = [Route("/healthz", healthz), Route("/metrics", metrics),
              Route("/static/style.css", style), Route("/login", login, methods=["GET", "POST"]),
              Route("/", fleet_page), Route("/vehicles/{vehicle:int}", vehicle_page),
              Route("/model", model_page), Route("/v1/fleet", fleet_json),
              Route("/v1/score", score, methods=["POST"])]
    app = Starlette(routes=routes, exception_handlers={RequestProblem: refused})
    return Guard(app, service, {route.path for route in routes})


class Guard:
    """The ASGI layer every request passes: the token, the security headers, the metrics."""

    def __init__(self, app: Any, service: Service, paths: set[str]) -> None:
        self.app, self.service, self.paths = app, service, paths  # the routes' paths

    def _route(self, path: str) -> str:
        if path.startswith("/vehicles/"):
            return "/vehicles/{vehicle}"
        return path if path in self.paths else "other"

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from starlette.requests import HTTPConnection

        start, status = time.perf_counter(), [500]
        path = scope["path"]

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":  # no route sets these itself
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", ()), *SECURITY_HEADER_PAIRS]
            await send(message)

        try:
            connection = HTTPConnection(scope)
            host = connection.headers.get("host", "").rsplit(":", 1)[0].strip("[]")
            if self.service.settings.token is None and not is_loopback(host):
                # unguarded means loopback only: no other site's page (DNS rebinding) gets in
                await send_with_headers({"type": "http.response.start", "status": 421,
                                         "headers": [(b"content-type", b"application/json")]})
                await send_with_headers({"type": "http.response.body", "body": orjson.dumps(
                    {"error": f"this server answers requests for 127.0.0.1 or localhost, "
                              f"not {host!r}"})})
                return
            if path not in OPEN_PATHS and self.service.settings.token is not None and \
                    not self.service.authorised(dict(connection.headers),
                                                dict(connection.cookies)):
                api = path.startswith("/v1/") or path == "/metrics"
                body = (orjson.dumps({"error": "unauthorised: send Authorization: Bearer "
                                               "<token>"}) if api else
                        pages.login_page().encode())
                await send_with_headers({"type": "http.response.start", "status": 401,
                                         "headers": [(b"content-type", b"application/json"
                                                      if api else b"text/html; charset=utf-8"),
                                                     (b"www-authenticate", b"Bearer")]})
                await send_with_headers({"type": "http.response.body", "body": body})
                return
            await self.app(scope, receive, send_with_headers)
        finally:
            route = self._route(path)
            self.service.requests.labels(route, scope["method"], str(status[0])).inc()
            self.service.latency.labels(route).observe(time.perf_counter() - start)


def serve(settings: ServeSettings, host: str, port: int) -> None:
    """Run the app with uvicorn on ``host``:``port``; refuse a non-loopback address without a
    token."""
    import uvicorn

    if not is_loopback(host) and not settings.token:
        raise UserError(f"--host {host} is not a loopback address: give a token (--token, or "
                        f"the environment variable {TOKEN_VARIABLE}) so that only those who "
                        "hold it can score or see the fleet")
    app = create_app(settings)
    log.info("serving %s on http://%s:%d (%s)", settings.bundle, host, port,
             describe_source(settings.readouts, settings.pipeline))
    uvicorn.run(app, host=host, port=port, workers=1, log_level="warning",
                access_log=False, loop="asyncio")
