"""componentx: how close is a truck component to failure? (SCANIA Component X layout)."""

__version__ = "0.2.0"
