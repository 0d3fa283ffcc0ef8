"""What a team needs before it submits to a phase: its remaining quota and the public sample cases
(`touchstone validate` runs an image on them with the workers' own sandbox settings)."""

from pathlib import Path

from django.conf import settings
from django.http import FileResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.decorators import api_view
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from api import serializers as shapes
from api import services
from api.views import _errors
from benchmarks.models import Phase, SampleCase


def _sample_file(sample: SampleCase) -> Path:
    root = Path(settings.DATA_ROOT).resolve()
    path = (root / sample.image_path).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise NotFound(f"Sample case '{sample.case_id}' has no image on the server. Tell the organizers.")
    return path


@extend_schema(summary="Your team's remaining submissions to the phase and the upload size limit",
               responses={200: shapes.QuotaSerializer, **_errors(404)}, tags=["phases"])
@api_view(["GET"])
def quota(request, slug: str):
    phase = get_object_or_404(Phase, slug=slug)
    return Response(services.quota(team=request.user.team, phase=phase))


@extend_schema(summary="The phase's public sample cases, for `touchstone validate`",
               responses={200: shapes.SampleCasesSerializer, **_errors(404)}, tags=["phases"])
@api_view(["GET"])
def sample_cases(request, slug: str):
    phase = get_object_or_404(Phase.objects.select_related("benchmark"), slug=slug)
    cases = []
    for sample in phase.sample_cases.all():
        path = _sample_file(sample)
        cases.append({
            "case_id": sample.case_id,
            "size_bytes": path.stat().st_size,
            "image_url": request.build_absolute_uri(reverse("api-sample-image", args=[phase.slug, sample.case_id])),
        })
    labels = {str(o.label): o.name for o in phase.benchmark.organs.all()}
    return Response({"phase": phase.slug, "labels": labels, "cases": cases})


@extend_schema(summary="One sample case's CT (.nii.gz)",
               responses={(200, "application/gzip"): OpenApiTypes.BINARY,
                          404: OpenApiResponse(shapes.ErrorSerializer, description="No such sample case."),
                          **_errors()}, tags=["phases"])
@api_view(["GET"])
def sample_image(request, slug: str, case_id: str):
    sample = get_object_or_404(SampleCase, phase__slug=slug, case_id=case_id)
    return FileResponse(open(_sample_file(sample), "rb"), content_type="application/gzip",
                        as_attachment=True, filename=f"{sample.case_id}.nii.gz")
