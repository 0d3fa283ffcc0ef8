"""Touchstone's published results reproduced from its per-case CSVs, with the same library the platform uses.

`tables` reads the published folders and reports their quirks; `reproduce` checks the published aggregates
and significance decisions (`python -m evaluator.touchstone DATA_DIR`).
"""
