"""Files from other people supply values, never code: the one check of every config stored in a file.

Checkpoints carry their run's composed config (callbacks/checkpointing.py), prediction files a data config
in their JSON sidecar (analysis/prediction_files.py); eval.py, compare.py, export.py and predict.py rebuild
the data, model and module from those with hydra.utils.instantiate, which imports and calls whatever a
`_target_` names. So before anything is built, every dict stored in such a file is held against this
installation's own conf/ (docs/trust.md):

- a `_target_` must be one that some conf/**/*.yaml names (or one that earlier versions of conf/ named,
  for the parts of a config that are only recorded, never rebuilt: RETIRED_TARGETS);
- the nodes that get rebuilt (data, model, module) must name a target that conf/ uses for that group;
- Hydra's other instantiation keys (`_partial_`, `_args_`, `_recursive_`, `_convert_`, any `_name_`)
  must appear with a target exactly as some conf/ file sets them for it;
- no string may hold an OmegaConf interpolation (`${...}`): stored configs are resolved, and a resolver
  such as oc.create would build new nodes (with new targets) after this check.

Anything else is refused with one sentence naming the file and the key, before a run directory exists
(runs/hydra_callbacks.py, a Hydra callback) and again where each file is read (checkpoints/loading.py,
analysis/prediction_files.py, deployment/exporting.py).
"""

import functools
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from user_errors import UserError

CONF = Path(__file__).resolve().parents[1] / "conf"
TARGET = "_target_"
# Hydra's instantiate reads keys of this form (_target_, _args_, _partial_, _recursive_, _convert_)
INSTANTIATE_KEY = re.compile(r"^_[a-z]+_$")
INTERPOLATION = "${"
# Stock Lightning classes that conf/callbacks and conf/logger named in earlier versions of this project:
# checkpoints of those versions record them in their run_config's callbacks and logger, which are never rebuilt.
RETIRED_TARGETS = frozenset({"lightning.pytorch.loggers.CSVLogger"})
REBUILT_GROUPS = ("data", "model", "module")
# a checkpoint's records of how its run was driven: never instantiated from the file (a resume and eval build
# these from their own command line), and where a user's own classes appear (+callbacks.mine._target_=...)
RECORDED_ONLY = {("run_config", section) for section in ("callbacks", "logger", "trainer")}
ADVICE = "a file supplies values, never code: use one written by this project's train.py, eval.py or export.py, or, if that class is your own code, add a config for it under conf/ first"


class AllowedTargets:
    """What conf/ instantiates: each target with the other instantiation keys it is set with, and the targets at each key path."""

    def __init__(self, conf: Path):
        self.keys_of: dict[str, set[frozenset]] = {}  # target -> the sets of (key, value) it appears with
        self.at: dict[tuple[str, ...], set[str]] = {}  # key path in the composed config -> targets there
        for path in sorted(conf.rglob("*.yaml")):
            self._add_file(conf, path, self._package(conf, path))

    @staticmethod
    def _package(conf: Path, path: Path) -> tuple[str, ...]:
        """Where Hydra puts the file's keys: its `# @package` header, else its config group."""
        header = re.search(r"^#\s*@package\s+(\S+)", path.read_text(), re.MULTILINE)
        group = path.parent.relative_to(conf).parts
        if header is None or header.group(1) == "_group_":
            return group
        return () if header.group(1) == "_global_" else tuple(header.group(1).split("."))

    def _add_file(self, conf: Path, path: Path, package: tuple[str, ...]) -> None:
        tree = yaml.safe_load(path.read_text()) or {}
        for entry in tree.get("defaults", []) if isinstance(tree, dict) else []:
            if isinstance(entry, str) and entry.endswith("@_here_"):  # another file's keys merged into this package
                self._add_file(conf, conf / f"{entry.removesuffix('@_here_').lstrip('/')}.yaml", package)
        for where, node in _dicts(tree, package):
            if TARGET in node:
                target = str(node[TARGET])
                self.keys_of.setdefault(target, set()).add(_other_instantiate_keys(node))
                self.at.setdefault(where, set()).add(target)


