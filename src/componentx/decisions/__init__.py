"""Decisions: class priors, calibration, the decision rules and failure risk, metrics and
paired comparisons, the gate between models, and fleet alarms. numpy only (the calibration
fit imports torch when it runs), so a shipped bundle decides without torch."""
