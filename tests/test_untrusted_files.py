"""Checkpoints, prediction files and export contracts from strangers choose no code and no place (docs/trust.md).

Each crafted file is a real file of a tiny train.py run, changed the way a stranger could change it and saved so
that torch.load(weights_only=True) still reads it: its record of the experiment and its stored config choose the
victim's folder as the data folder, a URL to download, a download, a cache folder and initial weights, and name
code. Every entry point must then build only what this installation's conf/ names, read and write only where the
user's own config says, and leave the victim's folder and the earlier run byte-identical.
"""

import hashlib
import json
import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from checkpoints.loading import EXPERIMENT_KEY, RUN_CONFIG_KEY
from tests.helpers.commands import REPO, TINY, run_entry
from tests.helpers.tiny_runs import tiny_run

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
def victim(tmp_path) -> Path:
    """A user's folder with files a stranger would like to overwrite (a shell profile, a cache's files)."""
    folder = tmp_path / "home"
    folder.mkdir()
    for name in (".bashrc", "notes.txt", "manifest.json", "images.npy"):
        (folder / name).write_bytes(VICTIM_BYTES)
    return folder


def harmful_values(victim: Path) -> dict[str, Any]:
    """What a stranger's file would like to choose: places, sources and downloads, as values of our own settings."""
    return {
        "data.data_dir": str(victim),
        "data.download": True,
        "data.use_shipped_copy": False,
        "data.url": f"file://{victim}/notes.txt",
        "data.md5": "0" * 32,
        "data.cache_dir": str(victim),
        "model.weights_path": str(victim / ".bashrc"),
        "model.pretrained": True,
        "paths.data_dir": str(victim),
        "paths.log_dir": str(victim),
        "hydra.run.dir": str(victim),
    }


def crafted(genuine: Path, out: Path, victim: Path, choices: dict[str, str] | None = None, **changes: Any) -> Path:
    """`genuine` with every harmful value in its record of the experiment and its stored config, and code named
    in that config; `changes` replace top-level entries."""
    checkpoint = torch.load(genuine, map_location="cpu", weights_only=True)
    values = harmful_values(victim)
    checkpoint[EXPERIMENT_KEY]["overrides"] += [f"{key}={value}" for key, value in values.items()]
    checkpoint[EXPERIMENT_KEY]["overrides"].append(f"+data.root={victim}")
    # a class or compile options (which name a compiler and a folder) from the file: never composed again
    checkpoint[EXPERIMENT_KEY]["overrides"] += ["model._target_=shutil.rmtree", f"module.compile={{mode:{victim}}}"]
    checkpoint[EXPERIMENT_KEY]["choices"].update(choices or {})
    stored = checkpoint[RUN_CONFIG_KEY]
    stored["data"].update({key.split(".", 1)[1]: value for key, value in values.items() if key.startswith("data.")})
    stored["model"]["_target_"] = "builtins.open"
    stored["data"]["augment"] = {"_target_": "shutil.copyfile", "src": str(victim / "notes.txt"), "dst": "x"}
    checkpoint.update(changes)
    torch.save(checkpoint, out)
    torch.load(out, weights_only=True)  # the crafted file passes PyTorch's own safe loading
    return out


def tree_state(*roots: Path) -> dict[str, str]:
    """Every folder and file below `roots` (and the repo's data/): folders as "dir", files as the sha256 of their bytes."""
    state = {}
    for root in [*roots, REPO / "data"]:
        if not root.exists():
            state[str(root)] = "absent"
        for path in [root, *root.rglob("*")] if root.exists() else []:
            state[str(path)] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def assert_unchanged(before: dict[str, str], after: dict[str, str]) -> None:
    created = sorted(set(after) - set(before))
    changed = sorted(path for path in before if after.get(path) != before[path])
    assert not created and not changed, f"created: {created}, changed: {changed}"


def one_sentence(result, *said: str) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    assert all(part in lines[0] for part in said), lines[0]
    return lines[0]


