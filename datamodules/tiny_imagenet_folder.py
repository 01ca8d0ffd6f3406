"""The official tiny-imagenet-200 folder: classes from wnids.txt, names from words.txt, each split's files and labels.

    wnids.txt                              the classes, one wnid per line; line k is class index k
    words.txt                              wnid<TAB>comma-separated names (for all ImageNet synsets)
    train/<wnid>/images/<wnid>_<i>.JPEG    training images of class <wnid>
    val/images/val_<i>.JPEG                validation images, labelled by
    val/val_annotations.txt                file<TAB>wnid<TAB>x0<TAB>y0<TAB>x1<TAB>y1
    test/images/test_<i>.JPEG              test images, without labels

Problems in the listing (an empty class folder, an annotation naming an unknown class, a missing
annotation file, ...) are returned as sentences naming the file and line, never raised here: the
caller decides whether they stop the run or are skipped.
"""

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from core.errors import UserError

FOLDER_NAME = "tiny-imagenet-200"
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".jpeg", ".jpg")


@dataclass
class SplitFiles:
    """The usable files of a split in index order, their class indices (None: unlabelled), and what was wrong."""

    files: list[Path]
    labels: np.ndarray | None
    problems: list[str] = field(default_factory=list)


def natural_key(path: Path) -> list:
    """val_2.JPEG before val_10.JPEG: so val_<i>.JPEG is sample i of a complete split."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted((path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES), key=natural_key)


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
            raise UserError(f"{self.wnids_file} is missing: {self.root} is not a complete {FOLDER_NAME} folder; download and unzip the dataset again.")
        wnids = [line.strip() for line in self.wnids_file.read_text().splitlines() if line.strip()]
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
            for line in words_file.read_text().splitlines():
                wnid, _, words = line.partition("\t")
                if wnid in self.class_index:
                    names[wnid] = words.split(",")[0].strip()
        return [names.get(wnid) or wnid for wnid in self.wnids]

    def list_split(self, split: str) -> SplitFiles:
        return {"train": self._train, "val": self._val, "test": self._test}[split]()

    def _train(self) -> SplitFiles:
        files, labels, problems = [], [], []
        for index, wnid in enumerate(self.wnids):
            folder = self.root / "train" / wnid / "images"
            class_files = _images_in(folder)
            if not class_files:
                problems.append(f"{folder} holds no JPEG images (class {wnid}, line {index + 1} of {self.wnids_file})")
            files += class_files
            labels += [index] * len(class_files)
        return SplitFiles(files, np.array(labels, dtype=np.int64), problems)

    def _val(self) -> SplitFiles:
        folder = self.root / "val" / "images"
        present = _images_in(folder)
        if not self.annotations_file.is_file():
            return SplitFiles([], np.empty(0, dtype=np.int64), [f"{self.annotations_file} is missing, so none of the {len(present)} images in {folder} has a label"])
        problems = []
        label_of: dict[str, int] = {}
        line_of: dict[str, int] = {}
        named_on_bad_lines = set()
        for number, line in enumerate(self.annotations_file.read_text().splitlines(), start=1):
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
        names = {path.name for path in present}
        problems += [f"{self.annotations_file} line {line_of[name]} names {name}, which is not in {folder}" for name in label_of if name not in names]
        files = []
        for path in present:
            if path.name in label_of:
                files.append(path)
            elif path.name not in named_on_bad_lines:  # those were reported with their line
                problems.append(f"{path} has no line in {self.annotations_file}")
        if not present:
            problems.append(f"{folder} holds no JPEG images")
        return SplitFiles(files, np.array([label_of[path.name] for path in files], dtype=np.int64), problems)

    def _test(self) -> SplitFiles:
        folder = self.root / "test" / "images"
        files = _images_in(folder)
        return SplitFiles(files, None, [] if files else [f"{folder} holds no JPEG images"])
