from django.urls import path

from dashboard import views

urlpatterns = [
    path("", views.index, name="dashboard"),
    path("phases/<slug:slug>/", views.phase, name="dashboard-phase"),
    path("phases/<slug:slug>/export.zip", views.export, name="dashboard-export"),
    path("submissions/<int:submission_id>/", views.submission, name="dashboard-submission"),
    path("act/<str:action>/<int:target_id>/", views.act, name="dashboard-act"),
]
