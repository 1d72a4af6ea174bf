"""The built-in synthetic Component X: the nine official CSV files, generated from a seed.

The generative process is documented in ``docs/synthetic.md``. Vehicles are generated in
chunks, each chunk vectorised over its rows, so the real sizes fit in a few GiB.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from tqdm.auto import tqdm

from componentx.data.labels import class_from_ttf
from componentx.data.layout import ID, TIME, labels_file, readouts_file, specifications_file
from componentx.errors import ParamsError
from componentx.params import SIGNALS  # where the precursor shows (docs/synthetic.md)

TICK = 0.2  # time_step grid
MAX_READOUTS = 400  # upper bound of readouts per vehicle
FIRST_READOUT_MAX_TICKS = 75  # the first readout comes within 15 time units
CHUNK_VEHICLES = 2000
MAX_POOL_VEHICLES = 2_000_000  # validation/test: give up looking for rare classes beyond this
EVENT_RATE = 0.0965  # train: 2,272 repairs among 23,550 vehicles
STUDY_MEAN, STUDY_STD, STUDY_MIN, STUDY_MAX = 240.0, 89.0, 73.4, 510.0
CLASS_WINDOWS = (6.0, 12.0, 24.0, 48.0)
# Class counts of the real validation and test labels (class 0 … 4), per 5,046 / 5,045 vehicles.
REFERENCE_CLASS_COUNTS = {"validation": (4910, 16, 14, 30, 76), "test": (4903, 26, 15, 41, 60)}
SPEC_CARDINALITIES = (3, 29, 21, 4, 2, 5, 17, 9)

# Counters: (name, median rate per time unit, spread of the vehicle's own level (log-sd),
#            precursor gain, episode gain).
COUNTERS = {
    "171_0": (2.2e4, 0.25, 0.0, 0.0),
    "666_0": (8.5e2, 0.30, 0.6, 0.4),
    "427_0": (8.7e5, 0.20, 0.0, 0.0),
    "837_0": (2.2e2, 0.60, 1.2, 0.8),
    "309_0": (6.0, 1.50, 2.5, 1.5),
    "835_0": (8.6e5, 0.20, 0.0, 0.0),
    "370_0": (0.0, 0.00, 0.0, 0.0),
    "100_0": (7.0e4, 0.45, 0.0, 0.0),
}
# Histograms: (median total rate per time unit, bin proportions from the real sample,
#              precursor shift toward upper bins, integer counts).
HISTOGRAMS = {
    "167": (1.2e6, (1.2e-4, 0.051, 0.12, 0.065, 0.12, 0.53, 0.11, 0.0099, 4.7e-4, 1.1e-4),
            0.0, True),
    "272": (1.2e6, (0.041, 0.06, 0.038, 0.07, 0.78, 0.015, 1e-4, 0.0, 0.0, 0.0), 0.0, True),
    "291": (5.1e2, (0.15, 0.12, 0.14, 0.17, 0.059, 0.041, 0.077, 0.078, 0.027, 0.11, 0.027),
            0.8, True),
    "158": (1.1e6, (0.024, 0.27, 0.32, 0.14, 0.095, 0.052, 0.033, 0.026, 0.024, 0.012),
            0.0, True),
    "459": (8.2e2, (0.016, 0.0069, 0.0082, 0.011, 0.013, 0.016, 0.019, 0.022, 0.049, 0.057,
                    0.038, 0.049, 0.063, 0.085, 0.24, 0.31, 6.4e-4, 6.6e-5, 1.4e-5, 6.4e-6),
            1.0, False),
    "397": (3.6e5, (0.2, 0.14, 0.086, 0.0089, 0.0033, 3.3e-4, 0.054, 0.061, 0.12, 0.0024,
                    7.8e-4, 2.3e-5, 0.0061, 0.042, 0.11, 0.0019, 5.7e-4, 1.3e-5, 0.0032, 0.028,
                    0.05, 0.0017, 3.0e-4, 4.5e-6, 0.002, 0.017, 0.026, 0.0018, 2.5e-4, 2.1e-6,
                    1.5e-4, 0.013, 0.022, 0.0047, 6.9e-4, 6.2e-6),
            1.2, True),
}
# Header order of the real readouts file.
FAMILY_ORDER = ("171_0", "666_0", "427_0", "837_0", "167", "309_0", "272", "835_0", "370_0",
                "291", "158", "100_0", "459", "397")
MISSING_TOGETHER = ("427_0", "370_0", "100_0")
# Share of vehicles with a missing stretch, per missing-value group.
MISSING_VEHICLE_SHARE = {"trio": 0.7, "167": 1.0, "291": 0.1, "459": 0.1}
SIGNAL_STRENGTH = 0.2  # synthetic.strength (docs/synthetic.md: how it was chosen)
ABSOLUTE_BIN_SHARE = 0.02  # absolute histogram signal: share of a readout's mass at p(t) = 1
RESET_VEHICLE_SHARE = 0.01  # vehicles whose counters restart once (an ECU update)


def feature_columns() -> list[str]:
    """The 105 readout features in the order of the real header."""
    columns = []
    for family in FAMILY_ORDER:
        if family in COUNTERS:
            columns.append(family)
        else:
            columns.extend(f"{family}_{i}" for i in range(len(HISTOGRAMS[family][1])))
    return columns


@dataclass
class Vehicles:
    """Per-vehicle latent variables of one chunk."""

    ids: np.ndarray
    specs: np.ndarray  # (V, 8) category index
    usage: np.ndarray
    study_ticks: np.ndarray  # length of study in ticks
    event: np.ndarray  # bool: repaired at the end of the study
    amplitude: np.ndarray  # precursor amplitude (0 for censored and silent failures)
    horizon: np.ndarray  # how long before failure the precursor starts


def spec_probabilities(rng: np.random.Generator) -> list[np.ndarray]:
    probs = []
    for cardinality in SPEC_CARDINALITIES:
        weights = 1.0 / np.arange(1, cardinality + 1) ** 1.2
        probs.append(rng.permutation(weights / weights.sum()))
    return probs


def _risk_logit(specs: np.ndarray, usage: np.ndarray) -> np.ndarray:
    """Failure risk up to an intercept: usage and three specifications matter."""
    spec1_effect = np.where(specs[:, 1] % 4 == 1, 0.7, 0.0)
    spec4_effect = np.where(specs[:, 4] == 1, 0.5, 0.0)
    spec6_effect = np.where(specs[:, 6] < 3, -0.4, 0.0)
    return 1.5 * np.log(usage) + spec1_effect + spec4_effect + spec6_effect


def _intercept_for_rate(logit: np.ndarray, rate: float) -> float:
    low, high = -20.0, 20.0
    for _ in range(60):
        mid = (low + high) / 2
        if (1 / (1 + np.exp(-(logit + mid)))).mean() < rate:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def sample_vehicles(rng: np.random.Generator, ids: np.ndarray, spec_probs: list[np.ndarray],
                    strength: float = SIGNAL_STRENGTH) -> Vehicles:
    """Draw specifications, usage, study length and failure of each vehicle (every split)."""
    n = len(ids)
    specs = np.stack([rng.choice(len(p), size=n, p=p) for p in spec_probs], axis=1)
    usage = np.exp(rng.normal(0.0, 0.35, n)) * np.array([1.0, 1.15, 0.85])[specs[:, 0]]
    study = np.clip(rng.normal(STUDY_MEAN, STUDY_STD, n), STUDY_MIN, STUDY_MAX)
    study_ticks = np.round(study / TICK).astype(np.int64)
    logit = _risk_logit(specs, usage)
    probability = 1 / (1 + np.exp(-(logit + _intercept_for_rate(logit, EVENT_RATE))))
    event = rng.random(n) < probability
    silent = rng.random(n) < 0.2
    amplitude = np.where(event & ~silent, np.exp(rng.normal(0.0, 0.5, n)), 0.0) * strength
    horizon = rng.uniform(25.0, 80.0, n)
    return Vehicles(ids, specs, usage, study_ticks, event, amplitude, horizon)


def sample_gaps(rng: np.random.Generator, n: int) -> np.ndarray:
    """Gaps between readouts in ticks, (n, MAX_READOUTS): mode 6.0, median ~4.4, rare long."""
    scale = np.exp(rng.normal(0.0, 0.45, (n, 1)))
    kind = rng.random((n, MAX_READOUTS))
    regular = rng.lognormal(np.log(3.6), 0.6, (n, MAX_READOUTS)) * scale
    short = TICK * (1 + rng.poisson(1.5, (n, MAX_READOUTS)))
    long = np.minimum(rng.lognormal(np.log(25.0), 0.9, (n, MAX_READOUTS)), 388.0)
    gaps = np.where(kind < 0.32, 6.0, np.where(kind < 0.52, short,
                                               np.where(kind < 0.975, regular, long)))
    return np.maximum(np.round(gaps / TICK), 1).astype(np.int64)


def readout_ticks(rng: np.random.Generator, vehicles: Vehicles) -> np.ndarray:
    """Readout times in ticks, (V, MAX_READOUTS), -1 where there is no readout.

    Repaired vehicles are read before the repair; censored ones up to the end of study.
    """
    gaps = sample_gaps(rng, len(vehicles.ids))
    gaps[:, 0] = np.minimum(gaps[:, 0], FIRST_READOUT_MAX_TICKS)  # every vehicle is read
    ticks = np.cumsum(gaps, axis=1)
    limit = vehicles.study_ticks - vehicles.event.astype(np.int64)
    return np.where(ticks <= limit[:, None], ticks, -1)


def uniform_cut(rng: np.random.Generator, ticks: np.ndarray) -> np.ndarray:
    """The official protocol: one of each vehicle's readouts, uniformly at random, becomes its
    last; later readouts are withheld. Returns the ticks with those removed (-1)."""
    count = (ticks >= 0).sum(axis=1)
    cut = np.floor(rng.random(len(ticks)) * count).astype(np.int64)
    return np.where(np.arange(ticks.shape[1])[None, :] <= cut[:, None], ticks, -1)


def last_readout_class(vehicles: Vehicles, ticks: np.ndarray, windows: tuple[float, ...]
                       ) -> np.ndarray:
    """Class of each vehicle's last readout: time to its repair binned by ``windows``; 0 for
    vehicles not repaired in the study. Times as written to the CSV files (0.1 rounding)."""
    last = ticks.max(axis=1)
    ttf = np.round(vehicles.study_ticks * TICK, 1) - np.round(last * TICK, 1)
    return np.where(vehicles.event, class_from_ttf(ttf, windows), 0)


def class_counts(split: str, n: int, num_classes: int) -> np.ndarray | None:
    """Class counts of a validation or test split: the reference tables scaled to ``n`` by
    largest remainder; None when the class count differs from Component X's five."""
    if num_classes != len(REFERENCE_CLASS_COUNTS[split]):
        return None
    reference = np.array(REFERENCE_CLASS_COUNTS[split], dtype=float)
    share = reference * n / reference.sum()
    counts = np.floor(share).astype(np.int64)
    counts[np.argsort(counts - share, kind="stable")[: n - counts.sum()]] += 1
    return counts


