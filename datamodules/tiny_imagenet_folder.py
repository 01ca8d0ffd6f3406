"""The tiny-imagenet-200 folder: classes from wnids.txt, names from words.txt, each split's files and labels.

    wnids.txt                              the classes, one wnid per line; line k is class index k
    words.txt                              wnid<TAB>comma-separated names (for all ImageNet synsets)
    train/<wnid>/images/<wnid>_<i>.JPEG    training images of class <wnid>
    val/images/val_<i>.JPEG                validation images, labelled by
    val/val_annotations.txt                file<TAB>wnid<TAB>x0<TAB>y0<TAB>x1<TAB>y1
    test/images/test_<i>.JPEG              test images, without labels

That is the official zip. Copies prepared by the usual tutorial scripts are read too: val/ sorted into
class folders, val/<wnid>/images/*.JPEG or val/<wnid>/*.JPEG (labelled by the folder, any
val_annotations.txt ignored), and class folders without the images/ level in train/ (train/<wnid>/*.JPEG)
and test/ (test/*.JPEG).

Text files are read as UTF-8 (a leading byte order mark dropped). The structure (each split present, in
a known layout, its class folders the classes of wnids.txt) is checked as a whole before any split is
listed or decoded, and a structure it does not know raises UserError. Problems within a split (an
empty class folder, an annotation naming an unknown class, a file that is not a readable image file,
...) are returned as sentences naming the file and line, never raised here: the caller decides whether
they stop the run or are skipped.
"""

import logging
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from datamodules.image_files import not_a_readable_file
from user_errors import UserError

log = logging.getLogger(__name__)

FOLDER_NAME = "tiny-imagenet-200"
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".jpeg", ".jpg")
OFFICIAL_VAL = "official"  # val/images/*.JPEG labelled by val/val_annotations.txt
CLASS_FOLDERS_VAL = "class folders"  # val/<wnid>/[images/]*.JPEG
VAL_LAYOUTS = (
    "val/images/*.JPEG labelled by val/val_annotations.txt (the official zip), or val/<wnid>/images/*.JPEG or "
    "val/<wnid>/*.JPEG (one folder per class of wnids.txt)"
)


@dataclass
class SplitFiles:
    """The usable files of a split in index order, their class indices (None: unlabelled), and what was wrong."""

    files: list[Path]
    labels: np.ndarray | None
    problems: list[str] = field(default_factory=list)


