"""Serving: model bundles (data only, never code), scoring new readouts, the fleet view with the
shipped models, promotion and the model registry."""
