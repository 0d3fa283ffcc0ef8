from django.apps import AppConfig


class SubmissionsConfig(AppConfig):
    name = "submissions"

    def ready(self) -> None:
        from submissions import tasks  # noqa: F401 - registers the tasks in every process, web included
