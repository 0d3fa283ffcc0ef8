"""Reads a team's `docker save` tar before Docker sees it, and rewrites it so `docker load` applies no tag.

One image, linux/amd64, an ENTRYPOINT or CMD, within the layer and size caps; every layer is
decompressed as a stream (nothing is written to disk) so a compression bomb is refused at the cap.
The image is known only by its config digest. No Django and no Docker here: plain values in and out.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import json
import lzma
import re
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

# Platform-owned namespace: a team can never choose a tag (its tar's own tags are removed before loading).
SUBMISSION_REPOSITORY = "touchstone-submission"
# Metadata files are small; anything bigger is not what `docker save` writes.
MAX_MANIFEST_BYTES = 1 << 20
MAX_CONFIG_BYTES = 8 << 20
CHUNK_BYTES = 1 << 20
# Name annotations an OCI index may carry; `docker load` with the containerd store tags from them.
_NAME_ANNOTATIONS = ("io.containerd.image.name", "org.opencontainers.image.ref.name")
_ADVICE = "Upload the unchanged output of `docker save IMAGE:TAG` for one image."


class ImageRefused(Exception):
    """The upload is not an image the platform accepts; the message says what is wrong and what to change."""


@dataclass(frozen=True)
class ImageLimits:
    """Caps on one image. Defaults match the settings' defaults (TOUCHSTONE_IMAGE_MAX_*)."""

    max_layers: int = 100
    max_compressed_bytes: int = 30 * 2**30
    max_unpacked_bytes: int = 50 * 2**30

    @classmethod
    def uncapped(cls) -> ImageLimits:
        """For re-loading a tar already checked at intake: structure and digests still checked, no caps."""
        return cls(max_layers=2**31, max_compressed_bytes=2**62, max_unpacked_bytes=2**62)


@dataclass(frozen=True)
class CheckedImage:
    config_digest: str  # "sha256:<64 hex>", which is the image id Docker must report
    architecture: str
    os: str
    layers: int
    compressed_bytes: int  # the layer blobs as stored in the tar
    unpacked_bytes: int  # the layers decompressed

    @property
    def image_id(self) -> str:
        return self.config_digest

    @property
    def tag(self) -> str:
        """The tag in the platform namespace: the first 12 hex digits of the config digest."""
        return self.config_digest.removeprefix("sha256:")[:12]


def submission_repository(team_slug: str) -> str:
    """`touchstone-submission/<team>`: a valid Docker repository name made from the team's slug."""
    name = re.sub(r"[^a-z0-9]+", "-", team_slug.lower()).strip("-") or "team"
    return f"{SUBMISSION_REPOSITORY}/{name[:100]}"


