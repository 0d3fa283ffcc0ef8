"""The resumable upload protocol: offsets the server confirms, 409 at a wrong offset, resume, complete."""

import hashlib

import pytest

from api.models import Upload
from submissions.models import AlgorithmImage, Submission

pytestmark = pytest.mark.django_db

BODY = bytes(range(256)) * 4000  # 1,024,000 bytes
BODY_SIZE = len(BODY)


def put(client, upload_id, headers, start, chunk, total=BODY_SIZE):
    return client.generic("PUT", f"/api/v1/uploads/{upload_id}/", chunk, content_type="application/octet-stream",
                          HTTP_CONTENT_RANGE=f"bytes {start}-{start + len(chunk) - 1}/{total}", **headers)


def open_upload(client, headers, phase, size=BODY_SIZE):
    return client.post("/api/v1/uploads/", {"phase": phase.slug, "algorithm": "unet", "size": size},
                       content_type="application/json", **headers)


def test_chunks_resume_from_the_confirmed_offset_and_complete_into_a_submission(
        client, alice, phase, django_capture_on_commit_callbacks):
    opened = open_upload(client, alice.submit, phase)
    assert opened.status_code == 201, opened.content
    upload = opened.json()
    assert upload["offset"] == 0 and upload["chunk_size"] >= 1 << 20
    assert put(client, upload["id"], alice.submit, 0, BODY[:300_000]).json()["offset"] == 300_000
    # The client lost the answer and sends the first chunk again: refused with where to resume.
    again = put(client, upload["id"], alice.submit, 0, BODY[:300_000])
    assert again.status_code == 409 and again.json()["offset"] == 300_000
    assert "Send from byte 300000" in again.json()["detail"]
    # After a dropped connection the client asks where the server stands and goes on from there.
    offset = client.get(f"/api/v1/uploads/{upload['id']}/", **alice.submit).json()["offset"]
    assert put(client, upload["id"], alice.submit, offset, BODY[offset:]).json()["offset"] == len(BODY)
    with django_capture_on_commit_callbacks() as callbacks:
        done = client.post(f"/api/v1/uploads/{upload['id']}/complete/", **alice.submit)
    assert done.status_code == 201, done.content
    assert done.json()["state"] == Submission.State.VALIDATING and len(callbacks) == 1
    image = AlgorithmImage.objects.get(team=alice.team)
    assert image.sha256 == hashlib.sha256(BODY).hexdigest() and image.size_bytes == len(BODY)
    assert Upload.objects.get(pk=upload["id"]).state == Upload.State.COMPLETE
    # A repeated `complete` (its answer was lost) gives the same submission, not a second one.
    assert client.post(f"/api/v1/uploads/{upload['id']}/complete/", **alice.submit).json()["id"] == done.json()["id"]
    assert Submission.objects.count() == 1


def test_a_short_chunk_does_not_move_the_offset(client, alice, phase):
    upload = open_upload(client, alice.submit, phase).json()
    short = client.generic("PUT", f"/api/v1/uploads/{upload['id']}/", BODY[:1000],
                           content_type="application/octet-stream",
                           HTTP_CONTENT_RANGE=f"bytes 0-1999/{len(BODY)}", **alice.submit)
    assert short.status_code == 400 and "Content-Length" in short.json()["detail"]
    assert client.get(f"/api/v1/uploads/{upload['id']}/", **alice.submit).json()["offset"] == 0


def test_completing_before_every_byte_arrived_says_where_to_go_on(client, alice, phase):
    upload = open_upload(client, alice.submit, phase).json()
    put(client, upload["id"], alice.submit, 0, BODY[:1000])
    early = client.post(f"/api/v1/uploads/{upload['id']}/complete/", **alice.submit)
    assert early.status_code == 409 and early.json()["offset"] == 1000


def test_opening_checks_phase_quota_and_size_before_any_byte(client, alice, phase, settings):
    settings.MAX_IMAGE_UPLOAD_BYTES = 10_000
    too_big = open_upload(client, alice.submit, phase, size=20_000)
    assert too_big.status_code == 400 and "the limit is" in too_big.json()["detail"]
    phase.is_open = False
    phase.save()
    closed = open_upload(client, alice.submit, phase, size=100)
    assert closed.status_code == 400 and "closed" in closed.json()["detail"]
    unknown = client.post("/api/v1/uploads/", {"phase": "nope", "algorithm": "x", "size": 5},
                          content_type="application/json", **alice.submit)
    assert unknown.status_code == 400 and "no phase 'nope'" in unknown.json()["detail"]
    assert not Upload.objects.exists()


def test_quota_endpoint_shows_what_is_left(client, alice, phase):
    quota = client.get(f"/api/v1/phases/{phase.slug}/quota/", **alice.read).json()
    assert quota == {"phase": "final", "is_open": True, "submissions_per_day": 5, "used_last_24h": 0,
                     "remaining": 5, "max_upload_bytes": quota["max_upload_bytes"]}


def test_another_team_cannot_see_or_write_an_upload(client, alice, bob, phase):
    upload = open_upload(client, alice.submit, phase).json()
    assert client.get(f"/api/v1/uploads/{upload['id']}/", **bob.submit).status_code == 404
    assert put(client, upload["id"], bob.submit, 0, BODY[:10]).status_code == 404
    assert client.post(f"/api/v1/uploads/{upload['id']}/complete/", **bob.submit).status_code == 404


def test_a_field_error_reads_as_one_detail_sentence(db):
    from api.errors import validation_message

    assert validation_message({"algorithm": ["This field may not be blank."], "size": ["Required."]}) == (
        "algorithm: This field may not be blank. size: Required."
    )
