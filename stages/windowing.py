"""windowing: memory-mappable readout arrays plus a window index per labelled reference; the
fleet holdout's readouts are written apart (``fleet_*``), never among train's."""

from pathlib import Path

from componentx.data.windowing import window_splits
from componentx.params import load_params
from componentx.runtime import atomic_dir, run_stage

INGESTED, LABELS, OUT = Path("data/ingested"), Path("data/labels"), Path("data/windows")


def main() -> None:
    params = load_params()
    with atomic_dir(OUT) as tmp:
        window_splits(INGESTED, LABELS, tmp, params["window"]["size"], params["compute"])


if __name__ == "__main__":
    run_stage(main, "windowing")
