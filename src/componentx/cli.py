"""componentx: validate params, write the synthetic fleet, compare experiments, sweep, promote.

Also renders every plot for offline use:

    componentx validate [params.yaml]
    componentx synthetic --out DIR [--n-train 6000 ...]
    componentx compare [EXPERIMENT ...]
    componentx sweep [--arch lstm cnn_lstm] [--pooling last mean] [--bidirectional false true]
    componentx predict --bundle models/bundle --readouts R.csv [--specifications S.csv] --out D.csv
    componentx serve [--bundle models/bundle] [--readouts DIR] [--host 127.0.0.1 --port 8000]
    componentx promote [--force]
    componentx plots [--out dvc_plots]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from componentx.errors import UserError
from componentx.runtime import log, run_stage

ARTIFACT = "componentx-model"  # dvc.yaml artifacts: the bundle the gate ships


def validate(args: argparse.Namespace) -> None:
    from componentx.params import problems, read_params

    found = problems(read_params(args.params))
    for problem in found:
        print(f"{args.params}: {problem}", file=sys.stderr)
    if found:
        sys.exit(1)
    print(f"{args.params}: OK")


def synthetic(args: argparse.Namespace) -> None:
    from componentx.data import synthetic as fleet

    if args.out.exists() and any(args.out.iterdir()):
        raise UserError(f"{args.out} is not empty; give a new folder")
    fleet.generate(args.out, args.n_train, args.n_validation, args.n_test, args.seed,
                   tuple(args.windows), args.signal, args.strength)
    log.info("wrote the nine Component X CSV files to %s (use it with -S data.source=csv "
             "-S data.csv_dir=%s)", args.out, args.out)


def _comparison(experiments: list, paired: bool = True) -> tuple[str, object]:
    """``experiments.comparison_table`` with the workspace's cost matrix and bootstrap."""
    from componentx.data.layout import DatasetSummary
    from componentx.decisions.metrics import check_cost_matrix
    from componentx.experiments.compare import comparison_table
    from componentx.params import load_params

    evaluate = load_params()["evaluate"]
    schema = Path("data/ingested/schema.json")
    if not schema.is_file():
        raise UserError(f"no {schema} yet: run the pipeline first (dvc repro)")
    classes = DatasetSummary.load(schema).num_classes
    return comparison_table(experiments, check_cost_matrix(evaluate["cost_matrix"], classes),
                            evaluate["bootstrap"], evaluate["seed"], paired=paired)


def compare(args: argparse.Namespace) -> None:
    from componentx.experiments.compare import list_experiments

    table, best = _comparison(list_experiments(names=args.experiments or None,
                                               candidate=args.candidate),
                              paired=not args.unpaired)
    print(table)
    print(f"lowest validation cost: {best.name} (choose on validation; test is only reported)")


def sweep(args: argparse.Namespace) -> None:
    from componentx.experiments import sweep as grid
    from componentx.experiments.compare import list_experiments, validation_rank

    windows = grid.train_windows()
    found = grid.candidates(windows, args.arch, args.pooling,
                            [b == "true" for b in args.bidirectional])
    log.info("sweep: %d experiments on %d training windows%s", len(found), windows,
             f" (small data: {grid.SMALL_WIDTH} wide)" if windows < grid.SMALL_DATA else "")
    names = grid.run(found)
    experiments = list_experiments(names=names, candidate=grid.CANDIDATE)
    best = grid.pick(experiments, names)
    table, _ = _comparison(experiments)
    grid.apply(best.name)
    print(table)
    head = next((e for e in experiments if e.name == "HEAD"), None)
    if head is not None and validation_rank(head) < validation_rank(best):
        print("note: the committed run (HEAD) is cheaper on validation than every sweep "
              "experiment; git checkout -- . && dvc checkout returns to it")
    validation = best.report["validation"]
    print(f"pick: {best.name} (validation cost {validation['cost_total']:,.0f}, accuracy "
          f"{validation['accuracy']:.3f}); applied to the workspace with dvc exp apply, "
          "git commit to keep it")


