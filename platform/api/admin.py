"""Uploads in the admin: read-only, for organizers to see what is arriving and what is stuck."""

from django.contrib import admin
from django.template.defaultfilters import filesizeformat

from api import services
from api.models import Upload


@admin.register(Upload)
class UploadAdmin(admin.ModelAdmin):
    list_display = ("id", "team", "phase", "algorithm", "state", "progress", "submission", "updated_at", "expired")
    list_filter = ("state", "phase")
    search_fields = ("team__name", "team__slug", "algorithm")
    list_select_related = ("team", "phase")
    readonly_fields = ("id", "team", "phase", "algorithm", "size_bytes", "received_bytes", "state", "submission",
                       "created_at", "updated_at")

    def has_add_permission(self, request) -> bool:
        return False  # uploads come only through the upload protocol

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="received")
    def progress(self, upload: Upload) -> str:
        percent = 100 * upload.received_bytes / upload.size_bytes if upload.size_bytes else 100.0
        return f"{filesizeformat(upload.received_bytes)} of {filesizeformat(upload.size_bytes)} ({percent:.0f}%)"

    @admin.display(boolean=True, description="expired")
    def expired(self, upload: Upload) -> bool:
        return services.upload_expired(upload)
