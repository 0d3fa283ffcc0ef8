"""The API's error bodies: always `{"detail": ...}` a person can act on."""

from rest_framework import exceptions
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc, context):
    if isinstance(exc, exceptions.Throttled):
        wait = f"{int(exc.wait) + 1} s" if exc.wait is not None else "a minute"
        exc.detail = (
            f"Too many requests with this API token. Wait {wait} and try again; "
            "a script should sleep between polls (every few seconds is plenty)."
        )
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, exceptions.ValidationError):
        response.data = {"detail": validation_message(exc.detail)}
    return response


def validation_message(detail) -> str:
    """A serializer's field errors as one sentence per field: `algorithm: This field may not be blank.`"""
    if isinstance(detail, dict):
        return " ".join(
            f"{field}: {validation_message(errors)}" if field != "non_field_errors" else validation_message(errors)
            for field, errors in detail.items()
        )
    if isinstance(detail, list):
        return " ".join(validation_message(item) for item in detail)
    return str(detail)
