"""Running a risky call in a forked child process with time and memory limits.

Reading an untrusted file, or scoring one case of many, must not be able to take the caller down:
a segfault in a decoder, an allocation that exhausts memory or a pathological input that never
finishes ends only the child. `os.fork` is used directly (not `multiprocessing`), so it works inside
daemonic worker processes such as Celery's prefork pool, needs no pickling of the function (the child
has the parent's memory) and starts in milliseconds. Results come back pickled through a pipe; large
arrays should be written into shared memory the parent allocated before the fork (`shared_array`).
Linux/POSIX only.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import mmap
import os
import pickle
import resource
import select
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")


@dataclass(frozen=True)
class Limits:
    """Limits for one child: wall-clock seconds, and bytes of address space beyond the parent's."""

    timeout_s: float
    memory_bytes: int


class ChildFailed(Exception):
    """The child did not return: it timed out (`timed_out`), was killed, crashed or ran out of memory."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What one child produced: its return value, or the exception it raised or died of."""

    value: T | None = None
    error: BaseException | None = None


def shared_array(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A zeroed Fortran-ordered array in anonymous shared memory, writable by forked children."""
    size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    buffer = mmap.mmap(-1, max(size, 1))
    return np.ndarray(shape, dtype=dtype, buffer=buffer, order="F")


class ChildProcess(Generic[T]):
    """`function()` running in a forked child under `limits`, started at construction.

    `result()` waits for it and returns its value, or re-raises its exception; it raises
    `ChildFailed` if the child timed out, died of a signal, ran out of memory or sent something that
    cannot be unpickled. Use as a context manager so the child is killed if the caller fails first.
    """

    def __init__(self, function: Callable[[], T], limits: Limits) -> None:
        self._child: _Child | None = _start(function, 0, limits)
        self._outcome: Outcome[T] | None = None

    def result(self) -> T:
        if self._outcome is None:
            assert self._child is not None
            running = {self._child.read_fd: self._child}
            outcomes: list[Outcome[T] | None] = [None]
            while running:
                _collect(running, outcomes)
            self._child = None
            self._outcome = outcomes[0] or Outcome(error=ChildFailed("no result"))
        if self._outcome.error is not None:
            raise self._outcome.error
        return self._outcome.value  # type: ignore[return-value]

    def cancel(self) -> None:
        """Kill the child if it is still running and reap it."""
        if self._child is not None:
            _kill(self._child)
            self._child = None
            self._outcome = Outcome(error=ChildFailed("cancelled"))

    def __enter__(self) -> ChildProcess[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cancel()


def call_in_child(function: Callable[[], T], limits: Limits) -> T:
    """`function()` evaluated in a forked child; its exceptions are re-raised here (see `ChildProcess`)."""
    with ChildProcess(function, limits) as child:
        return child.result()


def run_in_children(
    functions: Sequence[Callable[[], T]], limits: Limits, *, processes: int
) -> list[Outcome[T]]:
    """Evaluate each function in its own forked child, at most `processes` at a time, in order.

    A failure of one child (exception, crash, timeout) becomes that function's `Outcome.error`
    (`ChildFailed` for crashes and timeouts); the others are unaffected.
    """
    outcomes: list[Outcome[T] | None] = [None] * len(functions)
    running: dict[int, _Child] = {}
    next_index = 0
    while next_index < len(functions) or running:
        while next_index < len(functions) and len(running) < max(1, processes):
            child = _start(functions[next_index], next_index, limits)
            running[child.read_fd] = child
            next_index += 1
        _collect(running, outcomes)
    return [
        outcome if outcome is not None else Outcome(error=ChildFailed("no result")) for outcome in outcomes
    ]


@dataclass
class _Child:
    index: int
    pid: int
    read_fd: int
    deadline: float
    received: bytearray


def _start(function: Callable[[], object], index: int, limits: Limits) -> _Child:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns
        os.close(read_fd)
        _child_main(function, write_fd, limits)
    os.close(write_fd)
    return _Child(index, pid, read_fd, time.monotonic() + limits.timeout_s, bytearray())


def _child_main(function: Callable[[], object], write_fd: int, limits: Limits) -> None:
    status = 1
    try:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        faulthandler.disable()  # a crash is reported to the parent by its signal, not by a traceback dump
        _die_with_parent()
        _limit_resources(limits)
        message = _run_and_pickle(function)
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(message)
        status = 0
    finally:
        os._exit(status)


def _run_and_pickle(function: Callable[[], object]) -> bytes:
    """The pickled Outcome of `function()`: its value, or the exception it raised."""
    try:
        value = function()
    except MemoryError:
        return pickle.dumps(Outcome(error=ChildFailed("ran out of memory (memory limit)")))
    except BaseException as error:  # the exception travels to the parent, as is if it can
        try:
            return pickle.dumps(Outcome(error=error), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            return pickle.dumps(Outcome(error=ChildFailed(f"{type(error).__name__}: {error}")))
    try:
        return pickle.dumps(Outcome(value=value), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as error:
        return pickle.dumps(
            Outcome(error=ChildFailed(f"returned a value that cannot be sent back ({error})"))
        )


def _limit_resources(limits: Limits) -> None:
    """Cap the child's address space at the parent's current size plus `memory_bytes`, and its CPU time."""
    with contextlib.suppress(OSError, ValueError):
        current = _address_space_bytes()
        resource.setrlimit(resource.RLIMIT_AS, (current + limits.memory_bytes, current + limits.memory_bytes))
    with contextlib.suppress(OSError, ValueError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core files from a crashing decoder
    with contextlib.suppress(OSError, ValueError):
        cpu_s = int(limits.timeout_s) + 2
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))


def _address_space_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this child if the parent dies first, so no orphan keeps scoring."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _collect(running: dict[int, _Child], outcomes: list) -> None:
    """Wait for output from the running children; record the ones that finished or ran out of time."""
    now = time.monotonic()
    wait_s = max(0.0, min(child.deadline for child in running.values()) - now)
    readable, _, _ = select.select(list(running), [], [], wait_s)
    for fd in readable:
        child = running[fd]
        chunk = os.read(fd, 1 << 20)
        if chunk:
            child.received += chunk
            continue
        del running[fd]
        os.close(fd)
        outcomes[child.index] = _finish(child)
    now = time.monotonic()
    for fd, child in list(running.items()):
        if child.deadline <= now:
            del running[fd]
            _kill(child)
            outcomes[child.index] = Outcome(
                error=ChildFailed("did not finish within the time limit", timed_out=True)
            )


def _kill(child: _Child) -> None:
    os.close(child.read_fd)
    with contextlib.suppress(ProcessLookupError):
        os.kill(child.pid, signal.SIGKILL)
    os.waitpid(child.pid, 0)


def _finish(child: _Child) -> Outcome:
    _, status = os.waitpid(child.pid, 0)
    if child.received:
        try:
            return pickle.loads(bytes(child.received))
        except Exception as error:
            return Outcome(error=ChildFailed(f"sent a result that cannot be read ({error})"))
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        reasons = {
            signal.SIGKILL: "was killed (e.g. by the out-of-memory killer)",
            signal.SIGXCPU: "ran out of CPU time",
        }
        reason = reasons.get(signum, f"died of signal {signum} ({signal.strsignal(signum)})")  # type: ignore[call-overload]
        return Outcome(error=ChildFailed(reason, timed_out=signum == signal.SIGXCPU))
    return Outcome(error=ChildFailed(f"exited with status {os.WEXITSTATUS(status)} without a result"))
