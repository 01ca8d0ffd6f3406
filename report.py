"""Write a report of a finished run or sweep: python report.py RUN_OR_SWEEP_DIR [out=DIR] [target.val_top1=0.98] [patience=3] [min_rise=0.05]

Writes a self-contained folder (default RUN_OR_SWEEP_DIR/report/): loss.png, top1.png and top5.png (train
and val per epoch; a sweep overlays its runs) and report.md: the config, final and best metrics, time and
throughput, observations computed from the curves (best epoch, overfitting onset, when a target accuracy
was reached), and for a K-fold sweep the mean and standard deviation of the val metrics over the folds
(analysis/run_report.py). `python report.py DIR` is short for `python report.py run=DIR`; conf/report.yaml
lists every setting.
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from runs.entry_points import exit_on_user_error, positional_to_overrides
from runs.run_dir import discarded_on_user_error, register_resolvers

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
