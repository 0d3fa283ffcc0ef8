"""A benchmark: its label set (organs), hospitals (sites), hidden cases and phases."""

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from evaluator.scoring.scores import NsdDefinition
from evaluator.stats.bootstrap import IntervalMethod
from evaluator.stats.ranking import RankMethod
from evaluator.stats.significance import PValueMethod


class Benchmark(models.Model):
    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    nsd_tolerance_mm = models.FloatField(default=1.5, validators=[MinValueValidator(0.0)])
    nsd_definition = models.CharField(max_length=16, choices=NsdDefinition.choices(), default=NsdDefinition.SURFEL.value)
    # Leaderboard statistics: bootstrap resamples (paired, stratified by site) and their seed.
    bootstrap_samples = models.PositiveIntegerField(
        default=2000, validators=[MinValueValidator(100), MaxValueValidator(10000)]
    )
    bootstrap_seed = models.PositiveIntegerField(default=0)
    ci_method = models.CharField(max_length=16, choices=IntervalMethod.choices(), default=IntervalMethod.PERCENTILE.value)
    p_value_method = models.CharField(max_length=16, choices=PValueMethod.choices(), default=PValueMethod.EXACT.value)
    rank_method = models.CharField(max_length=16, choices=RankMethod.choices(), default=RankMethod.MEAN_THEN_RANK.value)
    # Surface distances (HD95, ASSD) on the leaderboard, and the finite worst value a missed organ or a case
    # without valid output counts as wherever distances are averaged (e.g. the image diagonal): never dropped.
    leaderboard_distances = models.BooleanField(
        default=False, help_text="Show HD95 and ASSD means on the leaderboard (needs the worst-case distance)."
    )
    distance_worst_mm = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.0)],
        help_text="Distance (mm) a missed organ or a case without valid output counts as in HD95/ASSD means, "
        "e.g. the image diagonal. Empty: such cases are counted beside a mean over the finite ones.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.leaderboard_distances and self.distance_worst_mm is None:
            raise ValidationError(
                {"distance_worst_mm": "Set the worst-case distance (e.g. the image diagonal in mm) before putting "
                 "HD95 and ASSD on the leaderboard: a missed organ must count, not be dropped."}
            )


