"""Gradient-boosted trees on summary features of the same windows: the non-sequence baseline.
Needs no torch."""
