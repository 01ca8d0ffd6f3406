"""The test suite (runs before any test module imports torch)."""

import os

# one thread per process: two workers each running a training process on 2 cores would otherwise spin-wait on each other
os.environ.setdefault("OMP_NUM_THREADS", "1")