@functools.cache
def allowed_targets() -> AllowedTargets:
    return AllowedTargets(CONF)


def _dicts(tree: Any, where: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], dict]]:
    """Every dict in `tree` with its key path (list items as `[i]`)."""
    if isinstance(tree, Mapping):
        yield where, tree
        for key, value in tree.items():
            yield from _dicts(value, (*where, str(key)))
    elif isinstance(tree, (list, tuple)):
        for position, value in enumerate(tree):
            yield from _dicts(value, (*where, f"[{position}]"))


def _strings(tree: Any, where: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str]]:
    if isinstance(tree, str):
        yield where, tree
    elif isinstance(tree, Mapping):
        for key, value in tree.items():
            yield from _strings(value, (*where, str(key)))
    elif isinstance(tree, (list, tuple)):
        for position, value in enumerate(tree):
            yield from _strings(value, (*where, f"[{position}]"))


def _other_instantiate_keys(node: Mapping) -> frozenset:
    return frozenset(
        (str(key), repr(value))
        for key, value in node.items()
        if isinstance(key, str) and INSTANTIATE_KEY.match(key) and key != TARGET
    )


def _shown(value: Any, width: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _name(where: tuple[str, ...]) -> str:
    return ".".join(where).replace(".[", "[")


def _at(tree: Any, where: tuple[str, ...]) -> Any:
    for key in where:
        if not isinstance(tree, Mapping) or key not in tree:
            return None
        tree = tree[key]
    return tree


def check_stored_config(contents: Any, file: str | Path, rebuilt: Mapping[tuple[str, ...], str]) -> None:
    """Refuse `contents` (read from `file`) if it names code that this installation's conf/ does not;
    `rebuilt` maps the key paths of the nodes that will be instantiated to their config group."""
    allowed = allowed_targets()
    for where, group in rebuilt.items():
        node = _at(contents, where)
        if node is not None and (not isinstance(node, Mapping) or TARGET not in node):
            raise UserError(
                f"Refusing {file}: its {_name(where)} names no class to build the {group} with (no _target_), unlike every {group} config of this installation (conf/); {ADVICE}."
            )
    for where, value in _strings(contents, ()):
        if INTERPOLATION in value:
            raise UserError(
                f"Refusing {file}: its {_name(where)} holds the interpolation {_shown(value)}, which OmegaConf would evaluate (a stored config is resolved and holds none); {ADVICE}."
            )
    for where, node in _dicts(contents, ()):
        keys = [key for key in node if isinstance(key, str) and INSTANTIATE_KEY.match(key)]
        if not keys or where[:2] in RECORDED_ONLY:
            continue
        if TARGET not in node:
            raise UserError(
                f"Refusing {file}: its {_name((*where, keys[0]))} is a Hydra instantiation key without a _target_, which no config of this installation (conf/) writes; {ADVICE}."
            )
        target = node[TARGET]
        if not isinstance(target, str) or (target not in allowed.keys_of and target not in RETIRED_TARGETS):
            raise UserError(
                f"Refusing {file}: its {_name((*where, TARGET))} names {target}, which is not one of this installation's configs (conf/); {ADVICE}."
            )
        others = _other_instantiate_keys(node)
        if others not in allowed.keys_of.get(target, {frozenset()}):
            key = sorted(others - set().union(*allowed.keys_of.get(target, [frozenset()])) or others)[0][0]
            raise UserError(
                f"Refusing {file}: its {_name((*where, key))} is {_shown(node[key])}, which no config of this installation (conf/) sets for {target}; {ADVICE}."
            )
        if where in rebuilt and target not in allowed.at.get((rebuilt[where],), set()):
            used = ", ".join(sorted(allowed.at.get((rebuilt[where],), set())))
            raise UserError(
                f"Refusing {file}: its {_name((*where, TARGET))} names {target}, which this installation's conf/ never builds as {rebuilt[where]} (it builds {used}); {ADVICE}."
            )
