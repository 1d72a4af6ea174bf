"""ingest: read and validate a dataset in the official layout, write typed parquet.

With data.source=synthetic the built-in synthetic Component X is generated first, as CSV
files in the same layout, and read through the same reader.
"""

from pathlib import Path

from componentx.data.ingest import ingest_source
from componentx.params import load_params
from componentx.runtime import atomic_dir, log, run_stage

OUT = Path("data/ingested")


def main() -> None:
    params = load_params()
    with atomic_dir(OUT) as tmp:
        summary = ingest_source(params["data"], params["synthetic"], params["labels"],
                                params["compute"], tmp)
    log.info("ingested %s: %s rows, %s vehicles, %d features, %d specifications, %d classes, "
             "%d buckets", params["data"]["source"], summary.rows, summary.vehicles,
             len(summary.feature_columns), len(summary.spec_columns), summary.num_classes,
             summary.buckets)


if __name__ == "__main__":
    run_stage(main, "ingest")
