"""Moved to callbacks/resume.py: this name stays until runs/entry_points.py and runs/search.py import from there."""

from callbacks.resume import StopOnSignal, TrainingStopped  # noqa: F401
