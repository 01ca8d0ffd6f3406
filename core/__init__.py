"""Plumbing shared by the entry scripts: building objects from config, checkpoints, user errors."""

from omegaconf import OmegaConf

from core.launcher_env import on_rank_zero, rank_suffix
from core.run_dir import register_resolvers

# conf/hydra/default.yaml uses ${run_dir:...}, ${on_rank_zero:...} and ${rank_suffix:}: every entry script imports
# core before Hydra composes
register_resolvers()
for name, resolver in (("on_rank_zero", on_rank_zero), ("rank_suffix", rank_suffix)):
    if not OmegaConf.has_resolver(name):
        OmegaConf.register_new_resolver(name, resolver)
