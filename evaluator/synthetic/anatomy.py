"""Synthetic abdominal anatomy for evaluator.synthetic.benchmark: a random patient as strokes in millimetres (patient
RAS+ coordinates, origin at the centre of L1), painted in HU and labels onto a voxel canvas.

Organs are placed, sized and shaded after adult reference anatomy in portal-venous CT; body layers and the
skeleton are extruded slice chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from evaluator.scoring.organs import TOUCHSTONE_ORGANS
from evaluator.synthetic.canvas import RETROPERITONEAL, Canvas, Ellipsoid, Stroke, Tissue, Tube, paint

ORGANS: dict[int, str] = {organ.label: organ.name for organ in TOUCHSTONE_ORGANS}
_ID = {name: label for label, name in ORGANS.items()}
AORTA, GALL_BLADDER, KIDNEY_LEFT, KIDNEY_RIGHT = (
    _ID["aorta"],
    _ID["gall_bladder"],
    _ID["kidney_left"],
    _ID["kidney_right"],
)
LIVER, PANCREAS, POSTCAVA, SPLEEN, STOMACH = (
    _ID["liver"],
    _ID["pancreas"],
    _ID["postcava"],
    _ID["spleen"],
    _ID["stomach"],
)


@dataclass(frozen=True)
class Body:
    """Trunk outline and skeleton, extruded along z. The cavity is the intra-abdominal space; the
    abdominal wall (muscle) and subcutaneous fat wrap it."""

    center_y_mm: float
    cavity_a_mm: float  # semi-axis left-right
    cavity_b_mm: float  # semi-axis anterior-posterior
    wall_mm: float
    fat_mm: float
    wobble: float
    wobble_phase: float
    lordosis_mm: float
    vertebra_radius_mm: float
    hu: dict[str, float]

    def spine_y(self, z: np.ndarray) -> np.ndarray:
        """Anterior-posterior position of the vertebral bodies' centres (lumbar lordosis)."""
        return (self.lordosis_mm * (np.cos(z / 160.0) - 1.0)).astype(np.float32)


@dataclass(frozen=True)
class Patient:
    sex: str
    age: int
    body: Body
    strokes: tuple[Stroke, ...]
    history: tuple[str, ...]
    pathology: tuple[str, ...]
    absent_label_ids: tuple[int, ...]


def paint_patient(canvas: Canvas, patient: Patient) -> None:
    for start in range(0, len(canvas.zs), canvas.chunk):
        _paint_trunk(canvas, patient.body, slice(start, min(len(canvas.zs), start + canvas.chunk)))
    for stroke in patient.strokes:
        paint(canvas, stroke)


