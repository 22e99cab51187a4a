"""Item images from a folder of `<item_id>.<suffix>` files (MicroLens covers, Amazon product images).

The image tower (qarm/encoders/image.py) encodes the items whose image_path is set and gives a null path a
zero vector with `present = False` (qarm.encoders.fusion.item_features); a path it cannot open stops the
frozen stage. So a loader keeps a path only for a file PIL can decode, and nulls the rest:
a missing file is "no image", an unreadable one (empty, not an image, a folder, permission denied) is counted
and named in a DataWarning, never handed to the tower.

The folder enters the data key as a listing (names and sizes, `folder_entry`), not as a sha256 of every
image: adding, removing or replacing covers makes a new key without reading every byte on each `plan`.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from benchmark.core.errors import DataError
from benchmark.data.schema import DataWarning


@dataclass(frozen=True)
class ImageScan:
    """paths: (N,) one per item id, None = no usable image; missing / unreadable: how many items had no file /
    a file PIL could not read; first_bad: (path, reason) of the first unreadable file, for the warning."""

    paths: list[str | None]
    missing: int
    unreadable: int
    first_bad: tuple[str, str] | None


def require_folder(folder: Path, setting: str, hint: str) -> Path:
    """`folder` when it is a folder; else a DataError naming it and the setting that chose it."""
    if not folder.exists():
        raise DataError(f"{folder}: missing images folder ({setting}); {hint}")
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder ({setting}); expected a folder of image files; {hint}")
    return folder


def image_problem(path: Path) -> str | None:
    """Why PIL cannot use `path` as an image (None: it can). Decodes it, JPEGs at 1/8 scale (PIL's draft
    mode reads every byte but computes few pixels), so a truncated download is caught here, not in the tower."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
    except UnidentifiedImageError:
        return "not an image file PIL can identify"
    except IsADirectoryError:
        return "is a folder"
    except PermissionError:
        return "permission denied"
    except (OSError, ValueError, SyntaxError) as e:  # PIL raises SyntaxError for some malformed headers
        return f"cannot read the image: {e}"
    return None


def scan(folder: Path, item_ids: list[str], suffixes: tuple[str, ...]) -> ImageScan:
    """One path per item id: the first `<folder>/<item_id><suffix>` that exists and PIL can read."""
    names = set(os.listdir(folder))
    paths: list[str | None] = []
    missing = unreadable = 0
    first_bad: tuple[str, str] | None = None
    for item_id in item_ids:
        name = next((f"{item_id}{s}" for s in suffixes if f"{item_id}{s}" in names), None)
        if name is None:
            paths.append(None)
            missing += 1
            continue
        path = folder / name
        problem = image_problem(path)
        if problem is not None:
            paths.append(None)
            unreadable += 1
            first_bad = first_bad or (str(path), problem)
            continue
        paths.append(str(path))
    return ImageScan(paths, missing, unreadable, first_bad)


def warn_scan(result: ImageScan, folder: Path, what: str, setting: str) -> None:
    """A DataWarning counting the items left without an image (nothing when every item has one)."""
    if not result.missing and not result.unreadable:
        return
    n = len(result.paths)
    msg = f"{folder}: {n - result.missing - result.unreadable} of {n} items have a {what}"
    if result.missing:
        msg += f"; {result.missing} have no file"
    if result.unreadable and result.first_bad:
        msg += f"; {result.unreadable} unreadable (first: {result.first_bad[0]}: {result.first_bad[1]})"
    warnings.warn(DataWarning(f"{msg}; their image_path is null (the image tower gives them no image; "
                              f"{setting} names the folder)"), stacklevel=3)


def folder_entry(folder: Path) -> dict:
    """The folder as one entry of the data fingerprint's file list: its name, file count and a sha256 over
    the sorted (name, size) of its files."""
    h = hashlib.sha256()
    n = 0
    with os.scandir(folder) as it:
        entries = sorted((e.name, e.stat().st_size) for e in it if e.is_file())
    for name, size in entries:
        h.update(f"{name}\t{size}\n".encode())
        n += 1
    return {"name": f"{folder.name}/", "files": n, "listing_sha256": h.hexdigest()}
