"""Token scopes: every token reads; only a read+submit token may change anything."""

from rest_framework import permissions


class TokenScope(permissions.BasePermission):
    message = (
        "This API token may only read. Create a token with the 'read and submit' scope on the portal's "
        "Tokens page to submit."
    )

    def has_permission(self, request, view) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return True
        token = request.auth
        return bool(token is not None and getattr(token, "can_submit", False))
