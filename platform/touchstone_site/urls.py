from django.contrib import admin
from django.urls import include, path

from leaderboards import views

urlpatterns = [
    path("", views.home, name="home"),
    path("phases/<slug:slug>/", views.leaderboard, name="leaderboard-page"),
    path("submissions/<int:submission_id>/", views.submission, name="submission-page"),
    path("vendor/plotly.min.js", views.plotly_js, name="plotly-js"),
    path("api/v1/", include("api.urls")),
    path("admin/", admin.site.urls),
]
