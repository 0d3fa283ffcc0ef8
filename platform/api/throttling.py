"""Per-token rate limits. A chunked upload's PUTs count against their own, larger budget."""

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle


class TokenRateThrottle(SimpleRateThrottle):
    """`settings.API_RATE_PER_TOKEN` requests per token (e.g. "600/minute"), read at request time."""

    scope = "token"
    setting = "API_RATE_PER_TOKEN"

    def get_rate(self) -> str:
        return getattr(settings, self.setting)

    def __init__(self):  # rate read per request, so tests and deployments can change it without a restart
        pass

    def allow_request(self, request, view) -> bool:
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request, view) -> str | None:
        token = request.auth
        if token is None:
            return None  # unauthenticated: refused before throttling matters
        who = f"token{token.pk}" if hasattr(token, "pk") else f"user{token.user_id}"
        return f"throttle_{self.scope}_{who}"


class UploadChunkThrottle(TokenRateThrottle):
    scope = "upload"
    setting = "API_UPLOAD_RATE_PER_TOKEN"
