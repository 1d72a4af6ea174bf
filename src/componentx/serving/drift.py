"""Data drift: do the readouts being scored still look like the data the model was fitted on?

What is compared is each feature's increment per time unit between a vehicle's consecutive
readouts (:func:`increments`), the model inputs that describe how a vehicle is run: the raw
readouts are cumulative and grow with age, so a fleet younger than the train one would look
shifted when nothing about its use has changed. The export stage puts a reference in every
bundle: for each feature, the train increments' deciles as bin edges and the share of
increments in each bin, missing values a bin of their own. Increments scored later are
binned on the same edges, and each feature's shift is the population stability index,
PSI = sum over bins of (share now - share then) x ln(share now / share then): under 0.1 it
is the usual sampling noise, above :data:`FLAG` the feature has moved (the thresholds credit
scoring has used for decades). Fewer than :data:`MIN_INCREMENTS` increments (one vehicle's,
say) are too few to judge: their PSI is reported, nothing is flagged.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from componentx.data.features import transform_features

BINS = 10  # deciles of the train increments
FLAG = 0.25  # PSI above FLAG: the feature has shifted
FLOOR = 1e-4  # share given to an empty bin, so the logarithm stays finite
CHUNK_ROWS = 1024  # rows binned at once: small temporaries, fast on a whole fleet
BLOCK_ROWS = 8192  # readouts whose increments are taken at once
MIN_INCREMENTS = 200  # fewer leave a decile bin empty by chance: nothing is flagged


def increments(values: np.ndarray, times: np.ndarray, vehicles: np.ndarray) -> np.ndarray:
    """Each feature's increment per time unit since the vehicle's previous readout, for
    every readout that has one: (rows - vehicles, features) float64, NaN where a value is
    missing. ``values`` (rows, features), ``times`` and ``vehicles`` (rows,) are sorted by
    vehicle and time."""
    rates = transform_features(values, times, vehicles, np.zeros(values.shape[1], dtype=bool),
                               "increments")
    return rates[1:][vehicles[1:] == vehicles[:-1]]


def reference_edges(sample: np.ndarray) -> list[list[float | None]]:
    """Inner bin edges per feature (columns of ``sample``, missing values ignored): its
    distinct deciles, padded with None (no edge) to ``BINS - 1``; a constant or empty
    feature has none (one bin)."""
    edges = []
    for column in np.asarray(sample, dtype=float).T:
        observed = column[~np.isnan(column)]
        quantiles = np.unique(np.quantile(observed, np.linspace(0, 1, BINS + 1)[1:-1])) if len(
            observed) else np.zeros(0)
        edges.append([*quantiles.tolist(), *[None] * (BINS - 1 - len(quantiles))])
    return edges


def bin_counts(values: np.ndarray, edges: list[list[float | None]],
               groups: np.ndarray | None = None, n_groups: int = 1) -> np.ndarray:
    """Per feature (row), the rows of ``values`` (rows, features) in each bin of ``edges``
    (:func:`reference_edges`), then the missing ones: (features, BINS + 1) int64, a feature
    with fewer edges leaving its last value bins empty. With ``groups`` ((rows,) in
    ``[0, n_groups)``), each group's counts: (n_groups, features, BINS + 1)."""
    values = np.asarray(values, dtype=float)
    inner = np.asarray(edges, dtype=float)  # (features, BINS - 1), NaN: no edge, never passed
    cells = len(edges) * (BINS + 1)  # a group's counts
    offsets = np.arange(len(edges)) * (BINS + 1)  # feature j's bins from j * (BINS + 1) on
    counts = np.zeros(n_groups * cells, dtype=np.int64)
    for start in range(0, len(values), CHUNK_ROWS):
        chunk = values[start:start + CHUNK_ROWS]
        binned = np.zeros(chunk.shape, dtype=np.intp)
        for k in range(BINS - 1):  # side="right": the bin is the count of edges at or below
            binned += inner[:, k] <= chunk
        binned[np.isnan(chunk)] = BINS  # the last column
        binned += offsets
        if groups is not None:
            binned += groups[start:start + CHUNK_ROWS, None] * cells
        counts += np.bincount(binned.ravel(), minlength=len(counts))
    shape = (len(edges), BINS + 1)
    return counts.reshape(shape if groups is None else (n_groups, *shape))


