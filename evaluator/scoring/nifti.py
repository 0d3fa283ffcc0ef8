"""Reading an untrusted .nii / .nii.gz into bytes we have verified: the file, its gzip stream, its header.

nibabel alone is not enough for files a team wrote: its gzip reader stops at the end of the image data
and never checks the CRC-32 (a corrupted stream is decoded silently), and it allocates whatever size
the header declares. Here the file is read whole (size-capped, no symlinks, no FIFOs), the header is
decoded from the first bytes of the stream and checked *before* the data is decompressed, the data is
decompressed with a hard cap, and the rest of the stream is drained so that the CRC-32 and length of
every gzip member are verified. ISA-L (`isal`) decompresses when installed, zlib otherwise.
Every problem raises `LoadError` with a category and a message for the person who wrote the file.
"""

from __future__ import annotations

import errno
import os
import stat
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import nibabel as nib
import numpy as np

from evaluator.scoring.refusals import LoadError, RefusalCategory

_igzip: Any
try:  # ISA-L's igzip is 2-3x faster than zlib at inflating.
    from isal import igzip_lib as _isal_igzip

    _igzip = _isal_igzip
except ImportError:  # pragma: no cover - isal is a pinned dependency
    _igzip = None

_GZIP_MAGIC = b"\x1f\x8b"
_NIFTI_HEADERS: dict[int, type[nib.Nifti1Header]] = {348: nib.Nifti1Header, 540: nib.Nifti2Header}
_CHUNK_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class RawImage:
    """A NIfTI header and its voxel bytes, with the stream fully verified.

    `header`: the nibabel header (NIfTI-1 or NIfTI-2), not yet checked beyond being parseable.
    `shape`: the image shape with trailing singleton dimensions beyond the third removed.
    `data`: exactly `prod(shape) * dtype.itemsize` bytes of voxel data in Fortran order.
    """

    header: nib.Nifti1Header
    shape: tuple[int, ...]
    dtype: np.dtype
    data: bytes

    def array(self) -> np.ndarray:
        """The voxels as a read-only Fortran-ordered array viewing `data` (no copy)."""
        return np.frombuffer(self.data, self.dtype).reshape(self.shape, order="F")


class HeaderCheck(Protocol):
    """Called with the parsed header, shape and dtype before any voxel data is decompressed."""

    def __call__(self, header: nib.Nifti1Header, shape: tuple[int, ...], dtype: np.dtype) -> None: ...


