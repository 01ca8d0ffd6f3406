"""Composing the real configs in-process with Hydra's compose API, as the entry scripts would."""

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict, read_write

from runs.entry_points import register_resolvers
from tests.helpers.commands import REPO

CONF = REPO / "conf"


def compose_config(overrides: list[str], output_dir: Path, config_name: str = "train") -> DictConfig:
    """The composed config with `${hydra:...}` resolvable, output going to `output_dir`."""
    register_resolvers()
    GlobalHydra.instance().clear()
    # left initialized, as @hydra.main leaves it: rebuilding from a checkpoint composes conf/ again (runs/build.py)
    initialize_config_dir(config_dir=str(CONF), version_base="1.3")
    cfg = compose(
        config_name=config_name, overrides=[f"hydra.run.dir={output_dir}", *overrides], return_hydra_config=True
    )
    with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.runtime.cwd = str(output_dir)
    HydraConfig.instance().set_config(cfg)
    return cfg


def group_options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF / group).glob("*.yaml"))
