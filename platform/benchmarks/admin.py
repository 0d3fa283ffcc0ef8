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
    list_display = ("name", "slug", "nsd_tolerance_mm", "nsd_definition", "bootstrap_samples")
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
