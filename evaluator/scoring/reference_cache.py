"""What scoring needs from a reference, computed once at import and stored beside it: the reference cache.

Every submission scores its predictions against the same hidden references, and each time the scorer
would inflate the reference's gzip stream, find every organ's box and build every organ's surface again.
`build` does that once per reference and stores, in a directory of its own:

* `organs.npz` (uncompressed): per label present, its decoded mask inside its box (bit-packed: the
  label map itself is mostly background, and a whole uncompressed 512x512x300 map would be 79 MB per
  case), its surfels (points and neighbour codes) and its border voxels, exactly as
  `evaluator.scoring.surface` computes them from that mask;
* `meta.json`: the reference file's SHA-256, the evaluator version, the geometry (shape, affine,
  spacing), the label type, every label's box and voxel count.

An entry is valid only for the reference file whose content hash it names and for the evaluator version
that built it (`EVALUATOR_VERSION`: the package version plus a fingerprint of the code that computes what
is cached), so changing the reference or the scoring code makes the entry invisible and `build` makes a
new one. Scoring with a valid entry gives exactly the numbers scoring the reference file gives
(`evaluator.scoring.cases.score_many(reference_caches=...)`); with none it reads the file. Entries are
written to a temporary directory and renamed into place, so a reader never sees half an entry.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluator.scoring.extents import Box
from evaluator.scoring.loading import DEFAULT_MAX_DECOMPRESSED_BYTES, Geometry, LabelMap, load_reference
from evaluator.scoring.surface import Surface, border_voxels, surfel_area_table, surfels

__all__ = [
    "EVALUATOR_VERSION",
    "CachedOrgan",
    "CachedReference",
    "ReferenceCacheError",
    "build",
    "cached_organs",
    "entry_directory",
    "file_sha256",
    "lookup",
    "read",
]

logger = logging.getLogger(__name__)

# Bump when the files' layout changes.
CACHE_FORMAT = 1
# The modules whose code decides what a cache entry holds; editing any of them invalidates every entry.
_FINGERPRINTED = ("reference_cache.py", "surface.py", "extents.py", "loading.py", "nifti.py")


def _evaluator_version() -> str:
    try:
        package = importlib.metadata.version("touchstone")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        package = "0"
    digest = hashlib.sha256()
    for name in _FINGERPRINTED:
        digest.update((Path(__file__).parent / name).read_bytes())
    return f"{package}-{CACHE_FORMAT}-{digest.hexdigest()[:12]}"


#: The version an entry must have been built by to be used: package version, cache format, code fingerprint.
EVALUATOR_VERSION = _evaluator_version()

_UNIT_WEIGHTS = np.ones(256, np.float64)  # a border voxel weighs 1, as in `surface.border_voxels`
_UNIT_WEIGHTS.setflags(write=False)
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")
_HASH_CHARACTERS = 16


class ReferenceCacheError(Exception):
    """A cache entry cannot be used: missing, of another version or reference, or damaged."""


@dataclass(frozen=True)
class CachedOrgan:
    """One label of a cached reference: voxel count, mask (Fortran-ordered bool, inside the label's box)
    and its two surfaces (in the volume's frame)."""

    voxels: int
    mask: np.ndarray
    surfels: Surface
    border: Surface


@dataclass(frozen=True)
class CachedReference:
    """A reference read from its cache entry.

    `extents[label - 1]`: the label's box (None: absent), as `load_reference` gives it; `organs`: every
    present label's `CachedOrgan`; `dtype`: the label type `load_reference` would return.
    """

    geometry: Geometry
    extents: tuple[Box | None, ...]
    organs: Mapping[int, CachedOrgan]
    dtype: np.dtype

    def label_map(self) -> LabelMap:
        """The whole label map, rebuilt from the masks: equal to what `load_reference` reads from the file."""
        labels = np.zeros(self.geometry.shape, self.dtype, order="F")
        for label, organ in self.organs.items():
            box = self.extents[label - 1]
            assert box is not None
            np.copyto(labels[box], np.asarray(label, self.dtype), where=organ.mask)
        return LabelMap(labels=labels, geometry=self.geometry, extents=self.extents)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's content, read once per process for as long as the file is unchanged.

    Scoring looks a reference's entry up (in the worker) and then checks it again where the case is scored (in
    a forked child, which inherits what the worker already hashed), so the file is read once, not twice.
    """
    stat = os.stat(path)
    return _sha256_of(os.fspath(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _sha256_of(path: str, inode: int, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def entry_directory(root: Path, benchmark: str, case_id: str, reference_sha256: str) -> Path:
    """Where the entry of a case's reference with this content hash lives, for this evaluator version.

    `root/<benchmark>/<case_id>--<first 16 hex of the hash>--<version>`; characters other than letters,
    digits, `_`, `.` and `-` in the benchmark and case names become `_` (the hash keeps entries apart).
    """
    name = f"{_safe(case_id)}--{reference_sha256[:_HASH_CHARACTERS]}--{_safe(EVALUATOR_VERSION)}"
    return Path(root) / _safe(benchmark) / name


def lookup(root: Path, benchmark: str, case_id: str, reference_path: Path) -> Path | None:
    """The valid entry of this reference file (hashed now), or None when there is none to use."""
    try:
        sha = file_sha256(reference_path)
    except OSError:
        return None
    directory = entry_directory(root, benchmark, case_id, sha)
    try:
        _check_meta(directory, sha)
    except ReferenceCacheError:
        return None
    return directory


def build(
    root: Path,
    benchmark: str,
    case_id: str,
    reference_path: Path,
    *,
    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES,
) -> Path:
    """Build (or find) the entry of a case's reference and return its directory. Idempotent.

    Reads the reference with `load_reference` (raising its `LoadError` for a bad file), computes each
    present label's surfaces and stores them. Entries of the same case built for another reference
    content or evaluator version are removed. Safe to run concurrently: the first rename wins.
    """
    sha = file_sha256(reference_path)
    target = entry_directory(root, benchmark, case_id, sha)
    try:
        read(target)  # the whole entry, so a damaged one is rebuilt
        return target
    except ReferenceCacheError:
        pass
    reference = load_reference(reference_path, max_decompressed_bytes=max_decompressed_bytes)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _write(staging, reference, sha, Path(reference_path).name)
        if target.exists():  # a damaged entry (same name, unreadable meta): replace it
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.rename(staging, target)
        except OSError:  # another builder renamed its own entry first; theirs is as good as ours
            _check_meta(target, sha)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _remove_stale_siblings(target)
    return target


def read(directory: Path, reference_path: Path | None = None) -> CachedReference:
    """Read an entry; with `reference_path`, first check the entry was built from that file's content.

    Raises `ReferenceCacheError` when the entry is missing, damaged, of another evaluator version, or
    (with `reference_path`) of another reference.
    """
    directory = Path(directory)
    meta = _check_meta(directory, None if reference_path is None else file_sha256(reference_path))
    try:
        geometry = Geometry(
            shape=tuple(int(value) for value in meta["shape"]),  # type: ignore[arg-type]
            affine=np.asarray(meta["affine"], np.float64),
            spacing_mm=tuple(float(value) for value in meta["spacing_mm"]),  # type: ignore[arg-type]
        )
        extents = tuple(_box(item) for item in meta["extents"])
        table = surfel_area_table(geometry.spacing_mm)
        organs = {}
        with np.load(directory / "organs.npz", allow_pickle=False) as stored:
            for label_text, voxels in meta["voxels"].items():
                label = int(label_text)
                box = extents[label - 1]
                if box is None:
                    raise ReferenceCacheError(f"{directory}: label {label} has surfaces but no box")
                shape = tuple(piece.stop - piece.start for piece in box)
                mask = np.unpackbits(stored[f"mask_{label}"], count=int(np.prod(shape))).view(bool)
                border_points = stored[f"border_points_{label}"]
                organs[label] = CachedOrgan(
                    voxels=int(voxels),
                    mask=mask.reshape(shape, order="F"),
                    surfels=Surface(stored[f"surfel_points_{label}"], stored[f"surfel_codes_{label}"], table),
                    border=Surface(border_points, np.zeros(border_points.shape[1], np.uint8), _UNIT_WEIGHTS),
                )
        if any(box is not None and label not in organs for label, box in enumerate(extents, start=1)):
            raise ReferenceCacheError(f"{directory}: a label with a box has no cached surfaces")
        dtype = np.dtype(meta["dtype"])
    except ReferenceCacheError:
        raise
    except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
        raise ReferenceCacheError(f"{directory} is damaged: {error}") from error
    return CachedReference(geometry=geometry, extents=extents, organs=organs, dtype=dtype)


def cached_organs(reference: LabelMap) -> dict[int, CachedOrgan]:
    """What an entry stores for each label present in `reference`, computed as the scorer computes it."""
    organs = {}
    for label, box in enumerate(reference.extents, start=1):
        if box is None:
            continue
        mask = reference.labels[box] == label
        origin = (box[0].start, box[1].start, box[2].start)
        organs[label] = CachedOrgan(
            voxels=int(np.count_nonzero(mask)),
            mask=mask,
            surfels=surfels(mask, origin, reference.geometry.spacing_mm),
            border=border_voxels(mask, origin),
        )
    return organs


def _write(directory: Path, reference: LabelMap, sha: str, reference_name: str) -> None:
    labels = reference.labels
    spacing = reference.geometry.spacing_mm
    arrays: dict[str, np.ndarray] = {}
    voxels: dict[str, int] = {}
    for label, organ in cached_organs(reference).items():
        arrays[f"mask_{label}"] = np.packbits(organ.mask.ravel(order="F"))
        arrays[f"surfel_points_{label}"] = organ.surfels.points
        arrays[f"surfel_codes_{label}"] = organ.surfels.codes
        arrays[f"border_points_{label}"] = organ.border.points
        voxels[str(label)] = organ.voxels
    np.savez(directory / "organs.npz", **arrays)  # type: ignore[arg-type]
    meta = {
        "format": CACHE_FORMAT,
        "evaluator_version": EVALUATOR_VERSION,
        "reference_sha256": sha,
        "reference_name": reference_name,
        "shape": list(reference.geometry.shape),
        "affine": reference.geometry.affine.tolist(),
        "spacing_mm": list(spacing),
        "dtype": labels.dtype.str,
        "extents": [None if box is None else [[s.start, s.stop] for s in box] for box in reference.extents],
        "voxels": voxels,
    }
    (directory / "meta.json").write_text(json.dumps(meta))  # written last: its presence marks a complete entry


def _check_meta(directory: Path, sha: str | None) -> dict:
    try:
        meta = json.loads((directory / "meta.json").read_text())
    except FileNotFoundError:
        raise ReferenceCacheError(f"{directory} holds no cache entry") from None
    except (OSError, ValueError) as error:
        raise ReferenceCacheError(f"{directory}/meta.json cannot be read: {error}") from None
    if not isinstance(meta, dict) or meta.get("evaluator_version") != EVALUATOR_VERSION:
        raise ReferenceCacheError(f"{directory} was built by another evaluator version")
    if sha is not None and meta.get("reference_sha256") != sha:
        raise ReferenceCacheError(f"{directory} was built from another reference file")
    return meta


def _box(item: list[list[int]] | None) -> Box | None:
    if item is None:
        return None
    return (slice(item[0][0], item[0][1]), slice(item[1][0], item[1][1]), slice(item[2][0], item[2][1]))


def _safe(name: str) -> str:
    """A file name: unsafe characters become `_`, and it never starts with a dot (no `..`, no hidden names)."""
    safe = _SAFE_NAME.sub("_", name)
    return "_" + safe[1:] if safe.startswith(".") else safe or "_"


def _remove_stale_siblings(target: Path) -> None:
    """Remove this case's entries for other reference contents or versions (never a staging directory)."""
    case = target.name.rsplit("--", 2)[0]
    for sibling in target.parent.iterdir():
        if sibling == target or sibling.name.startswith(".") or sibling.name.count("--") < 2:
            continue
        if sibling.name.rsplit("--", 2)[0] == case:
            shutil.rmtree(sibling, ignore_errors=True)
