"""The candidate models the gate chooses among, and where each stage leaves them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Candidate:
    """A candidate: ``name`` (also its bundle's kind), a ``title`` for people, its
    predictions folder (``{split}.parquet``), metrics file and fitted model, and its rank in
    simplicity (lower is simpler: the gate's last tie-break)."""

    name: str
    title: str
    predictions: Path
    metrics: Path
    model: Path
    simplicity: int


CANDIDATES = (
    Candidate("baseline", "GBDT baseline", Path("data/baseline_predictions"),
              Path("metrics/baseline.json"), Path("models/baseline"), 0),
    Candidate("rocket", "MiniRocket", Path("data/rocket_predictions"),
              Path("metrics/rocket.json"), Path("models/rocket"), 1),
    Candidate("sequence", "sequence model", Path("data/predictions"),
              Path("metrics/evaluate.json"), Path("models/best.pt"), 2),
)
BY_NAME = {candidate.name: candidate for candidate in CANDIDATES}
