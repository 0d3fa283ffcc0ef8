"""The shapes the API sends and accepts, declared once for the OpenAPI schema (drf-spectacular).

Views build plain dicts through the selectors; these serializers document them, and Schemathesis checks
every live response against them (tests/api/test_schema.py), so a drifting field fails a test.
"""

from rest_framework import serializers

from submissions.models import Job, Submission


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What went wrong and what to do about it.")


class ValidationErrorSerializer(serializers.Serializer):
    """A refused request body: `detail`, or one list of messages per field."""

    detail = serializers.CharField(required=False)


class PhaseSerializer(serializers.Serializer):
    slug = serializers.SlugField()
    name = serializers.CharField()
    benchmark = serializers.SlugField()
    is_open = serializers.BooleanField()
    cases = serializers.IntegerField()
    sample_cases = serializers.IntegerField(help_text="Public cases `touchstone validate` runs on.")
    time_limit_per_case_s = serializers.IntegerField()
    time_limit_overhead_s = serializers.IntegerField(help_text="Added once per job to the per-case limits.")
    memory_mb = serializers.IntegerField()
    cpus = serializers.FloatField()
    gpu = serializers.BooleanField()
    show_logs = serializers.BooleanField()
    submissions_per_day = serializers.IntegerField()
    max_upload_bytes = serializers.IntegerField()
    labels = serializers.DictField(child=serializers.CharField(), help_text="label id → organ name")


class QuotaSerializer(serializers.Serializer):
    phase = serializers.SlugField()
    is_open = serializers.BooleanField()
    submissions_per_day = serializers.IntegerField()
    used_last_24h = serializers.IntegerField()
    remaining = serializers.IntegerField()
    max_upload_bytes = serializers.IntegerField()


class SampleCaseSerializer(serializers.Serializer):
    case_id = serializers.CharField()
    size_bytes = serializers.IntegerField()
    image_url = serializers.URLField(help_text="GET it (with your token) for the CT as .nii.gz.")


class SampleCasesSerializer(serializers.Serializer):
    phase = serializers.SlugField()
    labels = serializers.DictField(child=serializers.CharField())
    cases = SampleCaseSerializer(many=True)


class JobSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    canary = serializers.BooleanField()
    state = serializers.ChoiceField(choices=Job.State.choices)
    state_label = serializers.CharField()
    cases = serializers.IntegerField()
    attempt = serializers.IntegerField()
    exit_reason = serializers.CharField(allow_blank=True)
    exit_reason_label = serializers.CharField(allow_blank=True)
    exit_code = serializers.IntegerField(allow_null=True)
    detail = serializers.CharField(allow_blank=True)
    run_seconds = serializers.FloatField(allow_null=True)
    last_output_line = serializers.CharField(
        required=False, help_text="A crashed job's last line of output, only where the phase shares logs."
    )


class JobLogSerializer(JobSerializer):
    log_tail = serializers.CharField(allow_blank=True)


class OrganResultSerializer(serializers.Serializer):
    label = serializers.IntegerField()
    organ = serializers.CharField()
    dsc = serializers.FloatField(allow_null=True)
    nsd = serializers.FloatField(allow_null=True)
    hd95_mm = serializers.FloatField(allow_null=True)
    hd95_n_infinite = serializers.IntegerField()
    n = serializers.IntegerField()
    n_failed = serializers.IntegerField()


class SiteResultSerializer(serializers.Serializer):
    site = serializers.CharField()
    name = serializers.CharField()
    out_of_distribution = serializers.BooleanField()
    cases = serializers.IntegerField()
    failed_cases = serializers.IntegerField()
    dsc = serializers.FloatField(allow_null=True)
    nsd = serializers.FloatField(allow_null=True)


class ResultsSummarySerializer(serializers.Serializer):
    dsc = serializers.FloatField(allow_null=True)
    nsd = serializers.FloatField(allow_null=True)
    organs = OrganResultSerializer(many=True)
    sites = SiteResultSerializer(many=True)


class SubmissionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    phase = serializers.SlugField()
    team = serializers.SlugField()
    algorithm = serializers.CharField()
    state = serializers.ChoiceField(choices=Submission.State.choices)
    state_label = serializers.CharField()
    failure_reason = serializers.CharField(allow_blank=True)
    image_sha256 = serializers.CharField()
    created_at = serializers.DateTimeField()
    completed_at = serializers.DateTimeField(allow_null=True)
    url = serializers.URLField()


class SubmissionDetailSerializer(SubmissionSerializer):
    jobs = JobSerializer(many=True)
    results = ResultsSummarySerializer(required=False, help_text="Only once the submission has completed.")


class CaseRowSerializer(serializers.Serializer):
    case__case_id = serializers.CharField()
    case__site__code = serializers.CharField()
    organ__name = serializers.CharField()
    status = serializers.CharField()
    dsc = serializers.FloatField(allow_null=True)
    nsd = serializers.FloatField(allow_null=True)
    hd95_mm = serializers.FloatField(allow_null=True)
    assd_mm = serializers.FloatField(allow_null=True)
    predicted_volume_ml = serializers.FloatField(allow_null=True)
    refusal = serializers.CharField(allow_blank=True)
    message = serializers.CharField(allow_blank=True)


class SubmissionResultsSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    cases = CaseRowSerializer(many=True)


class SubmissionLogsSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    jobs = JobLogSerializer(many=True)


class LeaderboardSerializer(serializers.Serializer):
    phase = serializers.SlugField()
    computed_at = serializers.DateTimeField(allow_null=True)
    parameters = serializers.DictField(help_text="The statistics methods this snapshot used.")
    rows = serializers.ListField(child=serializers.DictField(), help_text="Ranked rows with CIs and rank ranges.")
    url = serializers.URLField()
    statistics = serializers.DictField(required=False, help_text="With ?statistics=full: the whole snapshot.")


class UploadCreateSerializer(serializers.Serializer):
    phase = serializers.SlugField(max_length=50)
    algorithm = serializers.CharField(max_length=100, help_text="The name shown on the leaderboard.")
    size = serializers.IntegerField(min_value=1, help_text="The tar's exact size in bytes.")


class UploadSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    phase = serializers.SlugField()
    algorithm = serializers.CharField()
    size = serializers.IntegerField()
    offset = serializers.IntegerField(help_text="Bytes the server holds; send the next chunk from here.")
    chunk_size = serializers.IntegerField(help_text="The largest chunk the server accepts in one PUT.")
    state = serializers.ChoiceField(choices=["receiving", "complete"])
    submission = serializers.IntegerField(allow_null=True)
    url = serializers.URLField()
    expires_at = serializers.DateTimeField()


class UploadConflictSerializer(serializers.Serializer):
    detail = serializers.CharField()
    offset = serializers.IntegerField(help_text="Where the server's copy ends: resume from here.")


_PAGES: dict[type, type] = {}


def page_of(item: type[serializers.Serializer]) -> type[serializers.Serializer]:
    """The paginated envelope of a list of `item`: {count, next, previous, results}."""
    if item not in _PAGES:
        name = item.__name__.removesuffix("Serializer")
        _PAGES[item] = type(f"Paginated{name}List", (serializers.Serializer,), {
            "count": serializers.IntegerField(),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": item(many=True),
        })
    return _PAGES[item]
