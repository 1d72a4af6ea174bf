"""gate: rank every candidate of gate.candidates on the selection windows with paired
intervals, choose the one to ship (or keep a promoted model that none clearly beats), and
record the verdict and a side-by-side table."""

import json
from pathlib import Path

from componentx.candidates.folders import CandidateFolders
from componentx.candidates.registry import chosen
from componentx.data.layout import DatasetSummary
from componentx.decisions.gate import choose_candidate, format_verdict
from componentx.decisions.metrics import check_cost_matrix
from componentx.params import load_params
from componentx.reports.tables import candidates_markdown
from componentx.runtime import atomic_write_bytes, atomic_write_json, run_stage

INGESTED, OUT = Path("data/ingested"), Path("metrics/gate.json")
COMPARISON = Path("metrics/comparison.md")


def main() -> None:
    params = load_params()
    folders = CandidateFolders()
    cost_matrix = check_cost_matrix(params["evaluate"]["cost_matrix"],
                                    DatasetSummary.load(INGESTED / "schema.json").num_classes)
    candidates = chosen(params)
    reports = {c.name: json.loads((folders.metrics / f"{c.name}.json").read_text())
               for c in candidates}
    declined = {name: report["declined"] for name, report in reports.items()
                if "declined" in report}
    fitted = [c for c in candidates if c.name not in declined]
    verdict = choose_candidate({c.name: reports[c.name] for c in fitted}, folders.predictions,
                               {c.name: c.simplicity for c in fitted}, cost_matrix,
                               params["gate"], params["evaluate"]) | {"declined": declined}
    atomic_write_json(OUT, verdict)
    atomic_write_bytes(COMPARISON, candidates_markdown(
        verdict, reports, {c.name: c.title for c in fitted}).encode())
    print(format_verdict(verdict))


if __name__ == "__main__":
    run_stage(main, "gate")