def natural_key(path: Path) -> list:
    """val_2.JPEG before val_10.JPEG: so val_<i>.JPEG is sample i of a complete split."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file, a leading byte order mark dropped; UserError naming the file and line otherwise."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UserError(f"{path} cannot be read ({error.strerror or error}): restore the official file.") from error
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UserError(
            f"{path} line 1 starts with a UTF-16 byte order mark: the file is UTF-16 text, not UTF-8; save it as UTF-8, or restore the official file."
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - data.rfind(b"\n", 0, error.start)
        raise UserError(
            f"{path} line {line} is not UTF-8 text (byte 0x{data[error.start]:02x} at column {column}): save the file as UTF-8, or restore the official one."
        ) from error
    # split on newlines only: str.splitlines also splits on characters a name may hold, shifting line numbers
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    return lines[:-1] if lines and lines[-1] == "" else lines


def _entries(folder: Path) -> list[Path]:
    """The entries of a folder, hidden ones (.DS_Store, .ipynb_checkpoints) left out; OSError if it cannot be listed."""
    return sorted(path for path in folder.iterdir() if not path.name.startswith("."))


def _subfolders(folder: Path) -> list[str]:
    """The names of the class folders in `folder` (a folder named x.JPEG is a bad image, not a class)."""
    try:
        return [path.name for path in _entries(folder) if path.is_dir() and path.suffix.lower() not in IMAGE_SUFFIXES]
    except OSError:
        return []


def _image_entries(folder: Path) -> list[Path]:
    """Entries named like JPEG files, whatever they are (a broken link or a folder named x.JPEG included)."""
    try:
        return [path for path in _entries(folder) if path.suffix.lower() in IMAGE_SUFFIXES]
    except OSError:
        return []


def _images_in(folder: Path) -> tuple[list[Path], list[str]]:
    """The readable image files in `folder` in natural order, and why each other entry named like one is left out."""
    try:
        entries = [path for path in _entries(folder) if path.suffix.lower() in IMAGE_SUFFIXES]
    except FileNotFoundError:
        return [], []
    except OSError as error:
        return [], [f"{folder} cannot be listed ({error.strerror or error})"]
    files, problems = [], []
    for path in sorted(entries, key=natural_key):
        problem = not_a_readable_file(path)
        if problem:
            problems.append(problem)
        else:
            files.append(path)
    return files, problems


def _image_folder(class_folder: Path) -> Path:
    """<folder>/images where it exists (the official layout), else <folder> itself (a flattened copy)."""
    images = class_folder / "images"
    return images if images.is_dir() else class_folder


def _some(names: list[str]) -> str:
    return ", ".join(repr(name) if not name.isprintable() else name for name in names[:3]) + (
        f" and {len(names) - 3} more" if len(names) > 3 else ""
    )


class TinyImageNetFolder:
    def __init__(self, root: Path):
        self.root = Path(root)

    @property
    def wnids_file(self) -> Path:
        return self.root / "wnids.txt"

    @property
    def annotations_file(self) -> Path:
        return self.root / "val" / "val_annotations.txt"

    def exists(self) -> bool:
        return self.wnids_file.is_file()

    @cached_property
    def wnids(self) -> list[str]:
        """The class ids, in class-index order."""
        if not self.exists():
            raise UserError(
                f"{self.wnids_file} is missing: {self.root} is not a complete {FOLDER_NAME} folder; download and unzip the dataset again."
            )
        wnids = []
        for number, line in enumerate(read_lines(self.wnids_file), start=1):
            wnid = line.strip()
            if wnid and (not wnid.isprintable() or any(character.isspace() for character in wnid)):
                raise UserError(
                    f"{self.wnids_file} line {number} holds {wnid!r}, which is not a class id (one wnid such as n01443537 per line): restore the official file."
                )
            if wnid:
                wnids.append(wnid)
        repeated = sorted({wnid for wnid in wnids if wnids.count(wnid) > 1})
        if not wnids or repeated:
            what = f"repeats {repeated[:3]}" if repeated else "lists no classes"
            raise UserError(f"{self.wnids_file} {what}: it must list each class once; restore the official file.")
        return wnids

    @cached_property
    def class_index(self) -> dict[str, int]:
        return {wnid: index for index, wnid in enumerate(self.wnids)}

    @cached_property
    def class_names(self) -> list[str]:
        """The first name of each class in words.txt (e.g. "goldfish"); the wnid where words.txt has none."""
        words_file = self.root / "words.txt"
        names = {}
        if words_file.is_file():
            for line in read_lines(words_file):
                wnid, _, words = line.partition("\t")
                if wnid in self.class_index:
                    names[wnid] = words.split(",")[0].strip()
        return [names.get(wnid) or wnid for wnid in self.wnids]

    @cached_property
    def val_layout(self) -> str:
        """OFFICIAL_VAL or CLASS_FOLDERS_VAL, found (and logged) once, after checking train/ and before test/."""
        _ = self.class_names  # words.txt is read (and refused if it is not text) before anything is decoded
        self._check_train()
        layout = self._detect_val()
        self._check_test()
        if layout == OFFICIAL_VAL:
            log.info(
                f"Tiny-ImageNet in {self.root}: val/ is the official layout (val/images/ labelled by val/val_annotations.txt)"
            )
        else:
            ignored = f"; {self.annotations_file.name} is not used" if self.annotations_file.is_file() else ""
            log.info(
                f"Tiny-ImageNet in {self.root}: val/ is sorted into class folders (val/<wnid>/[images/]*.JPEG, labelled by the folder{ignored})"
            )
        return layout

    def _missing(self, folder: Path, holds: str) -> UserError:
        return UserError(
            f"{folder} is missing: {self.root} is not a complete {FOLDER_NAME} folder (it needs {holds}); download and unzip the dataset again."
        )

    def _unknown_folders(self, folder: Path, names: list[str]) -> UserError:
        return UserError(
            f"{folder} holds folders that are not classes of {self.wnids_file} ({_some(names)}): the folder and wnids.txt "
            f"disagree; restore the official wnids.txt, or move those folders out."
        )

    def _check_train(self) -> None:
        train = self.root / "train"
        if not train.is_dir():
            raise self._missing(train, "train/<wnid>/images/*.JPEG")
        folders = _subfolders(train)
        unknown = [name for name in folders if name not in self.class_index]
        if unknown:
            raise self._unknown_folders(train, unknown)
        if not folders:
            raise UserError(
                f"{train} holds no class folders (train/<wnid>/images/*.JPEG, one per line of {self.wnids_file}): download and unzip the dataset again."
            )

    def _detect_val(self) -> str:
        val = self.root / "val"
        if not val.is_dir():
            raise self._missing(val, VAL_LAYOUTS)
        images = val / "images"
        folders = [name for name in _subfolders(val) if name != "images"]
        classes = [name for name in folders if name in self.class_index]
        others = [name for name in folders if name not in self.class_index]
        if classes:
            if _image_entries(images):
                why = f"it holds both images in val/images/ and class folders ({_some(classes)}), as a sorting script stopped halfway leaves it"
            elif others:
                why = f"besides class folders it holds folders that are not classes of wnids.txt ({_some(others)})"
            else:
                return CLASS_FOLDERS_VAL
        elif images.is_dir():
            if self.annotations_file.exists():
                return OFFICIAL_VAL
            why = f"it holds val/images/ but no {self.annotations_file.name} to label its images"
        elif others:
            why = f"its folders ({_some(others)}) are not classes of wnids.txt"
        elif _image_entries(val):
            why = f"it holds {len(_image_entries(val))} images directly in val/, which say nothing of their classes"
        else:
            why = "it holds neither val/images/ nor class folders"
        raise UserError(
            f"{val} is in no layout this reader knows ({why}): it reads {VAL_LAYOUTS}; restore one of them."
        )

    def _check_test(self) -> None:
        test = self.root / "test"
        if not test.is_dir():
            raise self._missing(test, "test/images/*.JPEG, the unlabelled test images")
        if not (test / "images").is_dir() and not _image_entries(test):
            raise UserError(
                f"{test} is in no layout this reader knows (it holds neither test/images/ nor images): it reads test/images/*.JPEG (the official zip) or test/*.JPEG; restore one of them."
            )

    def check_structure(self) -> str:
        """The layout of val/, after checking every split's structure: UserError, naming what is wrong, if it is not one this reader knows."""
        return self.val_layout

    def list_split(self, split: str) -> SplitFiles:
        layout = self.check_structure()  # the whole structure is checked before any split is listed
        if split == "val":
            return self._val_annotated() if layout == OFFICIAL_VAL else self._class_folders(self.root / "val")
        return {"train": lambda: self._class_folders(self.root / "train"), "test": self._test}[split]()

    def _class_folders(self, split_folder: Path) -> SplitFiles:
        """<split>/<wnid>/[images/]*.JPEG, labelled by the folder: train/, and val/ sorted into class folders."""
        files, labels, problems = [], [], []
        for index, wnid in enumerate(self.wnids):
            folder = _image_folder(split_folder / wnid)
            class_files, class_problems = _images_in(folder)
            problems += class_problems
            if not class_files:
                what = "holds no JPEG images" if folder.is_dir() else "is missing"
                problems.append(f"{folder} {what} (class {wnid}, line {index + 1} of {self.wnids_file})")
            files += class_files
            labels += [index] * len(class_files)
        return SplitFiles(files, np.array(labels, dtype=np.int64), problems)

    def _val_annotated(self) -> SplitFiles:
        folder = self.root / "val" / "images"
        present, problems = _images_in(folder)
        label_of: dict[str, int] = {}
        line_of: dict[str, int] = {}
        named_on_bad_lines = set()
        for number, line in enumerate(read_lines(self.annotations_file), start=1):
            if not line.strip():
                continue
            fields = line.split("\t")
            where = f"{self.annotations_file} line {number}"
            if len(fields) < 2:
                problems.append(f"{where} is not 'file<TAB>wnid<TAB>x0<TAB>y0<TAB>x1<TAB>y1'")
                named_on_bad_lines.add(fields[0])
            elif fields[1] not in self.class_index:
                problems.append(f"{where} names class {fields[1]!r}, which is not in {self.wnids_file}")
                named_on_bad_lines.add(fields[0])
            elif fields[0] in line_of:
                problems.append(f"{where} labels {fields[0]} again (first on line {line_of[fields[0]]})")
            else:
                label_of[fields[0]] = self.class_index[fields[1]]
                line_of[fields[0]] = number
        entries = {
            path.name for path in _image_entries(folder)
        }  # an unreadable entry was reported above, not as missing
        problems += [
            f"{self.annotations_file} line {line_of[name]} names {name}, which is not in {folder}"
            for name in label_of
            if name not in entries
        ]
        files = []
        for path in present:
            if path.name in label_of:
                files.append(path)
            elif path.name not in named_on_bad_lines:  # those were reported with their line
                problems.append(f"{path} has no line in {self.annotations_file}")
        if not entries:
            problems.append(f"{folder} holds no JPEG images")
        return SplitFiles(files, np.array([label_of[path.name] for path in files], dtype=np.int64), problems)

    def _test(self) -> SplitFiles:
        folder = _image_folder(self.root / "test")
        files, problems = _images_in(folder)
        return SplitFiles(files, None, problems if files or problems else [f"{folder} holds no JPEG images"])