def _paint_trunk(canvas: Canvas, body: Body, chunk: slice) -> None:
    """Skin, subcutaneous fat, abdominal wall, intra-abdominal fat, back muscles, spine, ribs and pelvis."""
    hu = body.hu
    z = canvas.zs[chunk]
    X = canvas.xs[:, None, None]
    Y = canvas.ys[None, :, None]
    Z = z[None, None, :]
    scale = (1.0 + body.wobble * np.sin(z / 90.0 + body.wobble_phase)).astype(np.float32)[None, None, :]
    dx2 = (X / scale) ** 2
    dy2 = ((Y - np.float32(body.center_y_mm)) / scale) ** 2

    def inside(extra_mm: float) -> np.ndarray:
        return (
            dx2 / np.float32((body.cavity_a_mm + extra_mm) ** 2)
            + dy2 / np.float32((body.cavity_b_mm + extra_mm) ** 2)
            <= 1.0
        )

    cavity, wall, skin = inside(0.0), inside(body.wall_mm), inside(body.wall_mm + body.fat_mm)
    image, tissue = canvas.image[:, :, chunk], canvas.tissue[:, :, chunk]
    image[skin], tissue[skin] = hu["fat"], Tissue.SUBCUTANEOUS_FAT
    image[wall], tissue[wall] = hu["muscle"], Tissue.ABDOMINAL_WALL
    image[cavity], tissue[cavity] = hu["cavity_fat"], Tissue.CAVITY

    spine_y = body.spine_y(z)[None, None, :]
    sy = Y - spine_y
    r_vb = np.float32(body.vertebra_radius_mm)
    for side in (-1.0, 1.0):  # paraspinal muscles
        muscle = skin & ((X - side * 34.0) ** 2 / 26.0**2 + (sy + 48.0) ** 2 / 22.0**2 <= 1.0)
        image[muscle], tissue[muscle] = hu["muscle"], Tissue.MUSCLE
    radial2 = X**2 + sy**2
    in_disc = np.mod(Z + 16.0, 34.0) < 7.0  # intervertebral discs every 34 mm
    vertebra = radial2 <= r_vb**2
    image[vertebra & in_disc] = hu["disc"]
    image[vertebra & ~in_disc] = np.where(
        radial2 >= (r_vb - 2.5) ** 2, np.float32(hu["cortical_bone"]), np.float32(hu["cancellous_bone"])
    )[vertebra & ~in_disc]
    canal2 = X**2 + (sy + 30.0) ** 2
    arch = (canal2 <= 15.0**2) & (sy < -26.0) & ~in_disc
    spinous = (np.abs(X) <= 4.0) & (sy <= -38.0) & (sy >= -64.0) & (np.mod(Z + 10.0, 34.0) < 20.0)
    transverse = (np.abs(sy + 8.0) <= 4.0) & (np.abs(X) <= 48.0) & (np.mod(Z + 4.0, 34.0) < 10.0)
    bone = (arch | spinous | transverse) & skin
    image[bone] = hu["cortical_bone"]
    canal = canal2 <= 9.0**2
    image[canal] = hu["csf"]
    tissue[vertebra | bone | canal] = Tissue.BONE

    # Ribs: obliquely descending arcs in the abdominal wall above the lower lumbar spine.
    rib_z = Z + 0.3 * (Y - spine_y)
    ribs = (
        wall
        & ~cavity
        & (rib_z > -30.0)
        & (np.mod(rib_z, 26.0) < 9.0)
        & (Y < body.center_y_mm + 0.45 * body.cavity_b_mm)
    )
    image[ribs], tissue[ribs] = hu["rib"], Tissue.BONE
    # Iliac wings low in the pelvis.
    for side in (-1.0, 1.0):
        shell = (X - side * 0.78 * body.cavity_a_mm) ** 2 / 45.0**2 + (sy + 5.0) ** 2 / 60.0**2
        wing = skin & (np.abs(shell - 1.0) <= 0.18) & (sy < 25.0) & (Z < -150.0) & (Z > -260.0)
        image[wing], tissue[wing] = hu["cortical_bone"], Tissue.BONE


# --- the random patient ---------------------------------------------------------------------------------


def _rotation(rng: np.random.Generator, mean_deg: tuple[float, float, float], sd_deg: float) -> np.ndarray:
    ax, ay, az = np.radians(np.asarray(mean_deg) + rng.normal(0.0, sd_deg, 3))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _warps(rng: np.random.Generator, count: int = 3, amplitude: float = 0.06) -> np.ndarray:
    rows = np.empty((count, 5))
    rows[:, 0] = rng.uniform(0.3, 1.0, count) * amplitude
    rows[:, 1:4] = rng.normal(0.0, 2.0, (count, 3))
    rows[:, 4] = rng.uniform(0.0, 2 * np.pi, count)
    return rows


