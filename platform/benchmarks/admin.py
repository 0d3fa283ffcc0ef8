from django.contrib import admin

from benchmarks.models import Benchmark, Case, Organ, Phase, Site


class OrganInline(admin.TabularInline):
    model = Organ
    extra = 0


class SiteInline(admin.TabularInline):
    model = Site
    extra = 0


@admin.register(Benchmark)
class BenchmarkAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "nsd_tolerance_mm", "nsd_definition", "bootstrap_samples", "rank_method")
    fieldsets = [
        (None, {"fields": ("slug", "name", "description")}),
        ("Scoring", {"fields": ("nsd_tolerance_mm", "nsd_definition")}),
        (
            "Leaderboard statistics",
            {
                "fields": ("bootstrap_samples", "bootstrap_seed", "ci_method", "p_value_method", "rank_method"),
                "description": "Applied from the next leaderboard snapshot; recompute a phase's snapshot from "
                "the Phases list to apply them now.",
            },
        ),
    ]
    inlines = [OrganInline, SiteInline]


@admin.register(Case)
class CaseAdmin(admin.ModelAdmin):
    list_display = ("case_id", "benchmark", "site")
    list_filter = ("benchmark", "site")
    search_fields = ("case_id",)


@admin.register(Phase)
class PhaseAdmin(admin.ModelAdmin):
    list_display = ("slug", "benchmark", "is_open", "time_limit_per_case_s", "memory_mb", "cpus", "gpu",
                    "submissions_per_day", "show_logs")
    filter_horizontal = ("cases",)
    actions = ["recompute_leaderboard"]

    @admin.action(description="Recompute the leaderboard snapshot (statistics) of the selected phases")
    def recompute_leaderboard(self, request, queryset):
        from leaderboards.tasks import compute_leaderboard

        for phase in queryset:
            compute_leaderboard.delay(phase_id=phase.pk)
        self.message_user(request, f"Queued a new leaderboard snapshot for {queryset.count()} phase(s).")