def subset(vehicles: Vehicles, index: np.ndarray) -> Vehicles:
    return Vehicles(*(getattr(vehicles, f.name)[index] for f in fields(Vehicles)))


def concat(parts: list[Vehicles]) -> Vehicles:
    return Vehicles(*(np.concatenate([getattr(p, f.name) for p in parts])
                      for f in fields(Vehicles)))


def _pool_chunk(seed: int, split_index: int, chunk: int, spec_probs: list[np.ndarray],
                windows: tuple[float, ...], strength: float
                ) -> tuple[Vehicles, np.ndarray, np.ndarray]:
    """One chunk of the pool validation or test vehicles are chosen from: drawn like train,
    cut at a uniform readout, with the class of the cut (a pure function of the chunk)."""
    rng = np.random.default_rng([seed, split_index, chunk])
    vehicles = sample_vehicles(rng, np.arange(CHUNK_VEHICLES), spec_probs, strength)
    cut = uniform_cut(rng, readout_ticks(rng, vehicles))
    return vehicles, cut, last_readout_class(vehicles, cut, windows)


def evaluation_choice(seed: int, split_index: int, split: str, n: int,
                      spec_probs: list[np.ndarray], windows: tuple[float, ...],
                      strength: float = SIGNAL_STRENGTH) -> np.ndarray:
    """Which pool vehicles (positions over the pool's chunks, sorted) become the validation or
    test split: selected by their class to meet the reference class counts (on the label
    only, so within a class they look exactly like the train population). Only the labels of
    the pool are kept, never its vehicles."""
    num_classes = len(windows) + 1
    targets = class_counts(split, n, num_classes)
    labels: list[np.ndarray] = []
    found = np.zeros(num_classes, dtype=np.int64)
    while (found < targets).any() if targets is not None else found.sum() < n:
        if len(labels) * CHUNK_VEHICLES >= MAX_POOL_VEHICLES:
            short = int(np.flatnonzero(found < targets)[0])
            raise ParamsError(f"synthetic {split}: only {found[short]} of {targets[short]} "
                              f"vehicles of class {short} among {MAX_POOL_VEHICLES} drawn "
                              f"(labels.windows {list(windows)} too narrow?)")
        labels.append(_pool_chunk(seed, split_index, len(labels), spec_probs, windows,
                                  strength)[2])
        found += np.bincount(labels[-1], minlength=num_classes)
    if targets is None:
        return np.arange(n)
    pool = np.concatenate(labels)
    select = np.random.default_rng([seed, split_index, MAX_POOL_VEHICLES])
    return np.sort(np.concatenate([
        select.choice(np.flatnonzero(pool == c), size=count, replace=False)
        for c, count in enumerate(targets)]))


