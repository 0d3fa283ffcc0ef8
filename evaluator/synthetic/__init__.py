"""Synthetic multi-site abdominal CT benchmarks (phantoms with Touchstone's nine organs) for demos and tests.

`benchmark` writes a whole benchmark (images, references, manifest); `anatomy` draws a random patient;
`canvas` holds the drawing primitives.
"""

from evaluator.synthetic.benchmark import (
    ORGANS,
    SiteSpec,
    SyntheticCase,
    default_sites,
    generate_benchmark,
    generate_case,
)

__all__ = ["ORGANS", "SiteSpec", "SyntheticCase", "default_sites", "generate_benchmark", "generate_case"]
