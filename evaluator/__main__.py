"""Organizers' command line: score one prediction against its reference.

    python -m evaluator score REFERENCE PREDICTION --labels labels.json [--json]

Exit status: 0 scored, 1 prediction refused (scored worst; the reason is printed), 2 bad usage,
3 the reference or labels.json could not be used.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from evaluator.scoring.cases import CaseScore, NsdDefinition, OrganScore, score_files
from evaluator.scoring.loading import LoadError
from evaluator.scoring.organs import DEFAULT_NSD_TOLERANCE_MM, read_labels_json

EXIT_SCORED, EXIT_REFUSED, EXIT_USAGE, EXIT_UNUSABLE_INPUT = 0, 1, 2, 3


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    try:
        organs = read_labels_json(arguments.labels, nsd_tolerance_mm=arguments.nsd_tolerance_mm)
        if not organs:
            raise ValueError("it names no organ besides the background")
    except (OSError, ValueError) as error:
        print(f"cannot use labels file {arguments.labels}: {error}", file=sys.stderr)
        return EXIT_UNUSABLE_INPUT
    try:
        case = score_files(
            arguments.reference, arguments.prediction, organs, nsd_definition=arguments.nsd_definition
        )
    except LoadError as error:
        print(f"cannot use reference {arguments.reference}: {error}", file=sys.stderr)
        return EXIT_UNUSABLE_INPUT
    if arguments.json:
        print(json.dumps(_as_json(case, arguments.nsd_definition), indent=2, allow_nan=False))
    else:
        print(_as_table(case))
    return EXIT_SCORED if case.refusal is None else EXIT_REFUSED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m evaluator", description="Touchstone's evaluator.")
    commands = parser.add_subparsers(dest="command", required=True)
    score = commands.add_parser(
        "score",
        help="score one prediction against its reference",
        description="Score every organ of one case. A prediction that is not a valid label map for this "
        "reference is refused and scores worst; the reason is printed. In --json output, NaN (organ absent "
        'from the reference) is null and an infinite distance is the string "inf".',
    )
    score.add_argument("reference", type=Path, help="ground-truth label map (.nii.gz)")
    score.add_argument("prediction", type=Path, help="predicted label map (.nii.gz)")
    score.add_argument(
        "--labels",
        type=Path,
        required=True,
        help='labels.json: {"1": "aorta", ...}, or {"1": {"name": "aorta", "nsd_tolerance_mm": 2}, ...}',
    )
    score.add_argument(
        "--nsd-tolerance-mm",
        type=float,
        default=DEFAULT_NSD_TOLERANCE_MM,
        help="NSD tolerance for organs whose labels.json entry sets none (default %(default)s mm)",
    )
    score.add_argument(
        "--nsd-definition",
        type=NsdDefinition,
        choices=list(NsdDefinition),
        default=NsdDefinition.SURFEL,
        help="surfel: DeepMind's surface elements (default); voxel: MONAI's border voxels, as Touchstone published",
    )
    score.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def _as_table(case: CaseScore) -> str:
    lines = []
    if case.refusal is not None:
        lines += [
            f"Prediction refused -- {case.refusal.label}: {case.message}",
            "Every organ present in the reference scores worst.",
            "",
        ]
    header = f"{'organ':<16}{'status':<10}{'DSC':>8}{'NSD':>8}{'HD95 mm':>10}{'ASSD mm':>10}{'ref mL':>10}{'pred mL':>10}"
    lines += [header, "-" * len(header)]
    for organ in case.organs:
        lines.append(
            f"{organ.name:<16}{organ.status.value:<10}{_number(organ.dsc, 4):>8}{_number(organ.nsd, 4):>8}"
            f"{_number(organ.hd95_mm, 2):>10}{_number(organ.assd_mm, 2):>10}"
            f"{_number(organ.reference_volume_ml, 1):>10}{_number(organ.predicted_volume_ml, 1):>10}"
        )
    return "\n".join(lines)


def _number(value: float, digits: int) -> str:
    if math.isnan(value):
        return "-"
    return "inf" if math.isinf(value) else f"{value:.{digits}f}"


def _as_json(case: CaseScore, nsd_definition: NsdDefinition) -> dict[str, object]:
    return {
        "refusal": None if case.refusal is None else case.refusal.value,
        "refusal_label": None if case.refusal is None else case.refusal.label,
        "message": case.message,
        "nsd_definition": nsd_definition.value,
        "organs": [_organ_json(organ) for organ in case.organs],
    }


def _organ_json(organ: OrganScore) -> dict[str, object]:
    def number(value: float) -> float | str | None:
        if math.isnan(value):
            return None
        return "inf" if math.isinf(value) else float(value)

    return {
        "label": organ.label,
        "name": organ.name,
        "status": organ.status.value,
        "dsc": number(organ.dsc),
        "nsd": number(organ.nsd),
        "hd95_mm": number(organ.hd95_mm),
        "assd_mm": number(organ.assd_mm),
        "reference_volume_ml": number(organ.reference_volume_ml),
        "predicted_volume_ml": number(organ.predicted_volume_ml),
    }


if __name__ == "__main__":
    sys.exit(main())
