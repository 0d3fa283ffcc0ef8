from django.contrib import admin
from django.urls import include, path

from leaderboards import views
from touchstone_site import health

urlpatterns = [
    path("", views.home, name="home"),
    path("phases/<slug:slug>/", views.leaderboard, name="leaderboard-page"),
    path("phases/<slug:slug>/export/<path:name>", views.export_file, name="leaderboard-export-file"),
    path("submissions/<int:submission_id>/", views.submission, name="submission-page"),
    path("dashboard/", include("dashboard.urls")),
    path("vendor/plotly.min.js", views.plotly_js, name="plotly-js"),
    path("api/v1/", include("api.urls")),
    path("portal/", include("teams.urls")),
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
]