def read_file_bytes(path: Path, *, max_bytes: int) -> bytes:
    """The whole content of a regular file, refusing symlinks, FIFOs, devices and files over `max_bytes`."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise LoadError(
            RefusalCategory.MISSING_OUTPUT, f"no file named {Path(path).name} was written"
        ) from None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise LoadError(
                RefusalCategory.NOT_REGULAR_FILE,
                f"{Path(path).name} is a symbolic link; write the image file itself",
            ) from None
        raise LoadError(
            RefusalCategory.NOT_REGULAR_FILE, f"{Path(path).name} cannot be opened ({error.strerror})"
        ) from None
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise LoadError(RefusalCategory.NOT_REGULAR_FILE, f"{Path(path).name} is not a regular file")
    except BaseException:
        os.close(descriptor)
        raise
    with os.fdopen(descriptor, "rb", buffering=0) as handle:
        if status.st_size > max_bytes:
            raise LoadError(
                RefusalCategory.TOO_LARGE,
                f"the file is {_size(status.st_size)}; the limit is {_size(max_bytes)}",
            )
        content = handle.read(max_bytes + 1)
    if len(content) > max_bytes:
        raise LoadError(
            RefusalCategory.TOO_LARGE, f"the file grew beyond the {_size(max_bytes)} limit while read"
        )
    return content


def read_nifti(
    content: bytes, *, max_decompressed_bytes: int, check_header: HeaderCheck | None = None
) -> RawImage:
    """Decode a .nii or .nii.gz file's `content`, verifying gzip CRCs and capping the decoded size.

    `check_header` runs on the parsed header before the voxel data is decompressed, so a file whose
    header is wrong is refused without inflating it. Raises `LoadError`.
    """
    stream = _Stream(content) if content[:2] == _GZIP_MAGIC else _PlainStream(content)
    header_bytes = stream.read(348)
    header = _parse_header(header_bytes, stream)
    shape = _spatial_shape(header)
    dtype = _voxel_dtype(header)
    data_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw_offset = float(header["vox_offset"])
    if not np.isfinite(raw_offset) or raw_offset < 0:
        raise LoadError(RefusalCategory.NOT_NIFTI, f"vox_offset is {raw_offset}; it must be a byte offset")
    offset = int(raw_offset)
    minimum_offset = header.sizeof_hdr + 4
    if offset < minimum_offset:
        raise LoadError(
            RefusalCategory.NOT_NIFTI,
            f"vox_offset is {offset}; a single-file NIfTI stores its voxels at offset {minimum_offset} or later",
        )
    if offset + data_bytes > max_decompressed_bytes:
        raise LoadError(
            RefusalCategory.TOO_LARGE,
            f"the header declares {_size(offset + data_bytes)} of data (shape {shape}, {dtype.name}); "
            f"the limit is {_size(max_decompressed_bytes)}",
        )
    if check_header is not None:
        check_header(header, shape, dtype)
    stream.skip(offset - stream.position)
    data = stream.read(data_bytes)
    if len(data) < data_bytes:
        if stream.truncated:
            raise _truncated()
        raise LoadError(
            RefusalCategory.NOT_NIFTI,
            f"the image holds {len(data)} bytes of voxel data but its header declares {data_bytes}",
        )
    stream.finish(limit=max_decompressed_bytes)
    return RawImage(header=header, shape=shape, dtype=dtype, data=data)


def _size(count: int) -> str:
    """A byte count for people: '812 bytes', '4.3 MB', '4.29 GB'."""
    if count < 10_000:
        return f"{count} bytes"
    return f"{count / 1e6:.1f} MB" if count < 10**9 else f"{count / 1e9:.2f} GB"


def _truncated() -> LoadError:
    return LoadError(RefusalCategory.CORRUPT_GZIP, "the gzip stream ends early: the file is truncated")


def _parse_header(first_bytes: bytes, stream: _PlainStream) -> nib.Nifti1Header:
    if len(first_bytes) < 348 and stream.truncated:
        raise _truncated()
    if len(first_bytes) < 348:
        raise LoadError(
            RefusalCategory.NOT_NIFTI, f"the file holds {len(first_bytes)} bytes, less than a NIfTI header"
        )
    sizes = {int.from_bytes(first_bytes[:4], order) for order in ("little", "big")}
    size = next((size for size in sizes if size in _NIFTI_HEADERS), None)
    if size is None:
        raise LoadError(RefusalCategory.NOT_NIFTI, "the file does not start with a NIfTI-1 or NIfTI-2 header")
    if size > len(first_bytes):
        first_bytes += stream.read(size - len(first_bytes))
        if len(first_bytes) < size:
            raise (
                _truncated()
                if stream.truncated
                else LoadError(RefusalCategory.NOT_NIFTI, "the file ends inside its NIfTI-2 header")
            )
    try:
        header = _NIFTI_HEADERS[size](first_bytes[:size], check=False)
        magic = bytes(header["magic"].item())
    except Exception as error:  # nibabel raises a variety of errors on garbage
        raise LoadError(RefusalCategory.NOT_NIFTI, f"the NIfTI header cannot be decoded ({error})") from None
    if magic not in (b"n+1", b"n+2"):
        raise LoadError(
            RefusalCategory.NOT_NIFTI,
            f"the header's magic is {magic!r}; write a single-file NIfTI (.nii.gz), not a .hdr/.img pair",
        )
    return header


def _spatial_shape(header: nib.Nifti1Header) -> tuple[int, ...]:
    dims = [int(value) for value in header["dim"]]
    ndim = dims[0]
    if not 1 <= ndim <= 7:
        raise LoadError(RefusalCategory.NOT_NIFTI, f"dim[0] is {ndim}; it must be between 1 and 7")
    shape = dims[1 : ndim + 1]
    if any(size < 1 for size in shape):
        raise LoadError(RefusalCategory.NOT_NIFTI, f"the header declares the shape {tuple(shape)}")
    if ndim < 3 or any(size != 1 for size in shape[3:]):
        raise LoadError(
            RefusalCategory.WRONG_DIMENSIONS,
            f"the image has shape {tuple(shape)}; write a 3-D label map (a trailing 4th dimension of 1 is accepted)",
        )
    return tuple(shape[:3])


def _voxel_dtype(header: nib.Nifti1Header) -> np.dtype:
    try:
        dtype = np.dtype(header.get_data_dtype())
    except Exception:
        code = int(header["datatype"])
        raise LoadError(
            RefusalCategory.UNSUPPORTED_DATA_TYPE, f"NIfTI datatype code {code} is not supported"
        ) from None
    if dtype.kind not in "uif" or dtype.itemsize > 8 or dtype.fields is not None:
        raise LoadError(
            RefusalCategory.UNSUPPORTED_DATA_TYPE,
            f"voxels are stored as {dtype}; write integer labels (uint8 is enough for this benchmark)",
        )
    return dtype


class _PlainStream:
    """An uncompressed .nii read as a stream, with the same interface as the gzip stream."""

    truncated = False

    def __init__(self, content: bytes) -> None:
        self._content = content
        self.position = 0

    def read(self, size: int) -> bytes:
        chunk = self._content[self.position : self.position + size]
        self.position += len(chunk)
        return chunk

    def skip(self, size: int) -> None:
        self.position = min(self.position + max(size, 0), len(self._content))

    def finish(self, *, limit: int) -> None:
        """Nothing to verify in an uncompressed file."""


class _Stream(_PlainStream):
    """A gzip stream (one or more members) inflated on demand, with CRC-32 and length verified."""

    def __init__(self, content: bytes) -> None:
        super().__init__(content)
        self._pending = content
        self._inflater = _new_inflater()
        self.truncated = False

    def read(self, size: int) -> bytes:
        pieces = []
        wanted = size
        while wanted > 0:
            chunk = self._inflate(wanted)
            if chunk is None:
                break
            pieces.append(chunk)
            wanted -= len(chunk)
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        self.position += len(data)
        return data

    def skip(self, size: int) -> None:
        while size > 0:
            chunk = self.read(min(size, _CHUNK_BYTES))
            if not chunk:
                return
            size -= len(chunk)

    def finish(self, *, limit: int) -> None:
        """Inflate to the end of the last member, verifying every CRC; refuse output beyond `limit`."""
        while True:
            chunk = self._inflate(_CHUNK_BYTES)
            if chunk is None:
                break
            self.position += len(chunk)
            if self.position > limit:
                raise LoadError(
                    RefusalCategory.TOO_LARGE,
                    f"the gzip stream inflates to more than {_size(limit)}, beyond the image it declares",
                )
        if self.truncated:
            raise _truncated()

    def _inflate(self, max_length: int) -> bytes | None:
        """Up to `max_length` inflated bytes; None at the end of the stream (or where it is cut off)."""
        for _attempt in range(1_000):
            if self._inflater.eof:
                rest = self._inflater.unused_data + self._pending
                if not rest.strip(b"\x00"):  # end of stream; zero padding after it is tolerated
                    return None
                if rest[:2] != _GZIP_MAGIC:
                    raise LoadError(
                        RefusalCategory.CORRUPT_GZIP, "the file has unexpected bytes after its gzip stream"
                    )
                self._pending = rest  # another gzip member follows
                self._inflater = _new_inflater()
            try:
                chunk = self._inflater.inflate(self._pending, max_length)
            except (zlib.error, _IsalError, EOFError) as error:
                raise LoadError(
                    RefusalCategory.CORRUPT_GZIP,
                    f"the gzip stream is corrupted ({error}); write the file again and check the upload",
                ) from None
            self._pending = b""
            if chunk:
                return chunk
            if not self._inflater.eof and self._inflater.needs_input:
                self.truncated = True
                return None
        raise LoadError(RefusalCategory.CORRUPT_GZIP, "the gzip stream makes no progress")


class _Inflater(Protocol):
    @property
    def eof(self) -> bool: ...

    @property
    def needs_input(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def inflate(self, data: bytes, max_length: int) -> bytes: ...


class _IsalInflater:
    """ISA-L's gzip decompressor (bz2-style interface: `needs_input`, `unused_data`)."""

    def __init__(self) -> None:
        assert _igzip is not None
        self._decompressor: Any = _igzip.IgzipDecompressor(flag=_igzip.DECOMP_GZIP)

    def inflate(self, data: bytes, max_length: int) -> bytes:
        return bytes(self._decompressor.decompress(data, max_length))

    @property
    def eof(self) -> bool:
        return bool(self._decompressor.eof)

    @property
    def needs_input(self) -> bool:
        return bool(self._decompressor.needs_input)

    @property
    def unused_data(self) -> bytes:
        return bytes(self._decompressor.unused_data)


class _ZlibInflater:
    """zlib's decompressor behind the same interface (its unconsumed input is kept internally)."""

    def __init__(self) -> None:
        self._decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        self._tail = b""

    def inflate(self, data: bytes, max_length: int) -> bytes:
        chunk = self._decompressor.decompress(self._tail + data, max_length)
        self._tail = self._decompressor.unconsumed_tail
        return chunk

    @property
    def eof(self) -> bool:
        return self._decompressor.eof

    @property
    def needs_input(self) -> bool:
        return not self._tail

    @property
    def unused_data(self) -> bytes:
        return self._decompressor.unused_data


_IsalError: type[Exception] = getattr(_igzip, "IsalError", zlib.error) if _igzip is not None else zlib.error


def _new_inflater() -> _Inflater:
    return _IsalInflater() if _igzip is not None else _ZlibInflater()
