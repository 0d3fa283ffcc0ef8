from django.urls import path

from api import views

urlpatterns = [
    path("phases/", views.phases, name="api-phases"),
    path("phases/<slug:slug>/submissions/", views.submissions, name="api-phase-submissions"),
    path("phases/<slug:slug>/leaderboard/", views.leaderboard, name="api-leaderboard"),
    path("submissions/", views.submissions, name="api-submissions"),
    path("submissions/<int:submission_id>/", views.submission_detail, name="api-submission"),
    path("submissions/<int:submission_id>/results/", views.submission_results, name="api-submission-results"),
    path("submissions/<int:submission_id>/logs/", views.submission_logs, name="api-submission-logs"),
]
