"""A fragile team algorithm: the baseline's segmentation behind a check real models often carry.

It was "trained on RAS scans" and refuses any other in-plane orientation with an exception, so it crashes
(non-zero exit, traceback on stderr) on the first LPS case, after writing valid outputs for the cases it
processed before. That is how real submissions fail: partially, on one hospital's data.
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
segment = baseline.segment


def main() -> int:
    input_dir = Path(os.environ.get("TOUCHSTONE_INPUT", "/input"))
    output_dir = Path(os.environ.get("TOUCHSTONE_OUTPUT", "/output"))
    cases = json.loads((input_dir / "cases.json").read_text())["cases"]
    label_ids = {name: int(key) for key, name in json.loads((input_dir / "labels.json").read_text()).items()}
    for number, case in enumerate(cases, 1):
        started = time.time()
        image = nib.load(str(input_dir / case["image"]))
        codes = "".join(nib.aff2axcodes(image.affine))
        if codes[:2] == "LP":
            raise ValueError(f"unsupported orientation {codes} in {case['case_id']}: this model expects RAS scans")
        labels = segment(image, label_ids)
        output = nib.Nifti1Image(labels, image.affine)
        output.set_qform(image.affine, code=1)
        output.set_sform(image.affine, code=1)
        nib.save(output, str(output_dir / f"{case['case_id']}.nii.gz"))
        print(f"[{number}/{len(cases)}] {case['case_id']} {codes} in {time.time() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
