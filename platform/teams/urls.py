from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from teams import views


def _form(title: str, submit: str, form_id: str) -> dict:
    return {"template_name": "teams/form.html",
            "extra_context": {"title": title, "submit": submit, "form_id": form_id}}


urlpatterns = [
    path("", views.home, name="portal-home"),
    path("signup/", views.signup, name="portal-signup"),
    path("login/", auth_views.LoginView.as_view(**_form("Sign in", "Sign in", "login-form")), name="portal-login"),
    path("logout/", auth_views.LogoutView.as_view(), name="portal-logout"),
    path("password-reset/", auth_views.PasswordResetView.as_view(
        **_form("Reset your password", "Send the reset link", "reset-form"),
        success_url=reverse_lazy("portal-password-reset-done")), name="portal-password-reset"),
    path("password-reset/sent/", auth_views.PasswordResetDoneView.as_view(
        template_name="teams/message.html",
        extra_context={"title": "Check your email", "message": "If an account has that address, a reset link "
                       "is on its way."}), name="portal-password-reset-done"),
    path("password-reset/<uidb64>/<token>/", auth_views.PasswordResetConfirmView.as_view(
        **_form("Choose a new password", "Set the password", "reset-confirm-form"),
        success_url=reverse_lazy("portal-password-reset-complete")), name="password_reset_confirm"),
    path("password-reset/done/", auth_views.PasswordResetCompleteView.as_view(
        template_name="teams/message.html",
        extra_context={"title": "Password changed", "message": "Sign in with your new password."}),
        name="portal-password-reset-complete"),
    path("join/<str:key>/", views.join, name="portal-join"),
    path("teams/<slug:slug>/", views.team, name="portal-team"),
    path("teams/<slug:slug>/tokens/", views.token_create, name="portal-token-create"),
    path("teams/<slug:slug>/tokens/<int:token_id>/revoke/", views.token_revoke, name="portal-token-revoke"),
    path("teams/<slug:slug>/invite/", views.invite, name="portal-invite"),
    path("teams/<slug:slug>/leave/", views.leave, name="portal-leave"),
    path("teams/<slug:slug>/members/<int:user_id>/owner/", views.promote, name="portal-promote"),
    path("teams/<slug:slug>/submit/", views.submit, name="portal-submit"),
    path("teams/<slug:slug>/phases/<slug:phase_slug>/", views.history, name="portal-history"),
    path("teams/<slug:slug>/phases/<slug:phase_slug>/pick/", views.public_pick, name="portal-public-pick"),
    path("submissions/<int:submission_id>/", views.submission, name="portal-submission"),
    path("submissions/<int:submission_id>/status.json", views.submission_status, name="portal-submission-status"),
    path("submissions/<int:first_id>/compare/<int:second_id>/", views.compare, name="portal-compare"),
]
