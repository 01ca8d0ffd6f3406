"""Tiny-ImageNet (200 classes of 64x64 JPEGs), each split decoded once into a memory-mapped uint8 cache.

Custom because torchvision has no Tiny-ImageNet (ImageFolder reads neither val_annotations.txt nor an unlabelled test/),
and decoding 100k small JPEGs every epoch costs more than a GPU step; the cache is reused while the files are unchanged.
"""

import functools
import hashlib
import json
import logging
import os
import re
import shutil
import time
import zipfile
from collections import namedtuple
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets.utils import download_and_extract_archive
from tqdm import tqdm

from datamodules.base import ArrayImageDataset, ImageDataModule
from datamodules.image_files import BadImageFile, decode_image, not_a_readable_file
from user_errors import UserError, replace_whole, writing

log = logging.getLogger(__name__)

FOLDER_NAME = "tiny-imagenet-200"
SPLITS = ("train", "val", "test")
OFFICIAL_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
OFFICIAL_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
OFFICIAL_VAL, CLASS_FOLDERS_VAL = "official", "class folders"
LAYOUTS = {  # what each official folder may hold
    "train": "train/<wnid>/images/*.JPEG or train/<wnid>/*.JPEG, one folder per class of wnids.txt",
    "val": "val/images/*.JPEG labelled by val/val_annotations.txt (the official zip), or val/<wnid>/images/*.JPEG or "
    "val/<wnid>/*.JPEG (one folder per class of wnids.txt)",
    "test": "test/images/*.JPEG (the official zip) or test/*.JPEG",
}
# the official test labels are not public: the labelled stages read val/, only predict reads test/
FOLDER_OF_SPLIT = {"train": "train", "val": "val", "test": "val", "predict": "test"}
FOLDERS_OF_STAGE = {"fit": ("train", "val"), "validate": ("val",), "test": ("val",), "predict": ("test",)}
CACHE_FORMAT = 3  # 3: each row's file position in manifest.json (kept.npy before)
CHUNK = 256  # images per decoding task
JPEG = (".jpeg", ".jpg")  # the suffixes read, in any case
warn_once = functools.cache(log.warning)  # a bad file met every epoch: one warning per loader process


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file (a byte order mark dropped); one sentence naming the file otherwise."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as error:
        raise UserError(f"{path} cannot be read ({error.strerror or error}): restore the official file.") from error
    except UnicodeDecodeError as error:
        raise UserError(f"{path} is not UTF-8 text: save it as UTF-8 (or restore it).") from error
    # not splitlines: names may hold its separators
    return [line.removesuffix("\r") for line in text.removesuffix("\n").split("\n")]


def _entries(folder: Path) -> list[Path]:
    """A folder's entries, hidden ones (.DS_Store) left out; none when it cannot be listed."""
    try:
        return sorted(path for path in folder.iterdir() if not path.name.startswith("."))
    except OSError:
        return []


def _jpegs(folder: Path) -> list[Path]:
    """Entries named like JPEGs, whatever they are (a broken link, a FIFO), in natural order: val_<i> is sample i."""
    key = lambda path: [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]  # noqa: E731
    return sorted((path for path in _entries(folder) if path.suffix.lower() in JPEG), key=key)


def _images_in(folder: Path, which: str = "") -> tuple[list[Path], list[str]]:
    """The readable JPEGs of <folder>/images, else of <folder> (flattened), and why each other one (or all) is left out."""
    folder = folder / "images" if (folder / "images").is_dir() else folder
    problems = {path: not_a_readable_file(path) for path in _jpegs(folder)}
    files, problems = [path for path, why in problems.items() if not why], [why for why in problems.values() if why]
    what = "holds no JPEG images" if folder.is_dir() else "is missing"
    return files, problems if files else [*problems, f"{folder} {what}{which}"]


# a split's files, their class indices (a tensor; None: unlabelled) and the bad inputs left out, one sentence each
SplitFiles = namedtuple("SplitFiles", "files labels problems")