def test_eval_of_a_checkpoint_choosing_places_reads_and_writes_only_where_the_user_says(
    run, mnist_dir, victim, tmp_path
):
    """The checkpoint's values choose the victim's folder as data folder, cache and weights, a file:// URL over its
    notes and a download: eval.py reads the user's MNIST, writes only into its own run directory, and the victim's
    folder, the data folder and the earlier run keep every byte."""
    checkpoint = crafted(run / "checkpoints" / "last.ckpt", tmp_path / "shared.ckpt", victim)
    logs = tmp_path / "logs"
    before = tree_state(victim, mnist_dir, run)
    result = run_entry(
        "eval.py", f"ckpt_path={checkpoint}", f"data.data_dir={mnist_dir}", f"paths.log_dir={logs}", "splits=[val]"
    )
    assert " * val: top-1 " in result.stdout
    assert_unchanged(before, tree_state(victim, mnist_dir, run))
    (metrics,) = logs.glob("eval/runs/*/metrics.json")
    assert "val/top1" in json.loads(metrics.read_text())


def test_continuing_from_a_checkpoint_choosing_places_trains_on_the_users_own_config(run, mnist_dir, victim, tmp_path):
    checkpoint = crafted(run / "checkpoints" / "last.ckpt", tmp_path / "shared.ckpt", victim)
    out = tmp_path / "continued"
    before = tree_state(victim, mnist_dir, run)
    run_entry(
        "train.py",
        *TINY,
        "trainer.max_epochs=3",
        f"data.data_dir={mnist_dir}",
        f"ckpt_path={checkpoint}",
        f"hydra.run.dir={out}",
    )
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert_unchanged(before, tree_state(victim, mnist_dir, run))


def test_compare_of_prediction_files_choosing_places_shows_images_from_the_users_data(run, mnist_dir, victim, tmp_path):
    """Two plain text files suffice: CSVs of a real run and JSON sidecars whose record chooses places."""
    pair = []
    for side, predictions in (("a", "val-epoch000"), ("b", "val-epoch001")):
        csv_file = tmp_path / f"{side}.csv"
        shutil.copyfile(run / "predictions" / f"{predictions}.csv", csv_file)
        sidecar = json.loads((run / "predictions" / f"{predictions}.json").read_text())
        sidecar[EXPERIMENT_KEY]["overrides"] += [f"{key}={value}" for key, value in harmful_values(victim).items()]
        sidecar["data"] = {"_target_": "builtins.open", "file": str(victim / "notes.txt"), "mode": "w"}
        csv_file.with_suffix(".json").write_text(json.dumps(sidecar))
        pair.append(csv_file)
    logs = tmp_path / "logs"
    before = tree_state(victim, mnist_dir, run)
    result = run_entry(
        "compare.py", *map(str, pair), "num_images=4", f"data.data_dir={mnist_dir}", f"paths.log_dir={logs}"
    )
    assert "agree" in result.stdout
    assert_unchanged(before, tree_state(victim, mnist_dir, run))


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (
            {"choices": {"data": "../../evil"}},
            "was made with data=../../evil, which this installation's conf/data/ does not have",
        ),
        (
            {"overrides": ["model.hidden=${oc.env:HOME}"]},
            "records the override 'model.hidden=${oc.env:HOME}', which is refused (no command line of train.py writes it)",
        ),
        pytest.param(
            {"overrides": ["model.batch_norm=[unclosed"]},
            "records the override 'model.batch_norm=[unclosed', which is refused (",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            {"overrides": ["model.no_such_setting=3"]},
            "records choices or overrides that this installation's conf/ cannot compose",
            marks=pytest.mark.slow,
        ),
        (
            {"overrides": ["model.batch_norm={_target_:builtins.open,file:'VICTIM/notes.txt',mode:w}"]},
            "which is refused (its value holds one of Hydra's instantiation keys",
        ),
        pytest.param(
            {"overrides": ["module.label_smoothing=[{_target_:shutil.rmtree,path:'VICTIM'}]"]},
            "which is refused (its value holds one of Hydra's instantiation keys",
            marks=pytest.mark.slow,
        ),
        ({"top": {"state_dict": "weights"}}, "is not a checkpoint written by this version of train.py"),
        *(
            pytest.param(
                {"top": top}, "is not a checkpoint written by this version of train.py", marks=pytest.mark.slow
            )
            for top in ({"epoch": "one"}, {RUN_CONFIG_KEY: "config"}, {EXPERIMENT_KEY: "experiment"})
        ),
    ],
)
def test_a_record_that_does_not_compose_is_one_sentence(change, said, run, mnist_dir, victim, tmp_path):
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    checkpoint[EXPERIMENT_KEY]["choices"].update(change.get("choices", {}))
    checkpoint[EXPERIMENT_KEY]["overrides"] += [
        line.replace("VICTIM", str(victim)) for line in change.get("overrides", [])
    ]
    checkpoint.update(change.get("top", {}))
    shared = tmp_path / "shared.ckpt"
    torch.save(checkpoint, shared)
    before = tree_state(victim, mnist_dir, run)
    result = run_entry(
        "eval.py",
        f"ckpt_path={shared}",
        f"data.data_dir={mnist_dir}",
        f"paths.log_dir={tmp_path / 'logs'}",
        check=False,
    )
    one_sentence(result, str(shared), said)
    assert "Traceback" not in result.stderr
    assert_unchanged(before, tree_state(victim, mnist_dir, run))


