"""fleet: every fitted candidate at every readout of the fleet holdout's vehicles (set aside by
the labels stage, seen by no model), scored as its bundle and `componentx predict` score; alarms
with hysteresis, false alarms per time, lead times, and the thresholds the bundles carry."""

from pathlib import Path

import pandas as pd

from componentx.candidates.folders import CandidateFolders
from componentx.candidates.interface import PipelineData
from componentx.params import load_params
from componentx.reports.figures import trajectories_figure
from componentx.reports.tables import lead_time_table
from componentx.runtime import atomic_dir, atomic_write_json, log, run_stage
from componentx.serving.fleet import candidate_bundles, fleet_view

LABELS = Path("data/labels")
OUT, PLOTS = Path("data/fleet"), Path("plots/fleet")
METRICS = Path("metrics/fleet.json")


def main() -> None:
    params = load_params()
    data = PipelineData(params["window"]["size"])
    with atomic_dir(OUT) as out, atomic_dir(PLOTS) as plots:
        view = fleet_view(candidate_bundles(params, CandidateFolders(), data), data, LABELS,
                          params["fleet"], out, params["compute"]["device"], params["compute"])
        if view is None:
            reason = ("no fleet holdout: it needs train time-to-event (train_tte.csv) and "
                      "fleet.holdout > 0")
            log.info(reason)
            atomic_write_json(METRICS, {"available": False, "reason": reason})
            return
        for name, curve in view.curves.items():
            pd.DataFrame(curve).round(6).to_csv(plots / f"detection_{name}.csv", index=False)
            at = view.report[name]
            log.info("%s: tau_on %.4g (tau_off %.4g): detection %.2f, %.2f false alarms per "
                     "1000 time units, median lead time %s", name, at["tau_on"], at["tau_off"],
                     at["detection_rate"] or 0, at["false_alarms_per_1000"],
                     at["lead_time_median"])
        lead_time_table(view.lead_times, view.horizon).to_csv(plots / "lead_times.csv",
                                                              index=False)
        trajectories_figure(plots / "trajectories.png", view.shown,
                            {name: (view.report[name]["tau_on"], view.report[name]["tau_off"])
                             for name in view.curves}, view.horizon)
        atomic_write_json(METRICS, view.report)


if __name__ == "__main__":
    run_stage(main, "fleet")
