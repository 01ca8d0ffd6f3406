"""Bad input through the real train.py: one clear sentence, a non-zero exit, no traceback, and an earlier run left as it was.

Every case runs beside an earlier run (the same paths.log_dir); its files must be byte for byte unchanged.
"""

import hashlib
import os
import pickle
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from tests.helpers.commands import TINY, run_entry
from tests.helpers.mounts import tmpfs

HYDRA_EXIT, USER_ERROR_EXIT = 1, 2


@pytest.fixture(scope="module")
def logs(mnist_dir, tmp_path_factory) -> Path:
    """A logs folder holding one earlier, finished run."""
    logs = tmp_path_factory.mktemp("logs")
    run_entry(
        "train.py", *TINY, f"data.data_dir={mnist_dir}", f"paths.log_dir={logs}", "trainer.max_epochs=1", "test=false"
    )
    return logs


@pytest.fixture(scope="module")
def earlier_run(logs) -> Path:
    (run,) = (logs / "train" / "runs").iterdir()
    return run


@pytest.fixture(scope="module")
def files(earlier_run, tmp_path_factory, mnist_dir) -> dict[str, Path]:
    """The bad files the cases point at, written once."""
    folder = tmp_path_factory.mktemp("bad_files")
    last = earlier_run / "checkpoints" / "last.ckpt"
    (folder / "truncated.ckpt").write_bytes(last.read_bytes()[:5000])
    (folder / "notes.ckpt").write_text("not a checkpoint at all\n")
    torch.save({"weight": torch.zeros(3)}, folder / "state_dict.pt")
    (folder / "empty_data" / "MNIST" / "raw").mkdir(parents=True)
    for name, corrupt in (
        ("bad_magic", lambda data: b"\x00\x00\x09\x99" + data[4:]),
        ("cut_off", lambda data: data[: len(data) // 2]),
    ):
        copy = folder / name
        shutil.copytree(mnist_dir, copy)
        images = copy / "MNIST" / "raw" / "train-images-idx3-ubyte"
        images.write_bytes(corrupt(images.read_bytes()))
    shutil.copytree(mnist_dir, folder / "label_255")
    labels = folder / "label_255" / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:8] + b"\xff" + labels.read_bytes()[9:])
    (folder / "a_file").write_text("a file, not a folder\n")
    return {
        "last": last,
        "truncated": folder / "truncated.ckpt",
        "notes": folder / "notes.ckpt",
        "state_dict": folder / "state_dict.pt",
        "missing": folder / "no_such.ckpt",
        "no_data": folder / "no_data",
        "empty_data": folder / "empty_data",
        "bad_magic": folder / "bad_magic",
        "cut_off": folder / "cut_off",
        "a_file": folder / "a_file",
        "label_255": folder / "label_255",
    }


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


