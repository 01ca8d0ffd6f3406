"""predict.py on image files of several modes, sizes and formats, a corrupt one among them, from a checkpoint and an export."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.image_files import decode_image
from runs.entry_points import positional_to_overrides
from tests.helpers.commands import run_entry
from tests.helpers.csv_rows import read_rows
from tests.helpers.idx_files import synthetic_digits
from tests.helpers.tiny_runs import tiny_run


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """Digits of the tiny MNIST's task saved as a user might have them, with their labels; and a corrupt PNG."""
    folder = tmp_path_factory.mktemp("images")
    digits, labels = synthetic_digits(4, seed=7)
    Image.fromarray(digits[0]).save(folder / "grayscale.png")
    opaque = np.full((28, 28), 255, dtype=np.uint8)
    Image.fromarray(np.stack([digits[1]] * 3 + [opaque], axis=-1), "RGBA").resize(
        (84, 84), Image.Resampling.NEAREST
    ).save(folder / "rgba_large.png")
    Image.fromarray(digits[2]).convert("RGB").save(folder / "colour.jpg", quality=95)
    Image.fromarray(digits[3]).convert("P").save(folder / "palette.gif")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not an image at all")
    names = ["grayscale.png", "rgba_large.png", "colour.jpg", "palette.gif"]
    return folder, {name: f"{int(label)} - " for name, label in zip(names, labels)}


def predictions_in(stdout: str) -> dict[str, list[tuple[float, str]]]:
    """file name -> [(probability %, class name)] as printed."""
    found: dict[str, list[tuple[float, str]]] = {}
    current = None
    for line in stdout.splitlines():
        if line.endswith(":") and not line.startswith(" "):
            current = Path(line[:-1]).name
            found[current] = []
        elif current and line.startswith("  "):
            _, probability, name = line.split(maxsplit=2)
            found[current].append((float(probability.rstrip("%")), name))
    return found


@pytest.fixture(scope="module")
def from_checkpoint(image_folder, mnist_dir, tmp_path_factory):
    """predict.py over the whole folder with the tiny run's checkpoint: its result and run directory."""
    run, out = tiny_run(tmp_path_factory, mnist_dir), tmp_path_factory.mktemp("predict")
    return run_entry(
        "predict.py",
        f"ckpt_path={run}/checkpoints/last.ckpt",
        str(image_folder[0]),
        f"data.data_dir={mnist_dir}",
        f"hydra.run.dir={out}",
        check=False,
    ), out


def test_predict_names_the_classes_of_images_of_any_mode_and_reports_a_corrupt_one(image_folder, from_checkpoint):
    folder, expected = image_folder
    result, out = from_checkpoint
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2
    assert errors[0].startswith(f"error: {folder / 'corrupt.png'} cannot be decoded as an image (") and errors[
        0
    ].endswith("; the other images are still predicted.")
    assert errors[1] == "error: 1 of 5 images could not be read (named above); the other 4 were predicted."
    predicted = predictions_in(result.stdout)
    assert sorted(predicted) == sorted(expected)
    for name, top in predicted.items():
        assert len(top) == 5 and top[0][1].startswith(expected[name]), (name, top)
        probabilities = [probability for probability, _ in top]
        assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 100.01
    rows = read_rows(out / "predictions.csv")
    assert [Path(row["file"]).name for row in rows] == sorted(expected)
    assert all(row["pred_name1"].startswith(expected[Path(row["file"]).name]) for row in rows)


def test_predict_with_an_exported_model_gives_the_checkpoints_probabilities(
    image_folder, from_checkpoint, mnist_dir, tmp_path_factory, tmp_path
):
    folder, expected = image_folder
    run = tiny_run(tmp_path_factory, mnist_dir)
    run_entry(
        "export.py",
        f"ckpt_path={run}/checkpoints/last.ckpt",
        "format=torch_export",
        f"data.data_dir={mnist_dir}",
        f"hydra.run.dir={tmp_path / 'export'}",
    )
    images = [f"image={folder / name}" for name in ("grayscale.png", "rgba_large.png")]  # image=PATH, repeated
    from_export = predictions_in(
        run_entry(
            "predict.py", f"exported={tmp_path / 'export' / 'model.pt2'}", *images, f"hydra.run.dir={tmp_path}"
        ).stdout
    )
    assert sorted(from_export) == ["grayscale.png", "rgba_large.png"]
    for name, top in from_export.items():
        assert top == predictions_in(from_checkpoint[0].stdout)[name]


def test_predict_needs_exactly_one_model(tmp_path):
    result = run_entry("predict.py", f"hydra.run.dir={tmp_path}", "some.png", check=False)
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "error: Give either ckpt_path=PATH (a checkpoint of train.py) or exported=PATH (a model written by export.py), not both or neither."
    )


def test_images_reach_the_tiny_imagenet_shape_as_the_dataset_decodes_them(tmp_path):
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(colour).save(tmp_path / "same_size.jpg", quality=90)
    # an image of the dataset's size gives exactly the pixels the dataset's decoder gives
    assert np.array_equal(
        decode_image(tmp_path / "same_size.jpg", (3, 64, 64), resize=True),
        decode_image(tmp_path / "same_size.jpg", (3, 64, 64)),
    )
    gray = rng.integers(0, 256, (80, 100), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    converted = torch.tensor(decode_image(tmp_path / "gray.png", (3, 64, 64), resize=True))
    assert converted.shape == (3, 64, 64) and converted.dtype == torch.uint8
    assert torch.equal(converted[0], converted[1]) and torch.equal(
        converted[1], converted[2]
    )  # grayscale copied to three channels
    resized = np.asarray(Image.fromarray(gray).resize((64, 64), Image.Resampling.BILINEAR))
    assert np.array_equal(converted[0].numpy(), resized)
    rgba = np.concatenate(
        [colour, np.zeros((64, 64, 1), dtype=np.uint8)], axis=-1
    )  # fully transparent: white, as the dataset makes it
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert np.array_equal(
        decode_image(tmp_path / "rgba.png", (3, 64, 64), resize=True), decode_image(tmp_path / "rgba.png", (3, 64, 64))
    )
    assert (decode_image(tmp_path / "rgba.png", (3, 64, 64), resize=True) == 255).all()
    assert decode_image(tmp_path / "rgba.png", (1, 28, 28), resize=True).shape == (1, 28, 28)


def test_bare_paths_and_image_arguments_become_one_images_list():
    arguments = ["ckpt_path=x.ckpt", "a.png", "image=dir/b c.jpg", "--cfg", "job", "photos/", "top_k=3"]
    assert positional_to_overrides(arguments, (), gathered="image") == [
        "ckpt_path=x.ckpt",
        "--cfg",
        "job",
        "top_k=3",
        "images=['a.png','dir/b c.jpg','photos/']",
    ]


def test_predictions_written_before_a_bad_image_is_reported_are_kept(
    image_folder, mnist_dir, tmp_path_factory, tmp_path
):
    """An unreadable image ends the command with exit 2, after the others were predicted: their CSV stays."""
    run = tiny_run(tmp_path_factory, mnist_dir)
    result = run_entry(
        "predict.py",
        f"ckpt_path={run}/checkpoints/last.ckpt",
        str(image_folder[0]),
        f"data.data_dir={mnist_dir}",
        f"paths.log_dir={tmp_path}",
        check=False,
    )
    assert result.returncode == 2
    (written,) = tmp_path.glob("predict/runs/*/predictions.csv")
    assert len(read_rows(written)) == len(image_folder[1])
