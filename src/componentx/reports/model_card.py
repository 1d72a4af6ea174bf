"""The model card written into every bundle: what the model is, what it saw, how it scored,
what it is for."""

from __future__ import annotations

from componentx.decisions.rules import risk_title


def _cost(report: dict, split: str) -> str:
    r = report[split]
    low, high = r["cost_total_ci"]
    return (f"{r['cost_total']:,.0f} (95% CI {low:,.0f}–{high:,.0f}; always class 0: "
            f"{r['cost_always_0']:,.0f})")


ARCHITECTURES = {"lstm": "An LSTM", "cnn_lstm": "A CNN-LSTM",
                 "attention_lstm": "An attention-LSTM", "transformer": "A transformer",
                 "fcn": "A fully convolutional"}


def architecture(arch: str) -> str:
    """A sequence model's architecture in words (``model.arch``)."""
    return ARCHITECTURES[arch]


def model_card(meta: dict) -> str:
    """A short model card: what the model is (its candidate's own description), what it saw,
    how it scored, what it is for."""
    metrics, provenance = meta["metrics"], meta["provenance"]
    gate = metrics.get("gate", {})
    what = meta["description"]
    cross_validated = metrics.get("selection", {}).get("mode") == "cross_validation"
    fitted = {
        "folds": "The models of its cross-validation folds over train and validation (each "
                 "tuned on an inner split of its own training vehicles), calibrated on their "
                 "out-of-fold predictions; never on test.",
        "refit": "Fitted on train and validation, its fit tuning nothing, and calibrated on "
                 "the out-of-fold predictions of the same fit in cross-validation folds; "
                 "never on test.",
        "train": "Trained on train (tuned on an inner split of its vehicles where it tunes), "
                 "calibrated on validation, never on test."
    }[metrics.get("fitted_as", "folds" if cross_validated else "train")]
    vehicles = ", ".join(f"{n:,} {split}" for split, n in provenance["data"]["vehicles"].items())
    lines = [
        f"# Model card: componentx {meta['title']} ({meta['kind']})", "",
        f"**What it is.** {what}, predicting the class of time to failure of SCANIA "
        f"Component X-style components ({meta['num_classes']} classes; class windows "
        f"{meta['class_windows']} time units, class 0 beyond). Probabilities are calibrated "
        f"({meta['calibration']['method']}) to the deployment class "
        f"priors; the decision minimises the expected cost under the bundled cost matrix.",
        "",
        f"**Data it saw.** {vehicles or 'an unrecorded number of'} vehicles "
        f"({provenance['data']['source']} data, version {provenance['data']['version']}); "
        f"{len(meta['feature_columns'])} readout columns, specifications "
        f"{', '.join(meta['spec_columns']) or 'none'}. {fitted}",
        "",
        f"**Scores** (total cost, lower is better): "
        f"{'out-of-fold' if cross_validated else 'validation'} {_cost(metrics, 'validation')};"
        f" test {_cost(metrics, 'test')}.",
        f"The gate ({gate.get('split', 'validation')}) "
        f"{'ships this model' if meta.get('shipped') else 'did not choose this model'}.",
        "",
        "**Intended use.** Score the latest readouts of vehicles in the same data layout "
        "(`componentx predict --bundle <this folder> --readouts ...`): a maintenance "
        f"decision per vehicle at least cost, and the risk "
        f"{risk_title(meta['class_windows'], meta['risk_class'])}. Not for vehicles, sensors "
        "or usage unlike the training fleet's without checking; not a safety system.",
        "",
        f"**Provenance.** componentx {provenance['code']['version']}, commit "
        f"{provenance['code']['commit']}; params in `bundle.json`.",
    ]
    return "\n".join(lines) + "\n"