def test_a_pickle_that_runs_code_is_refused_before_anything_is_written(run, mnist_dir, tmp_path):
    """torch.load(weights_only=True) refuses it before anything is evaluated: the run directory the command made goes.
    compare.py refuses it before evaluating the other, good, checkpoint (whose predictions would stay)."""
    shared = tmp_path / "shared.ckpt"
    torch.save({"state_dict": {}, "payload": WritesAMarker(tmp_path / "pickle_ran.txt")}, shared)
    logs = tmp_path / "logs"
    result = run_entry(
        "eval.py", f"ckpt_path={shared}", f"data.data_dir={mnist_dir}", f"paths.log_dir={logs}", check=False
    )
    one_sentence(result, f"Refusing to load {shared}: loading it would run code it names")
    assert not (tmp_path / "pickle_ran.txt").exists() and not logs.exists()
    good = run / "checkpoints" / "last.ckpt"
    result = run_entry(
        "compare.py", f"a={good}", f"b={shared}", f"data.data_dir={mnist_dir}", f"paths.log_dir={logs}", check=False
    )
    one_sentence(result, f"Refusing to load {shared}: loading it would run code it names")
    assert not (tmp_path / "pickle_ran.txt").exists() and not logs.exists()


def test_a_checkpoint_with_flipped_bytes_is_refused(run, mnist_dir, tmp_path):
    """400 bytes of the weights flipped: the zip members' checksums no longer match, so the file is refused
    instead of evaluated with garbage weights."""
    damaged = tmp_path / "damaged.ckpt"
    shutil.copyfile(run / "checkpoints" / "last.ckpt", damaged)
    with zipfile.ZipFile(damaged) as archive:
        member = max(archive.infolist(), key=lambda info: info.file_size)
    data = bytearray(damaged.read_bytes())
    name_length, extra_length = (
        int.from_bytes(data[member.header_offset + at : member.header_offset + at + 2], "little") for at in (26, 28)
    )
    start = member.header_offset + 30 + name_length + extra_length  # the member's first byte (stored, not compressed)
    data[start : start + 400] = bytes(255 - byte for byte in data[start : start + 400])
    damaged.write_bytes(bytes(data))
    logs = tmp_path / "logs"
    result = run_entry(
        "eval.py", f"ckpt_path={damaged}", f"data.data_dir={mnist_dir}", f"paths.log_dir={logs}", check=False
    )
    one_sentence(result, f"{damaged} is damaged", "fails its checksum")
    assert not logs.exists()


def test_predict_with_an_export_whose_contract_is_forged_is_refused(tmp_path):
    """The contract says which runtime opens the model: it must agree with the file's own suffix."""
    from PIL import Image

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
    result = run_entry("predict.py", f"exported={model}", str(image), f"paths.log_dir={tmp_path / 'logs'}", check=False)
    one_sentence(result, "says format 'torchscript', but model.pt2 is a file of format 'torch_export'")
    assert tree_state(tmp_path) == before


def test_a_pickle_in_a_sidecar_is_only_text(run, tmp_path):
    """JSON holds no code: a sidecar naming a pickle is a sidecar whose record lacks what compare.py needs."""
    csv_file = tmp_path / "a.csv"
    shutil.copyfile(run / "predictions" / "val-epoch001.csv", csv_file)
    csv_file.with_suffix(".json").write_text(json.dumps({"split": "val", "experiment": pickle.dumps(1).hex()}))
    result = run_entry("compare.py", str(csv_file), str(csv_file), f"paths.log_dir={tmp_path / 'logs'}", check=False)
    one_sentence(result, f"{csv_file} or its sidecar a.json is not a prediction file of train.py or eval.py")


