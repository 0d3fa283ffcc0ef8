"""Hostile `docker save` tars for tests, built offline from a static busybox and rewritten in Python.

`busybox_save` makes one real, good tar (docker import + docker save, then the image is removed from
the engine, so loading the tar really loads). Every other builder takes that tar's contents
(`SavedTar`) and returns a changed copy; `SavedTar.write` puts it on disk. Reused by other tests.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

BUSYBOX = Path("/bin/busybox")  # apt-get install busybox-static
COMMAND = ["/bin/busybox", "true"]


@dataclass
class SavedTar:
    """A `docker save` tar held in memory: its files by name, the manifest and the image config."""

    files: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> SavedTar:
        with tarfile.open(path) as tar:
            return cls({m.name: tar.extractfile(m).read() for m in tar if m.isreg()})  # type: ignore[union-attr]

    @property
    def manifest(self) -> list[dict]:
        return json.loads(self.files["manifest.json"])

    @property
    def config(self) -> dict:
        return json.loads(self.files[self.manifest[0]["Config"]])

    @property
    def config_digest(self) -> str:
        """The image id Docker must report: sha256 of the config blob."""
        return "sha256:" + hashlib.sha256(self.files[self.manifest[0]["Config"]]).hexdigest()

    def write(self, path: Path) -> Path:
        with tarfile.open(path, "w") as tar:
            for name, data in self.files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return path

    def with_manifest(self, manifest: list[dict]) -> SavedTar:
        return SavedTar({**self.files, "manifest.json": json.dumps(manifest).encode()})

    def with_config(self, config: dict) -> SavedTar:
        """A copy whose config is `config`, stored under its own digest as `docker save` names it."""
        raw = json.dumps(config).encode()
        name = hashlib.sha256(raw).hexdigest() + ".json"
        files = {k: v for k, v in self.files.items() if k != self.manifest[0]["Config"]}
        manifest = self.manifest
        manifest[0]["Config"] = name
        return SavedTar({**files, name: raw}).with_manifest(manifest)


# --- the good image -------------------------------------------------------------------------------
def busybox_rootfs_tar() -> bytes:
    """A root filesystem with only /bin/busybox (static) and /bin/sh linking to it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(BUSYBOX, arcname="bin/busybox")
        link = tarfile.TarInfo("bin/sh")
        link.type, link.linkname = tarfile.SYMTYPE, "busybox"
        tar.addfile(link)
    return buffer.getvalue()


def busybox_save(docker_client, path: Path, *, repository: str = "touchstone-test/busybox") -> Path:
    """A real `docker save` tar of a busybox image with CMD; the image is removed from the engine after."""
    return imported_save(docker_client, busybox_rootfs_tar(), path, repository=repository,
                         changes=[f"CMD {json.dumps(COMMAND)}"])


def imported_save(docker_client, rootfs: bytes, path: Path, *, repository: str, changes: list[str]) -> Path:
    """`docker import` a root filesystem tar with Dockerfile `changes`, `docker save` it to `path`, and remove
    the image from the engine again: the tar is what a team would upload."""
    docker_client.api.import_image_from_data(rootfs, repository=repository, tag="latest", changes=changes)
    image = docker_client.images.get(f"{repository}:latest")
    with open(path, "wb") as handle:
        for chunk in image.save(named=True):
            handle.write(chunk)
    docker_client.images.remove(image.id, force=True)
    return path


# --- hostile variants -----------------------------------------------------------------------------
def retagged(saved: SavedTar, tags: list[str]) -> SavedTar:
    """The same image, its tar naming `tags` (in manifest.json and in the legacy `repositories` file)."""
    manifest = saved.manifest
    manifest[0]["RepoTags"] = tags
    repositories: dict[str, dict[str, str]] = {}
    top_layer = manifest[0]["Layers"][-1].split("/")[0]
    for tag in tags:
        repo, _, name = tag.rpartition(":")
        repositories.setdefault(repo, {})[name] = top_layer
    result = saved.with_manifest(manifest)
    result.files["repositories"] = json.dumps(repositories).encode()
    return result


def for_architecture(saved: SavedTar, architecture: str = "arm64") -> SavedTar:
    return saved.with_config({**saved.config, "architecture": architecture})


def without_command(saved: SavedTar) -> SavedTar:
    config = copy.deepcopy(saved.config)
    config["config"]["Cmd"] = None
    config["config"]["Entrypoint"] = None
    return saved.with_config(config)


