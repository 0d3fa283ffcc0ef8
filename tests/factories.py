"""factory_boy factories for the platform's models (unit tests; integration tests use the real import)."""

import factory

from benchmarks.models import Benchmark, Case, Organ, Phase, Site
from submissions.models import AlgorithmImage, Job, Submission
from teams.models import Team


class BenchmarkFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Benchmark

    slug = factory.Sequence(lambda n: f"bench-{n}")
    name = factory.Sequence(lambda n: f"Benchmark {n}")


class OrganFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organ

    benchmark = factory.SubFactory(BenchmarkFactory)
    label = factory.Sequence(lambda n: n + 1)
    name = factory.Sequence(lambda n: f"organ_{n}")


class SiteFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Site

    benchmark = factory.SubFactory(BenchmarkFactory)
    code = factory.Sequence(lambda n: f"site{n}")
    name = factory.Sequence(lambda n: f"Hospital {n}")


class CaseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Case

    site = factory.SubFactory(SiteFactory)
    benchmark = factory.SelfAttribute("site.benchmark")
    case_id = factory.Sequence(lambda n: f"case{n:04d}")
    image_path = factory.LazyAttribute(lambda o: f"images/{o.case_id}.nii.gz")
    reference_path = factory.LazyAttribute(lambda o: f"labels/{o.case_id}.nii.gz")


class PhaseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Phase

    benchmark = factory.SubFactory(BenchmarkFactory)
    slug = factory.Sequence(lambda n: f"phase-{n}")
    name = "Final"


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team

    slug = factory.Sequence(lambda n: f"team-{n}")
    name = factory.Sequence(lambda n: f"Team {n}")


class AlgorithmImageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AlgorithmImage

    team = factory.SubFactory(TeamFactory)
    sha256 = factory.Sequence(lambda n: f"{n:064x}")
    size_bytes = 1024
    tar_path = factory.LazyAttribute(lambda o: f"images/{o.sha256}.tar")


class SubmissionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Submission

    team = factory.SubFactory(TeamFactory)
    phase = factory.SubFactory(PhaseFactory)
    image = factory.SubFactory(AlgorithmImageFactory, team=factory.SelfAttribute("..team"))
    algorithm = "unet"


class JobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Job

    submission = factory.SubFactory(SubmissionFactory)
    index = factory.Sequence(lambda n: n)
