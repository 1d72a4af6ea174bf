"""Where the data stages run: vehicle buckets, keyed random draws, and a Dask cluster.

Every data stage maps a pure function over buckets of vehicles. A vehicle's bucket is a pure
function of its id (:func:`bucket_of`), so its readouts always live together; random draws are
keyed by (seed, vehicle, ...) (:func:`keyed_uniform`), so no result depends on how many buckets
there are or where they ran. The cluster is the one named by the environment variable
``DASK_SCHEDULER_ADDRESS`` (an environment variable, not a param: where a stage ran never
changes ``dvc.lock``), else a ``LocalCluster`` of ``compute.workers`` processes on this
machine, or, with a single worker, the stage's own process.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sized
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

GROUPS = 4096  # vehicle groups: a bucket holds whole groups, statistics merge group by group
BUCKET_BYTES = 256 << 20  # compute.buckets auto: about this much readouts CSV per bucket
SCHEDULER_VARIABLE = "DASK_SCHEDULER_ADDRESS"
_GOLDEN, _MIX1, _MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, elementwise on uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(_GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(_MIX1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX2)
        return z ^ (z >> np.uint64(31))


def _as_uint64(key: Any) -> np.ndarray:
    key = np.asarray(key)
    if key.dtype.kind == "f":
        return np.asarray(key, dtype=np.float64).view(np.uint64)
    return key.astype(np.int64).view(np.uint64)


def keyed_hash(*keys: Any) -> np.ndarray:
    """A 64-bit hash per element of the broadcast ``keys`` (integers or floats)."""
    hashed = np.zeros(np.broadcast_shapes(*[np.shape(k) for k in keys]), dtype=np.uint64)
    for key in keys:
        hashed = _mix(hashed ^ _as_uint64(key))
    return hashed


def keyed_uniform(*keys: Any) -> np.ndarray:
    """A uniform number in [0, 1) per element of the broadcast ``keys``, e.g. (seed, purpose,
    vehicle_id, time_step): the same draw wherever and in whatever order it is computed."""
    return (keyed_hash(*keys) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def stat_group(vehicle_ids: np.ndarray) -> np.ndarray:
    """Each vehicle's group in 0..GROUPS-1 (a pure function of its id)."""
    return (keyed_hash(np.int64(0x5EED), vehicle_ids) % np.uint64(GROUPS)).astype(np.int64)


def bucket_of(vehicle_ids: np.ndarray, buckets: int) -> np.ndarray:
    """Each vehicle's bucket in 0..buckets-1: its group's, so a bucket holds whole groups."""
    return stat_group(vehicle_ids) % buckets


def positions_by_bucket(vehicle_ids: np.ndarray, buckets: int) -> list[np.ndarray]:
    """The positions of ``vehicle_ids`` in each bucket (:func:`bucket_of`), each in their
    order: the part of a table keyed by vehicle that one bucket's task needs."""
    of = bucket_of(vehicle_ids, buckets)
    order = np.argsort(of, kind="stable")
    return np.split(order, np.searchsorted(of[order], np.arange(1, buckets)))


def resolve_buckets(setting: int | str, readout_bytes: int) -> int:
    """``compute.buckets``, or with ``auto`` about ``BUCKET_BYTES`` of readouts CSV each."""
    if setting != "auto":
        return int(setting)
    return int(min(GROUPS, max(1, math.ceil(readout_bytes / BUCKET_BYTES))))


def local_workers(setting: int | str, tasks: int) -> int:
    """``compute.workers``, or with ``auto`` one per core, at most one per task."""
    if setting != "auto":
        return int(setting)
    return max(1, min(os.cpu_count() or 1, tasks))


@contextmanager
def dask_client(settings: dict, tasks: int) -> Iterator[Any]:
    """A Dask client for ``tasks`` tasks (``settings`` is ``params.compute``): on the cluster of
    ``DASK_SCHEDULER_ADDRESS``, else on a ``LocalCluster`` of worker processes, or None (run in
    this process) when one worker is enough. Local workers die with this process."""
    address = os.environ.get(SCHEDULER_VARIABLE)
    if address:
        from distributed import Client

        logging.getLogger("distributed").setLevel(logging.WARNING)
        with Client(address) as client:  # the default client: LightGBM looks for it
            log.info("Dask cluster %s: %d workers", address,
                     len(client.scheduler_info()["workers"]))
            yield client
        return
    workers = local_workers(settings["workers"], tasks)
    if workers <= 1:
        yield None
        return
    from distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.WARNING)

    memory = settings["memory_per_worker"]
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=logging.ERROR,
                      memory_limit="auto" if memory == "auto" else f"{memory}GiB") as cluster, \
            Client(cluster) as client:
        log.info("Dask LocalCluster: %d worker processes", workers)
        yield client


def absolute(value: Any) -> Any:
    """``value`` with every path in it (in lists, tuples, dicts and dataclasses) made absolute:
    a worker runs in a folder of its own."""
    if isinstance(value, Path):
        return value.resolve()
    if isinstance(value, list | tuple):
        return type(value)(absolute(v) for v in value)
    if isinstance(value, dict):
        return {k: absolute(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: absolute(getattr(value, f.name))
                                             for f in dataclasses.fields(value) if f.init})
    return value


def _progress(tasks: Iterable, description: str) -> tqdm:
    return tqdm(total=len(tasks) if isinstance(tasks, Sized) else None, desc=description,
                unit="task", leave=False, disable=not sys.stderr.isatty())


def _submit(client: Any, function: Callable, tasks: Iterable[tuple], bar: tqdm) -> list:
    futures = [client.submit(function, *absolute(task), pure=False) for task in tasks]
    for future in futures:
        future.add_done_callback(lambda _: bar.update())
    return futures


def map_tasks(client: Any, function: Callable, tasks: Iterable[tuple], description: str
              ) -> list:
    """``function(*task)`` for every task, in the order of ``tasks``: on the client's cluster
    (its paths made absolute: the cluster shares this file system), or in this process when
    ``client`` is None; with a progress bar on a terminal."""
    if client is None:
        return list(each_task(None, function, tasks, description))
    with _progress(tasks, description) as bar:
        return client.gather(_submit(client, function, tasks, bar))  # the first failure raises


def each_task(client: Any, function: Callable, tasks: Iterable[tuple], description: str
              ) -> Iterator:
    """:func:`map_tasks`' results one at a time, in the order of ``tasks``, for results added
    up as they come: only the one in use is held here (on a cluster the others wait on the
    workers)."""
    with _progress(tasks, description) as bar:
        if client is None:
            for task in tasks:
                result = function(*task)
                bar.update()
                yield result
            return
        futures = _submit(client, function, tasks, bar)[::-1]
        while futures:
            yield futures.pop().result()