def predict(args: argparse.Namespace) -> None:
    from componentx.serving.scoring import predict as score

    report = score(args.bundle, args.readouts, args.specifications, args.out, args.engine,
                   args.at, args.memory_mb, args.device)
    unknown = {k: v for k, v in report.unknown_categories.items() if v}
    log.info("scored %d windows of %d vehicles (%d readouts%s) into %s%s", report.scored,
             report.vehicles, report.readouts,
             f", {report.buckets} buckets" if report.buckets > 1 else "", args.out,
             f"; categories never seen in training (coded unknown): {unknown}" if unknown else "")
    if report.drift and report.drift["flagged"]:
        flagged = report.drift["flagged"]
        log.warning("%d of %d features run differently than in training (PSI of their "
                    "increments above %s): %s", len(flagged), len(report.drift["psi"]),
                    report.drift["threshold"], ", ".join(flagged[:10]))


def serve(args: argparse.Namespace) -> None:
    import os

    from componentx.candidates.interface import PipelineData
    from componentx.serving.bundle import read_meta
    from componentx.serving.server import TOKEN_VARIABLE, ServeSettings
    from componentx.serving.server import serve as run_server

    meta = read_meta(args.bundle)
    pipeline = None
    if args.readouts is None and Path("data/windows/fleet_windows.parquet").is_file():
        pipeline = PipelineData(meta["window_size"])  # the pipeline's fleet holdout
    if args.readouts is not None and not args.readouts.is_dir():
        raise UserError(f"--readouts {args.readouts}: not a folder")
    run_server(ServeSettings(args.bundle, args.readouts, pipeline,
                             args.token or os.environ.get(TOKEN_VARIABLE) or None, args.engine,
                             args.device), args.host, args.port)


def promote(args: argparse.Namespace) -> None:
    from componentx.serving.promote import promote as copy_bundle

    shipped = copy_bundle(args.bundle, args.gate, args.to, args.force, args.predictions)
    log.info("promoted the %s model (%s) with its predictions to %s/ (use gate.reference=%s/"
             "predictions to gate later runs against it)", shipped, args.bundle, args.to,
             args.to)
    if args.version or args.stage:
        from componentx.serving.registry import register

        for tag in register(ARTIFACT, args.version, args.stage):
            log.info("tagged HEAD %s (dvc artifacts get . %s%s)", tag, ARTIFACT,
                     f" --stage {args.stage}" if args.stage and "#" in tag else
                     f" --rev {args.version}")


def plots(args: argparse.Namespace) -> None:
    from componentx.reports import offline_plots

    page, pngs = offline_plots.render(args.out)
    log.info("wrote %s (Vega inline, opens without a network) and %d PNGs in %s", page,
             len(pngs), args.out / "png")


