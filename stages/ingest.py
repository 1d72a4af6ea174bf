"""ingest: read and validate a dataset in the official layout, write typed parquet.

With data.source=synthetic the built-in synthetic Component X is generated first, as CSV
files in the same layout, and read through the same reader.
"""

import shutil
from pathlib import Path

from componentx import labels, schema, synthetic
from componentx.params import load_params
from componentx.runtime import atomic_dir, log, run_stage

params = load_params()
DATA, SYNTHETIC = params["data"], params["synthetic"]
NUM_CLASSES, WINDOWS = params["labels"]["num_classes"], params["labels"]["windows"]
OUT = Path("data/ingested")


def main() -> None:
    with atomic_dir(OUT) as tmp:
        if DATA["source"] == "synthetic":
            csv_dir = tmp / "csv"
            classes = len(WINDOWS) + 1 if NUM_CLASSES == "auto" else NUM_CLASSES
            synthetic.generate(csv_dir, SYNTHETIC["n_train"], SYNTHETIC["n_validation"],
                               SYNTHETIC["n_test"], SYNTHETIC["seed"],
                               tuple(labels.check_windows(WINDOWS, classes)),
                               SYNTHETIC["signal"], SYNTHETIC["strength"])
        elif DATA["source"] == "csv":
            csv_dir = Path(DATA["csv_dir"])
        else:
            raise ValueError(f"data.source must be 'synthetic' or 'csv', got {DATA['source']!r}")
        summary = schema.ingest(csv_dir, tmp, NUM_CLASSES, WINDOWS)
        if DATA["source"] == "synthetic":
            shutil.rmtree(csv_dir)
    log.info("ingested %s: %s rows, %s vehicles, %d features, %d specifications, %d classes",
             DATA["source"], summary.rows, summary.vehicles, len(summary.feature_columns),
             len(summary.spec_columns), summary.num_classes)


if __name__ == "__main__":
    run_stage(main)
