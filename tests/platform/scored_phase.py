"""A phase with several completed submissions and per-case scores, for page and snapshot tests.

Scores are drawn around a level per algorithm (seeded), the out-of-distribution site is harder, a few organs
are absent from some references (NaN, excluded) and one algorithm has a case without valid output (0, refused).
The statistics are then computed for real by `leaderboards.services.snapshot_compute`.
"""

from __future__ import annotations

import numpy as np
from django.utils import timezone

from benchmarks.models import Benchmark, Case, Organ, Phase, Site
from leaderboards.services import snapshot_compute
from submissions.models import CaseResult, Job, Submission
from tests.factories import SubmissionFactory, TeamFactory

ORGANS = ("spleen", "kidney_right", "kidney_left", "liver", "pancreas")
SITES = (("NGH", "North General", False), ("RVM", "Riverside Medical", False), ("HRH", "Harbour Regional", True))
ALGORITHMS = {"Alice Lab / unet": 0.86, "Bob Lab / swin": 0.84, "Carol Lab / nnunet": 0.80, "Dan Lab / tiny": 0.70}


def scored_phase(*, cases_per_site: int = 12, n_bootstrap: int = 200, seed: int = 7) -> Phase:
    rng = np.random.default_rng(seed)
    benchmark = Benchmark.objects.create(
        slug="abdomen", name="Abdominal CT", description="Synthetic scores for page tests.", bootstrap_seed=seed
    )
    organs = [Organ.objects.create(benchmark=benchmark, label=i, name=name) for i, name in enumerate(ORGANS, 1)]
    cases = []
    for code, name, ood in SITES:
        site = Site.objects.create(benchmark=benchmark, code=code, name=name, out_of_distribution=ood)
        for i in range(cases_per_site):
            case_id = f"{code.lower()}{i:03d}"
            cases.append(
                Case.objects.create(
                    benchmark=benchmark,
                    site=site,
                    case_id=case_id,
                    image_path=f"images/{case_id}.nii.gz",
                    reference_path=f"labels/{case_id}.nii.gz",
                    metadata={
                        "manufacturer": ("Siemens", "GE")[i % 2],
                        "sex": ("F", "M")[(i // 2) % 2],
                        "age": int(30 + (i * 7) % 50),
                    },
                )
            )
    phase = Phase.objects.create(benchmark=benchmark, slug="abdomen-final", name="Final")
    phase.cases.set(cases)
    case_effect = {case.pk: rng.normal(0, 0.04) - (0.08 if case.site.out_of_distribution else 0) for case in cases}
    for number, (name, level) in enumerate(ALGORITHMS.items()):
        team_name, algorithm = name.split(" / ")
        submission = SubmissionFactory(
            team=TeamFactory(name=team_name, slug=team_name.lower().replace(" ", "-")),
            phase=phase,
            algorithm=algorithm,
            state=Submission.State.COMPLETED,
            completed_at=timezone.now(),
        )
        job = Job.objects.create(submission=submission, index=0, state=Job.State.SUCCEEDED)
        results = []
        for c, case in enumerate(cases):
            refused = number == len(ALGORITHMS) - 1 and c == 0
            for o, organ in enumerate(organs):
                absent = (c + o) % 17 == 0
                dsc = float(np.clip(level + case_effect[case.pk] + rng.normal(0, 0.03), 0, 1))
                nsd = float(np.clip(dsc + 0.05 + rng.normal(0, 0.02), 0, 1))
                if absent:
                    status, dsc, nsd = CaseResult.Status.ABSENT, None, None
                elif refused:
                    status, dsc, nsd = CaseResult.Status.REFUSED, 0.0, 0.0
                else:
                    status = CaseResult.Status.SCORED
                results.append(
                    CaseResult(
                        submission=submission,
                        job=job,
                        case=case,
                        organ=organ,
                        status=status,
                        dsc=dsc,
                        nsd=nsd,
                        hd95_mm=None if dsc is None else float(30 * (1 - dsc)),
                        refusal="missing_output" if refused else "",
                        message="No prediction was written for this case." if refused else "",
                    )
                )
        CaseResult.objects.bulk_create(results)
    snapshot_compute(phase_id=phase.pk, n_bootstrap=n_bootstrap)
    return phase
