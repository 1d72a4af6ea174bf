"""A projection, labelled as one, of `bench/scale.py`'s measured table to a larger fleet and
more workers.

Per stage it fits the measured wall time as ``fixed + per readout x readouts`` (least squares
over the measured sizes) and prints how well that reproduces each measured row; then, for the
target fleet, the wall time on each number of workers: a stage mapped over vehicle buckets
(the data stages, the GBDT's features and Dask fit, the fleet view) divides its per-readout part
by the workers (measured on 2), a stage that runs in one process does not; so does a mapped
stage's worker memory (a bucket's, or its share of the data spread over the workers). The
driver's memory and the largest task argument and result are fitted the same way. With two
measured sizes the line passes through both; a third checks it.

    python bench/scale.py --fleet 1 4 10 > scale.md
    python bench/scale_projection.py scale.md --fleet 100 --workers 8 64
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

MAPPED = {"ingest", "labels", "windowing", "stats", "inputs", "fit_gbdt", "fleet"}
MEASURED_WORKERS = 2
UNITS = {"B": 1, "MB": 1e6}


def nbytes(cell: str) -> float:
    """A size cell of the table (``—``, ``1,234 B``, ``1.5 MB``) in bytes."""
    if cell == "—":
        return 0.0
    number, unit = cell.rsplit(" ", 1)
    return float(number.replace(",", "")) * UNITS[unit]


def read_table(path: Path) -> dict[str, list[dict]]:
    """The measured rows of each stage, from the table ``bench/scale.py`` printed."""
    stages: dict[str, list[dict]] = {}
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 9 or not re.fullmatch(r"[\d.]+×", cells[0]) or \
                cells[2].startswith("generate"):
            continue
        stages.setdefault(cells[2], []).append({
            "fleet": float(cells[0][:-1]), "readouts": float(cells[1].replace(",", "")),
            "seconds": float(cells[3]), "driver": float(cells[5]), "worker": float(cells[6]),
            "argument": nbytes(cells[7]), "result": nbytes(cells[8])})
    return stages


def linear(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``(fixed, slope)`` of the least-squares line through the points (slope never below 0:
    a figure that shrinks with the fleet is taken as not growing)."""
    slope, fixed = np.polyfit(x, y, 1)
    if slope < 0:
        return float(y.mean()), 0.0
    return float(fixed), float(slope)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", type=Path)
    parser.add_argument("--fleet", type=float, default=100)
    parser.add_argument("--workers", type=int, nargs="+", default=[8, 64])
    args = parser.parse_args()
    stages = read_table(args.table)
    if not stages or min(len(rows) for rows in stages.values()) < 2:
        raise SystemExit(f"{args.table}: needs bench/scale.py's rows of at least two fleet "
                         "sizes for every stage")
    print("How well the fit reproduces the measured wall times (s):\n")
    sizes = sorted({r["fleet"] for rows in stages.values() for r in rows})
    print("| stage | " + " | ".join(f"{s:g}× measured / fitted" for s in sizes) + " |")
    print("| --- |" + " --- |" * len(sizes))
    fits = {}
    for stage, rows in stages.items():
        readouts = np.array([r["readouts"] for r in rows])
        fits[stage] = {key: linear(readouts, np.array([r[key] for r in rows]))
                       for key in ("seconds", "driver", "worker", "argument", "result")}
        fixed, slope = fits[stage]["seconds"]
        cells = {r["fleet"]: f"{r['seconds']:.0f} / {fixed + slope * r['readouts']:.0f}"
                 for r in rows}
        print(f"| {stage} | " + " | ".join(cells.get(s, "—") for s in sizes) + " |")
    one = next(iter(stages.values()))[0]
    target = one["readouts"] / one["fleet"] * args.fleet
    print(f"\nProjection to {args.fleet:g}× ({target / 1e6:,.0f}M readouts):\n")
    print("| stage | " + " | ".join(f"wall on {w} workers" for w in args.workers) + " | "
          + " | ".join(f"worker GiB on {w}" for w in args.workers)
          + " | driver GiB | largest task argument | largest task result |")
    print("| --- |" + " --- |" * (2 * len(args.workers) + 3))
    for stage, fit in fits.items():
        at = {key: fixed + slope * target for key, (fixed, slope) in fit.items()}
        shares = [MEASURED_WORKERS / w if stage in MAPPED else 1 for w in args.workers]
        walls = [fit["seconds"][0] + fit["seconds"][1] * target * share for share in shares]
        workers = [fit["worker"][0] + fit["worker"][1] * target * share for share in shares]
        print(f"| {stage} | " + " | ".join(f"{s / 60:,.1f} min" for s in walls) + " | "
              + " | ".join(f"{m:.2f}" for m in workers)
              + f" | {at['driver']:.2f} | {at['argument'] / 1e6:.2f} MB"
              f" | {at['result'] / 1e6:.2f} MB |")


if __name__ == "__main__":
    main()
