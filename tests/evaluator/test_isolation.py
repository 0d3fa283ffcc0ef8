"""Forked children with limits: a crash, a hang or a memory blow-up ends only the child."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from evaluator.isolation import (
    ChildFailed,
    ChildProcess,
    Limits,
    call_in_child,
    run_in_children,
    shared_array,
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


def test_children_write_into_shared_memory() -> None:
    shared = shared_array((4, 5, 6), np.dtype(np.uint16))

    def fill() -> int:
        shared[...] = 7
        return int(shared.sum())

    assert call_in_child(fill, QUICK) == 7 * 120
    assert shared.flags.f_contiguous and int(shared.sum()) == 7 * 120


def test_many_children_keep_order_and_isolate_failures() -> None:
    def crash() -> int:
        os.abort()

    functions = [lambda i=i: i * i for i in range(7)]
    functions[3] = crash
    outcomes = run_in_children(functions, QUICK, processes=3)
    assert [outcome.value for outcome in outcomes] == [0, 1, 4, None, 16, 25, 36]
    assert isinstance(outcomes[3].error, ChildFailed)


def test_a_cancelled_child_is_killed_and_reaped() -> None:
    child = ChildProcess(lambda: time.sleep(60), QUICK)
    pid = child._child.pid  # type: ignore[union-attr]
    child.cancel()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    with pytest.raises(ChildFailed, match="cancelled"):
        child.result()