# (id, overrides ({name} = a path from `files`), exit code, what stderr must say)
CASES = [
    ("unknown model", ["model=lenett"], HYDRA_EXIT, "Could not find 'model/lenett'"),
    ("unknown data", ["data=cifar"], HYDRA_EXIT, "Could not find 'data/cifar'"),
    ("unknown optimizer", ["optimizer=adamm"], HYDRA_EXIT, "Could not find 'optimizer/adamm'"),
    ("misspelt override key", ["trainer.max_epoch=3"], HYDRA_EXIT, "Key 'max_epoch' is not in struct"),
    ("zero batch size", ["data.batch_size=0"], USER_ERROR_EXIT, "data.batch_size=0 is out of range: it must be >= 1."),
    (
        "negative batch size",
        ["data.batch_size=-8"],
        USER_ERROR_EXIT,
        "data.batch_size=-8 is out of range: it must be >= 1.",
    ),
    ("zero learning rate", ["optimizer.lr=0"], USER_ERROR_EXIT, "optimizer.lr=0 is out of range: it must be > 0."),
    (
        "negative learning rate",
        ["optimizer.lr=-0.1"],
        USER_ERROR_EXIT,
        "optimizer.lr=-0.1 is out of range: it must be > 0.",
    ),
    (
        "zero epochs",
        ["trainer.max_epochs=0"],
        USER_ERROR_EXIT,
        "trainer.max_epochs=0 is out of range: it must be >= 1.",
    ),
    (
        "negative epochs",
        ["trainer.max_epochs=-3"],
        USER_ERROR_EXIT,
        "trainer.max_epochs=-3 is out of range: it must be >= 1.",
    ),
    (
        "learning rate not a number",
        ["optimizer.lr=abc"],
        USER_ERROR_EXIT,
        "optimizer.lr=abc is not a number: give a number",
    ),
    (
        "epochs not a number",
        ["trainer.max_epochs=abc"],
        USER_ERROR_EXIT,
        "trainer.max_epochs=abc is not a whole number or null: give a whole number or null",
    ),
    (
        "fractional batch size",
        ["data.batch_size=1.5"],
        USER_ERROR_EXIT,
        "data.batch_size=1.5 is not a whole number: give a whole number",
    ),
    (
        "seed not a number",
        ["seed=abc"],
        USER_ERROR_EXIT,
        "seed=abc is not a whole number or null: give a whole number or null",
    ),
    (
        "negative seed",
        ["seed=-1"],
        USER_ERROR_EXIT,
        "seed=-1 is out of range: it must be >= 0 and <= 4294967295.",
    ),
    (
        "negative loader workers",
        ["data.num_workers=-1"],
        USER_ERROR_EXIT,
        "data.num_workers=-1 is out of range: it must be >= 0.",
    ),
    (
        "negative momentum",
        ["optimizer.momentum=-1"],
        USER_ERROR_EXIT,
        "optimizer.momentum=-1 is out of range: it must be >= 0.",
    ),
    (
        "negative weight decay",
        ["optimizer.weight_decay=-1"],
        USER_ERROR_EXIT,
        "optimizer.weight_decay=-1 is out of range: it must be >= 0.",
    ),
    (
        "label smoothing above 1",
        ["module.label_smoothing=2"],
        USER_ERROR_EXIT,
        "module.label_smoothing=2 is out of range: it must be >= 0 and < 1.",
    ),
    (
        "unknown key inside a group",
        ["+optimizer.lrr=0.1"],
        USER_ERROR_EXIT,
        "optimizer.lrr is not a setting of torch.optim.SGD (did you mean optimizer.lr?): check the spelling, or remove it.",
    ),
    (
        "a key the data decides",
        ["+model.num_classes=5"],
        USER_ERROR_EXIT,
        "model.num_classes is not a setting of lightning_modules.nets.lenet.LeNet5 (the program passes it itself, from the data or another group): check the spelling, or remove it.",
    ),
    (
        "unknown trainer argument",
        ["+trainer.max_epoch=1"],
        USER_ERROR_EXIT,
        "trainer.max_epoch is not a setting of lightning.pytorch.Trainer (did you mean trainer.max_epochs?)",
    ),
    (
        "more devices than the machine has",
        ["trainer=cpu", f"trainer.devices={(os.cpu_count() or 1) + 1}"],
        USER_ERROR_EXIT,
        f"trainer.devices={(os.cpu_count() or 1) + 1} asks for more devices than the {os.cpu_count() or 1} CPU cores of this machine",
    ),
    (
        "gpu without one",
        ["trainer=gpu"],
        USER_ERROR_EXIT,
        "trainer.accelerator=gpu asks for a GPU but this machine has none",
    ),
    (
        "data folder missing",
        ["data.data_dir={no_data}", "data.use_shipped_copy=false"],
        USER_ERROR_EXIT,
        "The MNIST training files in {no_data}/MNIST/raw are missing or not the official IDX files",
    ),
    (
        "data folder empty",
        ["data.data_dir={empty_data}", "data.use_shipped_copy=false"],
        USER_ERROR_EXIT,
        "The MNIST training files in {empty_data}/MNIST/raw are missing or not the official IDX files",
    ),
    (
        "corrupt IDX header",
        ["data.data_dir={bad_magic}"],
        USER_ERROR_EXIT,
        "The MNIST training files in {bad_magic}/MNIST/raw are missing or not the official IDX files",
    ),
    (
        "cut-off IDX file",
        ["data.data_dir={cut_off}"],
        USER_ERROR_EXIT,
        "The MNIST training files in {cut_off}/MNIST/raw are missing or not the official IDX files",
    ),
    ("checkpoint missing", ["ckpt_path={missing}"], USER_ERROR_EXIT, "No checkpoint file at {missing}"),
    (
        "checkpoint truncated",
        ["ckpt_path={truncated}"],
        USER_ERROR_EXIT,
        "{truncated} is truncated or not a PyTorch checkpoint",
    ),
    ("not a checkpoint", ["ckpt_path={notes}"], USER_ERROR_EXIT, "{notes} is truncated or not a PyTorch checkpoint"),
    (
        "a plain state dict",
        ["ckpt_path={state_dict}"],
        USER_ERROR_EXIT,
        "{state_dict} is not a checkpoint written by this version of train.py",
    ),
    (
        "checkpoint of another model",
        ["ckpt_path={last}", "model=mlp"],
        USER_ERROR_EXIT,
        "{last} was trained with model=lenet, this run has model=mlp",
    ),
    (
        "checkpoint of another dataset",
        ["ckpt_path={last}", "data=fake", "data.input_shape=[1,28,28]", "data.num_classes=10"],
        USER_ERROR_EXIT,
        "{last} was trained with data=mnist, this run has data=fake",
    ),
    (
        "checkpoint of another variant of the model",
        ["ckpt_path={last}", "model.batch_norm=true"],
        USER_ERROR_EXIT,
        "The weights in {last} belong to another network than the one built from this config",
    ),
    ("resume and ckpt_path together", ["resume=true", "ckpt_path={last}"], USER_ERROR_EXIT, "Give either resume=true"),
    (
        "model too deep for the image size",
        ["data=fake", "data.input_shape=[1,8,8]", "data.num_classes=10"],
        USER_ERROR_EXIT,
        "The model lightning_modules.nets.lenet.LeNet5 cannot take the 1x8x8 images of data datamodules.fake.FakeDataModule",
    ),
    (
        "no training batches",
        ["trainer.limit_train_batches=0"],
        USER_ERROR_EXIT,
        "trainer.limit_train_batches=0 is out of range: it must be > 0.",
    ),
    (
        "validation every 0 batches",
        ["trainer.val_check_interval=0"],
        USER_ERROR_EXIT,
        "trainer.val_check_interval=0 is out of range: it must be > 0.",
    ),
    (
        "one class",
        ["data=fake", "data.num_classes=1"],
        USER_ERROR_EXIT,
        "data.num_classes=1 is out of range: it must be >= 2.",
    ),
    (
        "a setting removed",
        ["~data.batch_size"],
        USER_ERROR_EXIT,
        "data.batch_size has no value: give data.batch_size=VALUE",
    ),
    (
        "compile options a string",
        ["module.compile=max-autotune"],
        USER_ERROR_EXIT,
        "module.compile='max-autotune' is neither true, false nor a dict of torch.compile's arguments",
    ),
    (
        "data folder is a file",
        ["data.data_dir={a_file}"],
        USER_ERROR_EXIT,
        "Could not write the MNIST files into {a_file}/MNIST/raw (Not a directory)",
    ),
    (
        "labels beyond the classes",
        ["data.data_dir={label_255}"],
        USER_ERROR_EXIT,
        "The MNIST training files in {label_255}/MNIST/raw are missing or not the official IDX files of 10 classes (ValueError: 600 images, 600 labels up to 255)",
    ),
    (
        "unwritable output folder",
        ["paths.log_dir={a_file}/logs"],
        USER_ERROR_EXIT,
        "Could not write the run directory {a_file}/logs/train/runs/",
    ),
]