class TinyImageNetFolder:
    """A tiny-imagenet-200 folder: wnids.txt (line k: class k), words.txt (names), and the splits as LAYOUTS says."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.wnids_file = self.root / "wnids.txt"
        self.annotations_file = self.root / "val" / "val_annotations.txt"
        self.list_split = functools.cache(self.list_split)  # source() asks for a split's files once per sample

    @cached_property
    def class_index(self) -> dict[str, int]:
        wnids = [line.strip() for line in read_lines(self.wnids_file) if line.strip()]
        if not wnids or len(set(wnids)) < len(wnids):
            raise UserError(f"{self.wnids_file} must list each class once, one per line: restore the official file.")
        return {wnid: index for index, wnid in enumerate(wnids)}

    @cached_property
    def class_names(self) -> list[str]:
        """The first name of each class in words.txt (e.g. "goldfish"); the wnid where it has none."""
        words = read_lines(self.root / "words.txt") if (self.root / "words.txt").is_file() else []
        names = {wnid: rest.split(",")[0].strip() for wnid, _, rest in (line.partition("\t") for line in words)}
        return [names.get(wnid) or wnid for wnid in self.class_index]

    @cached_property
    def val_layout(self) -> str:
        """OFFICIAL_VAL or CLASS_FOLDERS_VAL, once every split's structure is checked (once); one sentence otherwise."""
        _ = self.class_names  # words.txt is refused, if it is not text, before anything is decoded
        val = self.root / "val"
        classes = [path.name in self.class_index for path in _entries(val) if path.is_dir() and path.name != "images"]
        layout = CLASS_FOLDERS_VAL if any(classes) else OFFICIAL_VAL  # other folders beside val/images/ are not read
        known = {
            "train": all(path.name in self.class_index for path in _entries(self.root / "train") if path.is_dir()),
            "val": all(classes) and not _jpegs(val / "images")
            if any(classes)
            else (val / "images").is_dir() and self.annotations_file.exists(),
            "test": (self.root / "test" / "images").is_dir() or _jpegs(self.root / "test"),
        }
        for folder in (self.root / split for split in SPLITS):
            if not folder.is_dir() or not known[folder.name]:
                paths = sorted(_entries(folder), key=lambda path: path.name in self.class_index)  # not a class first
                names = [repr(p.name) if not p.name.isprintable() else p.name + "/" * p.is_dir() for p in paths]
                more = f" and {len(names) - 3} more" if len(names) > 3 else ""
                found = f"it holds {', '.join(names[:3]) + more or 'nothing'}" if folder.is_dir() else "it is missing"
                raise UserError(
                    f"{folder} is in no layout this reader knows ({found}): it reads {LAYOUTS[folder.name]}; restore one of them."
                )
        ignored = "; val_annotations.txt is not used" * (layout != OFFICIAL_VAL and self.annotations_file.is_file())
        log.info(f"Tiny-ImageNet in {self.root}: val/ is in the {layout} layout{ignored}")
        return layout

    def list_split(self, split: str) -> SplitFiles:
        """A split's files, labels and problems (listed once: see __init__), after the whole structure is checked."""
        if self.val_layout == OFFICIAL_VAL and split == "val":
            return self._val_annotated()
        if split == "test":
            files, problems = _images_in(self.root / "test")
            return SplitFiles(files, None, problems)
        files, labels, problems = [], [], []  # <split>/<wnid>/[images/]*.JPEG, labelled by the folder
        for index, wnid in enumerate(self.class_index):
            which = f" (class {wnid}, line {index + 1} of {self.wnids_file})"
            class_files, class_problems = _images_in(self.root / split / wnid, which)
            files += class_files
            problems += class_problems
            labels += [index] * len(class_files)
        return SplitFiles(files, torch.tensor(labels, dtype=torch.long), problems)

    def _val_annotated(self) -> SplitFiles:
        folder, annotations = self.root / "val" / "images", self.annotations_file
        present, problems = _images_in(folder)
        entries = {path.name for path in _jpegs(folder)}  # an unreadable one is reported as such, not by its line
        labelled, named = {}, set()  # file name: class index; every name a line gives
        for number, line in enumerate(read_lines(annotations), start=1):
            name, wnid = (line.split("\t") + [""])[:2]
            if not line.strip():
                continue
            if wnid not in self.class_index or name in labelled or name not in entries:
                problems.append(
                    f"{annotations} line {number} ({line!r}) does not label a file of {folder} once with a class of wnids.txt"
                )
            else:
                labelled[name] = self.class_index[wnid]
            named.add(name)
        problems += [f"{path} has no line in {annotations}" for path in present if path.name not in named]
        files = [path for path in present if path.name in labelled]
        return SplitFiles(files, torch.tensor([labelled[path.name] for path in files], dtype=torch.long), problems)


