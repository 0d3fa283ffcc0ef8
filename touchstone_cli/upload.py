"""`touchstone submit`'s side of the resumable upload protocol (platform/api/uploads.py is the server's).

Each chunk is one PUT of a bytes body with an explicit Content-Length and a Content-Range at the offset the
server confirmed (never a streamed generator: a proxy refuses a body sent chunked *and* sized). The upload
id is remembered next to the config with the file's identity, so a rerun after a crash, a kill or a lost
connection asks the server where its copy ends and sends only the rest.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import requests

from touchstone_cli.progress import ProgressBar

HEAD_BYTES = 1 << 20
RETRY_DELAYS_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
TRANSIENT_STATUS = (429, 500, 502, 503, 504)  # a busy or restarting server (or its proxy): wait and go on
# Test hook: end the process (as a kill would, without clean-up) after this many chunks of this run.
STOP_AFTER_CHUNKS_ENV = "TOUCHSTONE_TEST_STOP_AFTER_CHUNKS"
# Smaller chunks for slow or flaky links (never more than the server's chunk_size).
CHUNK_BYTES_ENV = "TOUCHSTONE_CHUNK_BYTES"


class UploadError(Exception):
    """The upload cannot go on; the message says why and what to do."""


class Transport(Protocol):
    """What the uploader needs of the CLI's HTTP client."""

    server: str

    def send(self, method: str, path: str, **kwargs: Any) -> requests.Response: ...


@dataclass(frozen=True)
class FileIdentity:
    """Enough to tell that a rerun is sending the very same file: path, size, mtime, hash of the first MiB."""

    path: str
    size: int
    mtime_ns: int
    head_sha256: str

    @classmethod
    def of(cls, path: Path) -> FileIdentity:
        stat = path.stat()
        with open(path, "rb") as handle:
            head = hashlib.sha256(handle.read(HEAD_BYTES)).hexdigest()
        return cls(path=str(path.resolve()), size=stat.st_size, mtime_ns=stat.st_mtime_ns, head_sha256=head)


class ResumeState:
    """Unfinished uploads, one JSON file in the config folder: {key: {upload_id, file identity}}."""

    def __init__(self, path: Path):
        self.path = path

    @staticmethod
    def key(*, server: str, phase: str, algorithm: str, identity: FileIdentity) -> str:
        return f"{server}|{phase}|{algorithm}|{identity.path}"

    def _read(self) -> dict[str, dict]:
        try:
            data = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, data: dict[str, dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(data, indent=1))
        temporary.chmod(0o600)
        os.replace(temporary, self.path)

    def find(self, key: str, identity: FileIdentity) -> str | None:
        entry = self._read().get(key)
        if entry and entry.get("file") == asdict(identity):
            return str(entry["upload_id"])
        return None

    def remember(self, key: str, identity: FileIdentity, upload_id: str) -> None:
        data = self._read()
        data[key] = {"upload_id": upload_id, "file": asdict(identity), "saved_at": time.time()}
        self._write(data)

    def forget(self, key: str) -> None:
        data = self._read()
        if data.pop(key, None) is not None:
            self._write(data)


def _detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason
    return str(body.get("detail") or body) if isinstance(body, dict) else str(body)


