"""A benchmark: its label set (organs), hospitals (sites), hidden cases and phases."""

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class NsdDefinition(models.TextChoices):
    SURFEL = "surfel", "Surface elements with areas (DeepMind surface-distance)"
    VOXEL = "voxel", "Border voxels counted (MONAI default, as Touchstone published)"


class IntervalMethod(models.TextChoices):
    PERCENTILE = "percentile", "Percentile bootstrap"
    BCA = "bca", "Bias-corrected and accelerated (BCa) bootstrap"


class PValueMethod(models.TextChoices):
    EXACT = "exact", "Exact where SciPy can (today's SciPy default)"
    NORMAL = "normal", "Normal approximation (as Touchstone's published figures)"


class RankMethod(models.TextChoices):
    MEAN_THEN_RANK = "mean_then_rank", "Mean then rank"
    RANK_THEN_MEAN = "rank_then_mean", "Rank per case, then mean rank"
    TEST_THEN_RANK = "test_then_rank", "Test then rank (significant wins)"


class Benchmark(models.Model):
    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    nsd_tolerance_mm = models.FloatField(default=1.5, validators=[MinValueValidator(0.0)])
    nsd_definition = models.CharField(max_length=16, choices=NsdDefinition.choices, default=NsdDefinition.SURFEL)
    # Leaderboard statistics: bootstrap resamples (paired, stratified by site) and their seed.
    bootstrap_samples = models.PositiveIntegerField(
        default=2000, validators=[MinValueValidator(100), MaxValueValidator(10000)]
    )
    bootstrap_seed = models.PositiveIntegerField(default=0)
    ci_method = models.CharField(max_length=16, choices=IntervalMethod.choices, default=IntervalMethod.PERCENTILE)
    p_value_method = models.CharField(max_length=16, choices=PValueMethod.choices, default=PValueMethod.EXACT)
    rank_method = models.CharField(max_length=16, choices=RankMethod.choices, default=RankMethod.MEAN_THEN_RANK)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


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
    """What a submission is run on, and the limits its containers get."""

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
    shard_size = models.PositiveIntegerField(default=50, validators=[MinValueValidator(1)])
    canary_size = models.PositiveIntegerField(default=2, validators=[MinValueValidator(1)])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["benchmark", "slug"]

    def __str__(self) -> str:
        return f"{self.benchmark.name} — {self.name}"
