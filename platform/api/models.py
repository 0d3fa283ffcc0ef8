"""Resumable uploads: a `docker save` tar arriving in chunks, at offsets the server confirms."""

import uuid

from django.db import models

from benchmarks.models import Phase
from submissions.models import Submission
from teams.models import Team


class Upload(models.Model):
    """One tar on its way in. Its bytes live in DATA_ROOT/uploads/<id>.part until it completes."""

    class State(models.TextChoices):
        RECEIVING = "receiving", "Receiving"
        COMPLETE = "complete", "Complete"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="uploads")
    phase = models.ForeignKey(Phase, on_delete=models.CASCADE, related_name="uploads")
    algorithm = models.CharField(max_length=100)
    size_bytes = models.BigIntegerField()
    received_bytes = models.BigIntegerField(default=0)
    state = models.CharField(max_length=16, choices=State.choices, default=State.RECEIVING)
    submission = models.ForeignKey(Submission, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"upload {self.id} ({self.received_bytes}/{self.size_bytes} bytes)"