def chosen_vehicles(seed: int, split_index: int, chosen: np.ndarray,
                     spec_probs: list[np.ndarray], windows: tuple[float, ...], strength: float
                     ) -> Iterator[tuple[Vehicles, np.ndarray, np.ndarray]]:
    """The chosen pool vehicles with their ticks and labels, pool chunk by pool chunk (each
    drawn again), regrouped into writing chunks of ``CHUNK_VEHICLES`` (the last smaller)."""
    kept: list[tuple[Vehicles, np.ndarray, np.ndarray]] = []
    for chunk in np.unique(chosen // CHUNK_VEHICLES):
        vehicles, ticks, labels = _pool_chunk(seed, split_index, int(chunk), spec_probs,
                                              windows, strength)
        mine = chosen[chosen // CHUNK_VEHICLES == chunk] % CHUNK_VEHICLES
        kept.append((subset(vehicles, mine), ticks[mine], labels[mine]))
        while sum(len(k[2]) for k in kept) >= CHUNK_VEHICLES or (
                chunk == chosen[-1] // CHUNK_VEHICLES and kept):
            vehicles, ticks = concat([k[0] for k in kept]), np.concatenate([k[1] for k in kept])
            labels = np.concatenate([k[2] for k in kept])
            now, later = np.arange(min(CHUNK_VEHICLES, len(labels))), np.arange(
                min(CHUNK_VEHICLES, len(labels)), len(labels))
            yield subset(vehicles, now), ticks[now], labels[now]
            kept = [(subset(vehicles, later), ticks[later], labels[later])] if len(later) else []


def _write_evaluation_split(out_dir: Path, seed: int, split_index: int, split: str, n: int,
                            first_id: int, spec_probs: list[np.ndarray],
                            windows: tuple[float, ...], signal: str, strength: float,
                            bar: tqdm) -> None:
    """Validation or test vehicles written chunk by chunk; the split is never held."""
    chosen = evaluation_choice(seed, split_index, split, n, spec_probs, windows, strength)
    written = 0
    for part, (vehicles, ticks, labels) in enumerate(chosen_vehicles(
            seed, split_index, chosen, spec_probs, windows, strength)):
        vehicles.ids = first_id + written + np.arange(len(labels))
        rng = np.random.default_rng([seed, split_index, MAX_POOL_VEHICLES, part])
        _write_vehicles(rng, out_dir, split, vehicles, ticks, labels, signal,
                        append=part > 0)
        written += len(labels)
        bar.update(len(labels))


def _segment_cumsum(increments: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Cumulative sum along rows that restarts at each vehicle's first row (never below 0)."""
    total = np.cumsum(increments, axis=0)
    before = np.r_[np.zeros((1, *total.shape[1:])), total[starts[1:] - 1]]
    lengths = np.diff(np.r_[starts, len(total)])
    return np.maximum(total - np.repeat(before, lengths, axis=0), 0.0)


def _restart_counters(rng: np.random.Generator, values: dict[str, np.ndarray],
                      row_vehicle: np.ndarray, time: np.ndarray, study: np.ndarray,
                      starts: np.ndarray) -> None:
    """Rare ECU updates: for a few vehicles every counter restarts from 0 at one moment."""
    n_vehicles = len(starts)
    resets = rng.random(n_vehicles) < RESET_VEHICLE_SHARE
    when = rng.uniform(0.2, 0.9, n_vehicles) * study
    after = resets[row_vehicle] & (time >= when[row_vehicle])
    if not after.any():
        return
    for name in COUNTERS:
        before = np.where(after, 0.0, np.nan_to_num(values[name]))
        offset = np.maximum.reduceat(before, starts)  # cumulative: the last value before
        values[name] = np.where(after, values[name] - offset[row_vehicle], values[name])


def simulate_readouts(rng: np.random.Generator, vehicles: Vehicles, ticks: np.ndarray,
                      signal: str = "relative") -> dict[str, np.ndarray]:
    """Cumulative counters and histograms at every readout, with missing stretches.

    ``signal`` says where the failure precursor shows (see :data:`SIGNALS`).
    """
    valid = ticks >= 0
    counts = valid.sum(axis=1)
    row_vehicle = np.repeat(np.arange(len(counts)), counts)
    tick = ticks[valid]
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    previous = np.r_[0, tick[:-1]]
    previous[starts] = 0
    dt = (tick - previous) * TICK
    time = np.round(tick * TICK, 1)
    midpoint = time - dt / 2
    n_rows, n_vehicles = len(tick), len(counts)

    study = vehicles.study_ticks[row_vehicle] * TICK
    ttf = study - midpoint
    degradation = np.clip(1 - ttf / vehicles.horizon[row_vehicle], 0, 1) ** 1.5
    precursor = vehicles.amplitude[row_vehicle] * degradation
    # Benign episodes (heavy use, harsh conditions) that look like precursors, for everyone.
    n_episodes = 3
    centre = rng.uniform(0, 1, (n_vehicles, n_episodes)) * vehicles.study_ticks[:, None] * TICK
    width = rng.uniform(5, 30, (n_vehicles, n_episodes))
    height = rng.lognormal(-0.7, 0.5, (n_vehicles, n_episodes))
    height *= rng.random((n_vehicles, n_episodes)) < 0.35
    episode = (height[row_vehicle] * np.exp(
        -(((midpoint[:, None] - centre[row_vehicle]) / width[row_vehicle]) ** 2))).sum(axis=1)
    usage = vehicles.usage[row_vehicle]
    relative_counters = signal in ("relative", "mixed")
    relative_histograms = signal == "relative"

    values: dict[str, np.ndarray] = {ID: vehicles.ids[row_vehicle], TIME: time}
    for name, (rate, spread, gain, episode_gain) in COUNTERS.items():
        level = np.exp(rng.normal(0.0, spread, n_vehicles))[row_vehicle]
        if name == "370_0":  # zero for almost every vehicle, as in the real data
            level = (rng.random(n_vehicles) < 0.05)[row_vehicle] * 0.5
            rate = 1.0
        noise = rng.lognormal(0.0, 0.25, n_rows)
        own = rate * usage * level * noise
        if relative_counters:  # a change of the vehicle's own rate
            increment = own * (1 + gain * precursor + episode_gain * episode)
        else:  # an amount on top, the same for every vehicle whatever its own level
            increment = own + rate * usage * noise * (gain * precursor + episode_gain * episode)
        values[name] = np.floor(_segment_cumsum(increment * dt, starts))
    for family, (rate, proportions, shift, integer) in HISTOGRAMS.items():
        base = np.log(np.maximum(np.array(proportions), 1e-12))
        direction = np.linspace(-1.0, 1.0, len(proportions))
        vehicle_shape = rng.normal(0.0, 0.3, (n_vehicles, len(proportions)))
        logits = base[None, :] + vehicle_shape[row_vehicle]
        push = shift * (precursor + 0.6 * episode)
        if relative_histograms:  # the vehicle's own shape leans towards the upper bins
            logits += push[:, None] * direction[None, :]
        weights = np.exp(logits - logits.max(axis=1, keepdims=True))
        weights *= np.array(proportions) > 0
        weights /= weights.sum(axis=1, keepdims=True)
        if not relative_histograms:  # mass in the (normally near-empty) top bins
            top = np.flatnonzero(np.array(proportions) > 0)[-2:]
            weights[:, top] += ABSOLUTE_BIN_SHARE * push[:, None] / len(top)
        level = np.exp(rng.normal(0.0, 0.3, n_vehicles))[row_vehicle]
        total = rate * usage * level * rng.lognormal(0.0, 0.2, n_rows) * dt
        increment = total[:, None] * weights * rng.lognormal(0.0, 0.15, weights.shape)
        cumulative = _segment_cumsum(increment, starts)
        if integer:
            cumulative = np.floor(cumulative)
        for i in range(len(proportions)):
            values[f"{family}_{i}"] = cumulative[:, i]
    _restart_counters(rng, values, row_vehicle, time, vehicles.study_ticks * TICK, starts)
    _apply_missing(rng, values, row_vehicle, time, vehicles.study_ticks * TICK, n_vehicles)
    return {name: values[name] for name in (ID, TIME, *feature_columns())}


def _apply_missing(rng: np.random.Generator, values: dict[str, np.ndarray],
                   row_vehicle: np.ndarray, time: np.ndarray, study: np.ndarray,
                   n_vehicles: int) -> None:
    """Blank whole families over a stretch of each affected vehicle's study."""
    groups = {"trio": list(MISSING_TOGETHER),
              **{f: [c for c in values if c.startswith(f + "_")] for f in ("167", "291", "459")}}
    for group, columns in groups.items():
        share = MISSING_VEHICLE_SHARE[group]
        affected = rng.random(n_vehicles) < share
        start = rng.uniform(0, 0.6, n_vehicles) * study
        to_end = rng.random(n_vehicles) < 0.75
        length = np.where(to_end, np.inf, rng.uniform(0.02, 0.5, n_vehicles) * study)
        if group in ("291", "459"):  # a few readouts only
            length = rng.uniform(2.0, 30.0, n_vehicles)
        relative = time - start[row_vehicle]
        missing = affected[row_vehicle] & (relative >= 0) & (relative < length[row_vehicle])
        for column in columns:
            values[column][missing] = np.nan


def _format_column(values: np.ndarray) -> pa.Array:
    """Floats written as the real files write them: '70.0', '203.67677', empty for missing."""
    text = pc.cast(pa.array(values, from_pandas=True), pa.string())
    has_point = pc.match_substring_regex(text, r"[.eE]")
    return pc.if_else(has_point, text, pc.binary_join_element_wise(text, ".0", ""))


def _write_csv(path: Path, columns: dict[str, np.ndarray], append: bool) -> None:
    table = pa.table({
        name: (pa.array(v) if v.dtype.kind in "iuU" else _format_column(v))
        for name, v in columns.items()
    })
    with path.open("ab" if append else "wb") as handle:
        if not append:
            handle.write((",".join(columns) + "\n").encode())
        pacsv.write_csv(table, handle, pacsv.WriteOptions(include_header=False,
                                                          quoting_style="none"))


def generate(out_dir: Path, n_train: int, n_validation: int, n_test: int, seed: int,
             windows: tuple[float, ...] = CLASS_WINDOWS, signal: str = "relative",
             strength: float = SIGNAL_STRENGTH, progress: bool = True) -> None:
    """Write the nine Component X CSV files for a synthetic fleet into ``out_dir``.

    Every split comes from the same process; validation and test are cut at a uniform readout
    and labelled with ``windows`` (``labels.windows``), like the real files.
    """
    if signal not in SIGNALS:
        raise ParamsError(f"synthetic.signal must be one of {SIGNALS}, got {signal!r}")
    if strength < 0:
        raise ParamsError(f"synthetic.strength must be at least 0, got {strength}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec_probs = spec_probabilities(np.random.default_rng([seed, 0]))
    sizes = {"train": n_train, "validation": n_validation, "test": n_test}
    first_id = 0
    with tqdm(total=sum(sizes.values()), desc="synthetic vehicles", unit="vehicle",
              disable=not progress) as bar:
        for split_index, (split, n) in enumerate(sizes.items(), start=1):
            if split == "train":
                for chunk, start in enumerate(range(0, n, CHUNK_VEHICLES)):
                    rng = np.random.default_rng([seed, split_index, chunk])
                    ids = np.arange(first_id + start, first_id + min(start + CHUNK_VEHICLES, n))
                    vehicles = sample_vehicles(rng, ids, spec_probs, strength)
                    _write_vehicles(rng, out_dir, split, vehicles, readout_ticks(rng, vehicles),
                                    None, signal, append=start > 0)
                    bar.update(len(ids))
            else:
                _write_evaluation_split(out_dir, seed, split_index, split, n, first_id,
                                        spec_probs, tuple(windows), signal, strength, bar)
            first_id += n


def _write_vehicles(rng: np.random.Generator, out_dir: Path, split: str, vehicles: Vehicles,
                    ticks: np.ndarray, labels: np.ndarray | None, signal: str, append: bool
                    ) -> None:
    values = simulate_readouts(rng, vehicles, ticks, signal)
    _write_csv(out_dir / readouts_file(split), values, append)
    _write_csv(out_dir / specifications_file(split), {
        ID: vehicles.ids, **{f"Spec_{j}": np.char.add("Cat", vehicles.specs[:, j].astype(str))
                             for j in range(vehicles.specs.shape[1])}}, append)
    if labels is None:
        _write_csv(out_dir / "train_tte.csv", {
            ID: vehicles.ids,
            "length_of_study_time_step": np.round(vehicles.study_ticks * TICK, 1),
            "in_study_repair": vehicles.event.astype(np.int64)}, append)
    else:
        _write_csv(out_dir / labels_file(split), {ID: vehicles.ids, "class_label": labels},
                   append)
