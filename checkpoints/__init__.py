"""Reading checkpoints of train.py safely (weights and plain data only, stored configs checked) and writing them atomically."""
