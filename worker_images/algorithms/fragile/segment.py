"""A fragile team algorithm: a cut-down baseline behind an assumption real models often carry.

It segments like the baseline, on a coarser grid and without the pancreas (its team never trained one). It
flips the in-plane axes to RAS itself, but assumes axial slices are stored feet to head, as in its training
data, and stops with an exception on a scan stored head to feet. Cases are processed one by one in the
order of cases.json, so the outputs written before the crash are complete and valid; then the process exits
non-zero with a traceback on stderr. That is how real submissions fail: partially, on one hospital's data.
"""

import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import nibabel as nib

HERE = Path(__file__).resolve().parent
# In the image the baseline sits beside this file; in the source tree, in ../baseline/.
_source = next(p for p in (HERE / "baseline.py", HERE.parent / "baseline" / "segment.py") if p.exists())
_spec = importlib.util.spec_from_file_location("baseline", _source)
baseline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(baseline)
baseline.WORKING_SPACING_MM = 4.5  # faster and blockier than the baseline's 3 mm

SKIPPED_ORGANS = ("pancreas",)


def check_slice_order(image: nib.Nifti1Image, case_id: str) -> None:
    codes = "".join(nib.aff2axcodes(image.affine))
    if codes[2] != "S":
        raise ValueError(
            f"unsupported orientation {codes} in {case_id}: slices are stored head to feet, and this model only "
            "handles slices stored feet to head (..S). Reorder the slices before running it."
        )


def main() -> int:
    input_dir = Path(os.environ.get("TOUCHSTONE_INPUT", "/input"))
    output_dir = Path(os.environ.get("TOUCHSTONE_OUTPUT", "/output"))
    cases = json.loads((input_dir / "cases.json").read_text())["cases"]
    labels = json.loads((input_dir / "labels.json").read_text())
    label_ids = {name: int(key) for key, name in labels.items() if name not in SKIPPED_ORGANS}
    for number, case in enumerate(cases, 1):
        started = time.time()
        image = nib.load(str(input_dir / case["image"]))
        check_slice_order(image, case["case_id"])
        segmentation = baseline.segment(image, label_ids)
        output = nib.Nifti1Image(segmentation, image.affine)
        output.set_qform(image.affine, code=1)
        output.set_sform(image.affine, code=1)
        nib.save(output, str(output_dir / f"{case['case_id']}.nii.gz"))
        codes = "".join(nib.aff2axcodes(image.affine))
        print(
            f"[{number}/{len(cases)}] {case['case_id']} {codes} in {time.time() - started:.1f} s", flush=True
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
