"""A submission's life: the uploaded image, the jobs it is cut into, and every case's scores."""

from django.db import models

from benchmarks.models import Case, Organ, Phase
from evaluator.choices import ExitReason
from evaluator.scoring.refusals import RefusalCategory
from evaluator.scoring.scores import OrganStatus
from teams.models import Team


class AlgorithmImage(models.Model):
    """A `docker save` tar uploaded by a team, stored under DATA_ROOT/images/ by its sha256."""

    class State(models.TextChoices):
        UPLOADED = "uploaded", "Uploaded"
        READY = "ready", "Ready"
        INVALID = "invalid", "Invalid"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="images")
    sha256 = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField()
    tar_path = models.CharField(max_length=500)
    docker_image_id = models.CharField(max_length=100, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.UPLOADED)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "sha256"], name="image_team_sha_unique")]

    def __str__(self) -> str:
        return f"{self.team} sha256:{self.sha256[:12]}"


class Submission(models.Model):
    class State(models.TextChoices):
        VALIDATING = "validating", "Validating image"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    FINAL_STATES = (State.COMPLETED, State.FAILED, State.CANCELLED)

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="submissions")
    phase = models.ForeignKey(Phase, on_delete=models.PROTECT, related_name="submissions")
    image = models.ForeignKey(AlgorithmImage, on_delete=models.PROTECT, related_name="submissions")
    algorithm = models.CharField(max_length=100)
    state = models.CharField(max_length=16, choices=State.choices, default=State.VALIDATING)
    failure_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # When the validation message was last sent, and how often: the sweep re-sends a lost one.
    validation_sent_at = models.DateTimeField(null=True, blank=True)
    validation_attempts = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["phase", "state"])]

    def __str__(self) -> str:
        return f"#{self.pk} {self.team} / {self.algorithm}"


class Job(models.Model):
    """A shard of a submission's cases, run in one container. Claimed by compare-and-set on state."""

    class State(models.TextChoices):
        PENDING = "pending", "Waiting for the canary"
        QUEUED = "queued", "Queued for inference"
        RUNNING = "running", "Running"
        SCORING = "scoring", "Scoring"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    FINAL_STATES = (State.SUCCEEDED, State.FAILED, State.CANCELLED)

    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="jobs")
    index = models.PositiveIntegerField()
    is_canary = models.BooleanField(default=False)
    cases = models.ManyToManyField(Case, related_name="jobs")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempt = models.PositiveIntegerField(default=0)
    exit_reason = models.CharField(max_length=32, choices=ExitReason.choices(), blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    detail = models.TextField(blank=True, help_text="What happened, written for the team.")
    platform_detail = models.TextField(
        blank=True, help_text="Staff only: the engine's or host's own words about a platform error. Never shown to teams."
    )
    log_tail = models.TextField(blank=True)
    # The container's last words (its last stderr line, else stdout), shown to its team where logs are shared.
    last_output_line = models.CharField(max_length=300, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    # The lease of the worker running (RUNNING) or scoring (SCORING) this attempt: renewed while it works,
    # taken back by the sweep once expired. The owner is "<host>:<pid>:<random>", one per claim.
    lease_owner = models.CharField(max_length=200, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    score_attempt = models.PositiveIntegerField(default=0)
    # Attempts made before the organizers' last rerun: the retry limit counts only the attempts after it.
    attempt_offset = models.PositiveIntegerField(default=0)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ran_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["submission", "index"]
        constraints = [models.UniqueConstraint(fields=["submission", "index"], name="job_index_unique")]

    def __str__(self) -> str:
        return f"job {self.submission_id}.{self.index}"

    @property
    def run_seconds(self) -> float | None:
        if self.started_at and self.ran_at:
            return (self.ran_at - self.started_at).total_seconds()
        return None


class CaseResult(models.Model):
    """One organ of one case of one submission. Unique, so re-scoring never counts a case twice."""

    # The evaluator's OrganStatus, under the name model code reads (`CaseResult.Status.ABSENT`).
    Status = OrganStatus

    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="results")
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="results")
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="results")
    organ = models.ForeignKey(Organ, on_delete=models.CASCADE, related_name="results")
    status = models.CharField(max_length=16, choices=OrganStatus.choices())
    # NaN is stored as NULL: organ absent from the reference, excluded from means.
    dsc = models.FloatField(null=True)
    nsd = models.FloatField(null=True)
    hd95_mm = models.FloatField(null=True)
    assd_mm = models.FloatField(null=True)
    reference_volume_ml = models.FloatField(null=True)
    predicted_volume_ml = models.FloatField(null=True)
    # Why the prediction was refused, and the message the team sees.
    refusal = models.CharField(max_length=32, choices=RefusalCategory.choices(), blank=True)
    message = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["submission", "case", "organ"], name="case_result_unique")
        ]
        indexes = [models.Index(fields=["submission", "organ"])]

    def __str__(self) -> str:
        return f"{self.submission_id}/{self.case_id}/{self.organ_id}: {self.status}"
