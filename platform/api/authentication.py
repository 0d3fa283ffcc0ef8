"""Team API tokens: `Authorization: Bearer ts_...`. The request's user is the team's principal."""

from dataclasses import dataclass

from django.utils import timezone
from rest_framework import authentication, exceptions

from teams.models import ApiToken, Team


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
        token = (
            ApiToken.objects.select_related("team")
            .filter(key_hash=ApiToken.hash_key(header[1]), revoked_at__isnull=True)
            .first()
        )
        if token is None:
            raise exceptions.AuthenticationFailed(
                "This API token is unknown or revoked. Ask your team owner for a new one (`manage.py create_team`)."
            )
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
        return TeamPrincipal(team=token.team), token

    def authenticate_header(self, request):
        return "Bearer"