def human_size(n: int) -> str:
    """Bytes for a person: GiB from 1 GiB up, MiB below."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


# --- reading the tar ------------------------------------------------------------------------------
def _normal(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/")


def _members(tar: tarfile.TarFile, max_members: int) -> dict[str, tarfile.TarInfo]:
    members: dict[str, tarfile.TarInfo] = {}
    try:
        for member in tar:
            if len(members) >= max_members:
                raise ImageRefused(f"The upload holds more than {max_members} files; a `docker save` tar of one "
                                   f"image within the layer cap holds far fewer. {_ADVICE}")
            if not (member.isreg() or member.isdir() or member.issym()):
                raise ImageRefused(f"The upload holds '{member.name[:100]}', which is neither a file, a folder nor "
                                   f"a symbolic link. {_ADVICE}")
            name = _normal(member.name)
            if name in members:
                raise ImageRefused(f"The upload holds '{name[:100]}' twice. {_ADVICE}")
            members[name] = member
    except tarfile.TarError as error:
        raise ImageRefused(f"The upload is not a complete tar archive ({error}). {_ADVICE}") from None
    return members


def _resolve(members: dict[str, tarfile.TarInfo], name: str, what: str) -> tarfile.TarInfo:
    """The regular file `name` names inside the tar, following at most a few symbolic links inside it."""
    current = _normal(name)
    for _ in range(8):
        member = members.get(current)
        if member is None:
            break
        if member.isreg():
            return member
        if not member.issym():
            break
        parts: list[str] = current.split("/")[:-1]
        for part in member.linkname.split("/"):
            if part == "..":
                if not parts:
                    raise ImageRefused(f"The {what} '{name[:100]}' links outside the tar. {_ADVICE}")
                parts.pop()
            elif part not in ("", "."):
                parts.append(part)
        current = "/".join(parts)
    raise ImageRefused(f"The manifest names the {what} '{name[:100]}', which is not a file in the tar. {_ADVICE}")


def _read_json(tar: tarfile.TarFile, member: tarfile.TarInfo, what: str, max_bytes: int) -> tuple[bytes, object]:
    if member.size > max_bytes:
        raise ImageRefused(f"The {what} is {human_size(member.size)}; `docker save` writes less than "
                           f"{human_size(max_bytes)}. {_ADVICE}")
    handle = tar.extractfile(member)
    assert handle is not None  # a regular file
    raw = handle.read()
    try:
        return raw, json.loads(raw)
    except (UnicodeDecodeError, ValueError) as error:
        raise ImageRefused(f"The {what} is not valid JSON ({error}). {_ADVICE}") from None


def _manifest_entry(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo]) -> tuple[str, list[str]]:
    if "manifest.json" not in members:
        raise ImageRefused(f"The tar has no manifest.json, so it is not the output of `docker save`. {_ADVICE}")
    _, manifest = _read_json(tar, _resolve(members, "manifest.json", "manifest"), "manifest.json", MAX_MANIFEST_BYTES)
    if not isinstance(manifest, list) or not manifest:
        raise ImageRefused(f"manifest.json does not list an image. {_ADVICE}")
    if len(manifest) != 1:
        raise ImageRefused(f"The upload holds {len(manifest)} images; the platform takes exactly one. "
                           "Save one image: `docker save IMAGE:TAG` with a single name.")
    entry = manifest[0]
    config = entry.get("Config") if isinstance(entry, dict) else None
    layers = entry.get("Layers") if isinstance(entry, dict) else None
    if not isinstance(config, str) or not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
        raise ImageRefused(f"manifest.json lacks a Config file name or a Layers list. {_ADVICE}")
    return config, layers


def _check_config(config: object, layer_count: int) -> tuple[str, str]:
    if not isinstance(config, dict):
        raise ImageRefused(f"The image config is not a JSON object. {_ADVICE}")
    architecture, os_name = config.get("architecture"), config.get("os")
    if architecture != "amd64" or os_name != "linux":
        raise ImageRefused(f"The image is {os_name}/{architecture}; the platform runs linux/amd64 only. "
                           "Build it with `docker build --platform linux/amd64` and save it again.")
    run = config.get("config")
    if not isinstance(run, dict):
        run = {}
    if not run.get("Entrypoint") and not run.get("Cmd"):
        raise ImageRefused("The image has neither ENTRYPOINT nor CMD, so the platform would not know what to run. "
                           'Add one to the Dockerfile, e.g. ENTRYPOINT ["python", "/app/predict.py"].')
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or len(diff_ids) != layer_count:
        raise ImageRefused(f"The image config lists {len(diff_ids) if isinstance(diff_ids, list) else 'no'} layer "
                           f"digests but the manifest {layer_count} layers: the tar is damaged. {_ADVICE}")
    return architecture, os_name


def check_image_tar(path: Path, limits: ImageLimits) -> CheckedImage:
    """Check a `docker save` tar without Docker; raise ImageRefused with advice, or return its facts."""
    with open(path, "rb") as raw:
        magic = raw.read(4)
    if magic[:2] == b"\x1f\x8b" or magic == b"\x28\xb5\x2f\xfd":
        raise ImageRefused("The upload is compressed. Upload the plain tar that `docker save IMAGE:TAG` writes.")
    try:
        tar = tarfile.open(path, mode="r:")
    except tarfile.TarError:
        raise ImageRefused(f"The upload is not a tar archive. {_ADVICE}") from None
    with tar:
        members = _members(tar, max_members=4 * min(limits.max_layers, 10_000) + 64)
        config_name, layer_names = _manifest_entry(tar, members)
        config_member = _resolve(members, config_name, "image config")
        config_raw, config = _read_json(tar, config_member, "image config", MAX_CONFIG_BYTES)
        if not layer_names:
            raise ImageRefused(f"The image has no layers, so it holds no program to run. {_ADVICE}")
        if len(layer_names) > limits.max_layers:
            raise ImageRefused(f"The image has {len(layer_names)} layers; the limit is {limits.max_layers}. "
                               "Combine RUN steps in the Dockerfile or squash the image, then save it again.")
        architecture, os_name = _check_config(config, len(layer_names))
        layers = [_resolve(members, name, "layer") for name in layer_names]
        compressed = sum(layer.size for layer in layers)
        if compressed > limits.max_compressed_bytes:
            raise ImageRefused(f"The image's layers take {human_size(compressed)}; the limit is "
                               f"{human_size(limits.max_compressed_bytes)}. Make the image smaller (fewer files, "
                               "a slimmer base image) and save it again.")
        assert isinstance(config, dict)  # checked by _check_config
        unpacked = 0
        for index, (layer, diff_id) in enumerate(zip(layers, config["rootfs"]["diff_ids"], strict=True)):
            digest, unpacked = _unpack_layer(tar, layer, index, unpacked, limits.max_unpacked_bytes)
            if digest != diff_id:
                raise ImageRefused(f"Layer {index + 1} of the tar does not match the digest in the image config: "
                                   f"the tar is damaged. {_ADVICE}")
    return CheckedImage(
        config_digest=f"sha256:{hashlib.sha256(config_raw).hexdigest()}",
        architecture=architecture,
        os=os_name,
        layers=len(layers),
        compressed_bytes=compressed,
        unpacked_bytes=unpacked,
    )


# --- layers, decompressed as streams --------------------------------------------------------------
def _unpack_layer(
    tar: tarfile.TarFile, layer: tarfile.TarInfo, index: int, unpacked: int, max_unpacked: int
) -> tuple[str, int]:
    """Stream one layer through its decompressor, counting bytes; refuse as soon as the total passes the cap."""
    handle = tar.extractfile(layer)
    assert handle is not None
    magic = handle.read(6)
    handle.seek(0)
    digest = hashlib.sha256()
    try:
        with contextlib.closing(_decompressed(handle, magic, index)) as chunks:  # closing stops a zstd process
            for chunk in chunks:
                unpacked += len(chunk)
                if unpacked > max_unpacked:
                    raise ImageRefused(
                        f"The image unpacks to more than {human_size(max_unpacked)} (the limit) by layer "
                        f"{index + 1}. Make the image smaller (fewer files, a slimmer base image)."
                    )
                digest.update(chunk)
    except (OSError, EOFError, lzma.LZMAError, ValueError) as error:
        raise ImageRefused(f"Layer {index + 1} cannot be decompressed ({error}): the tar is damaged. {_ADVICE}") from None
    return f"sha256:{digest.hexdigest()}", unpacked


def _decompressed(handle: IO[bytes], magic: bytes, index: int) -> Generator[bytes, None, None]:
    """Yield a layer's decompressed bytes a chunk at a time (gzip, zstd, bzip2, xz or plain, as Docker reads)."""
    opener: Callable[[IO[bytes]], IO[bytes]] | None = None
    if magic.startswith(b"\x1f\x8b"):
        opener = _gzip_open  # every member of a multi-member stream, as Go's reader does
    elif magic.startswith(b"BZh"):
        opener = bz2.BZ2File
    elif magic.startswith(b"\xfd7zXZ\x00"):
        opener = lzma.LZMAFile
    elif magic.startswith(b"\x28\xb5\x2f\xfd"):
        yield from _zstd_decompressed(handle, index)
        return
    stream = opener(handle) if opener else handle
    while chunk := stream.read(CHUNK_BYTES):
        yield chunk


