"""Train every architecture (and a few recipes) on the default synthetic data and tabulate them.

    python bench/compare_architectures.py --run   # queue the experiments and run the queue
    python bench/compare_architectures.py         # print the table from finished experiments

The experiments are ordinary DVC experiments (`dvc exp show` lists them); the table reads
each one's metrics/evaluate.json and dvclive summary from its git ref. Compare on validation,
with the paired difference against the baseline on the same vehicles; test is reported only.
The row `lstm` is the committed workspace run (HEAD). Wall time per epoch comes from
`python bench/train_throughput.py` (timings are kept out of the pipeline's outputs so that a
re-run reproduces dvc.lock exactly).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time

EXPERIMENTS = {
    "arch-cnn_lstm": ["model.arch=cnn_lstm"],
    "arch-attention_lstm": ["model.arch=attention_lstm"],
    "arch-transformer": ["model.arch=transformer"],
    "lstm-bidirectional": ["model.bidirectional=true"],
    "lstm-pretrained": ["pretrain.epochs=5", "train.init=pretrained", "train.freeze_epochs=2"],
    "lstm-focal": ["train.loss=focal"],
    "features-cumulative": ["features.transform=cumulative"],
    "features-increments": ["features.transform=increments"],
}


def git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


def run_queue() -> None:
    for name, overrides in EXPERIMENTS.items():
        command = ["dvc", "exp", "run", "--queue", "-n", name]
        for override in overrides:
            command += ["-S", override]
        subprocess.run(command, check=True)
    subprocess.run(["dvc", "queue", "start", "-j", "1"], check=True)
    while "Running" in (status := subprocess.run(["dvc", "queue", "status"], capture_output=True,
                                                text=True).stdout) or "Queued" in status:
        time.sleep(10)
    print(status)


def refs() -> dict[str, str]:
    """Experiment name -> git ref, plus the HEAD run as `lstm`."""
    found = {"lstm": "HEAD"}
    for line in git("for-each-ref", "--format=%(refname)", "refs/exps").split():
        name = line.rsplit("/", 1)[-1]
        if name in EXPERIMENTS:
            found[name] = line
    return found


def row(name: str, ref: str) -> str:
    report = json.loads(git("show", f"{ref}:metrics/evaluate.json"))
    live = json.loads(git("show", f"{ref}:dvclive/train/metrics.json"))
    validation, test = report["validation"], report["test"]
    low, high = validation["cost_total_ci"]
    gate = json.loads(git("show", f"{ref}:metrics/gate.json"))
    ours = next(row for row in gate["candidates"] if row["name"] == "sequence")
    paired = ours["vs_best"] and ours["vs_best"]["cost_total"]
    against = ("the best" if paired is None else f"{paired['difference']:+,.0f} "
               f"({paired['ci'][0]:+,.0f} to {paired['ci'][1]:+,.0f}) vs {gate['chosen']}")
    return (f"| {name} | {validation['cost_total']:,.0f} ({low:,.0f}–{high:,.0f}) | "
            f"{against} | "
            f"{validation['pr_auc']['macro']:.3f} | {test['cost_total']:,.0f} | "
            f"{live.get('step', 0) + 1} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="store_true", help="queue and run the experiments")
    args = parser.parse_args()
    if args.run:
        run_queue()
    print("| experiment | validation cost (95% CI) | − the best candidate, paired (95% CI) | "
          "validation failure PR-AUC | test cost (reported only) | epochs |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, ref in refs().items():
        print(row(name, ref))


if __name__ == "__main__":
    main()
