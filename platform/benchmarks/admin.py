import contextlib
import gzip
from pathlib import Path

from django import forms
from django.conf import settings
from django.contrib import admin

from benchmarks.models import Benchmark, Case, Organ, Phase, SampleCase, Site
from evaluator.scoring.loading import LoadError, read_geometry


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


class SampleCaseForm(forms.ModelForm):
    """Publish a public sample case: upload its CT (.nii.gz), or name a file already under DATA_ROOT."""

    image_file = forms.FileField(
        required=False, help_text="The CT as .nii.gz; stored as DATA_ROOT/samples/<phase>/<case id>.nii.gz."
    )

    class Meta:
        model = SampleCase
        fields = ("phase", "case_id", "image_path")
        help_texts = {"image_path": "Relative to DATA_ROOT; filled in for you when you upload a file. Never a "
                                    "hidden case's image: every team can download a sample case."}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["image_path"].required = False

    def clean(self):
        data = super().clean()
        phase, case_id, upload = data.get("phase"), data.get("case_id"), data.get("image_file")
        if not phase or not case_id:
            return data
        if phase.cases.filter(case_id=case_id).exists():
            raise forms.ValidationError(f"'{case_id}' is a hidden case of {phase.slug}; publish another case.")
        root = Path(settings.DATA_ROOT).resolve()
        if upload:
            target = root / "samples" / phase.slug / f"{case_id}.nii.gz"
            target.parent.mkdir(parents=True, exist_ok=True)
            upload.seek(0)
            gzipped = upload.read(2) == b"\x1f\x8b"
            upload.seek(0)
            # Teams' containers read images/<case>.nii.gz: an uncompressed .nii is gzipped on the way in.
            with open(target, "wb") as raw, (contextlib.nullcontext(raw) if gzipped else gzip.open(raw, "wb")) as handle:
                for chunk in upload.chunks():
                    handle.write(chunk)
            data["image_path"] = str(target.relative_to(root))
        if not data.get("image_path"):
            raise forms.ValidationError("Upload the case's CT, or give the path of one under DATA_ROOT.")
        path = (root / data["image_path"]).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise forms.ValidationError(f"There is no file {data['image_path']} under DATA_ROOT.")
        if phase.cases.filter(image_path=str(path.relative_to(root))).exists():
            raise forms.ValidationError("This file is a hidden case's image; it must never be published.")
        try:
            read_geometry(path, role="image")
        except LoadError as error:
            raise forms.ValidationError(f"Not a usable CT image: {error}") from None
        return data


@admin.register(SampleCase)
class SampleCaseAdmin(admin.ModelAdmin):
    form = SampleCaseForm
    list_display = ("case_id", "phase", "image_path", "created_at")
    list_filter = ("phase",)
    search_fields = ("case_id",)