def sample_patient(rng: np.random.Generator, index: int) -> Patient:
    """A random adult with portal-venous contrast. Every 4th case (index 1, 5, ...) had a cholecystectomy and
    every 6th (index 2, 8, ...) a nephrectomy, so small test sets always contain absent organs."""
    sex = "F" if rng.random() < 0.5 else "M"
    age = int(np.clip(round(rng.normal(61.0, 14.0)), 18, 92))
    s = float(rng.normal(0.95 if sex == "F" else 1.0, 0.05))  # trunk scale
    organ_scale = float(rng.normal(0.96 if sex == "F" else 1.0, 0.04))
    hu = {
        "fat": rng.normal(-100.0, 6.0),
        "cavity_fat": rng.normal(-92.0, 6.0),
        "muscle": rng.normal(50.0, 4.0),
        "cortical_bone": rng.normal(700.0, 40.0),
        "cancellous_bone": rng.normal(240.0, 30.0) - 1.2 * max(0, age - 50),
        "rib": rng.normal(520.0, 50.0),
        "disc": 90.0,
        "csf": 12.0,
        "lung": rng.normal(-850.0, 25.0),
        "heart": rng.normal(120.0, 12.0),
        "aorta": rng.normal(180.0, 18.0),
        "postcava": rng.normal(130.0, 12.0),
        "portal": rng.normal(155.0, 12.0),
        "liver": rng.normal(60.0, 7.0),
        "spleen": rng.normal(50.0, 5.0),
        "kidney_cortex": rng.normal(155.0, 14.0),
        "pancreas": rng.normal(45.0, 5.0),
        "gall_bladder": rng.normal(10.0, 4.0),
        "stomach": rng.normal(20.0, 7.0),
        "bowel": rng.normal(25.0, 8.0),
        "colon": rng.normal(5.0, 15.0),
        "gas": -950.0,
    }
    hu["kidney_medulla"] = hu["kidney_cortex"] - rng.normal(50.0, 10.0)
    body = Body(
        center_y_mm=40.0 * s,
        cavity_a_mm=130.0 * s,
        cavity_b_mm=88.0 * s,
        wall_mm=float(rng.uniform(9.0, 14.0)),
        fat_mm=float(rng.uniform(8.0, 40.0)) * (1.15 if sex == "F" else 1.0),
        wobble=float(rng.uniform(0.01, 0.04)),
        wobble_phase=float(rng.uniform(0, 2 * np.pi)),
        lordosis_mm=float(rng.uniform(0.0, 12.0)),
        vertebra_radius_mm=19.0 * s,
        hu={k: float(v) for k, v in hu.items()},
    )
    history: list[str] = []
    absent: list[int] = []
    if index % 4 == 1 or rng.random() < 0.05:
        history.append("cholecystectomy")
        absent.append(GALL_BLADDER)
    if index % 6 == 2 or rng.random() < 0.02:
        side = KIDNEY_LEFT if rng.random() < 0.5 else KIDNEY_RIGHT
        history.append(f"{'left' if side == KIDNEY_LEFT else 'right'} nephrectomy")
        absent.append(side)
    pathology: list[str] = []
    bifurcation_z = float(rng.normal(-115.0, 10.0))  # aorta into the iliac arteries, about L4
    strokes = _thorax_and_bowel(rng, body, s) + _vessels_below_organs(rng, body, s, bifurcation_z)
    liver, lesions = _liver(rng, body, s, organ_scale)
    if lesions:
        pathology.append("liver lesion")
    strokes += liver
    strokes += _upper_abdomen(rng, body, s, organ_scale, absent)
    strokes += _great_vessels(rng, body, s, age, bifurcation_z)
    return Patient(sex, age, body, tuple(strokes), tuple(history), tuple(pathology), tuple(sorted(absent)))


def _jitter(
    rng: np.random.Generator, point: tuple[float, float, float], s: float, sd_mm: float = 4.0
) -> np.ndarray:
    x, y, z = point
    return np.array([x * s, y * s, z * (1.0 + (s - 1.0) * 0.5)]) + rng.normal(0.0, sd_mm, 3)


def _ellipsoid(
    rng: np.random.Generator,
    center: np.ndarray,
    radii: tuple[float, float, float],
    scale: float,
    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0),
    warp: float = 0.06,
) -> Ellipsoid:
    radii_mm = np.asarray(radii) * scale * rng.normal(1.0, 0.05, 3)
    return Ellipsoid(center, radii_mm, _rotation(rng, rotation_deg, 6.0), _warps(rng, amplitude=warp))


def _tube(rng: np.random.Generator, points: list[np.ndarray], radii: list[float], squash=(1.0, 1.0)) -> Tube:
    return Tube(np.asarray(points), np.asarray(radii) * rng.normal(1.0, 0.06, len(radii)), squash)


