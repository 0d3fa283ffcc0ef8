from django.contrib import admin

from submissions.models import AlgorithmImage, Job, Submission


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


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("pk", "submission", "index", "state", "attempt", "exit_reason", "worker", "started_at")
    list_filter = ("state", "exit_reason")
    readonly_fields = ("log_tail",)


@admin.register(AlgorithmImage)
class AlgorithmImageAdmin(admin.ModelAdmin):
    list_display = ("team", "sha256", "size_bytes", "state", "created_at")
