"""pretrain: self-supervised masked reconstruction of readouts for the sequence encoder.

With pretrain.epochs: 0 (the default) it only records that there is no pre-trained encoder;
train.init: pretrained then refuses to start.
"""

from pathlib import Path

from componentx.params import load_params
from componentx.runtime import run_stage
from componentx.sequence.checkpoints import save_checkpoint
from componentx.sequence.pretraining import pretrain_stage

INGESTED, WINDOWS, INPUTS = Path("data/ingested"), Path("data/windows"), Path("data/inputs")
OUT = Path("models/pretrained.pt")


def main() -> None:
    params = load_params()
    save_checkpoint(OUT, pretrain_stage(params, INGESTED, WINDOWS, INPUTS))


if __name__ == "__main__":
    run_stage(main, "pretrain")
