"""Write report.md and the loss, top-1 and top-5 figures of a finished run or sweep: python report.py DIR (conf/report.yaml)."""

from pathlib import Path

from omegaconf import DictConfig

from runs.entry_points import entry_point


@entry_point("report", positional=("run",))
def main(cfg: DictConfig) -> None:
    from analysis.run_report import METRICS, write_report

    report = write_report(Path(cfg.run), Path(cfg.out), cfg.target, cfg.patience, cfg.min_rise)
    print(f"report: {report} (figures {', '.join(f'{metric}.png' for metric in METRICS)} beside it)")
