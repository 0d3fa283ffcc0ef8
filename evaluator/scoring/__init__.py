"""The scoring core: safe NIfTI reading and checks, surfaces and distances, per-organ metrics, one case's score.

`cases.score_files` is the entry point the platform uses; `reference` holds DeepMind's `surface-distance`
as the reference every faster path here is tested against.
"""
