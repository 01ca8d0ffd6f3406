"""The layer order of docs/design.md holds: each top-level package imports only from the layers below it, entry
scripts never import each other, benchmarks never import tests, and no import names a private module or name of
Lightning, Hydra or torch."""

import ast
import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers.commands import REPO

# lowest first, as in docs/design.md; packages on one line share a layer and do not import each other
LAYERS = [
    ("user_errors",),
    ("checkpoints",),
    ("lightning_modules", "datamodules"),
    ("analysis",),
    ("callbacks",),
    ("deployment",),
    ("runs",),
]
LAYER_OF = {package: level for level, packages in enumerate(LAYERS) for package in packages}
ENTRY_SCRIPTS = sorted(path.stem for path in REPO.glob("*.py"))
DEPENDENCIES = ("lightning", "hydra", "torch", "torchvision", "torchmetrics", "omegaconf")
PRIVATE = re.compile(r"(^|\.)_[A-Za-z]")


def imports_of(path: Path) -> list[str]:
    """Every module a file imports, at the top or inside a function (`from a.b import c` gives a.b and a.b.c)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return found


def files_of(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(LAYER_OF))
def test_a_package_imports_only_from_the_layers_below_it(package):
    wrong = []
    for path in files_of(package):
        for module in imports_of(path):
            top = module.split(".")[0]
            if top in ENTRY_SCRIPTS or top in ("tests", "benchmarks"):
                wrong.append(f"{path.relative_to(REPO)} imports {module}")
            elif top in LAYER_OF and top != package and LAYER_OF[top] >= LAYER_OF[package]:
                wrong.append(
                    f"{path.relative_to(REPO)} imports {module} (layer {LAYER_OF[top]} >= {LAYER_OF[package]})"
                )
    assert not wrong, "\n".join(wrong)


def test_every_package_of_the_tree_has_its_layer():
    packages = {path.parent.name for path in REPO.glob("*/__init__.py")} - {"tests", "benchmarks"}
    assert packages == set(LAYER_OF), "add the new package to LAYERS here and to docs/design.md"


def test_entry_scripts_do_not_import_each_other_and_benchmarks_do_not_import_tests():
    wrong = [
        f"{path.relative_to(REPO)} imports {module}"
        for path in [*REPO.glob("*.py"), *files_of("benchmarks")]
        for module in imports_of(path)
        if module.split(".")[0] in ENTRY_SCRIPTS or module.split(".")[0] == "tests"
    ]
    assert not wrong, "\n".join(wrong)


def test_production_code_imports_no_private_name_of_its_dependencies():
    production = [*REPO.glob("*.py"), *(path for package in LAYER_OF for path in files_of(package))]
    wrong = [
        f"{path.relative_to(REPO)} imports {module}"
        for path in production
        for module in imports_of(path)
        if module.split(".")[0] in DEPENDENCIES and PRIVATE.search(module)
    ]
    assert not wrong, "\n".join(wrong)


def test_every_import_of_our_own_modules_names_a_file_that_git_tracks():
    """A module left untracked in a working copy makes the suite pass there and fail on a fresh clone."""
    tracked = set(
        subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    )
    ours = set(LAYER_OF) | {"tests", "benchmarks"}
    wrong = []
    for name in sorted(tracked):
        if not name.endswith(".py"):
            continue
        for node in ast.walk(ast.parse((REPO / name).read_text())):
            modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module]
            for module in modules:
                stem = module.replace(".", "/")
                if module.split(".")[0] in ours and not {f"{stem}.py", f"{stem}/__init__.py"} & tracked:
                    wrong.append(f"{name} imports {module}, which is not a tracked file")
    assert not wrong, "\n".join(wrong)
