"""Tiny-ImageNet: 200 classes of 64x64 colour images, read from the tiny-imagenet-200 folder.

The folder is downloaded and extracted (checksum verified) when it is absent; the official layout and
copies with val/ sorted into class folders are read (datamodules/tiny_imagenet_folder.py). Each split is decoded
once into a memory-mapped uint8 array (datamodules/decoded_cache.py) and served from it in whole
batches; `cache=false` decodes every image with PIL when it is loaded instead, with the same pixels.
"""

import logging
import shutil
import urllib.error
import zipfile
from functools import cached_property
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch.utils.data import Dataset
from torchvision.datasets.utils import check_integrity, download_url, extract_archive

from datamodules.array_dataset import ArrayImageDataset
from datamodules.base import ImageDataModule
from datamodules.decoded_cache import load_or_build
from datamodules.image_files import ImageFileDataset
from datamodules.tiny_imagenet_folder import FOLDER_NAME, SPLITS, SplitFiles, TinyImageNetFolder
from user_errors import UserError

log = logging.getLogger(__name__)

OFFICIAL_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
OFFICIAL_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
OFFICIAL_NUM_CLASSES = 200

# The official test images come without labels, so the labelled stages both read val/ (the images
# papers report "val" accuracy on) and only predict reads test/.
FOLDER_OF_SPLIT = {"train": "train", "val": "val", "test": "val", "predict": "test"}
FOLDERS_OF_STAGE = {"fit": ("train", "val"), "validate": ("val",), "test": ("val",), "predict": ("test",)}


