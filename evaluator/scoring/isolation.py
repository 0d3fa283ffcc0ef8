"""Running risky calls in forked child processes with time and memory limits.

Reading an untrusted file, or scoring one case of many, must not be able to take the caller down:
a segfault in a decoder, an allocation that exhausts memory or an input that never finishes ends only
the child. `os.fork` is used directly (not `multiprocessing`): it works inside daemonic worker
processes such as Celery's prefork pool, the function needs no pickling (the child has the parent's
memory) and a child starts in milliseconds. Results come back pickled through a pipe.

A child may mark its progress with `checkpoint()`; the parent learns how many checkpoints a child
passed even if it then crashes (so it can tell "crashed while reading the prediction" from "crashed
while scoring"), and `Limits.phase_timeouts_s` can bound the time between checkpoints. Inside a
phase the child can tighten its own memory limit with `limit_memory`. Linux/POSIX only.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import os
import pickle
import resource
import select
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

_CHECKPOINT, _RESULT = b"C", b"R"


@dataclass(frozen=True)
class Limits:
    """Limits for one child.

    `timeout_s`: wall-clock seconds for the whole call. `memory_bytes`: address space the child may
    add to the parent's size. `phase_timeouts_s[i]`: seconds allowed between checkpoint i and
    checkpoint i + 1 (checkpoint 0 is the start), None for no limit beyond `timeout_s`.
    """

    timeout_s: float
    memory_bytes: int
    phase_timeouts_s: tuple[float | None, ...] = ()


class ChildFailed(Exception):
    """The child did not return: it timed out (`timed_out`), was killed, crashed or ran out of memory."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What one child produced: its return value or the exception it raised or died of, and how many
    checkpoints it passed before."""

    value: T | None = None
    error: BaseException | None = None
    checkpoints: int = 0


def checkpoint() -> None:
    """Tell the parent that this child reached the next checkpoint (no-op outside a child)."""
    if _checkpoint_fd is not None:
        os.write(_checkpoint_fd, _CHECKPOINT)


def limit_memory(memory_bytes: int) -> None:
    """In a child: allow at most `memory_bytes` of address space beyond the parent's size (up to the
    child's `Limits.memory_bytes`). No-op outside a child."""
    if _base_address_space is None:
        return
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    soft = _base_address_space + memory_bytes
    with contextlib.suppress(OSError, ValueError):
        resource.setrlimit(
            resource.RLIMIT_AS, (min(soft, hard) if hard != resource.RLIM_INFINITY else soft, hard)
        )


def call_in_child(function: Callable[[], T], limits: Limits) -> T:
    """`function()` evaluated in a forked child; its exception is re-raised here, and `ChildFailed`
    is raised if the child times out, dies of a signal, runs out of memory or returns something that
    cannot be pickled."""
    outcome = run_in_children([function], limits, processes=1)[0]
    if outcome.error is not None:
        raise outcome.error
    return outcome.value  # type: ignore[return-value]


def run_in_children(
    functions: Sequence[Callable[[], T]], limits: Limits, *, processes: int
) -> list[Outcome[T]]:
    """Evaluate each function in its own forked child, at most `processes` at a time; outcomes in order.

    A failure of one child (exception, crash, timeout) becomes that function's `Outcome.error`
    (`ChildFailed` for crashes and timeouts); the others are unaffected.
    """
    outcomes: list[Outcome[T] | None] = [None] * len(functions)
    running: dict[int, _Child] = {}
    next_index = 0
    try:
        while next_index < len(functions) or running:
            while next_index < len(functions) and len(running) < max(1, processes):
                child = _start(functions[next_index], next_index, limits)
                running[child.read_fd] = child
                next_index += 1
            _collect(running, outcomes, limits)
    finally:
        for child in running.values():  # only if the parent itself was interrupted
            _kill(child)
    return [outcome or Outcome(error=ChildFailed("no result")) for outcome in outcomes]


# ---- child side -------------------------------------------------------------------------------------

_checkpoint_fd: int | None = None
_base_address_space: int | None = None