def test_a_run_deletes_only_the_temporary_files_of_its_own_checkpoint_writes(mnist_dir, tmp_path):
    """A run started in a folder of the user's (hydra.run.dir=.) removes what a killed checkpoint write left in its
    checkpoints/, and nothing of the user's that merely looks like a temporary file."""
    folder = tmp_path / "work"
    (folder / "notes").mkdir(parents=True)
    (folder / "checkpoints").mkdir()
    draft = folder / "notes" / ".draft.txt.ab12cd34.tmp"
    draft.write_bytes(VICTIM_BYTES)
    look_alike = folder / "checkpoints" / ".plan.txt.ab12cd34.tmp"
    look_alike.write_bytes(VICTIM_BYTES)
    killed_write = folder / "checkpoints" / ".epoch000.ckpt.k1ll3d_x.tmp"
    killed_write.write_bytes(b"half a checkpoint")
    run_entry("train.py", *TINY, "trainer.max_epochs=1", f"data.data_dir={mnist_dir}", f"hydra.run.dir={folder}")
    assert draft.read_bytes() == VICTIM_BYTES and look_alike.read_bytes() == VICTIM_BYTES
    assert not killed_write.exists()


def test_text_from_files_that_a_spreadsheet_would_run_is_written_as_text(tmp_path):
    """Class names and sources come from datasets and contracts of elsewhere: a cell starting with =, +, -, @ is a
    formula to a spreadsheet, so it is written with a leading quote (and read back as that text)."""
    import csv

    import numpy as np

    from analysis.prediction_files import read_predictions, write_predictions

    names = ['=HYPERLINK("http://x","y")', "=cmd|' /C calc'!A0", "@SUM(1+1)", "+1", "-1", "plain"]
    path = tmp_path / "val.csv"
    write_predictions(
        path,
        split="val",
        stage="val",
        index=np.arange(6),
        label=np.arange(6),
        loss=np.ones(6),
        top_ids=np.stack([np.arange(6)] * 5, axis=1) % 6,
        top_probs=np.full((6, 5), 0.2),
        class_names=names,
        sources=[f"={name}" for name in names],
        epoch=0,
        checkpoint="",
        experiment={"choices": {"data": "mnist"}, "overrides": []},
    )
    with path.open(newline="") as file:
        cells = [cell for row in csv.reader(file) for cell in row]
    assert not [cell for cell in cells if cell.startswith(("=", "+", "-", "@"))], cells
    rows = read_predictions(path).rows
    assert [row["label_name"] for row in rows] == [f"'{name}" for name in names[:5]] + ["plain"]


def test_a_sidecar_nested_too_deep_is_one_sentence(run, tmp_path):
    csv_file = tmp_path / "a.csv"
    shutil.copyfile(run / "predictions" / "val-epoch001.csv", csv_file)
    csv_file.with_suffix(".json").write_text("[" * 100_000 + "]" * 100_000)
    result = run_entry("compare.py", str(csv_file), str(csv_file), f"paths.log_dir={tmp_path / 'logs'}", check=False)
    one_sentence(result, f"{csv_file} or its sidecar a.json is not a prediction file")
    assert not (tmp_path / "logs").exists()


CONTRACT = {"format": "onnx", "input": {"shape": ["batch", 1, 28, 28]}, "class_names": list("0123456789")}


