"""Plumbing shared by the entry scripts: building objects from config, checkpoints, user errors."""

from core.run_dir import register_resolvers

# conf/hydra/default.yaml uses ${run_dir:...}: every entry script imports core before Hydra composes
register_resolvers()
