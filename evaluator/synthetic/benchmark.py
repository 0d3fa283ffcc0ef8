"""Deterministic synthetic hidden test sets: abdominal CTs in HU with Touchstone 9-organ ground truth, from
hospitals that differ in voxel spacing, slice thickness, orientation, field of view, intensity and noise.

They stand in for real (never redistributable) patient data in the demo, benchmarks and tests. Anatomy is
drawn in millimetres in patient coordinates (RAS+: x towards the patient's right, y anterior, z superior;
origin at the centre of the L1 vertebral body), so organ volumes are realistic at every grid size: the
small "test" grids use large voxels rather than a small body. The same ``(site, index, seed)`` gives the
same patient at every size. Run ``python -m evaluator.synthetic.benchmark OUT_DIR`` to write a benchmark.
"""

from __future__ import annotations

import argparse
import json
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np
from scipy import ndimage

from evaluator.synthetic import anatomy
from evaluator.synthetic.canvas import Canvas, Tissue, texture_field

ORGANS: dict[int, str] = anatomy.ORGANS
"""Touchstone / AbdomenAtlas label ids of the benchmark; 0 is background."""

Size = Literal["test", "demo", "realistic"]

_CHUNK_SLICES = 16
_PARTIAL_VOLUME_SIGMA_VOXELS = 0.5  # in-plane blur of image and noise: scanner PSF and voxel averaging


@dataclass(frozen=True)
class SiteSpec:
    """How one hospital acquires and stores its CTs.

    ``shape`` and ``spacing_mm`` are along the stored array axes, which always run along x, y, z (axial
    slices) in the direction given by ``orientation`` (nibabel axis codes: "RAS", "LPS", "LPI", ...).
    Stored values are ``intensity_scale * HU + intensity_offset_hu`` plus correlated noise of standard
    deviation ``noise_hu``; voxels outside the reconstruction circle hold ``padding_hu`` when it is set.
    """

    code: str
    name: str
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    orientation: str = "RAS"
    noise_hu: float = 10.0
    intensity_scale: float = 1.0
    intensity_offset_hu: float = 0.0
    scanners: tuple[tuple[str, str], ...] = (("Siemens", "SOMATOM Force"),)
    kvp: int = 120
    fov_center_z_mm: float = 0.0  # patient z (mm above L1) at the centre of the scan range
    table_z_mm: float = 0.0  # world z of the patient origin: the table position written into the affine
    padding_hu: float | None = None
    out_of_distribution: bool = False

    def __post_init__(self) -> None:
        codes = self.orientation.upper()
        if len(codes) != 3 or codes[0] not in "LR" or codes[1] not in "AP" or codes[2] not in "SI":
            raise ValueError(
                f"site {self.code}: orientation {self.orientation!r} must be three axis codes along x, y, z, "
                "e.g. 'RAS', 'LPS' or 'LPI' (axial slices; permuted axes are not supported)"
            )

    @property
    def slice_thickness_mm(self) -> float:
        return self.spacing_mm[2]

    @property
    def field_of_view_mm(self) -> tuple[float, float, float]:
        return (
            self.shape[0] * self.spacing_mm[0],
            self.shape[1] * self.spacing_mm[1],
            self.shape[2] * self.spacing_mm[2],
        )


@dataclass(frozen=True, eq=False)
class SyntheticCase:
    """One CT and its ground truth: same array shape, same affine (voxel indices → RAS+ world mm)."""

    case_id: str
    site: str
    image: np.ndarray  # int16, stored HU (after the site's intensity scale and offset)
    labels: np.ndarray  # uint8, ids of ORGANS
    affine: np.ndarray  # 4×4 float64
    metadata: dict[str, object]

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        sx, sy, sz = np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))
        return (float(sx), float(sy), float(sz))

    def volume_ml(self, label_id: int) -> float:
        """Volume of one organ in the ground truth, in mL (0.0 when the organ is absent)."""
        voxel_ml = float(np.prod(self.spacing_mm)) / 1000.0
        return float(np.count_nonzero(self.labels == label_id)) * voxel_ml

    def volumes_ml(self) -> dict[str, float]:
        """Every organ's ground-truth volume in mL, by name (0.0 for absent organs), rounded to 0.01 mL."""
        counts = np.bincount(self.labels.ravel(), minlength=max(ORGANS) + 1)
        voxel_ml = float(np.prod(self.spacing_mm)) / 1000.0
        return {name: round(float(counts[i]) * voxel_ml, 2) for i, name in ORGANS.items()}

    def image_nifti(self) -> nib.Nifti1Image:
        return _nifti(self.image, self.affine)

    def labels_nifti(self) -> nib.Nifti1Image:
        return _nifti(self.labels, self.affine)


