"""Checkpoints, prediction files and export contracts from strangers run no code and touch no file (docs/trust.md).

Each crafted file is a real file of a tiny train.py run, read with weights_only=True, given one stored
config that names code (torch.load of a pickle that writes a file, builtins.open(victim, "w"),
shutil.copyfile) and saved again: it still passes torch.load(weights_only=True). Every entry point that
reads such a file must then exit with code 2 and one sentence naming the file and the key, having
created no file (no run directory, no log) and changed none (the victim keeps its bytes).
"""

import copy
import hashlib
import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from analysis.prediction_files import read_predictions
from checkpoints.loading import RUN_CONFIG_KEY, load_checkpoint
from checkpoints.trusted_config import RETIRED_TARGETS, allowed_targets, check_stored_config
from deployment.exporting import read_contract
from tests.helpers.commands import REPO, TINY, run_entry
from tests.helpers.tiny_runs import tiny_run
from user_errors import UserError

VICTIM_BYTES = b"someone's results, not to be truncated\n"


class WritesAMarker:
    """Unpickling this creates the file `marker`: what a pickle loaded without weights_only can do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.fixture(scope="module")
def run(tmp_path_factory, mnist_dir) -> Path:
    return tiny_run(tmp_path_factory, mnist_dir)


@pytest.fixture
def stranger(tmp_path) -> dict[str, Path]:
    """A victim file, a pickle that writes a marker file when loaded, and where the commands log."""
    victim = tmp_path / "victim.txt"
    victim.write_bytes(VICTIM_BYTES)
    evil_pickle = tmp_path / "evil.pkl"
    evil_pickle.write_bytes(pickle.dumps(WritesAMarker(tmp_path / "pickle_ran.txt")))
    return {
        "victim": victim,
        "pickle": evil_pickle,
        "marker": tmp_path / "pickle_ran.txt",
        "logs": tmp_path / "logs",
        "copy": tmp_path / "copied.txt",
    }


def payload(kind: str, stranger: dict[str, Path]) -> dict[str, Any]:
    return {
        "torch.load": {"_target_": "torch.load", "f": str(stranger["pickle"]), "weights_only": False},
        "builtins.open": {"_target_": "builtins.open", "file": str(stranger["victim"]), "mode": "w"},
        "shutil.copyfile": {
            "_target_": "shutil.copyfile",
            "src": str(stranger["victim"]),
            "dst": str(stranger["copy"]),
        },
    }[kind]


def set_key(tree: dict, key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for part in parents:
        tree = tree[part]
    tree[last] = value


def crafted_checkpoint(genuine: Path, out: Path, key: str, value: Any) -> Path:
    """`genuine` with its run_config's `key` set to `value`, saved so that torch.load(weights_only=True) still reads it."""
    checkpoint = torch.load(genuine, map_location="cpu", weights_only=True)
    set_key(checkpoint[RUN_CONFIG_KEY], key, value)
    torch.save(checkpoint, out)
    torch.load(out, weights_only=True)  # the crafted file passes PyTorch's own safe loading
    return out


