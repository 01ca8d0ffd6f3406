"""Summarise a sweep: python sweep_summary.py logs/train/multiruns/<date>_<time>

Writes <sweep dir>/summary.md and summary.csv (one row per job: overrides, status and reason, best val
top-1, its top-5, final val loss, epochs, wall time, samples/s; analysis/sweep_table.py) and prints the
Markdown table. A multirun of train.py writes them itself; this is for a sweep that was interrupted,
or whose jobs were changed or added to since.
"""

import argparse
import sys
from pathlib import Path

from analysis.sweep_table import write_summary
from runs.entry_points import exit_on_user_error
from user_errors import UserError


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "sweep_dir",
        type=Path,
        help="a multirun's sweep directory (hydra.sweep.dir), e.g. logs/train/multiruns/<date>_<time>",
    )
    args = parser.parse_args(argv)
    with exit_on_user_error():
        if not args.sweep_dir.is_dir():
            raise UserError(
                f"No sweep directory at {args.sweep_dir}: pass the folder a multirun wrote, e.g. logs/train/multiruns/<date>_<time>."
            )
        markdown_path, csv_path, markdown = write_summary(args.sweep_dir)
        print(markdown)
        print(f"Wrote {markdown_path} and {csv_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
