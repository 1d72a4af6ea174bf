"""windowing: memory-mappable readout arrays plus a window index per labelled reference."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from componentx import windowing
from componentx.params import load_params
from componentx.runtime import atomic_dir, log, run_stage
from componentx.schema import SPLITS, DatasetSummary

SIZE = load_params()["window"]["size"]
INGESTED, LABELS = Path("data/ingested"), Path("data/labels")
OUT = Path("data/windows")


def main() -> None:
    with atomic_dir(OUT) as tmp:
        summary = DatasetSummary.load(INGESTED / "schema.json")
        (tmp / "features.json").write_text(json.dumps(summary.feature_columns) + "\n")
        for split in SPLITS:
            table = pq.read_table(INGESTED / f"{split}_readouts.parquet")
            ids = table.column("vehicle_id").to_numpy()
            times = table.column("time_step").to_numpy()
            values = np.empty((table.num_rows, table.num_columns - 2), dtype=np.float64)
            for j, column in enumerate(table.column_names[2:]):
                values[:, j] = table.column(column).to_numpy(zero_copy_only=False)
            del table
            np.save(tmp / f"{split}_values.npy", values)
            np.save(tmp / f"{split}_time.npy", times)
            np.save(tmp / f"{split}_vehicle.npy", ids)
            labels = pd.read_parquet(LABELS / f"{split}.parquet")
            meta = windowing.build_windows(ids, times, labels, SIZE)
            meta.to_parquet(tmp / f"{split}_windows.parquet", index=False)
            dropped = len(labels) - len(meta)
            log.info("%s: %d windows over %d readouts, mean length %.1f%s", split, len(meta),
                     len(ids), meta["length"].mean(),
                     f", {dropped} labels without readouts dropped" if dropped else "")


if __name__ == "__main__":
    run_stage(main)
