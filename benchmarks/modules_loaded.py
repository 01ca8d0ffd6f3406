"""Which of the project's own modules a command loads: python -m benchmarks.modules_loaded [train.py's overrides ...]

Runs train.py in this process (as `python train.py ...` would, from the repository folder) and prints, when it exits,
the project's modules in sys.modules (`__init__.py` files left out): every file a newcomer must open to follow that run.

    python -m benchmarks.modules_loaded debug=fdr
"""

import atexit
import runpy
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OURS = {
    path.name
    for path in REPO.iterdir()
    if (path / "__init__.py").is_file() and path.name not in ("tests", "benchmarks")
}


def report() -> None:
    loaded = sorted(
        name
        for name, module in list(sys.modules.items())
        if name.split(".")[0] in OURS and not str(getattr(module, "__file__", "") or "").endswith("__init__.py")
    )
    print(f"{len(loaded)} modules of ours: {' '.join(loaded)}", file=sys.__stderr__)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.argv = ["train.py", *sys.argv[1:]]
    atexit.register(report)
    runpy.run_path(str(REPO / "train.py"), run_name="__main__")
