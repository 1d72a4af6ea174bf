"""rocket: MiniRocket features of the same windows and a logistic head, scored exactly like
every model (same selection windows, calibration, decisions and metrics)."""

from pathlib import Path

from componentx.decisions.candidates import BY_NAME
from componentx.params import load_params
from componentx.reports.tables import write_candidate
from componentx.rocket.model import fit_and_evaluate
from componentx.runtime import run_stage

INGESTED, WINDOWS, INPUTS = Path("data/ingested"), Path("data/windows"), Path("data/inputs")


def main() -> None:
    params = load_params()
    fitted, evaluation = fit_and_evaluate(INGESTED, WINDOWS, INPUTS, params["window"]["size"],
                                          params["rocket"], params["evaluate"],
                                          params["selection"])
    write_candidate(BY_NAME["rocket"], fitted, evaluation)


if __name__ == "__main__":
    run_stage(main, "rocket")