def decoded(
    folder: Path, files: list[Path], labels: torch.Tensor | None, shape: tuple[int, ...]
) -> tuple[ArrayImageDataset, list[str]]:
    """The images of `files` memory-mapped, with their labels and positions in `files`, and why each file left out
    failed: from the cache in `folder` when its manifest's fingerprint matches the files, else decoded now into it,
    each file through a temporary one renamed into place, the manifest last: builders sharing the folder do not mix."""
    digest = hashlib.sha256(f"format {CACHE_FORMAT}, shape {tuple(shape)}\n".encode())
    for path in files:  # each listed as a readable file
        status = os.stat(path)
        digest.update(f"{path}\t{status.st_size}\t{status.st_mtime_ns}\n".encode())
    manifest_path, description = folder / "manifest.json", f"Tiny-ImageNet {folder.name} images"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    if manifest.get("fingerprint") == digest.hexdigest():
        log.info(f"Using the decoded {description} in {folder} ({manifest['images']} images)")
    else:  # absent, or the files changed since it was built
        workers = min(len(os.sched_getaffinity(0)), -(-len(files) // CHUNK))
        decode = ImageFiles(files, None, shape).decode
        chunks = DataLoader(range(len(files)), CHUNK, num_workers=workers if workers > 1 else 0, collate_fn=decode)
        kept, bad, started = [], [], time.perf_counter()

        # written, not memory-mapped: a full disk is an OSError (one sentence), not a SIGBUS
        def write_rows(out) -> None:
            np.lib.format.write_array_header_1_0(
                out, {"descr": "|u1", "fortran_order": False, "shape": (len(files), *shape)}
            )
            with tqdm(total=len(files), unit="img", desc=f"Decoding {description}", mininterval=0.5) as progress:
                for chunk_kept, chunk_images, chunk_bad in chunks:  # in order: kept rows one after another
                    out.write(chunk_images.tobytes())
                    kept.extend(chunk_kept)
                    bad.extend(chunk_bad.values())
                    progress.update(len(chunk_kept) + len(chunk_bad))
            out.truncate(out.tell() + len(bad) * int(np.prod(shape)))  # the rows of files left out: never read

        fix = f"set data.cache_dir to a writable folder with {len(files) * int(np.prod(shape)) / 1e6:,.0f} MB free, or "
        with writing(
            f"the decoded {description} in {folder}", fix + "data.cache=false to decode images as they are loaded"
        ):
            manifest_path.unlink(missing_ok=True)  # from here until the end the cache is invalid
            replace_whole(folder / "images.npy", write_rows)
            manifest = {"fingerprint": digest.hexdigest(), "images": len(kept), "bad_files": bad, "kept": kept}
            replace_whole(manifest_path, json.dumps(manifest).encode())  # last: it marks the cache complete
        seconds = time.perf_counter() - started
        log.info(
            f"Decoded {len(files)} {description} into {folder} in {seconds:.1f} s ({len(files) / seconds:.0f} images/s, {max(workers, 1)} processes)"
        )
    images = np.load(folder / "images.npy", mmap_mode="r")[: manifest["images"]]  # rows beyond: files left out
    kept = torch.tensor(manifest["kept"], dtype=torch.long)
    return ArrayImageDataset(images, None if labels is None else labels[kept], kept), manifest["bad_files"]


class ImageFiles(Dataset):
    """Files decoded as fetched (the cache's workers; data.cache=false): a bad one stops the run, or is left out."""

    def __init__(self, files: list[Path], labels: torch.Tensor | None, shape: tuple, skip_bad_files: bool = False):
        self.files, self.labels, self.shape, self.skip_bad_files = files, labels, tuple(shape), skip_bad_files
        self.source_index = torch.arange(len(files))

    def __len__(self) -> int:
        return len(self.files)

    def decode(self, positions) -> tuple[list[int], np.ndarray, dict[int, str]]:
        """The positions decoded, their pixels (K, C, H, W), and why each other one failed."""
        kept, images, bad = [], [np.empty((0, *self.shape), np.uint8)], {}
        for position in positions:
            try:
                images.append(decode_image(self.files[position], self.shape)[None])
                kept.append(position)
            except BadImageFile as error:
                bad[position] = str(error)
        return kept, np.concatenate(images), bad

    def __getitems__(self, positions) -> dict[str, torch.Tensor]:
        kept, pixels, bad = self.decode(torch.as_tensor(positions, dtype=torch.long).tolist())
        for error in bad.values():
            if not self.skip_bad_files:
                raise UserError(f"{error}: restore the original, or set data.skip_bad_files=true to skip bad files.")
            warn_once(f"Skipping a bad file: {error}.")
        kept = torch.as_tensor(kept, dtype=torch.long)
        batch = {"image": torch.from_numpy(pixels), "index": kept}
        if self.labels is not None:
            batch["label"] = self.labels[kept]
        return batch

    __getitem__ = __getitems__  # the training loader's item is a batch's positions


class TinyImageNetDataModule(ImageDataModule):
    input_shape = (3, 64, 64)
    mean = (0.4802, 0.4481, 0.3975)  # of the 100k official training images
    std = (0.2302, 0.2265, 0.2262)
    predict_split = "predict"  # the official test/ images, unlabelled

    def __init__(
        self,
        data_dir: str,
        download: bool = True,
        url: str = OFFICIAL_URL,
        md5: str = OFFICIAL_MD5,
        cache: bool = True,
        cache_dir: str | None = None,
        skip_bad_files: bool = False,
        **loader_options,
    ):
        super().__init__(**loader_options)
        self.data_dir = Path(data_dir)
        self.folder = TinyImageNetFolder(self.data_dir / FOLDER_NAME)
        self.download, self.url, self.md5, self.cache, self.skip_bad_files = download, url, md5, cache, skip_bad_files
        self.cache_dir = Path(cache_dir) if cache_dir else self.data_dir / f"{FOLDER_NAME}-decoded"
        self._datasets: dict[str, Dataset] = {}
        self.predict_set: Dataset | None = None  # the official test/ images, unlabelled

    @cached_property
    def num_classes(self) -> int:
        """The classes in wnids.txt; before the first download, the official 200."""
        return len(self.folder.class_index) if self.folder.wnids_file.is_file() else 200

    class_names = property(lambda self: self.folder.class_names)  # words.txt read when first asked

    def source(self, split: str, index: int) -> str:
        folder = "train" if self.num_folds and split == "val" else FOLDER_OF_SPLIT[split]  # a fold of train/ validates
        return str(self.folder.list_split(folder).files[index])

    def prepare_data(self, stage: str | None = None) -> None:
        """Download if absent, then load the official folders `stage` (by default the trainer's) reads, each once:
        decoded into the cache once per node, every listing refused before anything is decoded."""
        stage = stage or (self.trainer.state.fn.value if self.trainer is not None else None)
        if not self.folder.wnids_file.is_file():  # the folder is absent
            self._download()
        # cross-validating, fitting and validating read train/ only
        folders = ("train",) if self.num_folds and stage in ("fit", "validate") else FOLDERS_OF_STAGE.get(stage, SPLITS)
        folders = [folder for folder in folders if folder not in self._datasets]
        for folder in folders:
            self._refuse(folder, self.folder.list_split(folder).problems)
        for folder in folders:
            self._datasets[folder] = self._loaded(folder)

    def read_splits(self, stage: str | None) -> tuple[Dataset | None, Dataset | None, Dataset | None]:
        self.prepare_data(stage)  # when prepare_data ran in another process (one per node)
        self.predict_set = self._datasets.get("test")
        return self._datasets.get("train"), self._datasets.get("val"), self._datasets.get("val")

    def _loaded(self, folder: str) -> Dataset:
        """An official folder's dataset, its bad inputs refused or (data.skip_bad_files) left out and reported."""
        files, labels, problems = self.folder.list_split(folder)
        if self.cache:
            dataset, bad = decoded(self.cache_dir / folder, files, labels, self.input_shape)
            problems = problems + bad
        else:
            dataset = ImageFiles(files, labels, self.input_shape, self.skip_bad_files)
        self._refuse(folder, problems)
        for problem in problems:
            log.warning(f"Skipped (data.skip_bad_files=true): {problem}.")
        if len(dataset) == 0:
            raise UserError(
                f"The Tiny-ImageNet {folder} split in {self.folder.root} has no usable images ({len(problems)} bad inputs skipped): restore the official files."
            )
        if problems:
            log.warning(
                f"Bad inputs left out of the Tiny-ImageNet {folder} split: {len(problems)}; {len(dataset)} images remain."
            )
        return dataset

    def _refuse(self, folder: str, problems: list[str]) -> None:
        if problems and not self.skip_bad_files:
            more = f"; {len(problems) - 1} more bad inputs in the {folder} split" if len(problems) > 1 else ""
            raise UserError(
                f"{problems[0]}{more}: restore the official files, or set data.skip_bad_files=true to leave bad inputs out."
            )

    def _download(self) -> None:
        """Download the zip (kept, and reused while its checksum holds), verify it, extract it beside and move it in
        place: an interrupted extraction leaves no half folder."""
        archive, extracting = os.path.basename(self.url), self.data_dir / f".{FOLDER_NAME}.extracting"
        absent = f"Tiny-ImageNet is not in {self.folder.root} (no wnids.txt there) and"
        to_do = f"download {self.url}, unzip it in {self.data_dir}, or point data.data_dir at the folder that holds {FOLDER_NAME}/."
        if not self.download:
            raise UserError(f"{absent} data.download=false: {to_do}")
        shutil.rmtree(extracting, ignore_errors=True)
        try:
            download_and_extract_archive(self.url, self.data_dir, extracting, md5=self.md5)
            (extracting / FOLDER_NAME).rename(self.folder.root)
        except (zipfile.BadZipFile, OSError, RuntimeError) as error:  # offline, a wrong checksum, not the zip
            raise UserError(
                f"{absent} could not be downloaded from {self.url} to {self.data_dir / archive} with the md5 checksum "
                f"{self.md5} and unzipped ({getattr(error, 'reason', error)}): {to_do}"
            ) from error
        shutil.rmtree(extracting)
        log.info(f"Extracted {archive} into {self.folder.root}")
