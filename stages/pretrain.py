"""pretrain: self-supervised masked reconstruction of readouts for the sequence encoder.

With pretrain.epochs: 0 (the default) it only records that there is no pre-trained encoder;
train.init: pretrained then refuses to start.
"""

from pathlib import Path

from componentx import pretraining
from componentx.dataset import load_window_set
from componentx.features import FeatureStats
from componentx.models import ModelConfig
from componentx.params import load_params
from componentx.runtime import log, run_stage, section_config
from componentx.schema import DatasetSummary
from componentx.training import save_checkpoint

params = load_params()
PRETRAIN = section_config(pretraining.PretrainConfig, params, "pretrain")
WINDOW_SIZE = params["window"]["size"]
INGESTED, WINDOWS, STATS = Path("data/ingested"), Path("data/windows"), Path("data/stats.json")
OUT = Path("models/pretrained.pt")


def main() -> None:
    if PRETRAIN.epochs == 0:
        save_checkpoint(OUT, {"config": None, "encoder": None, "history": []})
        log.info("pretrain.epochs is 0: no pre-training")
        return
    stats = FeatureStats.load(STATS)
    summary = DatasetSummary.load(INGESTED / "schema.json")
    windows = load_window_set(WINDOWS, INGESTED, "train", stats, summary.spec_columns,
                              WINDOW_SIZE)
    config = section_config(ModelConfig, params, "model", n_features=windows.n_inputs,
                            num_classes=summary.num_classes)
    encoder, history = pretraining.pretrain(config, PRETRAIN, windows)
    save_checkpoint(OUT, {"config": config.to_dict(), "encoder": encoder, "history": history})


if __name__ == "__main__":
    run_stage(main)
