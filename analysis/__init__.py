"""Reading finished runs: prediction files, records and curves, figures, comparisons of two checkpoints."""
