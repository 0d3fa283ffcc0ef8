"""Drives the production compose stack (deploy/docker-compose.yml) on this machine, for tests/deploy/.

One project name, DATA_ROOT under var/test-deploy, free ports and a self-signed certificate: it never
touches the host's own PostgreSQL, Redis or another deployment. `Stack.start()` removes what a previous
run left (containers, volumes, the DATA_ROOT mount and folder) first; every failure prints the state and
the last logs of every service.
"""

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "deploy" / "docker-compose.yml"
PROJECT = "touchstone-test-deploy"
# Durations of the last run's steps (build, up, submission, restart, down, total), shown at the end of the session.
TIMINGS_S: dict[str, float] = {}
# What deploy/build.sh said of each image: built (and how long) or cached.
BUILD_LINES: list[str] = []
SERVICES = ("postgres", "redis", "migrate", "web", "inference-worker", "scoring-worker", "control-worker", "beat", "proxy")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(command: list[str], *, timeout_s: float = 600, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, **kwargs)
    if check and done.returncode != 0:
        raise AssertionError(f"`{' '.join(command)}` exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


@dataclass
class Stack:
    workdir: Path = ROOT / "var" / "test-deploy"
    ports: dict[str, int] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=lambda: TIMINGS_S)

    @property
    def data_root(self) -> Path:
        return self.workdir / "data"

    @property
    def tls_dir(self) -> Path:
        return self.workdir / "tls"

    @property
    def ca_bundle(self) -> Path:
        return self.tls_dir / "fullchain.pem"

    @property
    def url(self) -> str:
        return f"https://localhost:{self.ports['https']}"

    def compose(self, *args: str, timeout_s: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        return run(["docker-compose", "--project-name", PROJECT, "--env-file", str(self.workdir / ".env"),
                    "-f", str(COMPOSE_FILE), *args], timeout_s=timeout_s, check=check)

    def manage(self, *args: str, service: str = "web", timeout_s: float = 300) -> str:
        return self.compose("exec", "-T", service, "python3", "manage.py", *args, timeout_s=timeout_s).stdout

    def diagnostics(self) -> str:
        """`docker-compose ps` and the last lines of every service's log, for a failure message."""
        if not (self.workdir / ".env").exists():
            return "(no stack)"
        parts = [self.compose("ps", check=False).stdout]
        for service in SERVICES:
            logs = self.compose("logs", "--no-color", "--tail", "40", service, check=False)
            parts.append(f"--- {service} ---\n{logs.stdout}{logs.stderr}")
        return "\n".join(parts)

    def build_images(self) -> None:
        started = time.monotonic()
        done = run(["bash", str(ROOT / "deploy" / "build.sh")], timeout_s=900)
        self.timings_s["build"] = time.monotonic() - started
        BUILD_LINES[:] = [line for line in done.stdout.splitlines() if line.startswith(("built ", "touchstone/"))]

    def remove_leftovers(self) -> None:
        if (self.workdir / ".env").exists():
            self.compose("down", "-v", "--remove-orphans", "--timeout", "5", check=False)
        else:  # an interrupted run whose .env is gone: find its containers by the project label
            ids = run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}"]).stdout.split()
            if ids:
                run(["docker", "rm", "-f", *ids], check=False)
            volumes = run(["docker", "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}"]).stdout.split()
            if volumes:
                run(["docker", "volume", "rm", "-f", *volumes], check=False)
        self.unmount_data_root()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def unmount_data_root(self) -> None:
        if self.data_root.exists():
            # Job /output filesystems first (lazily, a container may hold one), then the shared bind itself.
            mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
            for mount in sorted((m for m in mounts if m.startswith(str(self.data_root))), key=len, reverse=True):
                run(["umount", "-l", mount], check=False)

    def configure(self) -> None:
        self.workdir.mkdir(parents=True)
        self.ports = {name: free_port() for name in ("http", "https", "postgres", "redis")}
        # DATA_ROOT is a shared mount, so the /output filesystems the inference worker mounts inside its
        # container (`rshared`) appear on the host, where dockerd bind-mounts them into team containers.
        self.data_root.mkdir()
        run(["mount", "--bind", str(self.data_root), str(self.data_root)])
        run(["mount", "--make-rshared", str(self.data_root)])
        os.chown(self.data_root, 1000, 1000)  # the platform image's user; the inference worker is root
        self.tls_dir.mkdir()
        run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-keyout", str(self.tls_dir / "privkey.pem"), "-out", str(self.tls_dir / "fullchain.pem")])
        (self.tls_dir / "privkey.pem").chmod(0o644)  # read by nginx's master in the container (root)
        env = {
            "POSTGRES_PASSWORD": os.urandom(12).hex(),
            "REDIS_PASSWORD": os.urandom(12).hex(),
            "TOUCHSTONE_SECRET_KEY": os.urandom(32).hex(),
            "TOUCHSTONE_HOSTNAME": "localhost",
            "TOUCHSTONE_PUBLIC_PORT_SUFFIX": f":{self.ports['https']}",
            "TOUCHSTONE_DATA_ROOT": str(self.data_root),
            "TOUCHSTONE_TLS_DIR": str(self.tls_dir),
            "TOUCHSTONE_BIND": "127.0.0.1",
            "TOUCHSTONE_HTTP_PORT": str(self.ports["http"]),
            "TOUCHSTONE_HTTPS_PORT": str(self.ports["https"]),
            "TOUCHSTONE_SERVICES_BIND": "127.0.0.1",
            "TOUCHSTONE_POSTGRES_PORT": str(self.ports["postgres"]),
            "TOUCHSTONE_REDIS_PORT": str(self.ports["redis"]),
            "TOUCHSTONE_SANDBOX_CONTAINER_PREFIX": f"{PROJECT}-job",
            "TOUCHSTONE_WEB_WORKERS": "2",
        }
        (self.workdir / ".env").write_text("".join(f"{key}={value}\n" for key, value in env.items()))

    def start(self) -> None:
        self.remove_leftovers()
        self.configure()
        started = time.monotonic()
        self.compose("up", "-d", timeout_s=600)
        self.timings_s["up"] = time.monotonic() - started

    def stop(self) -> None:
        self.compose("down", "-v", "--remove-orphans", "--timeout", "10", check=False)
        self.unmount_data_root()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def leftovers(self) -> list[str]:
        """What of this stack is still on the machine: containers (the stack's and its jobs'), volumes,
        networks, mounts and loop devices under DATA_ROOT, the work folder. Empty after a clean `stop()`."""
        found = []
        for kind, command in (
            ("container", ["docker", "ps", "-a", "--format", "{{.Names}}", "--filter", f"label=com.docker.compose.project={PROJECT}"]),
            ("job container", ["docker", "ps", "-a", "--format", "{{.Names}}", "--filter", f"name={PROJECT}-"]),
            ("volume", ["docker", "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}"]),
            ("network", ["docker", "network", "ls", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}"]),
        ):
            found += [f"{kind} {name}" for name in run(command).stdout.split()]
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        found += [f"mount {mount}" for mount in mounts if mount.startswith(str(self.workdir))]
        loops = run(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"]).stdout.splitlines()
        found += [f"loop device {line.strip()}" for line in loops if str(self.workdir) in line]
        if self.workdir.exists():
            found.append(f"folder {self.workdir}")
        return found