def tree_state(*roots: Path) -> dict[str, str]:
    """Every folder and file below `roots` (and the repo's logs/, where commands log by default): folders as "dir",
    files as the sha256 of their bytes, a missing root as "absent"."""
    state = {}
    for root in [*roots, REPO / "logs"]:
        if not root.exists():
            state[str(root)] = "absent"
        for path in [root, *root.rglob("*")] if root.exists() else []:
            state[str(path)] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def assert_refused(result, stranger: dict[str, Path], before: dict[str, str], roots: list[Path], *said: str) -> None:
    """Exit code 2, one sentence on stderr saying `said`, no traceback, no file created or changed."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: Refusing "), result.stderr[-3000:]
    assert all(part in lines[0] for part in said), lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert stranger["victim"].read_bytes() == VICTIM_BYTES
    assert not stranger["marker"].exists() and not stranger["copy"].exists()
    after = tree_state(*roots)
    assert after == before, (
        f"created: {sorted(set(after) - set(before))}, changed: {sorted(p for p in before if after.get(p) != before[p])}"
    )


@pytest.mark.parametrize(
    ("script", "key", "kind", "arguments"),
    [
        ("eval.py", "data", "torch.load", []),
        pytest.param("export.py", "data", "builtins.open", ["format=torch_export"], marks=pytest.mark.slow),
        pytest.param("predict.py", "model", "shutil.copyfile", ["{image}"], marks=pytest.mark.slow),
        pytest.param(
            "compare.py",
            "data.augment",
            "builtins.open",
            ["{checkpoint}", "{genuine_predictions}"],
            marks=pytest.mark.slow,
        ),
        ("train.py", "module", "torch.load", [*TINY]),
    ],
)
def test_a_checkpoint_naming_code_is_refused_before_anything_is_written(
    script, key, kind, arguments, run, mnist_dir, stranger, tmp_path
):
    checkpoint = crafted_checkpoint(
        run / "checkpoints" / "last.ckpt", tmp_path / "shared.ckpt", key, payload(kind, stranger)
    )
    image = tmp_path / "digit.png"
    Image.new("L", (28, 28)).save(image)
    roots = [tmp_path, mnist_dir, run]
    before = tree_state(*roots)
    values = {"image": image, "checkpoint": checkpoint, "genuine_predictions": run / "predictions" / "val-epoch001.csv"}
    given = [argument.format(**values) for argument in arguments]
    if script != "compare.py":
        given.append(f"ckpt_path={checkpoint}")
    result = run_entry(script, *given, f"data.data_dir={mnist_dir}", f"paths.log_dir={stranger['logs']}", check=False)
    assert_refused(result, stranger, before, roots, str(checkpoint), f"{RUN_CONFIG_KEY}.{key}._target_ names {kind}")


@pytest.mark.slow
def test_resume_true_into_a_run_whose_last_checkpoint_names_code_is_refused(run, mnist_dir, stranger, tmp_path):
    """resume=true picks a run directory of this experiment and reads its last.ckpt: a `_partial_` planted there stops it."""
    copied = stranger["logs"] / "train" / "runs" / "earlier"
    shutil.copytree(run, copied)
    config = copied / ".hydra" / "config.yaml"  # the same experiment, logging under this test's folder
    config.write_text(config.read_text().replace("log_dir: logs", f"log_dir: {stranger['logs']}"))
    last = copied / "checkpoints" / "last.ckpt"
    data = copy.deepcopy(torch.load(last, weights_only=True)[RUN_CONFIG_KEY]["data"])
    crafted_checkpoint(last, last, "data", {**data, "_partial_": True})
    roots = [tmp_path, mnist_dir]
    before = tree_state(*roots)
    result = run_entry(
        "train.py", *TINY, f"data.data_dir={mnist_dir}", f"paths.log_dir={stranger['logs']}", "resume=true", check=False
    )
    assert_refused(
        result,
        stranger,
        before,
        roots,
        str(last),
        f"{RUN_CONFIG_KEY}.data._partial_ is True, which no config of this installation (conf/) sets for datamodules.mnist.MNISTDataModule",
    )


def test_report_of_a_run_whose_checkpoint_names_code_is_refused(run, mnist_dir, stranger, tmp_path):
    """report.py reads the config stored in a run's newest checkpoint when the run has no .hydra/ (runs copied without it)."""
    copied = tmp_path / "shared_run"
    shutil.copytree(run, copied, ignore=shutil.ignore_patterns(".hydra"))
    newest = copied / "checkpoints" / "last.ckpt"
    crafted_checkpoint(newest, newest, "model", payload("builtins.open", stranger))
    roots = [tmp_path]
    before = tree_state(*roots)
    result = run_entry("report.py", str(copied), check=False)
    assert_refused(result, stranger, before, roots, str(newest), f"{RUN_CONFIG_KEY}.model._target_ names builtins.open")


@pytest.mark.slow
def test_compare_of_two_prediction_files_whose_sidecars_name_code_is_refused(run, mnist_dir, stranger, tmp_path):
    """Two plain text files suffice: a CSV of a real run and a JSON sidecar whose data config loads a pickle."""
    pair = []
    for side in ("a", "b"):
        csv_file = tmp_path / f"{side}.csv"
        shutil.copyfile(run / "predictions" / "val-epoch001.csv", csv_file)
        sidecar = json.loads((run / "predictions" / "val-epoch001.json").read_text())
        sidecar["data"] = payload("torch.load", stranger)
        csv_file.with_suffix(".json").write_text(json.dumps(sidecar))
        pair.append(csv_file)
    roots = [tmp_path, mnist_dir]
    before = tree_state(*roots)
    result = run_entry("compare.py", *map(str, pair), "num_images=4", f"paths.log_dir={stranger['logs']}", check=False)
    assert_refused(result, stranger, before, roots, str(pair[0].with_suffix(".json")), "data._target_ names torch.load")


def test_predict_with_an_export_whose_contract_is_forged_is_refused(stranger, tmp_path):
    """The contract says which runtime opens the model: it must agree with the file's own suffix."""
    model = tmp_path / "model.pt2"
    model.write_bytes(b"not opened")
    model.with_suffix(".json").write_text(
        json.dumps(
            {"format": "torchscript", "input": {"shape": ["batch", 1, 28, 28]}, "class_names": list("0123456789")}
        )
    )
    image = tmp_path / "digit.png"
    Image.new("L", (28, 28)).save(image)
    before = tree_state(tmp_path)
    result = run_entry("predict.py", f"exported={model}", str(image), f"paths.log_dir={stranger['logs']}", check=False)
    assert (
        result.returncode == 2
        and "says torchscript, whose files end in .ts, but the model is model.pt2" in result.stderr
    ), result.stderr[-3000:]
    assert "Traceback" not in result.stderr and tree_state(tmp_path) == before


def test_a_genuine_checkpoint_still_evaluates(run, mnist_dir, tmp_path):
    result = run_entry(
        "eval.py",
        f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
        f"data.data_dir={mnist_dir}",
        f"paths.log_dir={tmp_path}",
        "splits=[val]",
    )
    assert " * val: top-1 " in result.stdout
    (metrics,) = tmp_path.glob("eval/runs/*/metrics.json")
    assert "val/top1" in json.loads(metrics.read_text())