class Organ(models.Model):
    """One entry of the benchmark's label set: label id → organ name."""

    benchmark = models.ForeignKey(Benchmark, on_delete=models.CASCADE, related_name="organs")
    label = models.PositiveSmallIntegerField(validators=[MinValueValidator(1)])
    name = models.SlugField(max_length=64)
    # None: the benchmark's tolerance.
    nsd_tolerance_mm = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["benchmark", "label"]
        constraints = [
            models.UniqueConstraint(fields=["benchmark", "label"], name="organ_label_unique"),
            models.UniqueConstraint(fields=["benchmark", "name"], name="organ_name_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.label} {self.name}"

    @property
    def tolerance_mm(self) -> float:
        return self.nsd_tolerance_mm if self.nsd_tolerance_mm is not None else self.benchmark.nsd_tolerance_mm


class Site(models.Model):
    """A hospital contributing hidden cases; out-of-distribution sites had no training data."""

    benchmark = models.ForeignKey(Benchmark, on_delete=models.CASCADE, related_name="sites")
    code = models.SlugField(max_length=32)
    name = models.CharField(max_length=200)
    out_of_distribution = models.BooleanField(default=False)

    class Meta:
        ordering = ["benchmark", "code"]
        constraints = [models.UniqueConstraint(fields=["benchmark", "code"], name="site_code_unique")]

    def __str__(self) -> str:
        return self.name


class Case(models.Model):
    """A hidden CT and its ground truth. Paths are relative to settings.DATA_ROOT and never served."""

    benchmark = models.ForeignKey(Benchmark, on_delete=models.CASCADE, related_name="cases")
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="cases")
    case_id = models.CharField(max_length=64)
    image_path = models.CharField(max_length=500)
    reference_path = models.CharField(max_length=500)
    # Scanner, sex, age and any other case metadata used for breakdowns.
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["benchmark", "case_id"]
        constraints = [models.UniqueConstraint(fields=["benchmark", "case_id"], name="case_id_unique")]

    def __str__(self) -> str:
        return self.case_id


class Phase(models.Model):
    """What a submission is run on, the limits its containers get, and who sees its results."""

    class Visibility(models.TextChoices):
        PUBLIC = "public", "Public (the live leaderboard is public)"
        PRIVATE = "private", "Private (each team sees only its own rows)"
        EMBARGOED = "embargoed", "Embargoed until an organizer publishes it"

    class PublicRow(models.TextChoices):
        LATEST = "latest", "The team's latest completed submission"
        BEST = "best", "The team's best completed submission (headline DSC)"
        TEAM_PICK = "team_pick", "The submission the team picks (else its latest)"

    benchmark = models.ForeignKey(Benchmark, on_delete=models.CASCADE, related_name="phases")
    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    cases = models.ManyToManyField(Case, related_name="phases")
    is_open = models.BooleanField(default=True)
    time_limit_per_case_s = models.PositiveIntegerField(default=300)
    # Fixed container start-up allowance added to the per-case time.
    time_limit_overhead_s = models.PositiveIntegerField(default=60)
    memory_mb = models.PositiveIntegerField(default=8192, validators=[MinValueValidator(64)])
    cpus = models.FloatField(default=2.0, validators=[MinValueValidator(0.1)])
    gpu = models.BooleanField(default=False)
    submissions_per_day = models.PositiveIntegerField(default=3)
    show_logs = models.BooleanField(default=False, help_text="Teams may read their containers' log tails.")
    show_case_results = models.BooleanField(
        default=False,
        help_text="Teams may read their own per-case scores. Off for hidden test phases: per-case volumes and "
        "scores are a channel out for hidden images.",
    )
    leaderboard_visibility = models.CharField(max_length=16, choices=Visibility.choices, default=Visibility.PUBLIC)
    public_row = models.CharField(
        max_length=16, choices=PublicRow.choices, default=PublicRow.LATEST,
        help_text="Which submission is a team's one row on the leaderboard.",
    )
    shard_size = models.PositiveIntegerField(default=50, validators=[MinValueValidator(1)])
    canary_size = models.PositiveIntegerField(default=2, validators=[MinValueValidator(1)])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["benchmark", "slug"]

    def __str__(self) -> str:
        return f"{self.benchmark.name} — {self.name}"

    def quota_for(self, team) -> int:
        """Submissions per day for `team`: an organizer's override, else the phase's quota."""
        override = self.quotas.filter(team=team).values_list("submissions_per_day", flat=True).first()
        return self.submissions_per_day if override is None else override


class TeamQuota(models.Model):
    """An organizer's override of a phase's daily submission quota for one team."""

    phase = models.ForeignKey(Phase, on_delete=models.CASCADE, related_name="quotas")
    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="quotas")
    submissions_per_day = models.PositiveIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["phase", "team"], name="team_quota_unique")]

    def __str__(self) -> str:
        return f"{self.team} on {self.phase.slug}: {self.submissions_per_day}/day"


class SampleCase(models.Model):
    """A public case organizers publish for a phase, so teams can run `touchstone validate` on it.

    Never a hidden case: its image is served to any authenticated team, and it has no reference.
    `image_path` is relative to DATA_ROOT.
    """

    phase = models.ForeignKey(Phase, on_delete=models.CASCADE, related_name="sample_cases")
    case_id = models.SlugField(max_length=64)
    image_path = models.CharField(max_length=500)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["phase", "case_id"]
        constraints = [models.UniqueConstraint(fields=["phase", "case_id"], name="sample_case_unique")]

    def __str__(self) -> str:
        return f"{self.phase.slug} sample {self.case_id}"
