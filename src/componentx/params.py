"""Every key of ``params.yaml``, checked before any work: unknown keys, types, ranges and choices.

Stage scripts call :func:`load_params` in their ``main``, which validates the whole file and
raises a :class:`~componentx.errors.ParamsError` naming the first bad key and what is allowed;
``componentx validate`` lists them all. The choices a key allows are defined here once; the
library modules that act on them import them from here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import yaml

from componentx.errors import ParamsError

# The choices of every key that has them: the one definition, used by the library too.
SOURCES = ("synthetic", "csv")
SIGNALS = ("relative", "absolute", "mixed")
EVENT_REFS = ("one_per_class", "all", "test_like")
CENSORED_POLICIES = ("known_class0", "end_of_study", "test_like")
TRANSFORMS = ("cumulative", "increments", "both")
ARCHS = ("lstm", "cnn_lstm", "attention_lstm", "transformer", "fcn")
POOLINGS = ("last", "mean", "attention")
MASKINGS = ("random", "patch")
SCHEDULERS = ("none", "step", "cosine", "plateau")
MONITORS = ("loss", "accuracy", "macro_f1", "cost", "expected_cost", "none")
LOSSES = ("cross_entropy", "focal")
INITS = ("scratch", "pretrained")
AUGMENTATIONS = ("jitter", "scaling", "time_warp", "crop", "mixup")
DECISION_RULES = ("expected_cost", "argmax")
CALIBRATIONS = ("temperature", "bias_temperature", "none")
GBDT_LIBRARIES = ("lightgbm", "sklearn")
KERNEL_CHANNELS = ("readouts", "inputs")  # rocket.channels: what the kernels convolve

@dataclass(frozen=True)
class Rule:
    """What a key accepts: ``check`` says whether a value fits, ``allowed`` describes it."""

    allowed: str
    check: Callable[[Any], bool]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def integer(low: int | None = None, high: int | None = None) -> Rule:
    bounds = " ".join(filter(None, [f">= {low}" if low is not None else "",
                                    f"<= {high}" if high is not None else ""]))
    return Rule(f"an integer {bounds}".strip(), lambda v: isinstance(v, int) and not isinstance(
        v, bool) and (low is None or v >= low) and (high is None or v <= high))


def number(low: float | None = None, high: float | None = None, above: float | None = None
           ) -> Rule:
    bounds = " ".join(filter(None, [f"> {above}" if above is not None else "",
                                    f">= {low}" if low is not None else "",
                                    f"<= {high}" if high is not None else ""]))
    return Rule(f"a number {bounds}".strip(), lambda v: _number(v) and (
        above is None or v > above) and (low is None or v >= low) and (high is None or v <= high))


def choice(*values: Any) -> Rule:
    return Rule("one of " + ", ".join(map(str, values)),
                lambda v: any(type(v) is type(c) and v == c for c in values))


def either(*rules: Rule) -> Rule:
    return Rule(" or ".join(r.allowed for r in rules), lambda v: any(r.check(v) for r in rules))


def list_of(rule: Rule, min_length: int = 0) -> Rule:
    return Rule(f"a list of {rule.allowed.removeprefix('a ').removeprefix('an ')}"
                + (f" (at least {min_length})" if min_length else ""),
                lambda v: isinstance(v, list) and len(v) >= min_length
                and all(rule.check(x) for x in v))


BOOL = Rule("true or false", lambda v: isinstance(v, bool))
TEXT = Rule("a non-empty string", lambda v: isinstance(v, str) and bool(v.strip()))
POSITIVE = number(above=0)
SHARE = number(low=0, high=1)
NON_NEGATIVE = number(low=0)
DEVICE = Rule("auto, cpu, cuda or cuda:N", lambda v: isinstance(v, str) and (
    v in ("auto", "cpu", "cuda") or (v.startswith("cuda:") and v[5:].isdigit())))
COST_MATRIX = either(choice("zero_one"), Rule(
    "a square matrix of costs >= 0 (a list of equal-length lists)",
    lambda v: isinstance(v, list) and len(v) >= 2 and all(
        isinstance(row, list) and len(row) == len(v) and all(_number(c) and c >= 0 for c in row)
        for row in v)))

SCHEMA: dict[str, dict[str, Rule]] = {
    "data": {"source": choice(*SOURCES), "csv_dir": TEXT},
    "compute": {"buckets": either(choice("auto"), integer(1, 4096)),
                "workers": either(choice("auto"), integer(1)),
                "memory_per_worker": either(choice("auto"), POSITIVE), "device": DEVICE},
    "synthetic": {"seed": integer(0), "n_train": integer(1), "n_validation": integer(1),
                  "n_test": integer(1), "signal": choice(*SIGNALS),
                  "strength": NON_NEGATIVE},
    "labels": {"num_classes": either(choice("auto"), integer(2)),
               "windows": list_of(POSITIVE, 1),
               "event_refs": choice(*EVENT_REFS), "censored": choice(*CENSORED_POLICIES),
               "censored_refs": integer(1), "test_like_refs": integer(1), "seed": integer(0)},
    "window": {"size": integer(1)},
    "features": {"transform": choice(*TRANSFORMS),
                 "counters": list_of(TEXT)},
    "model": {"arch": choice(*ARCHS),
              "hidden_size": integer(1), "num_layers": integer(1), "bidirectional": BOOL,
              "dropout": number(low=0, high=0.99), "pooling": choice(*POOLINGS),
              "spec_embedding_dim": integer(1), "head_hidden": integer(1),
              "conv_channels": integer(1), "conv_layers": integer(1), "kernel_size": integer(1),
              "num_heads": integer(1), "max_steps": integer(1)},
    "pretrain": {"epochs": integer(0), "lr": POSITIVE, "batch_size": integer(1),
                 "mask_ratio": number(above=0, high=1), "masking": choice(*MASKINGS),
                 "patch_size": integer(1), "seed": integer(0)},
    "train": {"lr": POSITIVE, "epochs": integer(1), "batch_size": integer(1),
              "eval_batch_size": integer(1), "seed": integer(0), "num_threads": integer(0),
              "weight_decay": NON_NEGATIVE,
              "class_weights": either(choice("none", "inverse"), list_of(NON_NEGATIVE, 2)),
              "balanced_sampler": BOOL, "scheduler": choice(*SCHEDULERS),
              "warmup_epochs": integer(0), "step_size": integer(1),
              "gamma": number(above=0, high=1),
              "grad_clip": NON_NEGATIVE, "patience": integer(1), "min_steps": integer(0),
              "monitor": choice("auto", *MONITORS),
              "smoothing": either(choice("auto"), integer(1)),
              "resume": BOOL, "loss": choice(*LOSSES),
              "focal_gamma": NON_NEGATIVE, "label_smoothing": number(low=0, high=0.99),
              "compile": BOOL, "nproc": integer(1), "init": choice(*INITS),
              "freeze_epochs": integer(0),
              "augment": list_of(choice(*AUGMENTATIONS))},
    "evaluate": {"cost_matrix": COST_MATRIX, "decision": choice(*DECISION_RULES),
                 "calibration": choice(*CALIBRATIONS),
                 "folds": integer(1), "priors": either(choice("validation"), list_of(POSITIVE, 2)),
                 "bootstrap": integer(10), "seed": integer(0)},
    "gbdt": {"library": choice(*GBDT_LIBRARIES), "k": integer(2), "max_iter": integer(1),
                 "patience": integer(1), "learning_rate": POSITIVE,
                 "max_leaf_nodes": either(choice("auto"), integer(2)),
                 "min_samples_leaf": either(choice("auto"), integer(1)),
                 "window_stats": either(choice("auto"), BOOL), "l2_regularization": NON_NEGATIVE,
                 "class_weights": choice("none", "inverse"), "seed": integer(0)},
    "rocket": {"kernels": either(choice("auto"), integer(84)),
               "channels": choice(*KERNEL_CHANNELS), "l2": POSITIVE,
               "max_iter": integer(1), "class_weights": choice("none", "inverse"),
               "seed": integer(0)},
    "multirocket": {"kernels": either(choice("auto"), integer(84)),
                    "channels": choice(*KERNEL_CHANNELS),
                    "max_windows": integer(1), "l2": POSITIVE,
                    "max_iter": integer(1), "class_weights": choice("none", "inverse"),
                    "seed": integer(0)},
    "selection": {"cross_validate_below": integer(0), "folds": integer(2, 20),
                  "seed": integer(0)},
    "gate": {"candidates": Rule("a non-empty list of candidate names, each once", lambda v: (
                 isinstance(v, list) and bool(v) and len(set(map(str, v))) == len(v)
                 and all(TEXT.check(x) for x in v))),
             "reference": TEXT, "split": choice("validation"),
             "ece_tolerance": NON_NEGATIVE, "bootstrap": integer(10), "seed": integer(0)},
    "fleet": {"holdout": number(low=0, high=0.9), "seed": integer(0), "risk_class": integer(1),
              "tau_on": either(choice("target"), SHARE),
              "tau_off": either(choice("auto"), SHARE), "min_consecutive": integer(1),
              "horizon": either(choice("auto"), POSITIVE), "hysteresis": SHARE,
              "target_fa": POSITIVE},
    "tracking": {"mlflow": BOOL, "mlflow_uri": TEXT, "mlflow_experiment": TEXT,
                 "tensorboard": BOOL, "tensorboard_dir": TEXT},
    "explain": {"vehicles": integer(1), "top_features": integer(1)},
}


def problems(params: Any) -> list[str]:
    """Every problem of a params mapping, one line each (empty when it is valid)."""
    if not isinstance(params, dict):
        return ["the file must be a mapping of sections (data:, labels:, train:, ...)"]
    found = []
    # a candidate of your own may have a section of its own: checked by the registry
    # (componentx.candidates.registry.chosen) when a stage uses it
    own = set(params.get("gate", {}).get("candidates", []) if isinstance(
        params.get("gate"), dict) else [])
    for section in sorted(set(params) - set(SCHEMA) - own):
        found.append(f"unknown section '{section}'; known: {', '.join(SCHEMA)}")
    for section, rules in SCHEMA.items():
        found += section_problems(params, section, rules)
    found += _cross_checks(params) if not found else []
    return found


def section_problems(params: dict, section: str, rules: dict[str, Rule]) -> list[str]:
    """The problems of one section of ``params`` against its ``rules``."""
    if section not in params:
        return [f"missing section '{section}'"]
    values = params[section]
    if not isinstance(values, dict):
        return [f"{section}: expected a mapping of keys, got {values!r}"]
    found = [f"unknown key {section}.{key}; known: {', '.join(sorted(rules))}"
             for key in sorted(set(values) - set(rules))]
    for key, rule in rules.items():
        if key not in values:
            found.append(f"missing key {section}.{key} ({rule.allowed})")
        elif not rule.check(values[key]):
            found.append(f"{section}.{key} must be {rule.allowed}, got {values[key]!r}")
    return found


def _cross_checks(params: dict) -> list[str]:
    found = []
    classes = params["labels"]["num_classes"]
    matrix = params["evaluate"]["cost_matrix"]
    if isinstance(classes, int) and isinstance(matrix, list) and len(matrix) != classes:
        found.append(f"evaluate.cost_matrix is {len(matrix)}x{len(matrix)} but "
                     f"labels.num_classes is {classes}")
    windows = params["labels"]["windows"]
    if any(b <= a for a, b in pairwise(windows)):
        found.append(f"labels.windows must be increasing, got {windows}")
    taus = params["fleet"]["tau_on"], params["fleet"]["tau_off"]
    if all(isinstance(t, float | int) for t in taus) and taus[1] > taus[0]:
        found.append(f"fleet.tau_off ({params['fleet']['tau_off']}) must not exceed "
                     f"fleet.tau_on ({params['fleet']['tau_on']})")
    return found


def read_params(path: str | Path = "params.yaml") -> Any:
    """The parsed file; a file that is missing, not text or not YAML is one clear error."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    except UnicodeDecodeError as error:
        raise ParamsError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise ParamsError(f"{path}{where}: not valid YAML "
                          f"({getattr(error, 'problem', None) or error})") from None


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Read and validate ``params.yaml``; a problem raises :class:`ParamsError` naming the
    first bad key (and how many more there are)."""
    params = read_params(path)
    found = problems(params)
    if found:
        raise ParamsError(f"{path}: {found[0]}"
                          + (f" (and {len(found) - 1} more: componentx validate {path})"
                             if len(found) > 1 else ""))
    return params