def _child_main(function: Callable[[], object], write_fd: int, limits: Limits) -> None:
    global _checkpoint_fd, _base_address_space
    status = 1
    try:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        faulthandler.disable()  # a crash is reported to the parent by its signal, not by a traceback dump
        _die_with_parent()
        _checkpoint_fd = write_fd
        _base_address_space = _limit_resources(limits)
        message = _run_and_pickle(function)
        os.write(write_fd, _RESULT)
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


def _limit_resources(limits: Limits) -> int | None:
    """Cap address space at the current size plus `memory_bytes` and CPU time; return the size."""
    base = None
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/statm") as statm:
            base = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (base + limits.memory_bytes, base + limits.memory_bytes))
    with contextlib.suppress(OSError, ValueError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core files from a crashing decoder
    with contextlib.suppress(OSError, ValueError):
        cpu_s = int(limits.timeout_s) + 2
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    return base


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this child if the parent dies first, so no orphan keeps working."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


# ---- parent side ------------------------------------------------------------------------------------


@dataclass
class _Child:
    index: int
    pid: int
    read_fd: int
    started: float
    phase_started: float
    checkpoints: int
    received: bytearray
    result_started: bool = False


def _start(function: Callable[[], object], index: int, limits: Limits) -> _Child:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns
        os.close(read_fd)
        _child_main(function, write_fd, limits)
    os.close(write_fd)
    now = time.monotonic()
    return _Child(index, pid, read_fd, now, now, 0, bytearray())


def _deadline(child: _Child, limits: Limits) -> float:
    deadline = child.started + limits.timeout_s
    if child.checkpoints < len(limits.phase_timeouts_s) and not child.result_started:
        phase_timeout = limits.phase_timeouts_s[child.checkpoints]
        if phase_timeout is not None:
            deadline = min(deadline, child.phase_started + phase_timeout)
    return deadline


def _collect(running: dict[int, _Child], outcomes: list, limits: Limits) -> None:
    """Wait for output from the running children; record the ones that finished or ran out of time."""
    wait_s = max(0.0, min(_deadline(child, limits) for child in running.values()) - time.monotonic())
    readable, _, _ = select.select(list(running), [], [], wait_s)
    for fd in readable:
        child = running[fd]
        chunk = os.read(fd, 1 << 20)
        if chunk:
            _receive(child, chunk)
            continue
        del running[fd]
        os.close(fd)
        outcomes[child.index] = _finish(child)
    now = time.monotonic()
    for fd, child in list(running.items()):
        if _deadline(child, limits) <= now:
            del running[fd]
            _kill(child)
            failure = ChildFailed("did not finish within the time limit", timed_out=True)
            outcomes[child.index] = Outcome(error=failure, checkpoints=child.checkpoints)


def _receive(child: _Child, chunk: bytes) -> None:
    if not child.result_started:
        marks = len(chunk) - len(chunk.lstrip(_CHECKPOINT))
        if marks:
            child.checkpoints += marks
            child.phase_started = time.monotonic()
            chunk = chunk[marks:]
        if chunk[:1] == _RESULT:
            child.result_started = True
            chunk = chunk[1:]
    if child.result_started:
        child.received += chunk


def _kill(child: _Child) -> None:
    os.close(child.read_fd)
    with contextlib.suppress(ProcessLookupError):
        os.kill(child.pid, signal.SIGKILL)
    os.waitpid(child.pid, 0)


def _finish(child: _Child) -> Outcome:
    _, status = os.waitpid(child.pid, 0)
    if child.result_started and child.received:
        try:
            outcome = pickle.loads(bytes(child.received))
            return Outcome(outcome.value, outcome.error, child.checkpoints)
        except Exception as error:
            failure = ChildFailed(f"sent a result that cannot be read ({error})")
            return Outcome(error=failure, checkpoints=child.checkpoints)
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        reasons = {
            signal.SIGKILL: "was killed (e.g. by the out-of-memory killer)",
            signal.SIGXCPU: "ran out of CPU time",
        }
        reason = reasons.get(signum, f"died of signal {signum} ({signal.strsignal(signum)})")  # type: ignore[call-overload]
        return Outcome(
            error=ChildFailed(reason, timed_out=signum == signal.SIGXCPU), checkpoints=child.checkpoints
        )
    failure = ChildFailed(f"exited with status {os.WEXITSTATUS(status)} without a result")
    return Outcome(error=failure, checkpoints=child.checkpoints)
