"""Touchstone baseline: classical abdominal CT organ segmentation (no learning), following the container contract.

Reads /input/cases.json, /input/labels.json and /input/images/<case_id>.nii.gz (CT in HU) and writes
/output/<case_id>.nii.gz: a uint8 label map with the image's shape and affine. TOUCHSTONE_INPUT and
TOUCHSTONE_OUTPUT override the two folders. Runs with numpy >= 1.24, scipy >= 1.10, nibabel >= 5.0.

Method: every image is turned to RAS (via its affine), averaged down to ~3 mm voxels and re-calibrated on the
body's fat peak. Landmarks (body outline, abdominal wall, vertebral column) give patient coordinates in mm, and
each organ is found by an intensity window, connected components and an anatomical prior in those coordinates:
aorta and postcava are bright tubes tracked slice by slice in front of the spine (left and right of it),
kidneys bright blobs beside the spine, liver and spleen the largest soft-tissue bodies on the right and the
left, gallbladder fluid against the liver, pancreas the soft tissue left in its usual corridor, stomach the
fluid and gas high in the left upper abdomen. Masks are grown to the half-way intensity and brought back to
the full grid by linear interpolation. Decent, not perfect: it cannot tell the pancreas from the duodenum.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

WORKING_SPACING_MM = 3.0
FAT_HU = -95.0
RAS = nib.orientations.axcodes2ornt(("R", "A", "S"))


def main() -> int:
    input_dir = Path(os.environ.get("TOUCHSTONE_INPUT", "/input"))
    output_dir = Path(os.environ.get("TOUCHSTONE_OUTPUT", "/output"))
    cases = json.loads((input_dir / "cases.json").read_text())
    cases = cases["cases"] if isinstance(cases, dict) else cases
    label_ids = {name: int(key) for key, name in json.loads((input_dir / "labels.json").read_text()).items()}
    print(f"baseline: {len(cases)} cases, organs {sorted(label_ids, key=label_ids.get)}", flush=True)
    for number, case in enumerate(cases, 1):
        started = time.time()
        image = nib.load(str(input_dir / case["image"]))
        labels = segment(image, label_ids)
        output = nib.Nifti1Image(labels, image.affine)
        output.set_qform(image.affine, code=1)
        output.set_sform(image.affine, code=1)
        nib.save(output, str(output_dir / f"{case['case_id']}.nii.gz"))
        found = [name for name, label in label_ids.items() if (labels == label).any()]
        print(
            f"[{number}/{len(cases)}] {case['case_id']}: {'x'.join(map(str, image.shape))} "
            f"{''.join(nib.aff2axcodes(image.affine))}, {len(found)} organs found in {time.time() - started:.1f} s",
            flush=True,
        )
    return 0


def segment(image: nib.Nifti1Image, label_ids: dict[str, int]) -> np.ndarray:
    """Label map (uint8) in the image's own array order."""
    ornt = nib.orientations.io_orientation(image.affine)
    ct = nib.orientations.apply_orientation(np.asanyarray(image.dataobj), ornt)
    voxel_mm = np.sqrt((image.affine[:3, :3] ** 2).sum(axis=0))
    spacing = np.empty(3)
    spacing[ornt[:, 0].astype(int)] = voxel_mm
    factors = tuple(max(1, int(WORKING_SPACING_MM // s)) for s in spacing)
    small = block_mean(ct, factors)
    organs = segment_ras(small, spacing * np.array(factors))
    canonical = np.zeros(ct.shape, dtype=np.uint8)
    for name, mask in organs.items():  # later organs win where they touch
        if name in label_ids and mask.any():
            region, full = upsample(mask, factors, ct.shape)
            canonical[region][full] = label_ids[name]
    back = nib.orientations.ornt_transform(RAS, ornt)
    return np.ascontiguousarray(nib.orientations.apply_orientation(canonical, back)).astype(np.uint8)


def block_mean(ct: np.ndarray, factors: tuple[int, ...]) -> np.ndarray:
    """Average non-overlapping blocks of ``factors`` voxels (edges padded), as float32."""
    ct = np.asarray(ct, dtype=np.float32)
    if factors == (1, 1, 1):
        return ct
    pad = [(0, (-n) % f) for n, f in zip(ct.shape, factors)]
    ct = np.pad(ct, pad, mode="edge")
    nx, ny, nz = (n // f for n, f in zip(ct.shape, factors))
    fx, fy, fz = factors
    return ct.reshape(nx, fx, ny, fy, nz, fz).mean(axis=(1, 3, 5), dtype=np.float32)


def upsample(mask: np.ndarray, factors: tuple[int, ...], shape: tuple[int, ...]):
    """Bring a working-grid mask back to the full grid by linear interpolation, on its bounding box only."""
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    starts = [max(0, s.start - 1) for s in box]
    stops = [min(n, s.stop + 1) for n, s in zip(mask.shape, box)]
    crop = mask[starts[0] : stops[0], starts[1] : stops[1], starts[2] : stops[2]].astype(np.float32)
    region = []
    for axis, (f, n) in enumerate(zip(factors, shape)):
        first, last = starts[axis] * f, min(n, stops[axis] * f)
        region.append(slice(first, last))
        position = (np.arange(first, last) + 0.5) / f - 0.5 - starts[axis]
        low = np.clip(np.floor(position).astype(int), 0, max(0, crop.shape[axis] - 2))
        high = np.minimum(low + 1, crop.shape[axis] - 1)
        weight = np.clip(position - low, 0.0, 1.0).astype(np.float32)
        view = [1, 1, 1]
        view[axis] = len(position)
        weight = weight.reshape(view)
        crop = np.take(crop, low, axis=axis) * (1 - weight) + np.take(crop, high, axis=axis) * weight
    return tuple(region), crop > 0.5


# --- the segmentation on the RAS working grid -------------------------------------------------------------


def ball(radius_mm: float, spacing: np.ndarray) -> np.ndarray:
    half = [max(1, int(round(radius_mm / s))) if radius_mm >= s / 2 else 0 for s in spacing]
    grids = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    distance = sum((g * s / max(radius_mm, 1e-6)) ** 2 for g, s in zip(grids, spacing))
    return distance <= 1.0 + 1e-6 if radius_mm > 0 else np.ones((1, 1, 1), bool)


def disc(radius_mm: float, spacing: np.ndarray) -> np.ndarray:
    """In-plane ball: erodes walls without eating thick slices."""
    return ball(radius_mm, np.array([spacing[0], spacing[1], 1e9]))


def largest(mask: np.ndarray, structure=None) -> np.ndarray:
    labelled, count = ndimage.label(mask, structure)
    if count == 0:
        return mask.copy()
    sizes = np.bincount(labelled.ravel())
    sizes[0] = 0
    return labelled == sizes.argmax()


def grow(core: np.ndarray, allowed: np.ndarray, steps: int) -> np.ndarray:
    if steps <= 0 or not core.any():
        return core
    return ndimage.binary_dilation(core, iterations=steps, mask=allowed | core) | core


def compete(seeds: dict[str, np.ndarray], allowed: np.ndarray, iterations: int) -> dict[str, np.ndarray]:
    """Grow several seeds one voxel at a time into ``allowed``; a voxel goes to whoever reaches it first."""
    grown = {name: seed.copy() for name, seed in seeds.items()}
    claimed = np.zeros_like(allowed)
    for seed in grown.values():
        claimed |= seed
    for _ in range(iterations):
        for name, mask in grown.items():
            new = ndimage.binary_dilation(mask) & allowed & ~claimed
            mask |= new
            claimed |= new
    return grown


def steps(mm: float, spacing: np.ndarray) -> int:
    return max(1, int(round(mm / float(min(spacing)))))


def fill_slices(mask: np.ndarray) -> np.ndarray:
    return ndimage.binary_fill_holes(mask, structure=np.ones((3, 3, 1), bool))


class Patient:
    """Working-grid image plus landmarks: patient coordinates in mm relative to the vertebral column."""

    def __init__(self, ct: np.ndarray, spacing: np.ndarray):
        self.spacing = spacing
        sigma = np.clip(2.5 / spacing, 0.0, 1.0)
        # Voxels of 6 mm and more have averaged the noise already; blurring them only erases small organs.
        sigma[sigma < 0.4] = 0.0
        raw = ndimage.gaussian_filter(ct, sigma)
        self.body = fill_slices(largest(raw > -400))
        self.ct = raw - self.fat_offset(raw)
        # Soft-tissue windows need less noise than small vessels can bear to lose: on coarse grids an in-plane
        # median quiets them without moving organ borders.
        self.soft = ndimage.median_filter(self.ct, size=(3, 3, 1)) if (sigma < 0.4).any() else self.ct
        padded = np.pad(self.body, ((1, 1), (1, 1), (0, 0)))
        in_plane = (spacing[0], spacing[1], 1e4)  # distance below the skin within each slice
        self.depth = ndimage.distance_transform_edt(padded, sampling=in_plane)[1:-1, 1:-1]
        self.x = (np.arange(ct.shape[0]) * spacing[0])[:, None, None]
        self.y = (np.arange(ct.shape[1]) * spacing[1])[None, :, None]
        self.z = (np.arange(ct.shape[2]) * spacing[2])[None, None, :]
        self.locate_spine()
        self.cavity = self.body & (self.depth > self.wall_depth_mm())
        self.inside = self.body & (self.depth > 8.0)
        self.bone = ndimage.binary_dilation(fill_slices(self.ct > 280), ball(2.0, spacing))
        self.voxel_ml = float(np.prod(spacing)) / 1000.0
        self.coarse = float(min(spacing)) >= 6.0  # partial volume dims small bright structures

    def wall_depth_mm(self) -> float:
        """Depth below the skin where the abdominal wall muscle ends: the soft-tissue ring under the
        subcutaneous fat is the commonest soft-tissue depth in the outer 80 mm."""
        soft = (self.ct > 0) & (self.ct < 120) & self.body & (self.depth < 80.0)
        values = self.depth[soft]
        if values.size < 50:
            return 10.0
        width = float(max(self.spacing[0], self.spacing[1]))
        counts, edges = np.histogram(values, bins=np.arange(0.0, 80.0 + width, width))
        peak = edges[counts.argmax()] + width / 2.0
        return float(peak + 6.0 + width / 2.0)

    def fat_offset(self, raw: np.ndarray) -> float:
        """Scanner calibration differs: the shift that puts the body's fat peak at FAT_HU (at most ±50 HU)."""
        values = raw[self.body & (raw > -250) & (raw < -20)]
        if values.size < 50:
            return 0.0
        counts, edges = np.histogram(values, bins=np.arange(-250, -18, 4))
        counts = ndimage.uniform_filter1d(counts.astype(float), 5)
        return float(np.clip(edges[counts.argmax()] + 2.0 - FAT_HU, -50.0, 50.0))

    def locate_spine(self) -> None:
        """Per slice: left-right centre and anterior edge of the vertebral bodies (mm), smoothed along z.

        The vertebra is the densest bony region in the posterior half near the midline (a box average finds it
        at any voxel size); from there the midline profile is followed forwards across the spinal canal to
        where the vertebral body ends. Disc levels are outvoted by a median along z."""
        ct, nz = self.ct, self.ct.shape[2]
        sx, sy = float(self.spacing[0]), float(self.spacing[1])
        size = [max(1, int(round(30.0 / s))) for s in (sx, sy)] + [1]
        density = ndimage.uniform_filter(np.clip(ct - 100.0, 0.0, 300.0), size=size, mode="constant")
        columns = np.nonzero(self.body.any(axis=(1, 2)))[0]
        rows = np.nonzero(self.body.any(axis=(0, 2)))[0]
        middle_x = float(columns.mean()) * sx if columns.size else ct.shape[0] * sx / 2
        middle_y = float(rows.mean()) * sy if rows.size else ct.shape[1] * sy / 2
        search = (np.abs(self.x[:, :, 0] - middle_x) < 40.0) & (self.y[:, :, 0] < middle_y)
        half = max(0, int(round(4.0 / sx)))
        centre = np.full(nz, np.nan)
        front = np.full(nz, np.nan)
        for k in range(nz):
            score = np.where(search, density[..., k], -1.0)
            i, j = np.unravel_index(int(score.argmax()), score.shape)
            if score[i, j] <= 20.0:
                continue
            profile = ct[max(0, i - half) : i + half + 1, :, k].min(axis=0)  # the aorta may touch one side
            solid = gap = 0.0
            last = j
            for row in range(j, min(ct.shape[1], j + int(90.0 / sy) + 1)):
                if profile[row] > 110.0:
                    solid, gap, last = solid + sy + gap, 0.0, row
                else:
                    gap += sy
                    if gap >= 12.0:
                        if solid >= 12.0:
                            break
                        solid = 0.0
            centre[k], front[k] = i * sx, (last + 0.5) * sy
        for values in (centre, front):
            good = ~np.isnan(values)
            if not good.any():
                values[:] = middle_x if values is centre else middle_y - 40.0
                continue
            values[:] = np.interp(np.arange(nz), np.nonzero(good)[0], values[good])
            window = max(3, int(round(60.0 / self.spacing[2])) | 1)
            values[:] = ndimage.median_filter(values, size=window, mode="nearest")
        self.xr = self.x - centre[None, None, :]  # + towards the patient's right
        self.yr = self.y - front[None, None, :]  # + anterior of the vertebral bodies


def track_tube(candidates: np.ndarray, p: Patient, x_mm: float, y_mm: float, max_mm: float) -> np.ndarray:
    """Per slice, the blob of ``candidates`` nearest the prior (x_mm, y_mm) in spine coordinates; picks that
    stray from the smoothed track (a neighbouring organ taken for the vessel) are dropped."""
    nz = candidates.shape[2]
    max_area = np.pi * 22.0**2 / (p.spacing[0] * p.spacing[1])
    picks: list = [None] * nz
    centres = np.full((nz, 2), np.nan)
    for k in range(nz):
        labelled, count = ndimage.label(candidates[..., k])
        if count == 0:
            continue
        index = np.arange(1, count + 1)
        cx = np.asarray(ndimage.mean(np.broadcast_to(p.xr[:, :, k], labelled.shape), labelled, index))
        cy = np.asarray(ndimage.mean(np.broadcast_to(p.yr[:, :, k], labelled.shape), labelled, index))
        distance = np.hypot(cx - x_mm, cy - y_mm)
        distance[np.bincount(labelled.ravel())[1:] > max_area] = np.inf
        best = int(distance.argmin())
        if distance[best] <= max_mm:
            picks[k] = labelled == best + 1
            centres[k] = cx[best], cy[best]
    out = np.zeros_like(candidates)
    found = ~np.isnan(centres[:, 0])
    if not found.any():
        return out
    window = max(3, int(round(30.0 / p.spacing[2])) | 1)
    track = np.stack(
        [
            ndimage.median_filter(
                np.interp(np.arange(nz), np.nonzero(found)[0], centres[found, axis]), window, mode="nearest"
            )
            for axis in (0, 1)
        ],
        axis=1,
    )
    for k in np.nonzero(found)[0]:
        if np.hypot(*(centres[k] - track[k])) <= 8.0:
            out[..., k] = picks[k]
    return out


def components(mask: np.ndarray, p: Patient):
    """Connected components with their volume (mL) and mean position (mm, spine coordinates; z from the
    first slice)."""
    labelled, count = ndimage.label(mask)
    index = np.arange(1, count + 1)
    sizes = np.bincount(labelled.ravel(), minlength=count + 1)[1:] * p.voxel_ml
    if count == 0:
        return labelled, sizes, np.zeros(0), np.zeros(0), np.zeros(0)
    means = [
        np.asarray(ndimage.mean(np.broadcast_to(axis, mask.shape), labelled, index))
        for axis in (p.xr, p.yr, p.z)
    ]
    return (labelled, sizes, *means)


def segment_ras(ct: np.ndarray, spacing: np.ndarray) -> dict[str, np.ndarray]:
    """Organ masks on a RAS grid; each step marks what it found as taken so later organs cannot claim it."""
    p = Patient(ct, spacing)
    aorta, cava = find_great_vessels(p)
    taken = ndimage.binary_dilation(aorta, ball(2.0, spacing)) | cava
    organs: dict[str, np.ndarray] = {}
    for step in (find_kidneys, find_liver_and_spleen, find_gallbladder, find_pancreas, find_stomach):
        for name, mask in step(p, taken, organs).items():
            organs[name] = mask
            taken |= mask
    organs["postcava"] = cava
    organs["aorta"] = aorta
    return organs


def find_great_vessels(p: Patient) -> tuple[np.ndarray, np.ndarray]:
    """Aorta and postcava: contrast-filled tubes in front of the vertebral bodies, left and right of the
    midline. Contrast varies with injection timing, so thresholds follow the brightest blood found."""
    hu = p.ct
    prior = p.inside & ~p.bone & (p.xr > -40) & (p.xr < 15) & (p.yr > 0) & (p.yr < 35)
    blood_hu = float(np.percentile(hu[prior], 95)) if prior.any() else 180.0
    aorta = track_tube(
        (hu > max(100.0, 0.75 * blood_hu)) & p.inside & ~p.bone & (p.yr > -3), p, -12.0, 12.0, 20.0
    )
    aorta = grow(aorta, (hu > 60) & ~p.bone & (p.xr < 10), steps(3.0, p.spacing))
    beside_aorta = ndimage.binary_dilation(aorta, ball(2.0, p.spacing))
    cava_candidates = (hu > max(80.0, 0.55 * blood_hu)) & (hu < 200) & p.inside & ~p.bone & ~beside_aorta
    cava = track_tube(cava_candidates, p, 24.0, 10.0, 18.0)
    cava = grow(cava, (hu > 60) & (hu < 200) & ~p.bone & ~beside_aorta, steps(3.0, p.spacing))
    return aorta, cava


def find_kidneys(p: Patient, taken: np.ndarray, organs: dict) -> dict[str, np.ndarray]:
    """Enhancing cortex clearly brighter than liver, beside the spine; the medulla is filled in. On coarse
    grids partial volume dims the thin cortex: lower the bar and join the pieces."""
    hu, spacing = p.ct, p.spacing
    enhancing = (p.soft > 85) if p.coarse else (hu > 110)
    beside_spine = (p.yr < 30) & (p.yr > -90) & (np.abs(p.xr) > 25) & (np.abs(p.xr) < 130)
    bright = ndimage.binary_opening(
        enhancing & (hu < 280) & p.cavity & ~p.bone & ~taken & beside_spine, disc(2.0, spacing)
    )
    if p.coarse:
        bright = ndimage.binary_closing(bright, ball(6.0, spacing)) & p.cavity & ~taken
    labelled, sizes, mean_x, mean_y, mean_z = components(bright, p)
    found = {}
    for name, sign in (("kidney_left", -1.0), ("kidney_right", 1.0)):
        side = [i for i in np.argsort(-sizes) if sign * mean_x[i] > 20 and 1.0 < sizes[i] < 600.0]
        if not side:
            continue
        first = side[0]
        pieces = [
            i
            for i in side
            if np.linalg.norm(
                [mean_x[i] - mean_x[first], mean_y[i] - mean_y[first], mean_z[i] - mean_z[first]]
            )
            < 60.0
        ]
        if 20.0 < sizes[pieces].sum() < 600.0:
            kidney = np.isin(labelled, np.array(pieces) + 1)
            kidney = ndimage.binary_fill_holes(ndimage.binary_closing(kidney, ball(4.0, spacing)))
            found[name] = grow(kidney, (hu > 45) & p.cavity & ~taken & ~p.bone, steps(3.0, spacing))
    return found


def find_liver_and_spleen(p: Patient, taken: np.ndarray, organs: dict) -> dict[str, np.ndarray]:
    """The big soft-tissue bodies on the right and the left. Erode until each stands free of its
    neighbours (the liver of stomach and spleen, the spleen of pancreas and stomach: then neither reaches
    far across the midline), then let the two seeds grow back in competition."""
    hu, spacing = p.ct, p.spacing
    back_muscles = (p.yr < -30.0) & (np.abs(p.xr) < 65.0)
    soft = (p.soft > 33) & (p.soft < 110) & p.cavity & ~taken & ~p.bone & ~back_muscles
    xr = np.broadcast_to(p.xr, hu.shape)
    levels = []  # (radius, liver candidate, spleen candidate) per erosion depth
    for radius in (4.0, 6.0, 9.0, 12.0, 16.0):
        labelled, sizes, mean_x, mean_y, _ = components(
            ndimage.binary_erosion(soft, disc(radius, spacing)), p
        )
        order = np.argsort(-sizes)
        liver_index = next((i for i in order if mean_x[i] > 0 and sizes[i] > 50), None)
        if liver_index is None:
            break
        spleen_index = next(
            (
                i
                for i in order
                if mean_x[i] < -55 and mean_y[i] < 60 and 2 < sizes[i] < 1500 and i != liver_index
            ),
            None,
        )
        liver = labelled == liver_index + 1
        spleen = labelled == spleen_index + 1 if spleen_index is not None else None
        levels.append((radius, liver, spleen))
        if xr[liver].min() > -70.0 and spleen is not None and xr[spleen].max() < -25.0:
            break
    if not levels:
        return {}
    free_livers = [level for level in levels if xr[level[1]].min() > -70.0]
    radius, liver, _ = free_livers[0] if free_livers else levels[-1]
    seeds = {"liver": liver}
    spleens = [(r, s) for r, _, s in levels if s is not None and not (s & liver).any()]
    free_spleens = [(r, s) for r, s in spleens if xr[s].max() < -25.0]
    if free_spleens or spleens:
        spleen_radius, seeds["spleen"] = max(free_spleens or spleens, key=lambda level: level[1].sum())
        radius = max(radius, spleen_radius)
    found = {}
    claimed = taken.copy()
    for name, organ in compete(seeds, soft, steps(radius + 3.0, spacing)).items():
        organ = fill_slices(ndimage.binary_fill_holes(organ)) & ~claimed
        found[name] = grow(organ, (hu > -20) & (hu < 130) & p.cavity & ~claimed & ~p.bone, 1)
        claimed |= found[name]
    return found


def find_gallbladder(p: Patient, taken: np.ndarray, organs: dict) -> dict[str, np.ndarray]:
    """A fluid pocket against the liver, anterior and right."""
    liver = organs.get("liver")
    if liver is None:
        return {}
    near_liver = ndimage.binary_dilation(liver, ball(10.0, p.spacing))
    pocket = (p.soft > -20) & (p.soft < 32) & near_liver & p.cavity & (p.xr > 0) & (p.yr > 15) & ~taken
    gall = largest(ndimage.binary_opening(pocket, disc(3.0, p.spacing)))
    if not 4.0 < gall.sum() * p.voxel_ml < 250.0:
        return {}
    return {"gall_bladder": grow(gall, (p.ct > -45) & (p.ct < 40) & p.cavity & ~taken, steps(3.0, p.spacing))}


# Where the pancreas usually lies, in spine coordinates (mm; z relative to the kidneys' centre): head right of
# the mesenteric vessels, neck and body in front of the aorta, tail towards the splenic hilum.
PANCREAS_CORRIDOR = [(22.0, 33.0, -8.0), (0.0, 41.0, 4.0), (-32.0, 35.0, 14.0), (-60.0, 15.0, 28.0)]


def kidney_level_mm(p: Patient, organs: dict) -> float:
    slices = [
        np.nonzero(organs[k].any(axis=(0, 1)))[0].mean()
        for k in ("kidney_left", "kidney_right")
        if k in organs
    ]
    return float(np.mean(slices) if slices else p.ct.shape[2] / 2) * p.spacing[2]


def find_pancreas(p: Patient, taken: np.ndarray, organs: dict) -> dict[str, np.ndarray]:
    """Soft tissue left over in the usual corridor of the pancreas (it cannot tell duodenum from pancreas)."""
    z_kidney = kidney_level_mm(p, organs)
    corridor = np.zeros_like(p.body)
    for (x0, y0, z0), (x1, y1, z1) in zip(PANCREAS_CORRIDOR[:-1], PANCREAS_CORRIDOR[1:]):
        for t in np.linspace(0.0, 1.0, 6):
            x, y, z = x0 + t * (x1 - x0), y0 + t * (y1 - y0), z_kidney + z0 + t * (z1 - z0)
            corridor |= (p.xr - x) ** 2 + (p.yr - y) ** 2 + (p.z - z) ** 2 < 22.0**2
    tissue = (p.soft > 28) & (p.soft < 85) & p.cavity & ~taken & corridor
    pancreas = largest(ndimage.binary_opening(tissue, disc(3.0, p.spacing)))
    if pancreas.sum() * p.voxel_ml <= 8:
        return {}
    return {"pancreas": grow(pancreas, (p.ct > 0) & (p.ct < 100) & p.cavity & ~taken & corridor, 1)}


def find_stomach(p: Patient, taken: np.ndarray, organs: dict) -> dict[str, np.ndarray]:
    """The biggest pool of fluid and gas high in the left upper abdomen (lungs excluded), with its wall."""
    hu, spacing = p.ct, p.spacing
    z_kidney = kidney_level_mm(p, organs)
    air, sizes, _, _, _ = components((hu < -400) & p.body, p)
    top = set(np.unique(air[:, :, -max(1, int(round(10.0 / spacing[2]))) :]).tolist())
    lungs = np.isin(
        air, [i + 1 for i, size in enumerate(sizes) if size > 300.0 or (i + 1 in top and size > 20.0)]
    )
    gas = (hu < -400) & p.cavity & ~lungs
    fluid = (p.soft > -15) & (p.soft < 30) & p.cavity
    region = (p.xr < 40) & (p.yr > -10) & (p.z > z_kidney - 20)
    candidates = ndimage.binary_opening((gas | fluid) & region & ~taken, disc(3.0, spacing))
    labelled, sizes, mean_x, _, mean_z = components(candidates, p)
    fits = [i for i in np.argsort(-sizes) if mean_x[i] < 0 and mean_z[i] > z_kidney + 10 and sizes[i] > 20]
    if not fits:
        return {}
    stomach = fill_slices(ndimage.binary_closing(labelled == fits[0] + 1, ball(4.0, spacing))) & ~taken
    wall_steps = 1 if p.coarse else steps(4.0, spacing)
    return {"stomach": grow(stomach, (p.soft < 60) & p.cavity & ~taken & ~lungs, wall_steps)}


if __name__ == "__main__":
    sys.exit(main())
