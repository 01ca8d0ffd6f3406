"""Plumbing shared by the entry scripts: building objects from config, checkpoints, user errors."""
