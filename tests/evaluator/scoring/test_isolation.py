"""Forked children with limits: a crash, a hang or a memory blow-up ends only the child."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from evaluator.scoring.isolation import (
    ChildFailed,
    Limits,
    call_in_child,
    checkpoint,
    limit_memory,
    run_in_children,
)

QUICK = Limits(timeout_s=30.0, memory_bytes=2 * 1024**3)


def test_the_childs_value_comes_back() -> None:
    assert call_in_child(lambda: {"pid": os.getpid(), "sum": 1 + 2}, QUICK)["sum"] == 3
    assert call_in_child(os.getpid, QUICK) != os.getpid()


def test_the_childs_exception_is_raised_here() -> None:
    def fail() -> None:
        raise KeyError("inside the child")

    with pytest.raises(KeyError, match="inside the child"):
        call_in_child(fail, QUICK)


def test_a_child_that_segfaults_is_reported_not_fatal() -> None:
    with pytest.raises(ChildFailed, match="signal") as failure:
        call_in_child(lambda: os.kill(os.getpid(), signal.SIGSEGV), QUICK)
    assert not failure.value.timed_out


def test_a_child_that_hangs_is_killed_at_the_deadline() -> None:
    started = time.monotonic()
    with pytest.raises(ChildFailed) as failure:
        call_in_child(lambda: time.sleep(60), Limits(timeout_s=0.5, memory_bytes=QUICK.memory_bytes))
    assert failure.value.timed_out
    assert time.monotonic() - started < 10


def test_a_child_over_its_memory_limit_fails_alone() -> None:
    with pytest.raises(ChildFailed, match="memory"):
        call_in_child(
            lambda: np.ones(2 * 1024**3, np.uint8).sum(), Limits(timeout_s=30, memory_bytes=256 * 1024**2)
        )


def test_an_unpicklable_result_is_a_failure() -> None:
    with pytest.raises(ChildFailed):
        call_in_child(lambda: lambda: None, QUICK)


def test_many_children_keep_order_and_isolate_failures() -> None:
    def crash() -> int:
        os.abort()

    functions = [lambda i=i: i * i for i in range(7)]
    functions[3] = crash
    outcomes = run_in_children(functions, QUICK, processes=3)
    assert [outcome.value for outcome in outcomes] == [0, 1, 4, None, 16, 25, 36]
    assert isinstance(outcomes[3].error, ChildFailed)


def test_checkpoints_passed_before_a_crash_are_reported() -> None:
    def two_phases_then_crash() -> None:
        checkpoint()
        checkpoint()
        os.kill(os.getpid(), signal.SIGKILL)

    [outcome] = run_in_children([two_phases_then_crash], QUICK, processes=1)
    assert isinstance(outcome.error, ChildFailed) and outcome.checkpoints == 2
    [finished] = run_in_children([lambda: checkpoint() or "done"], QUICK, processes=1)
    assert (finished.value, finished.checkpoints) == ("done", 1)


def test_a_phase_over_its_own_time_limit_is_stopped() -> None:
    def slow_second_phase() -> None:
        checkpoint()
        time.sleep(60)

    limits = Limits(timeout_s=60, memory_bytes=QUICK.memory_bytes, phase_timeouts_s=(None, 0.5))
    started = time.monotonic()
    [outcome] = run_in_children([slow_second_phase], limits, processes=1)
    assert isinstance(outcome.error, ChildFailed) and outcome.error.timed_out and outcome.checkpoints == 1
    assert time.monotonic() - started < 10


def test_a_child_can_tighten_its_memory_limit_for_a_phase() -> None:
    def allocate_in_a_tight_phase() -> int:
        np.ones(256 * 1024**2, np.uint8).sum()  # fine under the child's limit
        limit_memory(64 * 1024**2)
        return int(np.ones(256 * 1024**2, np.uint8).sum())

    with pytest.raises(ChildFailed, match="memory"):
        call_in_child(allocate_in_a_tight_phase, Limits(timeout_s=30, memory_bytes=1024**3))


def test_checkpoint_and_limit_memory_do_nothing_outside_a_child() -> None:
    checkpoint()
    limit_memory(1)
    assert np.ones(10**6, np.uint8).sum() == 10**6
