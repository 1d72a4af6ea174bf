"""windowing: memory-mappable readout arrays plus a window index per labelled reference; the
fleet holdout's readouts are written apart (``fleet_*``), never among train's."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from componentx import windowing
from componentx.params import load_params
from componentx.runtime import atomic_dir, log, run_stage
from componentx.schema import SPLITS, DatasetSummary

SIZE = load_params()["window"]["size"]
INGESTED, LABELS = Path("data/ingested"), Path("data/labels")
OUT = Path("data/windows")


def write_split(tmp: Path, name: str, table, labels: pd.DataFrame) -> None:
    """Readout arrays (memory-mappable .npy) and the window index of one split."""
    ids = table.column("vehicle_id").to_numpy()
    times = table.column("time_step").to_numpy()
    values = np.empty((table.num_rows, table.num_columns - 2), dtype=np.float64)
    for j, column in enumerate(table.column_names[2:]):
        values[:, j] = table.column(column).to_numpy(zero_copy_only=False)
    np.save(tmp / f"{name}_values.npy", values)
    np.save(tmp / f"{name}_time.npy", times)
    np.save(tmp / f"{name}_vehicle.npy", ids)
    meta = windowing.build_windows(ids, times, labels, SIZE)
    meta.to_parquet(tmp / f"{name}_windows.parquet", index=False)
    dropped = len(labels) - len(meta)
    log.info("%s: %d windows over %d readouts, mean length %.1f%s", name, len(meta), len(ids),
             meta["length"].mean() if len(meta) else 0.0,
             f", {dropped} labels without readouts dropped" if dropped else "")


def main() -> None:
    with atomic_dir(OUT) as tmp:
        summary = DatasetSummary.load(INGESTED / "schema.json")
        (tmp / "features.json").write_text(json.dumps(summary.feature_columns) + "\n")
        fleet = pd.read_parquet(LABELS / "fleet.parquet")
        held = pa.array(np.unique(fleet["vehicle_id"].to_numpy()).astype(np.int64))
        for split in SPLITS:
            table = pq.read_table(INGESTED / f"{split}_readouts.parquet")
            labels = pd.read_parquet(LABELS / f"{split}.parquet")
            if split == "train":  # the fleet holdout's readouts go apart: no statistics
                in_fleet = pc.is_in(table.column("vehicle_id"), value_set=held)
                write_split(tmp, "fleet", table.filter(in_fleet), fleet)
                table = table.filter(pc.invert(in_fleet))
            write_split(tmp, split, table, labels)


if __name__ == "__main__":
    run_stage(main)
