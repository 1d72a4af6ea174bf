"""Candidates: the models the gate chooses among, behind one small interface.

:mod:`~componentx.candidates.interface` says what a candidate is (fit on labelled windows,
logits of one bucket's windows, saved and loaded as data); :mod:`~componentx.candidates.registry`
is the one place that knows which exist; :mod:`~componentx.candidates.phase` is the one path
every candidate goes through (select, fit, calibrate, evaluate)."""