def _gzip_open(handle: IO[bytes]) -> IO[bytes]:
    return cast(IO[bytes], gzip.GzipFile(fileobj=handle, mode="rb"))


def _zstd_decompressed(handle: IO[bytes], index: int) -> Generator[bytes, None, None]:
    """zstd has no decoder in the standard library: stream through the `zstd` tool, stopped when we stop reading."""
    binary = shutil.which("zstd")
    if binary is None:
        raise ImageRefused(f"Layer {index + 1} is zstd-compressed, which this platform cannot read. "
                           "Save the image with `docker save` (uncompressed layers) or use gzip layers.")
    process = subprocess.Popen([binary, "-d", "-c", "-q"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
    assert process.stdin is not None and process.stdout is not None
    stdin = process.stdin

    def feed() -> None:
        try:
            while chunk := handle.read(CHUNK_BYTES):
                stdin.write(chunk)
        except OSError:  # zstd stopped reading: it failed, or we stopped it at the cap
            pass
        finally:
            try:
                stdin.close()
            except OSError:
                pass

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        while chunk := process.stdout.read(CHUNK_BYTES):
            yield chunk
        if process.wait() != 0:
            raise ImageRefused(f"Layer {index + 1} is not valid zstd: the tar is damaged. {_ADVICE}")
    finally:
        if process.poll() is None:
            process.kill()
        process.stdout.close()
        process.wait()
        feeder.join()


# --- the tar Docker sees --------------------------------------------------------------------------
def _untagged_metadata(name: str, raw: bytes) -> bytes | None:
    """manifest.json and index.json without names; None for files that only carry names (`repositories`)."""
    if name == "repositories":
        return None
    try:
        data = json.loads(raw)
    except ValueError:  # an index.json Docker's own store does not need; manifest.json was checked
        return None
    if name == "manifest.json":
        for entry in data:
            entry["RepoTags"] = None
    elif name == "index.json" and isinstance(data, dict):
        for descriptor in data.get("manifests") or []:
            annotations = descriptor.get("annotations") if isinstance(descriptor, dict) else None
            if isinstance(annotations, dict):
                for key in _NAME_ANNOTATIONS:
                    annotations.pop(key, None)
    return json.dumps(data).encode()


def untagged_tar_stream(path: Path) -> Iterator[bytes]:
    """The tar at `path`, re-streamed with every image name removed, so `docker load` applies no tag.

    Layers are copied a chunk at a time, never held whole in memory. Call only on a tar that
    `check_image_tar` accepted (its manifest is then known to be valid JSON).
    """
    with tarfile.open(path, mode="r:") as tar:
        for member in tar:
            name = _normal(member.name)
            replacement: bytes | None = None
            if member.isreg() and name in ("manifest.json", "index.json", "repositories"):
                handle = tar.extractfile(member)
                assert handle is not None
                replacement = _untagged_metadata(name, handle.read(MAX_MANIFEST_BYTES + 1))
                if replacement is None:
                    continue
                member = _copy_info(member, size=len(replacement))
            yield member.tobuf(format=tarfile.PAX_FORMAT)
            if not member.isreg():
                continue
            if replacement is not None:
                yield replacement
            else:
                handle = tar.extractfile(member)
                assert handle is not None
                while chunk := handle.read(CHUNK_BYTES):
                    yield chunk
            if member.size % tarfile.BLOCKSIZE:
                yield b"\0" * (tarfile.BLOCKSIZE - member.size % tarfile.BLOCKSIZE)
        yield b"\0" * (2 * tarfile.BLOCKSIZE)


def _copy_info(member: tarfile.TarInfo, *, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(member.name)
    info.size, info.mode, info.mtime, info.type = size, member.mode, member.mtime, tarfile.REGTYPE
    return info
