"""Image intake without side effects: a team's tar is read before Docker sees it, loaded with its tags removed,
known only by its config digest, and refused (with advice, leaving nothing in Docker) when hostile.

Personas: alice's team uploads a good image; mallory's team uploads tars built to hijack tags, fill the disk or
confuse the platform.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

import pytest

from submissions import image_check, intake
from submissions.image_check import ImageLimits
from submissions.models import AlgorithmImage, Submission
from submissions.sandbox import ImageRejected, PlatformError, SandboxRunner
from teams import services as team_services
from tests.conftest import unavailable
from tests.factories import AlgorithmImageFactory, CaseFactory, PhaseFactory, SubmissionFactory, TeamFactory
from tests.submissions import hostile_images as hostile

PLATFORM_TAGS = ("touchstone/base:latest", "touchstone-algo/baseline:latest")
TEST_LIMITS = ImageLimits(max_layers=100, max_compressed_bytes=1 << 30, max_unpacked_bytes=32 << 20)


@pytest.fixture(scope="session")
def good_save(docker_client, tmp_path_factory) -> hostile.SavedTar:
    if not hostile.BUSYBOX.exists():
        unavailable("/bin/busybox is missing: apt-get install busybox-static")
    path = hostile.busybox_save(docker_client, tmp_path_factory.mktemp("images") / "busybox.tar")
    return hostile.SavedTar.read(path)


@pytest.fixture
def remove_after(docker_client):
    """Image ids a test loaded, removed at its end (the engine is shared by the whole suite)."""
    ids: list[str] = []
    yield ids
    for image_id in ids:
        try:
            docker_client.images.remove(image_id, force=True)
        except Exception:  # noqa: BLE001 - already gone
            pass


@pytest.fixture
def platform_tags(docker_client):
    """The platform's tags and the ids they point at; put back if a broken intake ever re-points them."""
    tags = list(PLATFORM_TAGS) + [t for t in docker_client.images.get("touchstone/base:latest").tags
                                  if t not in PLATFORM_TAGS]
    before = {tag: docker_client.images.get(tag).id for tag in tags}
    yield before
    for tag, image_id in before.items():
        if docker_client.images.get(tag).id != image_id:
            repository, _, name = tag.rpartition(":")
            docker_client.images.get(image_id).tag(repository, tag=name)


def all_image_ids(docker_client) -> set[str]:
    return {image.id for image in docker_client.images.list(all=True)}


def untagged_images_since(docker_client, before: set[str]) -> set[str]:
    """Images that appeared since `before` with no tag: what a refused tar loaded with its tags removed would
    leave. Tagged newcomers are other tests' platform loads (always tagged), running at the same time."""
    return {i for i in all_image_ids(docker_client) - before if not docker_client.images.get(i).tags}


@pytest.mark.integration
def test_a_good_tar_loads_untagged_and_is_known_by_its_config_digest(good_save, docker_client, tmp_path,
                                                                       remove_after):
    tar = good_save.write(tmp_path / "alice.tar")
    assert good_save.manifest[0]["RepoTags"] == ["touchstone-test/busybox:latest"]
    assert good_save.config_digest not in all_image_ids(docker_client)  # really loaded, not found
    image_id = SandboxRunner(docker_client).load_image(tar, repository="touchstone-submission/alice")
    remove_after.append(image_id)
    assert image_id == good_save.config_digest
    image = docker_client.images.get(image_id)
    assert image.id == good_save.config_digest
    assert image.tags == [f"touchstone-submission/alice:{good_save.config_digest[7:19]}"]
    assert not docker_client.images.list(name="touchstone-test/busybox")  # the tar's own tag was not applied


@pytest.mark.integration
def test_a_tar_tagged_with_platform_names_cannot_repoint_them(good_save, docker_client, tmp_path, settings,
                                                              platform_tags, remove_after, db):
    settings.DATA_ROOT = tmp_path
    (tmp_path / "images").mkdir()
    hostile.retagged(good_save, list(platform_tags)).write(tmp_path / "images" / "mallory.tar")
    mallory = TeamFactory(slug="Mallory_Labs")
    phase = PhaseFactory()
    phase.cases.add(CaseFactory(site__benchmark=phase.benchmark))
    submission = SubmissionFactory(team=mallory, phase=phase,
                                   image=AlgorithmImageFactory(team=mallory, tar_path="images/mallory.tar"))

    intake.submission_validate(submission_id=submission.pk, runner_override=SandboxRunner(docker_client))
    remove_after.append(good_save.config_digest)

    assert {tag: docker_client.images.get(tag).id for tag in platform_tags} == platform_tags
    image = AlgorithmImage.objects.get(pk=submission.image_id)
    assert image.state == AlgorithmImage.State.READY, image.error
    assert image.docker_image_id == good_save.config_digest
    assert docker_client.images.get(image.docker_image_id).tags == [
        f"touchstone-submission/mallory-labs:{good_save.config_digest[7:19]}"
    ]
    assert Submission.objects.get(pk=submission.pk).state == Submission.State.QUEUED