def test_genuine_files_and_those_of_earlier_versions_pass(run, tmp_path):
    """Every file of a real run passes; so does a checkpoint whose callbacks and logger name the stock Lightning
    classes that earlier versions of conf/ used (recorded there, never rebuilt)."""
    for checkpoint in (run / "checkpoints").glob("*.ckpt"):
        load_checkpoint(checkpoint)
    for predictions in (run / "predictions").glob("*.csv"):
        read_predictions(predictions)
    older = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    older[RUN_CONFIG_KEY]["callbacks"]["best_checkpoint"]["_target_"] = "lightning.pytorch.callbacks.ModelCheckpoint"
    older[RUN_CONFIG_KEY]["callbacks"]["progress_bar"]["_target_"] = "lightning.pytorch.callbacks.TQDMProgressBar"
    older[RUN_CONFIG_KEY]["logger"] = {"csv": {"_target_": "lightning.pytorch.loggers.CSVLogger", "save_dir": "x"}}
    torch.save(older, tmp_path / "older.ckpt")
    load_checkpoint(tmp_path / "older.ckpt")
    older[RUN_CONFIG_KEY]["data"] = {
        "_target_": "lightning.pytorch.callbacks.ModelCheckpoint"
    }  # a retired name is no datamodule
    torch.save(older, tmp_path / "older.ckpt")
    with pytest.raises(
        UserError,
        match="run_config.data._target_ names lightning.pytorch.callbacks.ModelCheckpoint, which this installation's conf/ never builds as data",
    ):
        load_checkpoint(tmp_path / "older.ckpt")


def test_the_allowlist_is_every_target_of_conf():
    targets = set()
    for path in (REPO / "conf").rglob("*.yaml"):
        targets |= {line.split("_target_:")[1].strip() for line in path.read_text().splitlines() if "_target_:" in line}
    assert set(allowed_targets().keys_of) == targets
    assert not RETIRED_TARGETS & targets
    assert allowed_targets().at[("model",)] >= {
        "lightning_modules.nets.torchvision_net.TorchvisionNet",
        "lightning_modules.nets.rnn.RowRNN",
        "lightning_modules.nets.lenet.LeNet5",
    }


MNIST = {"_target_": "datamodules.mnist.MNISTDataModule", "data_dir": "data"}
OPEN = {"_target_": "builtins.open", "file": "victim", "mode": "w"}


@pytest.mark.parametrize(
    ("stored", "said"),
    [
        ({"data": OPEN}, "its data._target_ names builtins.open, which is not one of this installation's configs"),
        ({"data": {**MNIST, "augment": OPEN}}, "its data.augment._target_ names builtins.open"),
        ({"data": {**MNIST, "transforms": [{"x": OPEN}]}}, "its data.transforms[0].x._target_ names builtins.open"),
        ({"data": {**MNIST, "_args_": [OPEN]}}, "its data._args_ is [{'_target_': 'builtins.open'"),
        (
            {"data": {**MNIST, "_partial_": True}},
            "its data._partial_ is True, which no config of this installation (conf/) sets for datamodules.mnist.MNISTDataModule",
        ),
        ({"data": {**MNIST, "_recursive_": False}}, "its data._recursive_ is False"),
        ({"data": {**MNIST, "_convert_": "object"}}, "its data._convert_ is 'object'"),
        (
            {"data": {**MNIST, "x": {"_args_": ["victim", "w"]}}},
            "its data.x._args_ is a Hydra instantiation key without a _target_",
        ),
        ({"data": {"_target_": ["builtins.open"]}}, "its data._target_ names ['builtins.open']"),
        ({"data": {"data_dir": "data"}}, "its data names no class to build the data with (no _target_)"),
        ({"data": ["builtins.open"]}, "its data names no class to build the data with"),
        (
            {"data": {"_target_": "torch.optim.SGD"}},
            "its data._target_ names torch.optim.SGD, which this installation's conf/ never builds as data",
        ),
        (
            {"data": {**MNIST, "data_dir": "${oc.create:{_target_: builtins.open, file: victim, mode: w}}"}},
            "its data.data_dir holds the interpolation",
        ),
    ],
)
def test_every_way_of_naming_code_is_one_sentence(stored, said):
    with pytest.raises(UserError) as refused:
        check_stored_config(stored, "shared.ckpt", {("data",): "data"})
    message = str(refused.value)
    assert message.startswith("Refusing shared.ckpt: ") and said in message, message
    assert message.count(". ") == 0 and message.endswith("."), message


def test_a_contract_naming_code_is_refused(tmp_path):
    model = tmp_path / "model.pt2"
    model.write_bytes(b"")
    model.with_suffix(".json").write_text(json.dumps({"format": "torch_export", "loader": OPEN}))
    with pytest.raises(UserError, match=r"model.json: its loader._target_ names builtins.open"):
        read_contract(model)
