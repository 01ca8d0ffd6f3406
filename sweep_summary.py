"""Write a sweep's summary.md and summary.csv again (an interrupted or changed sweep): python sweep_summary.py SWEEP_DIR."""

import sys
from pathlib import Path

from omegaconf import DictConfig

from runs.entry_points import entry_point


@entry_point("sweep_summary", positional=("sweep",))
def main(cfg: DictConfig) -> None:
    from analysis.sweep_table import write_summary

    markdown_path, csv_path, markdown = write_summary(Path(cfg.sweep))
    print(markdown)
    print(f"Wrote {markdown_path} and {csv_path}", file=sys.stderr)