NEEDS_NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
# the same checks as their zero cases: run by the slow suite only
# one case of each kind in the default suite (an unknown option, a range, a type, an unknown key, devices, data files,
# checkpoint files, an unwritable folder; README's trainer=gpu command answers the GPU case); the rest slow
DEFAULT_CASES = {
    "unknown model",
    "zero batch size",
    "learning rate not a number",
    "unknown key inside a group",
    "more devices than the machine has",
    "data folder missing",
    "checkpoint truncated",
    "unwritable output folder",
    "a setting removed",
}


def overrides_of(case: str, files: dict[str, Path], logs: Path, mnist_dir: Path) -> list[str]:
    _, overrides, _, _ = next(entry for entry in CASES if entry[0] == case)
    overrides = [override.format(**files) for override in overrides]
    base = [*TINY, f"data.data_dir={mnist_dir}"]
    if "data=fake" in overrides:  # the fake images have no folder to read
        base = [override for override in base if not override.startswith(("data.download=", "data.data_dir="))]
    return [*base, f"paths.log_dir={logs}", "test=false", *overrides]


@pytest.fixture(scope="module")
def results(request, files, logs, earlier_run, mnist_dir) -> dict[str, subprocess.CompletedProcess]:
    """Every selected case run once, three at a time (they spend most of their time importing torch), beside the earlier run."""
    before = snapshot(earlier_run)
    selected = [
        item.callspec.params["case"]
        for item in request.session.items
        if item.originalname == "test_bad_input_is_one_clear_sentence"
    ]
    cases = [case for case in selected if not (case == "gpu without one" and torch.cuda.is_available())]
    with ThreadPoolExecutor(max_workers=3) as pool:
        outcomes = pool.map(
            lambda case: run_entry("train.py", *overrides_of(case, files, logs, mnist_dir), check=False), cases
        )
        results = dict(zip(cases, outcomes))
    results["earlier run unchanged"] = snapshot(earlier_run) == before
    return results


