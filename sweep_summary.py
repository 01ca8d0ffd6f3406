"""Summarise a sweep: python sweep_summary.py logs/train/multiruns/<date>_<time>_<microseconds>

Writes <sweep dir>/summary.md and summary.csv (one row per job: overrides, status and reason, best val
top-1, its top-5, final val loss, epochs, wall time, samples/s; analysis/sweep_table.py) and prints the
Markdown table. A multirun of train.py writes them itself; this is for a sweep that was interrupted,
or whose jobs were changed or added to since. `python sweep_summary.py DIR` is short for
`python sweep_summary.py sweep=DIR` (conf/sweep_summary.yaml).
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from runs.entry_points import exit_on_user_error, positional_to_overrides
from runs.run_dir import register_resolvers

register_resolvers()  # conf/sweep_summary.yaml uses ${output_dir:...}: registered before Hydra composes


@hydra.main(version_base="1.3", config_path="conf", config_name="sweep_summary")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        from analysis.sweep_table import write_summary

        markdown_path, csv_path, markdown = write_summary(Path(cfg.sweep))
        print(markdown)
        print(f"Wrote {markdown_path} and {csv_path}", file=sys.stderr)


if __name__ == "__main__":
    sys.argv[1:] = positional_to_overrides(sys.argv[1:], ("sweep",))
    main()
