"""Every platform task is declared the same way: keyword ids, a queue, late acks, a time limit where one fits."""

import inspect

from touchstone_site.celery import Queue, app, route_by_declared_queue

EXPECTED = {
    "touchstone.validate_submission": (Queue.INFERENCE, ["submission_id"]),
    "touchstone.run_job": (Queue.INFERENCE, ["job_id"]),
    "touchstone.score_job": (Queue.SCORING, ["job_id"]),
    "touchstone.sweep_states": (Queue.CONTROL, []),
    "touchstone.cleanup": (Queue.CONTROL, []),
    "touchstone.compute_leaderboard": (Queue.DEFAULT, ["phase_id"]),
    "touchstone.build_reference_cache": (Queue.SCORING, ["case_pk"]),
}


def test_every_platform_task_is_routed_to_its_queue_and_takes_named_ids():
    tasks = {name: task for name, task in app.tasks.items() if name.startswith("touchstone.")}
    assert set(tasks) == set(EXPECTED)
    for name, (queue, ids) in EXPECTED.items():
        task = tasks[name]
        assert route_by_declared_queue(name, (), {}, {}, task=task) == {"queue": queue.value}
        assert task.acks_late and task.reject_on_worker_lost
        parameters = inspect.signature(task.run).parameters
        assert list(parameters) == ids
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters.values())


def test_tasks_other_than_the_container_run_have_a_hard_and_an_earlier_soft_time_limit():
    for name, task in app.tasks.items():
        if not name.startswith("touchstone.") or name == "touchstone.run_job":
            continue
        assert task.time_limit and task.soft_time_limit and task.soft_time_limit < task.time_limit, name


def test_a_beat_message_sent_by_name_reaches_the_declared_queue():
    assert route_by_declared_queue("touchstone.score_job", (), {}, {}) == {"queue": "scoring"}
