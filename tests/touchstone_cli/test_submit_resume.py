"""`touchstone submit` over the resumable upload protocol, against the live API: an upload cut off after some
chunks resumes from the server's offset on rerun, a dropped connection is retried, one submission results.

Persona: alice's team submits a 3.5 MiB tar in 1 MiB chunks.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from api.models import Upload
from submissions.models import AlgorithmImage, Submission
from teams import services as team_services
from tests.conftest import ROOT
from tests.factories import PhaseFactory

pytestmark = pytest.mark.django_db(transaction=True)
CHUNK = 1 << 20


@pytest.fixture
def alice_token(settings, tmp_path) -> str:
    settings.DATA_ROOT = tmp_path / "data"
    (tmp_path / "data").mkdir()
    return team_services.token_issue(team=team_services.team_create(name="Alice Lab"))


@pytest.fixture
def tar(tmp_path) -> Path:
    path = tmp_path / "image.tar"
    path.write_bytes(os.urandom(3 * CHUNK + CHUNK // 2))
    return path


def cli(server: str, token: str, *args: str, home: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "TOUCHSTONE_SERVER": server, "TOUCHSTONE_TOKEN": token,
                   "TOUCHSTONE_CONFIG": str(home / "config.json"), "TOUCHSTONE_CHUNK_BYTES": str(CHUNK), **env}
    return subprocess.run([sys.executable, "-m", "touchstone_cli.main", *args], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=120)


def test_an_interrupted_upload_resumes_from_the_servers_offset_and_submits_once(live_server, alice_token, tar,
                                                                                   tmp_path):
    phase = PhaseFactory(submissions_per_day=5)
    cut = cli(live_server.url, alice_token, "submit", str(tar), "--phase", phase.slug, "--algorithm", "unet",
              home=tmp_path, TOUCHSTONE_TEST_STOP_AFTER_CHUNKS="2")
    assert cut.returncode == 75, cut.stderr
    upload = Upload.objects.get()
    assert upload.received_bytes == 2 * CHUNK and upload.state == Upload.State.RECEIVING
    assert not Submission.objects.exists()
    remembered = json.loads((tmp_path / "uploads.json").read_text())
    assert [entry["upload_id"] for entry in remembered.values()] == [str(upload.id)]

    resumed = cli(live_server.url, alice_token, "submit", str(tar), "--phase", phase.slug, "--algorithm", "unet",
                  "--json", home=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"Resuming upload {upload.id} from byte {2 * CHUNK} of {tar.stat().st_size}" in resumed.stderr
    assert "100.0%" in resumed.stderr
    submission = Submission.objects.get()
    assert json.loads(resumed.stdout)["id"] == submission.pk  # --json: the submission alone on stdout
    assert Upload.objects.get().state == Upload.State.COMPLETE and Upload.objects.count() == 1
    image = AlgorithmImage.objects.get()
    assert image.sha256 == hashlib.sha256(tar.read_bytes()).hexdigest() and image.size_bytes == tar.stat().st_size
    assert json.loads((tmp_path / "uploads.json").read_text()) == {}  # nothing left to resume

    # Running it again opens a new upload of the same file, not a replay of the finished one; the server then
    # refuses the same bytes, which validation has found not to be a `docker save` tar (set here directly:
    # whether validation already ran depends on whether this session's Celery workers are up).
    AlgorithmImage.objects.filter(pk=image.pk).update(state=AlgorithmImage.State.INVALID, error="not a tar")
    again = cli(live_server.url, alice_token, "submit", str(tar), "--phase", phase.slug, "--algorithm", "unet",
                home=tmp_path)
    assert "Resuming" not in again.stderr and Upload.objects.count() == 2
    assert again.returncode == 2 and "already refused" in again.stderr and Submission.objects.count() == 1


def test_a_changed_file_is_not_resumed_into_the_old_upload(live_server, alice_token, tar, tmp_path):
    phase = PhaseFactory(submissions_per_day=5)
    cut = cli(live_server.url, alice_token, "submit", str(tar), "--phase", phase.slug, "--algorithm", "unet",
              home=tmp_path, TOUCHSTONE_TEST_STOP_AFTER_CHUNKS="1")
    assert cut.returncode == 75, cut.stderr
    tar.write_bytes(os.urandom(2 * CHUNK))  # rebuilt image: other size, mtime and first MiB
    fresh = cli(live_server.url, alice_token, "submit", str(tar), "--phase", phase.slug, "--algorithm", "unet",
                home=tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    assert "Resuming" not in fresh.stderr
    assert Upload.objects.count() == 2
    assert AlgorithmImage.objects.get().sha256 == hashlib.sha256(tar.read_bytes()).hexdigest()


class DroppingProxy:
    """A TCP proxy to the live server that cuts the connection once, after `cut_after` bytes from the client."""

    def __init__(self, upstream_port: int, cut_after: int):
        self.upstream_port, self.cut_after = upstream_port, cut_after
        self.forwarded, self.cuts = 0, 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, from_client: bool) -> None:
        try:
            while data := source.recv(65536):
                if from_client:
                    with self.lock:
                        self.forwarded += len(data)
                        cut = self.cuts == 0 and self.forwarded > self.cut_after
                        self.cuts += cut
                    if cut:
                        target.sendall(data[: len(data) // 2])
                        break
                target.sendall(data)
        except OSError:
            pass
        for end in (source, target):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            end.close()

    def close(self) -> None:
        self.listener.close()


def test_a_dropped_connection_mid_chunk_is_retried_and_the_upload_completes(live_server, alice_token, tar,
                                                                             tmp_path):
    phase = PhaseFactory(submissions_per_day=5)
    port = int(live_server.url.rsplit(":", 1)[1])
    proxy = DroppingProxy(port, cut_after=CHUNK + CHUNK // 2)  # inside the second chunk
    try:
        done = cli(f"http://127.0.0.1:{proxy.port}", alice_token, "submit", str(tar), "--phase", phase.slug,
                   "--algorithm", "unet", home=tmp_path)
    finally:
        proxy.close()
    assert proxy.cuts == 1
    assert done.returncode == 0, done.stderr
    assert "Connection problem while sending bytes" in done.stderr and "retrying in 1 s" in done.stderr
    assert Submission.objects.count() == 1 and Upload.objects.get().state == Upload.State.COMPLETE
    assert AlgorithmImage.objects.get().sha256 == hashlib.sha256(tar.read_bytes()).hexdigest()
