"""A decoded-image cache: a list of image files decoded once into one uint8 (N, C, H, W) .npy file, memory-mapped.

A cache folder holds images.npy (one row per decodable file), kept.npy (each row's position in the
file list) and manifest.json, written last: a fingerprint of the files (path, size, modification
time; one that cannot be stat'ed counts as unreadable, and decoding reports it) and the files that
could not be decoded, with why. A cache whose fingerprint differs from the files' is rebuilt; one
left half-written has no manifest and is rebuilt too. Decoding runs in one process per available CPU
core, with a progress bar showing the image count and rate.
"""

import contextlib
import errno
import hashlib
import json
import logging
import multiprocessing
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from datamodules.image_files import BadImageFile, decode_image
from user_errors import UserError

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: 16-bit, transparent and CMYK images decoded without clipping (datamodules/image_files.to_mode)
CHUNK = 256  # images per decoding task: large enough to amortise the task, small enough for a smooth progress bar


@dataclass
class DecodedImages:
    images: np.ndarray  # uint8 (N, C, H, W), memory-mapped
    kept: np.ndarray  # int64 (N,): position in the file list of each row
    bad_files: list[str]  # why each file left out could not be decoded


def fingerprint(files: Sequence[Path], image_shape: tuple[int, int, int]) -> str:
    digest = hashlib.sha256(f"format {FORMAT_VERSION}, shape {tuple(image_shape)}\n".encode())
    for path in files:
        try:
            status = os.stat(path)
            digest.update(f"{path}\t{status.st_size}\t{status.st_mtime_ns}\n".encode())
        except OSError as error:  # gone or unreadable since it was listed: decoding reports it as a bad file
            digest.update(f"{path}\tunreadable {error.errno}\n".encode())
    return digest.hexdigest()


def load_or_build(
    folder: Path, files: Sequence[Path], image_shape: tuple[int, int, int], description: str
) -> DecodedImages:
    """The decoded images of `files`, from the cache in `folder` when it matches them, else decoded now into it."""
    image_shape = tuple(image_shape)
    if not files:
        return DecodedImages(np.empty((0, *image_shape), dtype=np.uint8), np.empty(0, dtype=np.int64), [])
    expected = fingerprint(files, image_shape)
    manifest_path = folder / "manifest.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("fingerprint") == expected:
            log.info(f"Using the decoded {description} in {folder} ({manifest['images']} images)")
            return _open(folder, manifest)
        log.info(f"The {description} files changed since {folder} was built: decoding them again")
    return _build(folder, files, image_shape, expected, description)


def _open(folder: Path, manifest: dict) -> DecodedImages:
    return DecodedImages(
        np.load(folder / "images.npy", mmap_mode="r"), np.load(folder / "kept.npy"), manifest["bad_files"]
    )


def _build(
    folder: Path, files: Sequence[Path], image_shape: tuple[int, int, int], expected: str, description: str
) -> DecodedImages:
    # temporary names of this process's own: builders on several nodes sharing the folder do not mix their
    # rows, and each moves finished files into place atomically (they hold the same pixels)
    partial = {
        name: folder / f"{name}.{os.getpid()}.partial{suffix}"
        for name, suffix in (("images", ".npy"), ("kept", ".npy"), ("manifest", ".json"))
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "manifest.json").unlink(missing_ok=True)  # from here until the end the cache is invalid
        manifest = _decode_all(folder, files, image_shape, expected, description, partial)
    except OSError as error:  # not writable, disk full, ...
        for path in partial.values():
            with contextlib.suppress(OSError):
                path.unlink()
        raise UserError(
            f"Could not write the decoded {description} in {folder} ({error.strerror or error}): set data.cache_dir to a writable "
            f"folder with {len(files) * int(np.prod(image_shape)) / 1e6:,.0f} MB free, or data.cache=false to decode images as they are loaded."
        ) from error
    return _open(folder, manifest)


def _decode_all(
    folder: Path,
    files: Sequence[Path],
    image_shape: tuple[int, int, int],
    expected: str,
    description: str,
    partial: dict[str, Path],
) -> dict:
    np.lib.format.open_memmap(partial["images"], mode="w+", dtype=np.uint8, shape=(len(files), *image_shape)).flush()
    _reserve(partial["images"])
    tasks = [
        (partial["images"], start, [str(path) for path in files[start : start + CHUNK]], image_shape)
        for start in range(0, len(files), CHUNK)
    ]
    processes = min(len(os.sched_getaffinity(0)), len(tasks))
    bad: dict[int, str] = {}
    started = time.perf_counter()
    with tqdm(total=len(files), unit="img", desc=f"Decoding {description}", mininterval=0.5) as progress:
        if processes > 1:
            with multiprocessing.get_context().Pool(processes) as pool:
                for done, failures in pool.imap_unordered(_decode_into, tasks):
                    bad.update(failures)
                    progress.update(done)
        else:
            for task in tasks:
                done, failures = _decode_into(task)
                bad.update(failures)
                progress.update(done)
    seconds = time.perf_counter() - started

    kept = np.array([position for position in range(len(files)) if position not in bad], dtype=np.int64)
    if bad:
        _drop_rows(partial["images"], kept)
    np.save(partial["kept"], kept)
    manifest = {"fingerprint": expected, "images": len(kept), "bad_files": [bad[position] for position in sorted(bad)]}
    partial["manifest"].write_text(json.dumps(manifest, indent=1))
    for name in ("images", "kept", "manifest"):  # the manifest last: it marks the cache complete
        os.replace(partial[name], folder / f"{name}{partial[name].suffix}")
    log.info(
        f"Decoded {len(files)} {description} into {folder} in {seconds:.1f} s ({len(files) / seconds:.0f} images/s, {processes} processes)"
    )
    return manifest


def _decode_into(task: tuple[Path, int, list[str], tuple[int, int, int]]) -> tuple[int, dict[int, str]]:
    """Decode files into rows start.. of the cache file; returns how many were done and why the bad ones failed."""
    path, start, files, image_shape = task
    images = np.load(path, mmap_mode="r+")
    failures = {}
    for offset, file in enumerate(files):
        try:
            images[start + offset] = decode_image(file, image_shape)
        except BadImageFile as error:
            failures[start + offset] = str(error)
    images.flush()
    return len(files), failures


def _reserve(path: Path) -> None:
    """Allocate the disk blocks of a memory-mapped file now: on a full disk that is an OSError here (one sentence), where a
    write through the map into a hole of the file would kill the process with SIGBUS."""
    with open(path, "r+b") as file:
        try:
            os.posix_fallocate(file.fileno(), 0, os.fstat(file.fileno()).st_size)
        except OSError as error:
            if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # a filesystem that cannot reserve: write as before
                raise


def _drop_rows(path: Path, kept: np.ndarray) -> None:
    """Rewrite the cache file with only the rows in `kept` (rare: only when some files could not be decoded)."""
    full = np.load(path, mmap_mode="r")
    compact_path = path.with_name(path.name.replace(".partial", ".compact"))
    compact = np.lib.format.open_memmap(compact_path, mode="w+", dtype=full.dtype, shape=(len(kept), *full.shape[1:]))
    _reserve(compact_path)
    for start in range(0, len(kept), CHUNK):
        compact[start : start + CHUNK] = full[kept[start : start + CHUNK]]
    compact.flush()
    del full, compact
    os.replace(compact_path, path)
