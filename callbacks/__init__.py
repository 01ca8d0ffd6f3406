"""Callbacks the framework adds to Lightning's own (checkpointing, LR monitor, progress bar)."""
