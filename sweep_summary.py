"""Write a sweep's summary.md and summary.csv again (an interrupted or changed sweep): python sweep_summary.py SWEEP_DIR."""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from runs.entry_points import exit_on_user_error, positional_to_overrides, register_resolvers

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