# The default hospitals as they really scan (512×512); smaller sizes re-grid the same field of view.
_REALISTIC_SITES: tuple[SiteSpec, ...] = (
    SiteSpec(
        code="NGH",
        name="Northgate University Hospital",
        shape=(512, 512, 320),
        spacing_mm=(0.7812, 0.7812, 1.0),
        orientation="RAS",
        noise_hu=10.0,
        scanners=(("Siemens", "SOMATOM Force"), ("Siemens", "SOMATOM Definition Flash")),
        kvp=100,
        fov_center_z_mm=10.0,
        table_z_mm=-612.5,
    ),
    SiteSpec(
        code="RVM",
        name="Riverside Medical Center",
        shape=(512, 512, 280),
        spacing_mm=(0.7422, 0.7422, 1.25),
        orientation="LPS",
        noise_hu=14.0,
        intensity_offset_hu=-6.0,
        scanners=(("GE", "Revolution CT"), ("GE", "LightSpeed VCT")),
        kvp=120,
        table_z_mm=-188.0,
        padding_hu=-1024.0,
    ),
    SiteSpec(
        code="LKC",
        name="Lakeside Community Hospital",
        shape=(512, 512, 80),
        spacing_mm=(0.8594, 0.8594, 5.0),
        orientation="LAS",
        noise_hu=8.0,
        intensity_scale=0.97,
        intensity_offset_hu=8.0,
        scanners=(("Philips", "Ingenuity CT"), ("Philips", "Brilliance 64")),
        kvp=120,
        fov_center_z_mm=-5.0,
        table_z_mm=-905.0,
    ),
    SiteSpec(
        code="HRH",
        name="Hillcrest Regional Hospital",
        shape=(512, 512, 240),
        spacing_mm=(0.6992, 0.6992, 1.5),
        orientation="LPI",
        noise_hu=24.0,
        intensity_scale=1.06,
        intensity_offset_hu=18.0,
        scanners=(("Canon", "Aquilion ONE"), ("Toshiba", "Aquilion Prime")),
        kvp=100,
        fov_center_z_mm=5.0,
        table_z_mm=1240.0,
        padding_hu=-2048.0,
        out_of_distribution=True,
    ),
)
_IN_PLANE_VOXELS: dict[str, int] = {"test": 48, "demo": 128, "realistic": 512}
_SLICE_MM: dict[str, dict[str, float]] = {  # the thick-slice site stays the thickest at every size
    "test": {"NGH": 8.0, "RVM": 8.0, "LKC": 12.5, "HRH": 8.0},
    "demo": {"NGH": 2.5, "RVM": 2.5, "LKC": 5.0, "HRH": 2.5},
}


def default_sites(size: Size = "test") -> list[SiteSpec]:
    """The four default hospitals, gridded for ``size``.

    - NGH: RAS arrays, 1 mm slices, low noise: the reference site.
    - RVM: LPS arrays (DICOM order), narrower field of view, reconstruction circle padded with -1024.
    - LKC: LAS arrays, thick 5 mm slices (partial volume along z), wide field of view, intensity ×0.97 +8 HU.
    - HRH (out of distribution): slices stored head to feet (LPI), high noise, intensity ×1.06 +18 HU,
      tight field of view that clips large patients, reconstruction circle padded with -2048.

    "test" grids are 48×48 in-plane (about 8 mm voxels; a case takes well under a second), "demo" 128×128
    (about 3 mm), "realistic" 512×512 with the sites' real slice spacing (80–320 slices). Every size covers
    the same field of view, so organ volumes stay realistic.
    """
    if size not in _IN_PLANE_VOXELS:
        raise ValueError(f"size must be one of {sorted(_IN_PLANE_VOXELS)}, not {size!r}")
    if size == "realistic":
        return list(_REALISTIC_SITES)
    sites = []
    for site in _REALISTIC_SITES:
        fov_x, fov_y, length = site.field_of_view_mm
        n_xy, slice_mm = _IN_PLANE_VOXELS[size], _SLICE_MM[size][site.code]
        spacing = (round(fov_x / n_xy, 4), round(fov_y / n_xy, 4), slice_mm)
        sites.append(replace(site, shape=(n_xy, n_xy, int(round(length / slice_mm))), spacing_mm=spacing))
    return sites


