"""Reading checkpoints of train.py safely (weights and plain data only, checksums and shape checked) and writing them atomically."""