class TinyImageNetDataModule(ImageDataModule):
    input_shape = (3, 64, 64)
    # per-channel statistics of the 100k official training images
    mean = (0.4802, 0.4481, 0.3975)
    std = (0.2302, 0.2265, 0.2262)

    # trainer.predict reads the official test/ images, which have no labels
    predict_split = "predict"

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
        self.download = download
        self.url = url
        self.md5 = md5
        self.cache = cache
        self.cache_dir = Path(cache_dir) if cache_dir else self.data_dir / f"{FOLDER_NAME}-decoded"
        self.skip_bad_files = skip_bad_files
        self.predict_set: Dataset | None = None
        self.skipped: dict[str, int] = {}  # bad inputs left out, per official folder
        self._datasets: dict[str, Dataset] = {}
        self._files: dict[str, list[Path]] = {}

    @cached_property
    def num_classes(self) -> int:
        """The classes in wnids.txt; before the first download, the official 200."""
        return len(self.folder.wnids) if self.folder.exists() else OFFICIAL_NUM_CLASSES

    @property
    def class_names(self) -> list[str]:
        return self.folder.class_names

    def source(self, split: str, index: int) -> str:
        """The JPEG file of sample `index` of `split` (train, val, test or predict)."""
        folder = "train" if self.num_folds and split == "val" else FOLDER_OF_SPLIT[split]  # a fold of train/ validates
        if folder not in self._files:
            self._files[folder] = self.folder.list_split(folder).files
        return str(self._files[folder][index])

    def prepare_data(self) -> None:
        """Download the dataset if absent, check its structure, and decode the splits this run needs into the cache (once per node).

        Everything that can be checked without decoding (the layout of every split, the listing of the
        splits this run reads) is checked first, so a bad folder is refused before minutes of decoding.
        """
        if not self.folder.exists():
            self._download()
        self.folder.check_structure()
        if self.cache:
            stage = self.trainer.state.fn.value if self.trainer is not None else None
            folders = [
                folder for folder in self._folders_of(stage) if folder not in self._datasets
            ]  # not set up by an earlier stage
            listings = {folder: self.folder.list_split(folder) for folder in folders}
            for folder in folders:
                self._refuse(folder, listings[folder].problems)
            for folder in folders:
                _, problems = self._load(folder, listings[folder])
                self._refuse(folder, problems)

    def read_splits(self, stage: str | None) -> tuple[Dataset | None, Dataset | None, Dataset | None]:
        """The official folders `stage` reads, each loaded once: train/, and val/ as both val and test."""
        if not self.folder.exists():
            raise UserError(self._absent("prepare_data() has not downloaded it"))
        self.folder.check_structure()  # on every process: prepare_data runs on one per node
        if len(self.folder.wnids) != self.num_classes:
            raise UserError(
                f"{self.folder.wnids_file} lists {len(self.folder.wnids)} classes but the network was built for {self.num_classes} before the folder was there: run again."
            )
        for folder in self._folders_of(stage):
            if folder not in self._datasets:
                self._datasets[folder] = self._checked(folder)
        return self._datasets.get("train"), self._datasets.get("val"), self._datasets.get("val")

    def setup(self, stage: str | None = None) -> None:
        """As ImageDataModule's, plus the unlabelled test/ images that predict reads (the template's splits are labelled)."""
        super().setup(stage)
        self.predict_set = self._datasets.get("test")

    def _folders_of(self, stage: str | None) -> tuple[str, ...]:
        """The official folders a stage reads; cross-validating, fitting and validating read train/ only."""
        if self.num_folds and stage in ("fit", "validate"):
            return ("train",)
        return FOLDERS_OF_STAGE.get(stage, SPLITS)

    def dataset(self, split: str) -> Dataset:
        """As ImageDataModule's, plus "predict": the official test images, unlabelled."""
        return self.predict_set if split == "predict" else super().dataset(split)

    def _load(self, folder: str, listing: SplitFiles | None = None) -> tuple[Dataset, list[str]]:
        """The dataset of an official folder and the bad inputs left out of it."""
        listing = listing or self.folder.list_split(folder)
        self._files[folder] = listing.files
        labels = None if listing.labels is None else torch.from_numpy(listing.labels)
        if not self.cache:
            index = torch.arange(len(listing.files))
            return ImageFileDataset(
                listing.files, labels, index, self.input_shape, self.skip_bad_files
            ), listing.problems
        decoded = load_or_build(
            self.cache_dir / folder, listing.files, self.input_shape, f"Tiny-ImageNet {folder} images"
        )
        kept = torch.from_numpy(decoded.kept)
        dataset = ArrayImageDataset(decoded.images, None if labels is None else labels[kept], kept)
        return dataset, listing.problems + decoded.bad_files

    def _checked(self, folder: str) -> Dataset:
        dataset, problems = self._load(folder)
        self._refuse(folder, problems)
        for problem in problems:
            log.warning(f"Skipped (data.skip_bad_files=true): {problem}.")
        self.skipped[folder] = len(problems)
        if problems:
            log.warning(
                f"Bad inputs left out of the Tiny-ImageNet {folder} split: {len(problems)}; {len(dataset)} images remain."
            )
        if len(dataset) == 0:
            raise UserError(
                f"The Tiny-ImageNet {folder} split in {self.folder.root} has no usable images ({len(problems)} bad inputs skipped): restore the official files."
            )
        return dataset

    def _refuse(self, folder: str, problems: list[str]) -> None:
        if problems and not self.skip_bad_files:
            more = f"; {len(problems) - 1} more bad inputs in the {folder} split" if len(problems) > 1 else ""
            raise UserError(
                f"{problems[0]}{more}: restore the official files, or set data.skip_bad_files=true to leave bad inputs out."
            )

    def _absent(self, why: str) -> str:
        return (
            f"Tiny-ImageNet is not in {self.folder.root} (no wnids.txt there) and {why}: download {self.url}, unzip it "
            f"in {self.data_dir}, or point data.data_dir at the folder that holds {FOLDER_NAME}/."
        )

    def _download(self) -> None:
        """Download the official zip (kept, and reused while its checksum holds), verify it, and extract it."""
        if not self.download:
            raise UserError(self._absent("data.download=false"))
        archive = self.data_dir / Path(urlparse(self.url).path).name
        if archive.is_file() and not check_integrity(archive, self.md5):
            log.warning(f"{archive} does not have the md5 checksum {self.md5}: downloading it again")
        try:
            download_url(self.url, self.data_dir, archive.name, self.md5)
        except RuntimeError as error:  # torchvision: the downloaded file fails the checksum
            raise UserError(
                f"The file downloaded from {self.url} to {archive} does not have the md5 checksum {self.md5} of the official "
                f"zip: delete it and run again, or download and unzip the dataset in {self.data_dir} yourself."
            ) from error
        except (urllib.error.URLError, OSError) as error:
            raise UserError(
                self._absent(f"it could not be downloaded from {self.url} ({getattr(error, 'reason', error)})")
            ) from error
        # extracted next to the final place, then moved there: an interrupted extraction leaves no half folder
        extracting = self.data_dir / f".{FOLDER_NAME}.extracting"
        shutil.rmtree(extracting, ignore_errors=True)
        try:
            extract_archive(str(archive), str(extracting))
        except (zipfile.BadZipFile, OSError) as error:
            raise UserError(f"{archive} is not a readable zip file ({error}): delete it and run again.") from error
        if not (extracting / FOLDER_NAME / "wnids.txt").is_file():
            raise UserError(
                f"{archive} does not hold {FOLDER_NAME}/wnids.txt: it is not the Tiny-ImageNet zip; delete it, or set data.url to the official {OFFICIAL_URL}."
            )
        (extracting / FOLDER_NAME).rename(self.folder.root)
        shutil.rmtree(extracting)
        log.info(f"Extracted {archive} into {self.folder.root}")