def _thorax_and_bowel(rng: np.random.Generator, body: Body, s: float) -> list[Stroke]:
    hu = body.hu
    strokes = []
    for side in (-1.0, 1.0):
        lung = _ellipsoid(rng, _jitter(rng, (side * 72.0, 28.0, 240.0), s), (60.0, 84.0, 135.0), s, warp=0.03)
        strokes.append(Stroke(lung, hu["lung"], tissue=Tissue.LUNG, within_tissue=(Tissue.CAVITY,)))
    heart = _ellipsoid(
        rng, _jitter(rng, (-12.0, 74.0, 205.0), s), (62.0, 46.0, 52.0), s, (0, 0, 20), warp=0.03
    )
    strokes.append(Stroke(heart, hu["heart"], within_tissue=(Tissue.CAVITY, Tissue.LUNG)))
    for side in (-1.0, 1.0):
        psoas = _tube(
            rng,
            [
                _jitter(rng, (side * 28.0, 4.0, 20.0), s, 2.0),
                _jitter(rng, (side * 44.0, 10.0, -110.0), s, 3.0),
                _jitter(rng, (side * 58.0, 22.0, -230.0), s, 3.0),
            ],
            [7.0, 19.0, 22.0],
        )
        strokes.append(Stroke(psoas, hu["muscle"], tissue=Tissue.MUSCLE, within_tissue=(Tissue.CAVITY,)))
    colon_path = [
        (88, 38, -150),
        (92, 30, -60),
        (78, 62, -28),
        (30, 100, -48),
        (-30, 100, -42),
        (-86, 55, -8),
        (-95, 28, -70),
        (-62, 40, -170),
        (-10, 40, -205),
    ]
    colon = _tube(rng, [_jitter(rng, p, s, 5.0) for p in colon_path], [22.0] * len(colon_path))
    strokes.append(Stroke(colon, hu["colon"], tissue=Tissue.BOWEL, within_tissue=(Tissue.CAVITY,)))
    for _ in range(int(rng.integers(4, 9))):  # gas pockets in the colon
        point = colon.points[int(rng.integers(len(colon.points)))] + rng.normal(0.0, 8.0, 3) + (0, 10, 0)
        pocket = Ellipsoid(point, rng.uniform(8.0, 18.0, 3), np.eye(3))
        strokes.append(Stroke(pocket, hu["gas"], tissue=Tissue.BOWEL, within_tissue=(Tissue.BOWEL,)))
    for _ in range(int(rng.integers(10, 17))):  # small-bowel loops, some with a gas cap
        center = np.array([rng.uniform(-75, 75) * s, rng.uniform(35, 105) * s, rng.uniform(-200, -70)])
        loop = _ellipsoid(
            rng, center, (17.0, 15.0, 22.0), float(rng.uniform(0.7, 1.2)), (0, 0, rng.uniform(0, 180))
        )
        strokes.append(
            Stroke(loop, hu["bowel"], tissue=Tissue.BOWEL, within_tissue=(Tissue.CAVITY, Tissue.BOWEL))
        )
        if rng.random() < 0.3:
            level = float(center[1] + rng.uniform(4.0, 12.0))
            gas_cap = Stroke(
                loop, hu["gas"], tissue=Tissue.BOWEL, within_tissue=(Tissue.BOWEL,), clip=_anterior_of(level)
            )
            strokes.append(gas_cap)
    return strokes


def _anterior_of(level_mm: float) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """Clip to y > level: gas rises to the front of a loop in a supine patient."""

    def clip(X: np.ndarray, Y: np.ndarray, Z: np.ndarray) -> np.ndarray:
        return np.broadcast_to(Y > level_mm, np.broadcast_shapes(X.shape, Y.shape, Z.shape))

    return clip


def _vessels_below_organs(
    rng: np.random.Generator, body: Body, s: float, bifurcation_z: float
) -> list[Stroke]:
    """Iliac vessels and the portal/superior mesenteric vein: vascular HU but background label."""
    hu = body.hu
    strokes = []
    for side in (-1.0, 1.0):
        artery = _tube(
            rng,
            [
                np.array([-12.0 * s, float(body.spine_y(np.array(bifurcation_z))) + 30.0, bifurcation_z]),
                _jitter(rng, (side * 52.0, 22.0, bifurcation_z - 120.0), s),
            ],
            [7.5, 6.0],
        )
        vein = _tube(
            rng,
            [
                np.array(
                    [
                        24.0 * s,
                        float(body.spine_y(np.array(bifurcation_z - 10.0))) + 27.0,
                        bifurcation_z - 10.0,
                    ]
                ),
                _jitter(rng, (side * 48.0, 12.0, bifurcation_z - 125.0), s),
            ],
            [9.0, 8.0],
        )
        strokes.append(Stroke(artery, hu["aorta"], within_tissue=RETROPERITONEAL))
        strokes.append(Stroke(vein, hu["postcava"], within_tissue=RETROPERITONEAL))
    portal = _tube(
        rng,
        [
            _jitter(rng, (4.0, 52.0, -40.0), s, 2.0),
            _jitter(rng, (6.0, 55.0, -4.0), s, 2.0),
            _jitter(rng, (28.0, 48.0, 22.0), s, 2.0),
        ],
        [6.0, 7.0, 8.0],
    )
    strokes.append(Stroke(portal, hu["portal"]))
    return strokes


