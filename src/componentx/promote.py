"""Promote the current model when it passed the gate: python -m componentx.promote [--force]."""

from __future__ import annotations

import argparse
from pathlib import Path

from componentx.gate import promote
from componentx.runtime import log, run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=Path("models/best.pt"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/evaluate.json"))
    parser.add_argument("--gate", type=Path, default=Path("metrics/gate.json"))
    parser.add_argument("--predictions", type=Path, default=Path("data/predictions"))
    parser.add_argument("--to", type=Path, default=Path("promoted"))
    parser.add_argument("--force", action="store_true", help="promote even if the gate failed")
    args = parser.parse_args()
    promote(args.model, args.metrics, args.gate, args.predictions, args.to, args.force)
    log.info("promoted %s with its metrics and predictions to %s/ (use gate.reference=%s/"
             "predictions to gate later runs against it)", args.model, args.to, args.to)


if __name__ == "__main__":
    run_stage(main)