def generate_case(site: SiteSpec, index: int, seed: int = 0) -> SyntheticCase:
    """Draw patient ``index`` of ``site`` for ``seed`` and scan it; the same arguments give the same bytes."""
    site_key = zlib.crc32(site.code.encode())
    rng = np.random.default_rng([seed, site_key, index])
    patient = anatomy.sample_patient(rng, index)

    fov_center = np.array(
        [
            rng.normal(0.0, 8.0),
            patient.body.center_y_mm + rng.normal(0.0, 8.0),
            site.fov_center_z_mm + rng.normal(0.0, 12.0),
        ]
    )
    spacing = np.asarray(site.spacing_mm, dtype=np.float64)
    shape = np.asarray(site.shape)
    origin = fov_center - (shape - 1) / 2.0 * spacing  # patient mm of voxel (0, 0, 0) in RAS array order
    sub_slices = _sub_slices(site.spacing_mm[2])
    sub_offsets = (np.arange(sub_slices) - (sub_slices - 1) / 2.0) * spacing[2] / sub_slices
    xs = origin[0] + np.arange(shape[0]) * spacing[0]
    ys = origin[1] + np.arange(shape[1]) * spacing[1]
    z_centers = origin[2] + np.arange(shape[2]) * spacing[2]
    zs = (z_centers[:, None] + sub_offsets[None, :]).ravel()

    canvas = Canvas.empty(xs, ys, zs, chunk=_CHUNK_SLICES * sub_slices)
    anatomy.paint_patient(canvas, patient)
    texture = texture_field(rng, xs, ys, zs, amplitude_hu=5.0)
    noise_rng = np.random.default_rng([seed, site_key, index, 1])
    image = _scan(canvas, texture, site, sub_slices, noise_rng, origin, spacing)
    labels = np.ascontiguousarray(canvas.labels[:, :, sub_slices // 2 :: sub_slices])

    world_shift = np.array([0.0, 0.0, site.table_z_mm])
    ras_affine = np.eye(4)
    ras_affine[:3, :3] = np.diag(spacing)
    ras_affine[:3, 3] = origin + world_shift
    image, labels, affine = _reorient(image, labels, ras_affine, site.orientation.upper())

    manufacturer, scanner_model = site.scanners[int(rng.integers(len(site.scanners)))]
    metadata: dict[str, object] = {
        "site": site.code,
        "site_name": site.name,
        "out_of_distribution": site.out_of_distribution,
        "manufacturer": manufacturer,
        "scanner_model": scanner_model,
        "kvp": site.kvp,
        "contrast_phase": "portal venous",
        "sex": patient.sex,
        "age": patient.age,
        "history": list(patient.history),
        "pathology": list(patient.pathology),
        "absent_organs": [ORGANS[i] for i in patient.absent_label_ids],
        "orientation": "".join(nib.aff2axcodes(affine)),
        "spacing_mm": [float(s) for s in spacing],
        "slice_thickness_mm": site.slice_thickness_mm,
        "shape": [int(n) for n in image.shape],
    }
    case_id = f"{site.code.lower()}_{index:03d}"
    return SyntheticCase(case_id, site.code, image, labels, affine, metadata)


def generate_benchmark(
    out_dir: Path | str,
    *,
    cases_per_site: int,
    size: Size = "test",
    seed: int = 0,
    sites: Sequence[SiteSpec] | None = None,
) -> list[dict[str, object]]:
    """Write a hidden test set: ``images/<case_id>.nii.gz``, ``labels/<case_id>.nii.gz`` (ground truth),
    ``labels.json`` (label id → organ name, as the container contract mounts it) and ``manifest.json``.

    Returns the manifest's case entries: case_id, site, image and label paths relative to ``out_dir``,
    metadata, and the ground-truth organ volumes in mL. ``manifest.json`` also holds the sites, seed and
    size. Never mount ``out_dir`` into a team's container: it holds the ground truth.
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    chosen = list(sites) if sites is not None else default_sites(size)
    entries: list[dict[str, object]] = []
    for site in chosen:
        for index in range(cases_per_site):
            case = generate_case(site, index, seed)
            image_path = f"images/{case.case_id}.nii.gz"
            label_path = f"labels/{case.case_id}.nii.gz"
            nib.save(case.image_nifti(), out / image_path)
            nib.save(case.labels_nifti(), out / label_path)
            entries.append(
                {
                    "case_id": case.case_id,
                    "site": case.site,
                    "image": image_path,
                    "label": label_path,
                    "metadata": case.metadata,
                    "volumes_ml": case.volumes_ml(),
                }
            )
    labels_json = {str(i): name for i, name in ORGANS.items()}
    (out / "labels.json").write_text(json.dumps(labels_json, indent=2) + "\n")
    manifest = {
        "benchmark": "touchstone-synthetic",
        "size": size,
        "seed": seed,
        "labels": labels_json,
        "sites": [asdict(site) for site in chosen],
        "cases": entries,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return entries


def _sub_slices(slice_mm: float) -> int:
    """Odd number of thin slices averaged into one stored slice, so thick slices show partial volume."""
    count = int(np.clip(round(slice_mm / 2.0), 1, 5))
    return count if count % 2 else count + 1


def _scan(
    canvas: Canvas,
    texture: Callable[[slice], np.ndarray],
    site: SiteSpec,
    sub_slices: int,
    rng: np.random.Generator,
    origin: np.ndarray,
    spacing: np.ndarray,
) -> np.ndarray:
    """Turn the painted HU canvas into stored slices: slab averaging, correlated noise, calibration, padding."""
    nx, ny, n_render = canvas.image.shape
    nz = n_render // sub_slices
    kernel = _gaussian_weights(_PARTIAL_VOLUME_SIGMA_VOXELS)
    noise_gain = 1.0 / float((kernel**2).sum())  # the 2-D blur scales white noise by sum(w²)
    outside = None
    if site.padding_hu is not None:
        x = origin[0] + np.arange(nx) * spacing[0]
        y = origin[1] + np.arange(ny) * spacing[1]
        radius = min(nx * spacing[0], ny * spacing[1]) / 2.0
        cx, cy = (x[0] + x[-1]) / 2.0, (y[0] + y[-1]) / 2.0
        outside = ((x[:, None] - cx) ** 2 + (y[None, :] - cy) ** 2) > radius**2
    image = np.empty((nx, ny, nz), dtype=np.int16)
    for start in range(0, nz, _CHUNK_SLICES):
        stop = min(nz, start + _CHUNK_SLICES)
        render = slice(start * sub_slices, stop * sub_slices)
        block = canvas.image[:, :, render] + texture(render) * (canvas.tissue[:, :, render] > Tissue.LUNG)
        if sub_slices > 1:
            block = block.reshape(nx, ny, stop - start, sub_slices).mean(axis=3, dtype=np.float32)
        block += rng.standard_normal(block.shape, dtype=np.float32) * np.float32(site.noise_hu * noise_gain)
        block = ndimage.gaussian_filter(
            block, sigma=(_PARTIAL_VOLUME_SIGMA_VOXELS,) * 2 + (0.0,), mode="nearest"
        )
        block = block * np.float32(site.intensity_scale) + np.float32(site.intensity_offset_hu)
        stored = np.clip(np.rint(block), -1024, 3071)
        if outside is not None:
            stored[outside] = site.padding_hu
        image[:, :, start:stop] = stored.astype(np.int16)
    return image


def _gaussian_weights(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """The 1-D kernel scipy.ndimage.gaussian_filter uses for ``sigma`` (to know how it scales noise)."""
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 * (x / sigma) ** 2)
    return weights / weights.sum()


def _reorient(
    image: np.ndarray, labels: np.ndarray, ras_affine: np.ndarray, orientation: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Store RAS-ordered arrays in the site's axis directions, with the affine that keeps them in place."""
    transform = nib.orientations.ornt_transform(
        nib.orientations.axcodes2ornt(("R", "A", "S")), nib.orientations.axcodes2ornt(tuple(orientation))
    )
    affine = ras_affine @ nib.orientations.inv_ornt_aff(transform, image.shape)
    image = np.ascontiguousarray(nib.orientations.apply_orientation(image, transform))
    labels = np.ascontiguousarray(nib.orientations.apply_orientation(labels, transform))
    return image, labels, affine


def _nifti(array: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    image = nib.Nifti1Image(array, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm", "sec")
    return image


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a synthetic Touchstone hidden test set.")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--cases-per-site", type=int, default=3)
    parser.add_argument("--size", choices=sorted(_IN_PLANE_VOXELS), default="demo")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    entries = generate_benchmark(
        args.out_dir, cases_per_site=args.cases_per_site, size=args.size, seed=args.seed
    )
    print(f"wrote {len(entries)} cases to {args.out_dir}")


if __name__ == "__main__":
    main()