def with_layer_count(saved: SavedTar, count: int) -> SavedTar:
    """The one busybox layer listed `count` times (a valid image of `count` layers)."""
    config = copy.deepcopy(saved.config)
    config["rootfs"]["diff_ids"] = config["rootfs"]["diff_ids"][:1] * count
    result = saved.with_config(config)
    manifest = result.manifest
    manifest[0]["Layers"] = manifest[0]["Layers"][:1] * count
    return result.with_manifest(manifest)


def two_images(saved: SavedTar) -> SavedTar:
    """One tar, two images (the busybox image and a copy with another creation date)."""
    second = {**saved.config, "created": "2001-01-01T00:00:00Z"}
    raw = json.dumps(second).encode()
    name = hashlib.sha256(raw).hexdigest() + ".json"
    manifest = saved.manifest
    manifest.append({**manifest[0], "Config": name, "RepoTags": ["touchstone-test/second:latest"]})
    result = saved.with_manifest(manifest)
    result.files[name] = raw
    return result


def corrupt_manifest(saved: SavedTar) -> SavedTar:
    return SavedTar({**saved.files, "manifest.json": saved.files["manifest.json"][:-7]})


def _bomb_stream(unpacked_bytes: int, block_bytes: int = 16 << 20) -> Iterator[bytes]:
    """The decompressed layer: a tar holding one file of `unpacked_bytes` zeros, yielded in blocks."""
    header = tarfile.TarInfo("zeros")
    header.size = unpacked_bytes
    yield header.tobuf(format=tarfile.USTAR_FORMAT)
    left = unpacked_bytes
    while left:
        step = min(left, block_bytes)
        yield bytes(step)
        left -= step
    yield bytes(-unpacked_bytes % tarfile.BLOCKSIZE + 2 * tarfile.BLOCKSIZE)


def layer_bomb(saved: SavedTar, unpacked_bytes: int = 2 << 30, *, compression: str = "gzip") -> SavedTar:
    """The busybox image plus a layer that unpacks to `unpacked_bytes` (a file of zeros), ~1000x smaller.

    gzip: a multi-member stream (one compressed 16 MiB block, repeated), as Docker reads it; zstd: through
    the `zstd` tool. The diff_id is right, so only the unpacked-size cap can refuse it.
    """
    block = 16 << 20
    digest = hashlib.sha256()
    if compression == "gzip":
        compressed_block, parts = gzip.compress(bytes(block), compresslevel=9), []
        for chunk in _bomb_stream(unpacked_bytes, block):
            digest.update(chunk)
            parts.append(compressed_block if len(chunk) == block else gzip.compress(chunk))
        layer = b"".join(parts)
    elif compression == "zstd":
        compressed: list[bytes] = []
        with subprocess.Popen(["zstd", "-c", "-q"], stdin=subprocess.PIPE, stdout=subprocess.PIPE) as zstd:
            reader = threading.Thread(target=lambda: compressed.append(zstd.stdout.read()))  # type: ignore[union-attr]
            reader.start()
            for chunk in _bomb_stream(unpacked_bytes, block):
                digest.update(chunk)
                zstd.stdin.write(chunk)  # type: ignore[union-attr]
            zstd.stdin.close()  # type: ignore[union-attr]
            reader.join()
        layer = compressed[0]
    else:
        raise ValueError(f"compression {compression!r}: use gzip or zstd")
    return with_extra_layer(saved, layer, "sha256:" + digest.hexdigest())


def with_extra_layer(saved: SavedTar, layer: bytes, diff_id: str) -> SavedTar:
    """The image with `layer` (stored as given: compressed or not) on top, its diff_id as stated."""
    config = copy.deepcopy(saved.config)
    config["rootfs"]["diff_ids"].append(diff_id)
    result = saved.with_config(config)
    result.files["extra/layer.tar"] = layer
    manifest = result.manifest
    manifest[0]["Layers"].append("extra/layer.tar")
    return result.with_manifest(manifest)


def zstd_layers(saved: SavedTar) -> SavedTar:
    """The same image (same config digest) with every layer zstd-compressed."""
    files = dict(saved.files)
    for name in saved.manifest[0]["Layers"]:
        files[name] = subprocess.run(["zstd", "-c", "-q"], input=files[name], capture_output=True, check=True).stdout
    return SavedTar(files)


NOT_A_TAR = b"\x89PNG\r\n\x1a\n this is a picture of our model, not `docker save` output\n" * 20