class Uploader:
    """Sends one file over the chunked protocol, resuming a remembered upload of the same file."""

    def __init__(self, transport: Transport, state: ResumeState, *, stream=sys.stderr,
                 sleep: Callable[[float], None] = time.sleep):
        self.transport, self.state, self.stream, self.sleep = transport, state, stream, sleep

    def _say(self, message: str) -> None:
        print(message, file=self.stream, flush=True)

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> requests.Response:
        """One request, retried with backoff while the connection fails; HTTP answers are the caller's."""
        for attempt, delay in enumerate((*RETRY_DELAYS_S, None), start=1):
            try:
                return self.transport.send(method, path, **kwargs)
            except requests.exceptions.SSLError:
                raise  # a certificate problem does not heal by waiting
            except (requests.ConnectionError, requests.Timeout) as error:
                if delay is None:
                    raise UploadError(
                        f"Lost the connection to {self.transport.server} while {what} ({attempt} tries): {error}. "
                        "Run the same command again later: it resumes where the server's copy ends."
                    ) from None
                self._say(f"Connection problem while {what}; retrying in {delay:.0f} s ({attempt}/{len(RETRY_DELAYS_S)})")
                self.sleep(delay)
        raise AssertionError("unreachable")

    def _expect(self, response: requests.Response, *codes: int) -> dict:
        if response.status_code not in codes:
            raise UploadError(f"{_detail(response)} (HTTP {response.status_code})")
        return response.json()

    def _resume(self, upload_id: str, size: int) -> dict | None:
        """The server's view of a remembered upload, or None when it cannot be resumed (gone, other size)."""
        response = self._call("GET", f"uploads/{upload_id}/", "asking where the upload stands")
        if response.status_code == 404:
            return None
        upload = self._expect(response, 200)
        if upload["size"] != size:
            return None
        return upload

    def upload(self, *, path: Path, phase: str, algorithm: str) -> dict:
        """Send `path` and return the submission the server made of it."""
        identity = FileIdentity.of(path)
        key = ResumeState.key(server=self.transport.server, phase=phase, algorithm=algorithm, identity=identity)
        upload = None
        if upload_id := self.state.find(key, identity):
            upload = self._resume(upload_id, identity.size)
            if upload is None:
                self._say(f"The server no longer has upload {upload_id} (expired?); starting again.")
                self.state.forget(key)
            elif upload["state"] == "complete" and upload["submission"]:
                self._say(f"This file was already uploaded and submitted as submission {upload['submission']}.")
            else:
                self._say(f"Resuming upload {upload_id} from byte {upload['offset']} of {identity.size}.")
        if upload is None:
            response = self._call("POST", "uploads/", "opening the upload",
                                  json={"phase": phase, "algorithm": algorithm, "size": identity.size})
            upload = self._expect(response, 201)
            self.state.remember(key, identity, upload["id"])
        if upload["state"] != "complete":
            self._send_chunks(upload, path, identity.size)
        submission = self._complete(upload["id"], path, identity.size)
        self.state.forget(key)
        return submission

    def _chunk_size(self, upload: dict) -> int:
        wanted = os.environ.get(CHUNK_BYTES_ENV, "")
        if wanted:
            if not wanted.isdigit() or int(wanted) < 1:
                raise UploadError(f"{CHUNK_BYTES_ENV} must be a positive number of bytes, not '{wanted}'.")
            return min(int(wanted), upload["chunk_size"])
        return int(upload["chunk_size"])

    def _send_chunks(self, upload: dict, path: Path, size: int) -> None:
        upload_id, offset, chunk_size = upload["id"], int(upload["offset"]), self._chunk_size(upload)
        stop_after = int(os.environ.get(STOP_AFTER_CHUNKS_ENV) or 0)
        bar = ProgressBar(total=size, label="Uploading", stream=self.stream)
        bar.advance(offset)
        sent_chunks = server_errors = 0
        with open(path, "rb") as handle:
            while offset < size:
                handle.seek(offset)
                chunk = handle.read(min(chunk_size, size - offset))
                if len(chunk) != min(chunk_size, size - offset):
                    raise UploadError(f"{path} changed while it was being uploaded; run the command again.")
                response = self._call(
                    "PUT", f"uploads/{upload_id}/", f"sending bytes {offset}-{offset + len(chunk) - 1}",
                    data=chunk,
                    headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(chunk)),
                             "Content-Range": f"bytes {offset}-{offset + len(chunk) - 1}/{size}"},
                )
                if response.status_code == 409:  # the server holds more or less than we thought: go on from there
                    offset = int(self._expect(response, 409)["offset"])
                    bar.done = offset
                    continue
                if response.status_code in TRANSIENT_STATUS and server_errors < len(RETRY_DELAYS_S):
                    delay = RETRY_DELAYS_S[server_errors]
                    server_errors += 1
                    self._say(f"The server answered HTTP {response.status_code}; going on in {delay:.0f} s.")
                    self.sleep(delay)
                    offset = int(self._resume_or_fail(upload_id, size)["offset"])
                    bar.done = offset
                    continue
                server_errors = 0
                new_offset = int(self._expect(response, 200)["offset"])
                bar.advance(new_offset - offset)
                offset = new_offset
                sent_chunks += 1
                if stop_after and sent_chunks >= stop_after and offset < size:
                    self.stream.flush()
                    os._exit(75)
        bar.finish()

    def _resume_or_fail(self, upload_id: str, size: int) -> dict:
        upload = self._resume(upload_id, size)
        if upload is None:
            raise UploadError("The server lost this upload (expired?). Run the command again to start over.")
        return upload

    def _complete(self, upload_id: str, path: Path, size: int) -> dict:
        response = self._call("POST", f"uploads/{upload_id}/complete/", "finishing the upload")
        if response.status_code == 409:
            raise UploadError(f"{_detail(response)} Run the command again to send the rest.")
        return self._expect(response, 200, 201)