def parser() -> argparse.ArgumentParser:
    from componentx.data.synthetic import CLASS_WINDOWS, SIGNAL_STRENGTH
    from componentx.experiments.compare import SHIPPED
    from componentx.experiments.sweep import GRID_ARCHS, GRID_POOLINGS
    from componentx.params import ARCHS, POOLINGS, SIGNALS

    main = argparse.ArgumentParser(prog="componentx", description=__doc__.splitlines()[0])
    commands = main.add_subparsers(dest="command", required=True, metavar="command")

    command = commands.add_parser("validate", help="check every key of a params file")
    command.add_argument("params", nargs="?", type=Path, default=Path("params.yaml"))
    command.set_defaults(run=validate)

    command = commands.add_parser("synthetic", help="write the built-in fleet as CSV files")
    command.add_argument("--out", type=Path, required=True, help="a new or empty folder")
    command.add_argument("--n-train", type=int, default=6000)
    command.add_argument("--n-validation", type=int, default=5046)
    command.add_argument("--n-test", type=int, default=5045)
    command.add_argument("--seed", type=int, default=0)
    command.add_argument("--windows", type=float, nargs="+", default=list(CLASS_WINDOWS))
    command.add_argument("--signal", choices=SIGNALS, default="relative")
    command.add_argument("--strength", type=float, default=SIGNAL_STRENGTH)
    command.set_defaults(run=synthetic)

    command = commands.add_parser(
        "compare", help="experiments side by side, chosen on validation with paired intervals")
    command.add_argument("experiments", nargs="*", help="experiment names (default: all)")
    command.add_argument("--unpaired", action="store_true",
                         help="skip the paired differences (no DVC cache needed)")
    command.add_argument("--candidate", default=SHIPPED,
                         help="the candidate that stands for each experiment: the one its gate "
                         "ships (default), or a name (gbdt, rocket, sequence, ...)")
    command.set_defaults(run=compare)

    command = commands.add_parser(
        "sweep", help="train a standard grid of models as DVC experiments, apply the best on "
        "validation")
    command.add_argument("--arch", nargs="+", default=list(GRID_ARCHS), choices=ARCHS)
    command.add_argument("--pooling", nargs="+", default=list(GRID_POOLINGS), choices=POOLINGS)
    command.add_argument("--bidirectional", nargs="+", default=["false", "true"],
                         choices=("false", "true"))
    command.set_defaults(run=sweep)

    command = commands.add_parser("predict", help="score new readouts with a model bundle")
    command.add_argument("--bundle", type=Path, default=Path("models/bundle"))
    command.add_argument("--readouts", type=Path, required=True)
    command.add_argument("--specifications", type=Path,
                         help="the vehicles' specifications, where the model uses them and "
                         "the readouts do not carry them as columns")
    command.add_argument("--out", type=Path, required=True, help="decisions CSV to write")
    command.add_argument("--engine", default="auto",
                         help="what runs the model where its candidate has a choice: auto, or "
                         "for a sequence model onnx (auto's choice, no torch) or torch")
    command.add_argument("--device", default="auto",
                         help="auto (a GPU when there is one), cpu, cuda or cuda:N")
    command.add_argument("--at", help="score at given times: a file of vehicle_id,time_step, "
                         "or a column of the readouts file, non-zero on the readouts to score")
    command.add_argument("--memory-mb", type=float, default=1024,
                         help="files larger than this are scored vehicle bucket by bucket")
    command.set_defaults(run=predict)

    command = commands.add_parser("serve", help="a scoring API and the fleet page, on "
                                  "loopback unless a token guards them")
    command.add_argument("--bundle", type=Path, default=Path("models/bundle"))
    command.add_argument("--readouts", type=Path, help="a folder with the fleet's readouts "
                         "(*readouts*.csv, *specifications*.csv): the page shows them, "
                         "rescored when they change; default: the pipeline's fleet holdout")
    command.add_argument("--host", default="127.0.0.1",
                         help="any address but loopback needs a token")
    command.add_argument("--port", type=int, default=8000)
    command.add_argument("--token", help="the token requests must carry (or the environment "
                         "variable COMPONENTX_TOKEN)")
    command.add_argument("--engine", default="auto", help="as for predict")
    command.add_argument("--device", default="auto", help="as for predict")
    command.set_defaults(run=serve)

    command = commands.add_parser("promote", help="copy the bundle the gate ships")
    command.add_argument("--bundle", type=Path, default=Path("models/bundle"))
    command.add_argument("--gate", type=Path, default=Path("metrics/gate.json"))
    command.add_argument("--to", type=Path, default=Path("promoted"))
    command.add_argument("--predictions", type=Path, default=Path("data/predictions"),
                         help="the evaluate stage's predictions, a folder per candidate")
    command.add_argument("--force", action="store_true",
                         help="promote the chosen candidate even where the gate keeps the "
                         "promoted model")
    command.add_argument("--version", help="register HEAD's bundle as this version, e.g. "
                         "v1.0.0 (git tag componentx-model@v1.0.0, the model registry way)")
    command.add_argument("--stage", help="and assign it to a stage, e.g. prod")
    command.set_defaults(run=promote)

    command = commands.add_parser("plots", help="every plot of dvc.yaml as an offline page "
                                  "and PNGs")
    command.add_argument("--out", type=Path, default=Path("dvc_plots"))
    command.set_defaults(run=plots)
    return main


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    run_stage(lambda: args.run(args))


if __name__ == "__main__":
    main()