def increment_counts(values: np.ndarray, times: np.ndarray, vehicles: np.ndarray,
                     edges: list[list[float | None]], group_starts: np.ndarray | None = None
                     ) -> np.ndarray:
    """:func:`bin_counts` of the :func:`increments` of readouts sorted by vehicle and time,
    ``BLOCK_ROWS`` readouts at a time (each block with the readout before it): small
    temporaries, the same counts. With ``group_starts`` (the first vehicle id of each group,
    ascending: a vehicle belongs to the last group starting at or below it), each group's
    counts: (groups, features, BINS + 1)."""
    n_groups = 1 if group_starts is None else len(group_starts)
    counts = np.zeros((n_groups, len(edges), BINS + 1), dtype=np.int64)
    for start in range(0, len(values), BLOCK_ROWS):
        rows = slice(max(start - 1, 0), start + BLOCK_ROWS)
        ids = vehicles[rows]
        later = ids[1:]  # each increment's vehicle
        groups = np.zeros(np.count_nonzero(later == ids[:-1]), dtype=np.intp) \
            if group_starts is None else \
            np.searchsorted(group_starts, later[later == ids[:-1]], side="right") - 1
        counts += bin_counts(increments(values[rows], times[rows], ids), edges, groups,
                             n_groups)
    return counts[0] if group_starts is None else counts


def reference(chunks: Iterable[np.ndarray], sample: np.ndarray, features: list[str]) -> dict:
    """A bundle's drift reference: the edges from ``sample`` (increments, features), the
    counts (:func:`bin_counts`) over every chunk of increments, one chunk in memory at a
    time."""
    edges = reference_edges(sample)
    total = sum((bin_counts(chunk, edges) for chunk in chunks),
                np.zeros((len(edges), BINS + 1), dtype=np.int64))
    return {"features": features, "edges": edges, "counts": total.tolist()}


def psi(expected: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """The population stability index of each row's two histograms on the same bins
    ((features, bins) each, or ``actual`` (groups, features, bins): (groups, features));
    bins empty in both add nothing."""
    shares = []
    for counts in (expected, actual):
        counts = np.asarray(counts, dtype=float)
        shares.append(np.maximum(counts / np.maximum(counts.sum(axis=-1, keepdims=True), 1),
                                 FLOOR))
    e, a = shares
    return ((a - e) * np.log(a / e)).sum(axis=-1)


def drift_reports(reference_meta: dict, counts: np.ndarray) -> list[dict]:
    """Each group's :func:`drift_report` (``counts``: (groups, features, BINS + 1), from
    :func:`increment_counts` with groups), computed together."""
    counts = np.asarray(counts)
    shifts = psi(reference_meta["counts"], counts)  # (groups, features)
    seen = counts[:, 0].sum(axis=-1) if counts.shape[1] else np.zeros(len(counts), int)
    order = np.argsort(-shifts, axis=1, kind="stable")
    names = np.asarray(reference_meta["features"], dtype=object)
    rounded = np.round(shifts, 4)
    reports = []
    for group, ranks in enumerate(order):
        ranked = names[ranks].tolist()
        reports.append({
            "increments": int(seen[group]), "threshold": FLAG,
            "psi": dict(zip(ranked, rounded[group, ranks].tolist(), strict=True)),
            "flagged": [name for name, shift in zip(ranked, shifts[group, ranks], strict=True)
                        if shift > FLAG] if seen[group] >= MIN_INCREMENTS else [],
            "min_increments": MIN_INCREMENTS})
    return reports


def drift_report(reference_meta: dict, counts: np.ndarray) -> dict:
    """Each feature's PSI of increments binned on the reference's edges (``counts``:
    :func:`bin_counts`) against the bundle's reference, sorted by shift, and those past
    :data:`FLAG` where there are at least :data:`MIN_INCREMENTS` increments."""
    return drift_reports(reference_meta, np.asarray(counts)[None])[0]
