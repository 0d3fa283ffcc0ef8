"""Crafting NIfTI files byte by byte, good and malformed, for the loading tests."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np

SPACING_MM = (0.8, 0.8, 1.5)
AFFINE = np.array(
    [[-0.8, 0.0, 0.0, 150.0], [0.0, -0.8, 0.0, 120.0], [0.0, 0.0, 1.5, -300.0], [0.0, 0.0, 0.0, 1.0]]
)


def nifti_bytes(
    array: np.ndarray,
    *,
    affine: np.ndarray = AFFINE,
    qform_code: int = 1,
    sform_code: int = 1,
    scl_slope: float = float("nan"),
    scl_inter: float = float("nan"),
    nifti2: bool = False,
    endianness: str = "<",
    vox_offset: int | None = None,
    magic: bytes | None = None,
    datatype: int | None = None,
) -> bytes:
    """An uncompressed single-file NIfTI of `array` (written in Fortran order), header fields as given."""
    header_class = nib.Nifti2Header if nifti2 else nib.Nifti1Header
    header = header_class(endianness=endianness)
    header.set_data_dtype(array.dtype)
    header.set_data_shape(array.shape)
    header.set_qform(affine, int(qform_code))
    header.set_sform(affine, int(sform_code))
    header["qform_code"], header["sform_code"] = qform_code, sform_code
    header["scl_slope"], header["scl_inter"] = scl_slope, scl_inter
    header["vox_offset"] = header.sizeof_hdr + 4 if vox_offset is None else vox_offset
    if magic is not None:
        header["magic"] = magic
    if datatype is not None:
        header["datatype"] = datatype
    data = np.asarray(array, dtype=array.dtype.newbyteorder(endianness)).tobytes(order="F")
    padding = (
        b"\x00" * (int(header["vox_offset"]) - header.sizeof_hdr)
        if vox_offset is None or vox_offset >= header.sizeof_hdr
        else b""
    )
    return header.binaryblock + padding + data


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1)


def write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def write_label_map(path: Path, array: np.ndarray, **header: object) -> Path:
    """A well-formed .nii.gz of `array` (header fields overridable, see `nifti_bytes`)."""
    return write(path, gz(nifti_bytes(array, **header)))  # type: ignore[arg-type]
