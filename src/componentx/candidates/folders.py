"""Where the model phase keeps each candidate's outputs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from componentx.candidates.registry import Registration, chosen
from componentx.errors import UserError

FIT_REPORT = "fit.json"  # what a fit is and chose, beside the model it saved


@dataclass(frozen=True)
class CandidateFolders:
    """Where the model phase keeps each candidate's outputs, a file or folder per name."""

    models: Path = Path("models/candidates")  # {name}/: the fitted model and fit.json
    logits: Path = Path("data/logits")  # {name}.npz: selection and test logits
    predictions: Path = Path("data/predictions")  # {name}/{split}.parquet
    metrics: Path = Path("metrics/candidates")  # {name}.json
    plots: Path = Path("plots/evaluate")  # {name}/...
    live: Path = Path("dvclive")  # {name}/: per-step metrics, where a stage declares them
    resume: Path = Path("models/.resume")  # {name}/: resumable work, not an output

    def fit_report(self, name: str) -> dict:
        path = self.models / name / FIT_REPORT
        if not path.is_file():
            raise UserError(f"{path} is missing: run the candidate's fit stage (dvc repro "
                            f"fit_{name})")
        return json.loads(path.read_text())

    def fitted(self, params: dict) -> tuple[list[Registration], dict[str, str]]:
        """The candidates of ``gate.candidates`` that were fitted, and those that declined
        their data with why (:meth:`~componentx.candidates.interface.Candidate.declines`)."""
        candidates = chosen(params)
        declined = {c.name: reason for c in candidates
                    if (reason := self.fit_report(c.name).get("declined"))}
        return [c for c in candidates if c.name not in declined], declined
