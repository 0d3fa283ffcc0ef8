"""Team API tokens: `Authorization: Bearer ts_...`. The request's user is the team's principal."""

from dataclasses import dataclass

from django.utils import timezone
from rest_framework import authentication, exceptions

from teams.models import ApiToken, Membership, Team


@dataclass(frozen=True)
class TeamPrincipal:
    team: Team
    is_authenticated: bool = True


class TeamTokenAuthentication(authentication.BaseAuthentication):
    keywords = ("bearer", "token")

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if not header or header[0].lower() not in self.keywords:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Send the header as 'Authorization: Bearer <token>'.")
        token = ApiToken.objects.select_related("team").filter(key_hash=ApiToken.hash_key(header[1])).first()
        if token is None or token.revoked_at is not None:
            raise exceptions.AuthenticationFailed(
                "This API token is unknown or revoked. Create a new one on the portal's Tokens page "
                "(/portal/, your team's Tokens section) and run `touchstone login` with it."
            )
        now = timezone.now()
        if token.expires_at is not None and token.expires_at <= now:
            raise exceptions.AuthenticationFailed(
                f"This API token expired on {token.expires_at:%Y-%m-%d %H:%M} UTC. Create a new one on the "
                "portal's Tokens page (/portal/, your team's Tokens section)."
            )
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return TeamPrincipal(team=token.team), token

    def authenticate_header(self, request):
        return "Bearer"


@dataclass(frozen=True)
class PortalGrant:
    """What a signed-in member's browser session may do through the API: everything a submit token may."""

    user_id: int
    can_submit: bool = True


class PortalSessionAuthentication(authentication.SessionAuthentication):
    """The portal's pages call the API with the session cookie (and the CSRF token) and name the team in
    `X-Touchstone-Team`; the user must be a member of it."""

    def authenticate(self, request):
        slug = request.headers.get("X-Touchstone-Team")
        if not slug:
            return None
        found = super().authenticate(request)  # enforces CSRF
        if found is None:
            return None
        user = found[0]
        membership = Membership.objects.select_related("team").filter(user=user, team__slug=slug).first()
        if membership is None:
            raise exceptions.AuthenticationFailed(f"You are not a member of team '{slug}'.")
        return TeamPrincipal(team=membership.team), PortalGrant(user_id=user.pk)


try:  # document the scheme in the OpenAPI schema
    from drf_spectacular.extensions import OpenApiAuthenticationExtension

    class TeamTokenScheme(OpenApiAuthenticationExtension):
        target_class = "api.authentication.TeamTokenAuthentication"
        name = "teamToken"

        def get_security_definition(self, auto_schema):
            return {
                "type": "http",
                "scheme": "bearer",
                "description": "A team API token (`ts_...`) from the portal's Tokens page. Scope `read` may "
                "only GET; `submit` may also upload.",
            }
    class PortalSessionScheme(OpenApiAuthenticationExtension):
        target_class = "api.authentication.PortalSessionAuthentication"
        name = "portalSession"

        def get_security_definition(self, auto_schema):
            return {
                "type": "apiKey", "in": "cookie", "name": "sessionid",
                "description": "The portal's pages: a signed-in member's session, the CSRF token in X-CSRFToken "
                "and the team in X-Touchstone-Team.",
            }
except ImportError:  # pragma: no cover
    pass
