"""Comparing two checkpoints or prediction files sample by sample, with a contact sheet of the images they judge differently (compare.py)."""

import copy
import logging
from pathlib import Path

from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig

from analysis.comparison import (
    compare_predictions,
    contact_sheet,
    report,
    sample_images,
    sheet_selection,
    write_disagreements,
)
from analysis.prediction_files import PREDICTION_FILE_SUFFIXES, Predictions, read_predictions, sidecar_path
from runs.build import build_datamodule, build_loggers
from runs.config_check import check_config
from runs.evaluation import evaluate, rebuild_config
from user_errors import UserError

log = logging.getLogger(__name__)


def predictions_of(cfg: DictConfig, side: str) -> Predictions:
    """The predictions of side "a" or "b": the file given, or those of the checkpoint given, evaluated into <run>/<side>."""
    path = Path(cfg[side])
    if path.suffix in PREDICTION_FILE_SUFFIXES:
        return read_predictions(path)
    evaluation = copy.deepcopy(cfg)
    evaluation.ckpt_path = str(path)
    evaluation.splits = [cfg.split]
    evaluation.paths.output_dir = str(Path(cfg.paths.output_dir) / side)
    evaluate(evaluation)
    (written,) = Path(evaluation.paths.output_dir, "predictions").glob(f"{cfg.split}-*.csv")
    return read_predictions(written)


def compare(cfg: DictConfig) -> None:
    if cfg.split not in ("val", "test"):
        raise UserError(f"split must be val or test, not {cfg.split!r}.")
    comparison = compare_predictions(predictions_of(cfg, "a"), predictions_of(cfg, "b"))
    print(report(comparison, cfg.max_listed))
    output_dir = Path(cfg.paths.output_dir)
    write_disagreements(comparison, output_dir / "disagreements.csv")
    selection = sheet_selection(comparison, cfg.num_images)
    shown = [item.index for items in selection.values() for item in items]
    if not shown:
        return
    data_cfg, _ = rebuild_config(cfg, comparison.a.meta["experiment"], sidecar_path(comparison.a.path))
    check_config(data_cfg, groups=("data",))
    datamodule = build_datamodule(data_cfg)
    datamodule.setup("validate" if comparison.a.split == "val" else "test")
    images = dict(zip(shown, sample_images(datamodule, comparison.a.split, shown)))
    figure = contact_sheet(comparison, selection, images)
    figure.savefig(output_dir / "contact_sheet.png", dpi=100)
    print(f"contact sheet of {len(shown)} disagreeing images: {output_dir / 'contact_sheet.png'}")
    for change, items in selection.items():
        print(f"  {change}, most confident mistake first: {' '.join(f'#{item.index}' for item in items) or '(none)'}")
    for logger in build_loggers(cfg):
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure("compare/contact_sheet", figure)
            logger.finalize("success")
