"""Hostile images for the container run, built offline: a static busybox, one shell script, image settings.

Each `HostileImage` is what a team could upload to attack or break the run: it prints NUL bytes, fills
/output, forks without end, ignores SIGTERM, links to host files... `save_tar` imports its root filesystem
into Docker (`docker import`, no registry), saves it as a `docker save` tar and removes the image again,
so the upload path loads it as a team's image would be.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from evaluator.choices import ExitReason
from tests.submissions.hostile_images import imported_save

BUSYBOX = Path("/bin/busybox")  # apt-get install busybox-static
APPLETS = (
    "sh", "cat", "cp", "dd", "env", "head", "id", "ln", "ls", "mkfifo", "mknod", "nc", "printf", "seq", "sleep",
    "touch", "truncate", "wget", "yes", "true",
)
# Every script starts here: the case ids come from /input/images (busybox has no JSON parser).
PRELUDE = """set -u
copy_outputs() { for f in /input/images/*.nii.gz; do cp "$f" "/output/${f##*/}"; done; }
first_case() { for f in /input/images/*.nii.gz; do echo "${f##*/}"; return; done; }
"""


@dataclass(frozen=True)
class HostileImage:
    name: str
    script: str
    expected: ExitReason
    # Extra `docker import --change` lines (ENTRYPOINT, USER, VOLUME...); CMD runs the script by default.
    changes: tuple[str, ...] = ()
    # Extra root filesystem entries: path → (content, mode); a content of None copies busybox.
    files: dict[str, tuple[bytes | None, int]] = field(default_factory=dict)


def rootfs_tar(image: HostileImage) -> bytes:
    """busybox with its applets linked, /run.sh, and the image's extra files, all owned by root."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        def add(path: str, data: bytes, mode: int) -> None:
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))

        for directory in ("bin", "tmp", "etc"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        busybox = BUSYBOX.read_bytes()
        add("bin/busybox", busybox, 0o755)
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        add("run.sh", (PRELUDE + image.script).encode(), 0o755)
        for path, (content, mode) in image.files.items():
            add(path.lstrip("/"), busybox if content is None else content, mode)
    return buffer.getvalue()


def save_tar(docker_client, image: HostileImage, path: Path) -> Path:
    """A real `docker save` tar of the hostile image; the image is removed from the engine afterwards."""
    repository = f"touchstone-test/hostile-{image.name.replace('_', '-')}"
    changes = ['CMD ["/bin/sh", "/run.sh"]', "ENV PATH=/bin", *image.changes]
    return imported_save(docker_client, rootfs_tar(image), path, repository=repository, changes=changes)


HOSTILE_IMAGES = (
    HostileImage("nul_output", r"printf 'case\000log\000\n\000\000'; copy_outputs", ExitReason.OK),
    HostileImage(
        "invalid_utf8_and_escapes", r"printf 'bad \377\376 bytes \033[2J\033]0;owned\007 \233\n'; exit 3",
        ExitReason.CRASHED,
    ),
    HostileImage(
        "hostile_output_names",
        r"""copy_outputs
        for name in "$(printf 'not\377utf8')" '<script>alert(1)</script>.nii.gz' "$(printf 'esc\033[31mred')" \
                    "$(printf 'line\nbreak')"; do
            touch "/output/$name" || echo "the filesystem refused one name"
        done
        """,
        ExitReason.OK,
    ),
    HostileImage("missing_entrypoint", "", ExitReason.CANNOT_START, changes=('ENTRYPOINT ["/bin/does-not-exist"]',)),
    HostileImage(
        "not_an_executable", "", ExitReason.CANNOT_START, changes=('ENTRYPOINT ["/bin/data"]',),
        files={"bin/data": (b"\x00\x01 this is no program", 0o755)},
    ),
    HostileImage(
        "sixty_four_processes",
        "for i in $(seq 64); do sleep 2 & done; wait; copy_outputs",
        ExitReason.OK,
    ),
    HostileImage("fork_bomb", "bomb() { bomb | bomb & }; bomb; sleep 30", ExitReason.TOO_MANY_PROCESSES),
    HostileImage(
        "declared_volume_fill",
        "dd if=/dev/zero of=/data/fill bs=1M count=2000; copy_outputs",
        ExitReason.OK,
        changes=('VOLUME ["/data"]',),
    ),
    HostileImage(
        "output_fill", "dd if=/dev/zero of=/output/fill bs=1M count=100000 || exit 1; copy_outputs",
        ExitReason.OUTPUT_TOO_LARGE,
    ),
    HostileImage(
        "output_hundred_thousand_files",
        'i=0; while [ $i -lt 100000 ]; do : > "/output/f$i" || exit 1; i=$((i+1)); done; copy_outputs',
        ExitReason.OUTPUT_TOO_LARGE,
    ),
    # /tmp is a tmpfs: under gVisor its pages are the container's memory, so filling it hits the memory limit.
    HostileImage("tmp_fill", "dd if=/dev/zero of=/tmp/fill bs=1M count=100000; exit 1", ExitReason.OUT_OF_MEMORY),
    HostileImage("stdout_flood", "yes 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'",
                 ExitReason.TIMED_OUT),
    HostileImage(
        "network_probe",
        "if wget -q -T 2 -O /tmp/page http://1.1.1.1/ || nc -w 2 10.0.0.1 5432 </dev/null; then exit 9; fi; "
        "copy_outputs",
        ExitReason.OK,
    ),
    HostileImage(
        "setuid_binary",
        'if [ "$(/bin/suid id -u)" = 0 ]; then exit 9; fi; copy_outputs',
        ExitReason.OK,
        files={"bin/suid": (None, 0o4755)},
    ),
    # gVisor lets a node be made in its own tmpfs, but nothing opens it (nodev); the host filesystem refuses it.
    HostileImage(
        "mknod_device",
        "mknod /tmp/mem c 1 1; if head -c 1 /tmp/mem; then exit 9; fi; if mknod /output/zero c 1 5; then exit 9; fi; "
        "copy_outputs",
        ExitReason.OK,
    ),
    HostileImage("memory_hog", "dd if=/dev/zero of=/dev/null bs=1500M count=1; exit 1", ExitReason.OUT_OF_MEMORY),
    HostileImage(
        "child_only_oom",
        "sh -c 'dd if=/dev/zero of=/dev/null bs=1500M count=1'; echo parent carries on; copy_outputs",
        ExitReason.OUT_OF_MEMORY,
    ),
    HostileImage("sigterm_ignored", "trap '' TERM INT; while true; do sleep 1; done", ExitReason.TIMED_OUT),
    HostileImage(
        "sparse_huge_outputs",
        'truncate -s 1T "/output/$(first_case)"; for f in /input/images/*.nii.gz; do '
        'truncate -s 600M "/output/${f##*/}"; done',
        ExitReason.BAD_OUTPUT,
    ),
    HostileImage(
        "symlinks_to_host_files",
        'for f in /input/images/*.nii.gz; do ln -s /etc/shadow "/output/${f##*/}"; done; '
        "ln -s /proc/1/environ /output/environ; ln -s / /output/root",
        ExitReason.BAD_OUTPUT,
    ),
    HostileImage(
        "fifo_outputs", 'for f in /input/images/*.nii.gz; do mkfifo "/output/${f##*/}"; done', ExitReason.BAD_OUTPUT
    ),
    HostileImage(
        "environment_read",
        "env; cat /proc/self/environ /proc/1/environ /etc/hostname /etc/hosts /etc/resolv.conf; ls -la /input /; exit 4",
        ExitReason.CRASHED,
    ),
    HostileImage(
        "root_user", 'if [ "$(id -u)" = 0 ]; then exit 9; fi; copy_outputs', ExitReason.OK, changes=("USER root",)
    ),
)


def manifest_of(images=HOSTILE_IMAGES) -> str:
    """The images and their expected outcomes, for a failure message."""
    return json.dumps({image.name: str(image.expected) for image in images}, indent=1)