def _liver(rng: np.random.Generator, body: Body, s: float, organ_scale: float) -> tuple[list[Stroke], int]:
    hu = body.hu
    scale = organ_scale * float(rng.normal(1.1, 0.07))
    right = _ellipsoid(rng, _jitter(rng, (68.0, 42.0, 62.0), s), (56.0, 72.0, 68.0), scale, (0, 0, 10))
    left = _ellipsoid(rng, _jitter(rng, (8.0, 82.0, 78.0), s), (48.0, 32.0, 34.0), scale, (0, 0, -15))
    strokes = [Stroke(right, hu["liver"], LIVER), Stroke(left, hu["liver"], LIVER)]
    hilum = _jitter(rng, (28.0, 48.0, 22.0), s, 2.0)
    for end in [(100.0, 40.0, 72.0), (70.0, 70.0, 40.0), (-12.0, 86.0, 76.0)]:  # portal vein branches
        mid = (hilum + _jitter(rng, end, s, 6.0)) / 2.0
        branch = _tube(rng, [hilum, mid, _jitter(rng, end, s, 6.0)], [6.5, 4.5, 2.5])
        strokes.append(Stroke(branch, hu["portal"], LIVER, within_label=LIVER))
    confluence = np.array([24.0 * s, 28.0, 118.0])
    for end in [(70.0, 40.0, 100.0), (30.0, 80.0, 104.0), (-10.0, 70.0, 110.0)]:  # hepatic veins
        vein = _tube(rng, [confluence, _jitter(rng, end, s, 6.0)], [5.5, 2.5])
        strokes.append(Stroke(vein, hu["postcava"], LIVER, within_label=LIVER))
    lesions = int(rng.integers(1, 4)) if rng.random() < 0.3 else 0
    for _ in range(lesions):  # hypodense lesions, still liver in the ground truth
        center = right.center + rng.normal(0.0, 1.0, 3) * right.radii * 0.35
        lesion = Ellipsoid(
            center, rng.uniform(6.0, 18.0) * rng.uniform(0.8, 1.2, 3), np.eye(3), _warps(rng, 2, 0.1)
        )
        strokes.append(Stroke(lesion, hu["gall_bladder"] + rng.normal(15.0, 8.0), LIVER, within_label=LIVER))
    return strokes, lesions