@pytest.mark.parametrize(
    "case, overrides, exit_code, message",
    [
        pytest.param(
            *case,
            id=case[0],
            marks=[NEEDS_NO_GPU]
            if case[0] == "gpu without one"
            else [pytest.mark.slow]
            if case[0] not in DEFAULT_CASES
            else [],
        )
        for case in CASES
    ],
)
def test_bad_input_is_one_clear_sentence(case, overrides, exit_code, message, results, files):
    result = results[case]
    assert result.returncode == exit_code, result.stderr[-3000:]
    assert message.format(**files) in result.stderr
    assert "Traceback" not in result.stderr
    if exit_code == USER_ERROR_EXIT:
        (line,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]  # one line, one sentence
        assert line.endswith(".")


def test_no_bad_input_changes_an_earlier_run(results):
    assert results["earlier run unchanged"]


def test_a_failed_start_leaves_no_run_directory(results, logs, earlier_run):
    """Every case above ran beside the earlier run; none of them left a directory of its own."""
    assert [path.name for path in (logs / "train" / "runs").iterdir()] == [earlier_run.name]


class RunsCode:
    """Unpickling this calls os.system: what a malicious checkpoint would do."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.mark.parametrize("script", ["train.py", "eval.py"])
def test_a_checkpoint_that_would_run_code_is_refused(script, earlier_run, tmp_path, mnist_dir):
    marker = tmp_path / "code_ran"
    crafted = tmp_path / "crafted.ckpt"
    checkpoint = torch.load(earlier_run / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["payload"] = RunsCode(f"touch {marker}")
    torch.save(checkpoint, crafted)
    with pytest.raises(pickle.UnpicklingError):  # the file really is a pickle that names os.system
        torch.load(crafted, weights_only=True)
    extra = [*TINY, f"data.data_dir={mnist_dir}"] if script == "train.py" else []
    result = run_entry(script, *extra, f"ckpt_path={crafted}", f"hydra.run.dir={tmp_path / 'out'}", check=False)
    assert result.returncode == USER_ERROR_EXIT
    assert f"Refusing to load {crafted}: loading it would run code it names" in result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists()


def test_nan_loss_stops_naming_the_batch_and_keeps_the_last_good_checkpoint(mnist_dir, tmp_path):
    """Epoch 0 trains normally; the step schedule then multiplies the learning rate by 1e8 and the loss diverges."""
    run = tmp_path / "run"
    diverging = [
        "scheduler=step",
        "scheduler.scheduler.step_size=1",
        "scheduler.scheduler.gamma=1e8",
        "trainer.max_epochs=3",
        "trainer.log_every_n_steps=1",
    ]
    result = run_entry("train.py", *TINY, f"data.data_dir={mnist_dir}", f"hydra.run.dir={run}", *diverging, check=False)
    assert result.returncode == USER_ERROR_EXIT, result.stderr[-3000:]
    assert "The training loss became NaN or infinite at epoch 1, batch " in result.stderr
    assert f"the last good checkpoint, {run}/checkpoints/last.ckpt, is kept" in result.stderr
    assert "Traceback" not in result.stderr
    kept = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert kept["epoch"] == 0
    assert all(torch.isfinite(tensor).all() for tensor in kept["state_dict"].values())
    for checkpoint in (run / "checkpoints").glob("*.ckpt"):  # no checkpoint of the diverged state
        assert all(
            torch.isfinite(tensor).all() for tensor in torch.load(checkpoint, weights_only=True)["state_dict"].values()
        )


@pytest.fixture
def small_disk(tmp_path):
    """A 400 KiB filesystem (tmpfs): room for the run's config and logs, not for a checkpoint."""
    with tmpfs(tmp_path / "small_disk", "size=400k") as folder:
        yield folder


def test_a_full_disk_stops_with_one_sentence_and_leaves_no_partial_checkpoint(small_disk, mnist_dir):
    result = run_entry(
        "train.py",
        *TINY,
        f"data.data_dir={mnist_dir}",
        f"paths.log_dir={small_disk}",
        "test=false",
        "logger=csv",
        check=False,
    )
    assert result.returncode == USER_ERROR_EXIT, result.stderr[-3000:]
    assert "error: Could not write the checkpoint " in result.stderr
    assert "(the write stopped short: it needs more than the " in result.stderr
    assert (
        " KiB free on that disk): free disk space or point paths.log_dir at a disk you can write to." in result.stderr
    )
    assert "Traceback" not in result.stderr
    leftovers = [path for path in small_disk.rglob("*") if path.is_file() and (path.suffix in (".ckpt", ".tmp"))]
    assert leftovers == [], leftovers
