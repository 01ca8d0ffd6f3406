"""Write report.md and the loss, top-1 and top-5 figures of a finished run or sweep: python report.py DIR (conf/report.yaml)."""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from runs.entry_points import discarded_on_user_error, exit_on_user_error, positional_to_overrides, register_resolvers

register_resolvers()  # conf/report.yaml uses ${output_dir:...}: registered before Hydra composes


@hydra.main(version_base="1.3", config_path="conf", config_name="report")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error(), discarded_on_user_error(cfg.out):
        from analysis.run_report import METRICS, check_overfitting_rule, targets_of, write_report

        targets = targets_of(cfg.target)
        check_overfitting_rule(cfg.patience, cfg.min_rise)
        report = write_report(Path(cfg.run), Path(cfg.out), targets, cfg.patience, cfg.min_rise)
        print(f"report: {report} (figures {', '.join(f'{metric}.png' for metric in METRICS)} beside it)")


if __name__ == "__main__":
    sys.argv[1:] = positional_to_overrides(sys.argv[1:], ("run",))
    main()
