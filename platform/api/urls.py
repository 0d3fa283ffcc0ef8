from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from api import phase_extras, uploads, views

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("phases/", views.phases, name="api-phases"),
    path("phases/<slug:slug>/submissions/", views.submissions, name="api-phase-submissions"),
    path("phases/<slug:slug>/leaderboard/", views.leaderboard, name="api-leaderboard"),
    path("phases/<slug:slug>/export/", views.phase_export, name="api-phase-export"),
    path("phases/<slug:slug>/quota/", phase_extras.quota, name="api-phase-quota"),
    path("phases/<slug:slug>/samples/", phase_extras.sample_cases, name="api-phase-samples"),
    path("phases/<slug:slug>/samples/<slug:case_id>/image/", phase_extras.sample_image, name="api-sample-image"),
    path("submissions/", views.submissions, name="api-submissions"),
    path("submissions/<int:submission_id>/", views.submission_detail, name="api-submission"),
    path("submissions/<int:submission_id>/results/", views.submission_results, name="api-submission-results"),
    path("submissions/<int:submission_id>/logs/", views.submission_logs, name="api-submission-logs"),
    path("uploads/", uploads.upload_create, name="api-uploads"),
    path("uploads/<uuid:upload_id>/", uploads.upload_detail, name="api-upload"),
    path("uploads/<uuid:upload_id>/complete/", uploads.upload_complete, name="api-upload-complete"),
    # Anything else under /api/v1/ is a JSON 404 (a bad slug or id never gets an HTML page).
    re_path(r"^[\s\S]*$", views.api_not_found),
]
