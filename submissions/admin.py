from django.contrib import admin, messages

from submissions import progress
from submissions.models import AlgorithmImage, CaseResult, Job, Submission


class JobInline(admin.TabularInline):
    model = Job
    extra = 0
    fields = ("index", "is_canary", "state", "attempt", "exit_reason", "exit_code", "detail", "worker")
    readonly_fields = fields
    can_delete = False


@admin.register(Submission)
class SubmissionAdmin(admin.ModelAdmin):
    list_display = ("pk", "team", "algorithm", "phase", "state", "created_at", "completed_at")
    list_filter = ("phase", "state")
    inlines = [JobInline]
    actions = ["rerun", "cancel"]

    @admin.action(description="Rerun the selected submissions (results removed, canary first)")
    def rerun(self, request, queryset):
        for submission in queryset:
            progress.submission_rerun(submission_id=submission.pk)
        self.message_user(request, f"{queryset.count()} submission(s) sent to run again.", messages.SUCCESS)

    @admin.action(description="Cancel the selected submissions (running containers are stopped)")
    def cancel(self, request, queryset):
        cancelled = sum(progress.submission_cancel(submission_id=submission.pk) for submission in queryset)
        self.message_user(request, f"{cancelled} submission(s) cancelled; ended ones are left as they are.")


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("pk", "submission", "index", "state", "attempt", "exit_reason", "worker", "started_at")
    list_filter = ("state", "exit_reason")
    readonly_fields = ("detail", "platform_detail", "log_tail", "lease_owner", "lease_expires_at")
    actions = ["rerun", "cancel"]

    @admin.action(description="Rerun the selected jobs (a new attempt; their results removed)")
    def rerun(self, request, queryset):
        for job in queryset:
            progress.job_rerun(job_id=job.pk)
        self.message_user(request, f"{queryset.count()} job(s) sent to run again.", messages.SUCCESS)

    @admin.action(description="Cancel the selected jobs (a running container is stopped)")
    def cancel(self, request, queryset):
        cancelled = sum(progress.job_cancel(job_id=job.pk) for job in queryset)
        self.message_user(request, f"{cancelled} job(s) cancelled; ended ones are left as they are.")


@admin.register(AlgorithmImage)
class AlgorithmImageAdmin(admin.ModelAdmin):
    list_display = ("team", "sha256", "size_bytes", "state", "created_at")


@admin.register(CaseResult)
class CaseResultAdmin(admin.ModelAdmin):
    """Read-only: results are written by scoring alone. Filter by status or refusal to see what went wrong."""

    list_display = ("submission", "case", "organ", "status", "dsc", "nsd", "refusal")
    list_filter = ("status", "refusal")
    list_select_related = ("submission__team", "case", "organ")
    search_fields = ("case__case_id",)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
