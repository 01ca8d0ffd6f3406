"""Serving a trained model: exported files with their input contract, and a user's own images as input."""