HOSTILE = {
    "two images": (hostile.two_images, "holds 2 images; the platform takes exactly one"),
    "arm64": (hostile.for_architecture, r"linux/arm64; the platform runs linux/amd64 only.*--platform linux/amd64"),
    "no command": (hostile.without_command, "neither ENTRYPOINT nor CMD.*Add one to the Dockerfile"),
    "too many layers": (lambda s: hostile.with_layer_count(s, 101), "101 layers; the limit is 100.*squash"),
    "corrupt manifest": (hostile.corrupt_manifest, "manifest.json is not valid JSON.*docker save"),
    "gzip layer bomb": (lambda s: hostile.layer_bomb(s, 256 << 20), r"unpacks to more than 32.0 MiB \(the limit\)"),
    "zstd layer bomb": (lambda s: hostile.layer_bomb(s, 256 << 20, compression="zstd"), "more than 32.0 MiB"),
    "damaged layer": (lambda s: hostile.with_extra_layer(s, b"\0" * 2048, "sha256:" + "0" * 64),
                      "Layer 2 of the tar does not match the digest"),
}


@pytest.mark.integration
@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_tars_are_refused_with_advice_and_leave_nothing_in_docker(case, good_save, docker_client, tmp_path):
    build, message = HOSTILE[case]
    tar = build(good_save).write(tmp_path / "mallory.tar")
    before = all_image_ids(docker_client)
    with pytest.raises(ImageRejected, match=message):
        SandboxRunner(docker_client).load_image(tar, limits=TEST_LIMITS)
    assert untagged_images_since(docker_client, before) == set()


def layer_store(docker_client) -> set[str]:
    """The engine's registered layers (chain ids): a layer loaded and left dangling shows up here."""
    info = docker_client.info()
    layerdb = Path(info["DockerRootDir"]) / "image" / info["Driver"] / "layerdb" / "sha256"
    if not layerdb.is_dir():
        unavailable(f"cannot read Docker's layer store at {layerdb}")
    return {entry.name for entry in layerdb.iterdir()}


@pytest.mark.integration
def test_a_tar_docker_itself_refuses_leaves_no_image_and_no_layer(good_save, docker_client, tmp_path):
    """The busybox layer is good and new to the engine; the second layer is not a tar, which only Docker sees."""
    junk = b"this layer is not a tar archive\n" * 64
    tar = hostile.with_extra_layer(good_save, junk, "sha256:" + hashlib.sha256(junk).hexdigest())
    path = tar.write(tmp_path / "mallory.tar")
    assert image_check.check_image_tar(path, TEST_LIMITS).layers == 2  # our reading accepts it
    images_before, layers_before = all_image_ids(docker_client), layer_store(docker_client)
    with pytest.raises(ImageRejected, match="Docker could not load the image's layers.*docker save"):
        SandboxRunner(docker_client).load_image(path)
    assert all_image_ids(docker_client) == images_before
    assert layer_store(docker_client) == layers_before


@pytest.mark.integration
@pytest.mark.parametrize(
    ("upload", "message"),
    [
        (hostile.NOT_A_TAR, "not a tar archive.*docker save"),
        (b"\x1f\x8b\x08\x00" + b"\0" * 64, "is compressed. Upload the plain tar"),
        (b"", "not a tar archive"),
    ],
    ids=["picture", "gzipped tar", "empty"],
)
def test_uploads_that_are_not_a_docker_save_tar_are_refused(upload, message, docker_client, tmp_path):
    tar = tmp_path / "upload.tar"
    tar.write_bytes(upload)
    before = all_image_ids(docker_client)
    with pytest.raises(ImageRejected, match=message):
        SandboxRunner(docker_client).load_image(tar)
    assert all_image_ids(docker_client) == before