def _upper_abdomen(
    rng: np.random.Generator, body: Body, s: float, organ_scale: float, absent: list[int]
) -> list[Stroke]:
    hu = body.hu
    strokes = []
    if GALL_BLADDER not in absent:
        gall_scale = organ_scale * float(rng.uniform(0.8, 1.15))
        gall = _ellipsoid(
            rng, _jitter(rng, (42.0, 78.0, 12.0), s), (15.0, 17.0, 30.0), gall_scale, (28, 0, 0), 0.05
        )
        strokes.append(Stroke(gall, hu["gall_bladder"], GALL_BLADDER))

    distension = organ_scale * float(rng.uniform(0.85, 1.25))
    path = [
        (-52.0, 18.0, 84.0),
        (-46.0, 44.0, 54.0),
        (-26.0, 66.0, 30.0),
        (-2.0, 74.0, 20.0),
        (15.0, 72.0, 18.0),
    ]
    stomach = _tube(
        rng, [_jitter(rng, p, s, 3.0) for p in path], [r * distension for r in (30.0, 30.0, 24.0, 18.0, 12.0)]
    )
    gas_level = float((stomach.points[:, 1] + stomach.radii).max() - rng.uniform(4.0, 20.0))
    wall_q = 1.0 - 4.0 / float(stomach.radii.mean())

    def stomach_hu(q: np.ndarray, X: np.ndarray, Y: np.ndarray, Z: np.ndarray) -> np.ndarray:
        lumen = np.where(Y > gas_level, np.float32(hu["gas"]), np.float32(hu["stomach"]))
        return np.where(q > wall_q, np.float32(hu["muscle"] - 5.0), lumen)

    strokes.append(Stroke(stomach, stomach_hu, STOMACH))
    duodenum_path = [
        (15.0, 72.0, 18.0),
        (38.0, 52.0, 6.0),
        (42.0, 46.0, -26.0),
        (15.0, 48.0, -42.0),
        (-15.0, 50.0, -36.0),
    ]
    duodenum = _tube(rng, [_jitter(rng, p, s, 2.0) for p in duodenum_path], [12.0, 11.0, 11.0, 10.0, 10.0])
    strokes.append(Stroke(duodenum, hu["bowel"] + 10.0, tissue=Tissue.BOWEL))

    spleen_scale = organ_scale * float(rng.normal(1.15, 0.1))
    spleen = _ellipsoid(
        rng, _jitter(rng, (-84.0, 2.0, 56.0), s), (21.0, 46.0, 40.0), spleen_scale, (0, 0, -30)
    )
    strokes.append(Stroke(spleen, hu["spleen"], SPLEEN))

    pancreas_path = [(20.0, 52.0, -14.0), (0.0, 60.0, -2.0), (-32.0, 54.0, 8.0), (-62.0, 32.0, 22.0)]
    pancreas_scale = organ_scale * float(rng.normal(1.0, 0.08))
    pancreas = _tube(
        rng,
        [_jitter(rng, p, s, 3.0) for p in pancreas_path],
        [r * pancreas_scale for r in (20.0, 14.0, 14.5, 12.0)],
        squash=(1.0, 0.8),
    )
    strokes.append(Stroke(pancreas, hu["pancreas"], PANCREAS))

    def kidney_hu(q: np.ndarray, X: np.ndarray, Y: np.ndarray, Z: np.ndarray) -> np.ndarray:
        return np.where(q < 0.62, np.float32(hu["kidney_medulla"]), np.float32(hu["kidney_cortex"]))

    kidney_scale = organ_scale * float(rng.normal(1.0, 0.06))
    for label, side, z in ((KIDNEY_LEFT, -1.0, 2.0), (KIDNEY_RIGHT, 1.0, -14.0)):
        if label in absent:
            continue
        center = _jitter(rng, (side * 66.0, -4.0, z), s)
        kidney = _ellipsoid(
            rng, center, (25.0, 28.0, 54.0), kidney_scale, (0, side * -12.0, side * 20.0), 0.04
        )
        strokes.append(Stroke(kidney, kidney_hu, label, within_tissue=RETROPERITONEAL))
    return strokes


def _great_vessels(
    rng: np.random.Generator, body: Body, s: float, age: int, bifurcation_z: float
) -> list[Stroke]:
    """Aorta (whole scan length, widening with age) and postcava (from the iliac confluence to the heart)."""
    hu = body.hu
    z_top = 420.0
    zs = np.linspace(bifurcation_z - 5.0, z_top, 9)
    spine = body.spine_y(zs)
    radius = (10.5 + 0.04 * max(0, age - 45)) * float(rng.normal(1.0, 0.07))
    aorta_points = [
        np.array([-12.0 * s + rng.normal(0, 2.0), y + 30.0 + radius - 11.0, z])
        for y, z in zip(spine, zs, strict=True)
    ]
    aorta = _tube(rng, aorta_points, [radius] * len(zs))
    cava_z = np.linspace(bifurcation_z - 10.0, 150.0, 8)
    cava_points = [
        np.array([24.0 * s + rng.normal(0, 2.0), y + 28.0, z])
        for y, z in zip(body.spine_y(cava_z), cava_z, strict=True)
    ]
    cava = _tube(rng, cava_points, [12.0] * len(cava_z), squash=(1.2, 0.8))
    return [
        Stroke(cava, hu["postcava"], POSTCAVA, within_tissue=RETROPERITONEAL),
        Stroke(aorta, hu["aorta"], AORTA, within_tissue=RETROPERITONEAL),
    ]
