from django.contrib import admin
from django.utils import timezone

from teams.models import ApiToken, Invitation, Membership, Team


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "created_at")
    search_fields = ("name", "slug")
    inlines = [MembershipInline]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are created on the portal (or by `manage.py create_team`); here they are read and revoked."""

    list_display = ("team", "name", "scope", "status", "created_by", "created_at", "last_used_at", "expires_at",
                    "revoked_at")
    list_filter = ("scope",)
    search_fields = ("team__name", "team__slug", "name")
    list_select_related = ("team", "created_by")
    readonly_fields = ("team", "name", "key_hash", "scope", "created_by", "created_at", "last_used_at")
    fields = ("team", "name", "scope", "key_hash", "created_by", "created_at", "last_used_at", "expires_at",
              "revoked_at")
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        return False  # a token made here would have no secret anyone was shown

    @admin.display(description="status")
    def status(self, token: ApiToken) -> str:
        if token.revoked_at is not None:
            return "revoked"
        if token.expires_at is not None and token.expires_at <= timezone.now():
            return "expired"
        return "active"

    @admin.action(description="Revoke the selected tokens (requests with them are refused at once)")
    def revoke(self, request, queryset):
        revoked = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"{revoked} token(s) revoked.")


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ("team", "created_by", "created_at", "expires_at", "revoked_at")
    list_select_related = ("team", "created_by")
    readonly_fields = ("team", "key_hash", "created_by", "created_at")