@pytest.mark.integration
def test_a_layer_bomb_fails_the_submission_without_filling_the_disk(good_save, docker_client, tmp_path, settings,
                                                                     db):
    """2 GiB of zeros in 2 MB of gzip; the settings' cap (64 MiB here) stops it while streaming, on no disk."""
    settings.DATA_ROOT = tmp_path
    settings.IMAGE_MAX_UNPACKED_BYTES = 64 << 20
    (tmp_path / "images").mkdir()
    tar = hostile.layer_bomb(good_save, 2 << 30).write(tmp_path / "images" / "bomb.tar")
    assert tar.stat().st_size < 8 << 20
    mallory = TeamFactory(slug="mallory")
    submission = SubmissionFactory(team=mallory, image=AlgorithmImageFactory(team=mallory, tar_path="images/bomb.tar"))
    docker_root = docker_client.info()["DockerRootDir"]
    free_before = shutil.disk_usage(docker_root).free, shutil.disk_usage(tmp_path).free
    before = all_image_ids(docker_client)

    intake.submission_validate(submission_id=submission.pk, runner_override=SandboxRunner(docker_client))

    submission.refresh_from_db()
    assert submission.state == Submission.State.FAILED
    assert "The image was refused: The image unpacks to more than 64.0 MiB" in submission.failure_reason
    assert AlgorithmImage.objects.get(pk=submission.image_id).state == AlgorithmImage.State.INVALID
    assert all_image_ids(docker_client) == before
    free_after = shutil.disk_usage(docker_root).free, shutil.disk_usage(tmp_path).free
    assert all(b - a < 1 << 30 for b, a in zip(free_before, free_after, strict=True)), (free_before, free_after)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["bomb.tar", "images"]


@pytest.mark.integration
def test_ensure_image_reloads_a_missing_image_untagged_and_checks_its_digest(good_save, docker_client, tmp_path,
                                                                               remove_after):
    tar = hostile.retagged(good_save, ["touchstone/base:latest"]).write(tmp_path / "alice.tar")
    runner = SandboxRunner(docker_client)
    before = docker_client.images.get("touchstone/base:latest").id
    runner.ensure_image(good_save.config_digest, tar, repository="touchstone-submission/alice")
    remove_after.append(good_save.config_digest)
    assert docker_client.images.get(good_save.config_digest).tags == [
        f"touchstone-submission/alice:{good_save.config_digest[7:19]}"
    ]
    assert docker_client.images.get("touchstone/base:latest").id == before
    other = good_save.with_config({**good_save.config, "created": "2002-02-02T00:00:00Z"})  # another digest
    with pytest.raises(PlatformError, match="not the validated image"):
        runner.ensure_image("sha256:" + "1" * 64, other.write(tmp_path / "other.tar"))
    remove_after.append(other.config_digest)


def test_zstd_and_gzip_layers_are_unpacked_and_counted_like_docker_reads_them(tmp_path):
    if shutil.which("zstd") is None:
        unavailable("the zstd tool is missing: apt-get install zstd")
    layer = hostile.busybox_rootfs_tar()
    base = hostile.SavedTar(
        {"manifest.json": b'[{"Config": "c.json", "Layers": []}]',
         "c.json": b'{"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]}, '
                   b'"rootfs": {"type": "layers", "diff_ids": []}}'}
    )
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    image = hostile.with_extra_layer(base, gzip.compress(layer), diff_id)
    image = hostile.zstd_layers(hostile.with_extra_layer(image, layer, diff_id))  # both layers now zstd
    image = hostile.with_extra_layer(image, gzip.compress(layer), diff_id)
    checked = image_check.check_image_tar(image.write(tmp_path / "image.tar"), ImageLimits())
    assert checked.layers == 3
    assert checked.unpacked_bytes == 3 * len(layer)
    assert checked.compressed_bytes < checked.unpacked_bytes
    assert checked.config_digest == image.config_digest


@pytest.mark.django_db
@pytest.mark.parametrize("refusal", ["closed phase", "quota used", "too large"])
def test_a_closed_phase_used_quota_or_oversized_upload_is_refused_before_the_body_is_stored(
    refusal, client, settings, tmp_path
):
    settings.DATA_ROOT = tmp_path
    settings.MAX_IMAGE_UPLOAD_BYTES = 1 << 20
    alice = TeamFactory(slug="alice")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {team_services.token_issue(team=alice)}"}
    phase = PhaseFactory(is_open=refusal != "closed phase", submissions_per_day=1)
    if refusal == "quota used":
        SubmissionFactory(team=alice, phase=phase)
    body = b"\0" * (2 << 20 if refusal == "too large" else 10_000)
    response = client.generic("POST", f"/api/v1/phases/{phase.slug}/submissions/", body,
                              content_type="application/x-tar", HTTP_X_TOUCHSTONE_ALGORITHM="unet", **headers)
    assert response.status_code == 400
    expected = {"closed phase": "is closed for submissions", "quota used": "has used its 1 submissions",
                "too large": "The image is 2.0 MiB; the limit is 1.0 MiB"}[refusal]
    assert expected in response.json()["detail"]
    assert not list(Path(tmp_path).rglob("*"))  # nothing under DATA_ROOT/images, not even a partial file
    assert AlgorithmImage.objects.filter(team=alice).count() == (1 if refusal == "quota used" else 0)