@pytest.mark.parametrize(
    ("contract", "model_bytes", "said"),
    [
        (
            {k: v for k, v in CONTRACT.items() if k != "input"},
            b"",
            "gives no input shape [batch, 1 or 3, height, width]",
        ),
        pytest.param({**CONTRACT, "input": {"shape": "wrong"}}, b"", "gives no input shape", marks=pytest.mark.slow),
        pytest.param(
            {**CONTRACT, "input": {"shape": ["batch", 1, 28, 10**9]}},
            b"",
            "gives no input shape",
            marks=pytest.mark.slow,
        ),
        pytest.param({**CONTRACT, "class_names": ["a"]}, b"", "gives no list of class names", marks=pytest.mark.slow),
        pytest.param(
            "a string", b"", "says format None, but model.onnx is a file of format 'onnx'", marks=pytest.mark.slow
        ),
        (CONTRACT, b"garbage", "cannot be opened as a onnx model"),
    ],
)
def test_a_broken_export_or_contract_is_one_sentence(contract, model_bytes, said, tmp_path):
    from PIL import Image

    model = tmp_path / "model.onnx"
    model.write_bytes(model_bytes)
    model.with_suffix(".json").write_text(json.dumps(contract))
    image = tmp_path / "digit.png"
    Image.new("L", (28, 28)).save(image)
    logs = tmp_path / "logs"
    result = run_entry("predict.py", f"exported={model}", str(image), f"paths.log_dir={logs}", check=False)
    one_sentence(result, said)
    assert not logs.exists()


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("index", "abc"),
        pytest.param("prob1", "not-a-number", marks=pytest.mark.slow),
        pytest.param("pred1", "-3", marks=pytest.mark.slow),
    ],
)
def test_a_prediction_file_with_a_changed_cell_is_one_sentence(column, value, run, tmp_path):
    import csv

    rows = list(csv.DictReader((run / "predictions" / "val-epoch001.csv").open(newline="")))
    rows[3][column] = value
    changed = tmp_path / "a.csv"
    with changed.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    shutil.copyfile(run / "predictions" / "val-epoch001.json", changed.with_suffix(".json"))
    result = run_entry(
        "compare.py",
        str(changed),
        str(run / "predictions" / "val-epoch001.csv"),
        f"paths.log_dir={tmp_path / 'logs'}",
        check=False,
    )
    one_sentence(result, f"{changed} or its sidecar a.json is not a prediction file", f"(line 5: {column}={value!r})")


@pytest.mark.parametrize(
    ("record", "content"),
    [
        (".hydra/config.yaml", b"seed: !!python/object/apply:os.system ['touch pwned']\n"),
        ("timing.csv", bytes(range(256)) * 4),
    ],
)
def test_report_of_records_train_py_did_not_write_is_one_sentence_and_leaves_no_folder(record, content, run, tmp_path):
    copied = tmp_path / "shared_run"
    shutil.copytree(run, copied)
    (copied / record).parent.mkdir(exist_ok=True)
    (copied / record).write_bytes(content)
    before = tree_state(copied)
    result = run_entry("report.py", str(copied), check=False)
    one_sentence(result, f"The records of {copied}", "are not those train.py writes")
    assert_unchanged(before, tree_state(copied))
    assert not (tmp_path / "pwned").exists() and not (REPO / "pwned").exists()


def test_report_into_an_existing_file_is_one_sentence(run, tmp_path):
    existing = tmp_path / "notes.txt"
    existing.write_bytes(VICTIM_BYTES)
    result = run_entry("report.py", str(run), f"out={existing}", check=False)
    one_sentence(result, f"out={existing} is a file")
    assert existing.read_bytes() == VICTIM_BYTES


@pytest.mark.parametrize(
    ("script", "said"),
    [
        ("eval.py", "No file given: pass ckpt_path="),
        pytest.param("export.py", "No file given: pass ckpt_path=", marks=pytest.mark.slow),
        ("compare.py", "a has no value: give a=VALUE on the command line."),
    ],
)
def test_a_command_without_its_file_is_one_sentence_and_leaves_nothing(script, said, tmp_path):
    result = run_entry(script, f"paths.log_dir={tmp_path / 'logs'}", check=False)
    one_sentence(result, said)
    assert not (tmp_path / "logs").exists()


def test_a_default_that_changed_since_training_is_named_not_evaluated_silently(run, mnist_dir, tmp_path):
    """As if conf/'s default val_size had changed since the run: its record lacks the override, the stored config
    says 100; eval names the setting instead of evaluating other images, and runs when it is given."""
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    checkpoint[EXPERIMENT_KEY]["overrides"] = [
        line for line in checkpoint[EXPERIMENT_KEY]["overrides"] if not line.startswith("data.val_size=")
    ]
    shared = tmp_path / "shared.ckpt"
    torch.save(checkpoint, shared)
    common = [f"ckpt_path={shared}", f"data.data_dir={mnist_dir}", f"paths.log_dir={tmp_path / 'logs'}", "splits=[val]"]
    refused = run_entry("eval.py", *common, check=False)
    one_sentence(
        refused, "was trained with data.val_size=100, but this installation's conf/ composes data.val_size=5000"
    )
    assert " * val: top-1 " in run_entry("eval.py", *common, "data.val_size=100").stdout
