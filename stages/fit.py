"""fit_<name>: one candidate of the gate (the argument: gbdt, rocket, sequence, or one of your
own) through the one path every candidate takes: fitted on train and scored on validation,
or, with little data, fitted fold by fold for out-of-fold logits and refitted; then scored on
test. Writes models/candidates/<name>/ and data/logits/<name>.npz; with --live, per-step
metrics to dvclive/<name>/.

A candidate that fits in several processes (the sequence model with train.nproc > 1) runs
under torchrun: the stage launches itself again."""

import sys

from componentx.candidates.folders import CandidateFolders
from componentx.candidates.interface import PipelineData
from componentx.candidates.phase import fit_candidate, fit_processes
from componentx.errors import UserError
from componentx.params import load_params
from componentx.runtime import relaunch, run_stage, torchrun_command


def main() -> None:
    if len(sys.argv) < 2:
        raise UserError("usage: stages/fit.py CANDIDATE [--live]")
    params = load_params()
    name, live = sys.argv[1], "--live" in sys.argv[2:]
    command = torchrun_command(fit_processes(name, params), sys.argv)
    if command is not None:
        sys.exit(relaunch(command))
    fit_candidate(name, params, PipelineData(params["window"]["size"]), CandidateFolders(),
                  live)


if __name__ == "__main__":
    run_stage(main, f"fit_{sys.argv[1]}" if len(sys.argv) > 1 else "fit")
