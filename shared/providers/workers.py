"""Blocking engines off the event loop: in the process's threads, or in a process of their own.

A worker holds one engine object and runs its methods for the loop: ``await worker.call("method",
*args)``. ``ThreadWorker`` runs them in an executor, which keeps the loop free only while the
engine releases the GIL. ``ProcessWorker`` runs them in a child process (started with ``spawn``,
so it inherits no loop, lock or thread of this one), one call at a time, in order: an engine that
holds the GIL (the PocketSphinx bindings do, for up to half a second) then stalls nothing here,
and an engine that crashes takes only its own process down. Its calls then raise ``WorkerGone``.

Arguments, results and exceptions cross the pipe pickled, so they must be picklable; an
exception that is not comes back as a ``RuntimeError`` naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import multiprocessing
import signal
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from phonepatch.shared.logs import configure_logging, configured_level, get_logger

__all__ = ["ProcessWorker", "ThreadWorker", "Worker", "WorkerGone"]

log = get_logger(__name__)

_STOP = None  # a request of this value asks the child to exit


class WorkerGone(RuntimeError):
    """The worker's process has stopped; nothing sent to it will run."""


class ThreadWorker:
    """Runs ``engine``'s methods in ``executor``, several at once when it has several threads."""

    def __init__(self, engine: object, executor: Executor) -> None:
        self._engine = engine
        self._executor = executor

    @property
    def alive(self) -> bool:
        return True

    async def call(self, method: str, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(getattr(self._engine, method), *args))

    async def close(self) -> None:
        """The engine belongs to the caller, and the executor too: nothing to stop."""


class ProcessWorker:
    """Runs the engine ``factory(*args)`` builds in a child process, one method call at a time.

    A call the child has not answered within ``call_timeout_s`` kills it: a hung engine fails
    its calls with ``WorkerGone`` like a crashed one. Starting (the spawn, the imports, the
    factory) has ``start_timeout_s`` of its own, counted from the first call.

    The factory and its arguments are pickled to the child, so the factory must be importable
    (a module-level class or function). If it raises, every call raises the same error. A child
    whose parent dies sees its pipe close and exits; it ignores SIGINT, which the terminal sends
    to the whole process group: the parent decides when it stops.
    """

    def __init__(
        self,
        factory: Callable[..., object],
        *args: Any,
        name: str,
        call_timeout_s: float = 30.0,
        start_timeout_s: float = 120.0,
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self._connection, child_end = context.Pipe()
        self._process = context.Process(target=_serve, args=(child_end, configured_level(), factory, args), name=name, daemon=True)
        self._process.start()
        child_end.close()  # the child holds its own copy; ours would hide the child's exit
        self.name = name
        self._call_timeout_s = call_timeout_s
        self._start_timeout_s = start_timeout_s
        self._started = False  # the child said it is ready
        # One thread does every round trip, so calls reach the child in the order they were made.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._gone: str | None = None
        self._closed = False

    @property
    def alive(self) -> bool:
        return self._gone is None

    @property
    def pid(self) -> int | None:
        return self._process.pid

    async def call(self, method: str, *args: Any) -> Any:
        if self._gone is not None:
            raise WorkerGone(self._gone)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._round_trip, method, args)

    def _round_trip(self, method: str, args: tuple[Any, ...]) -> Any:
        if self._gone is not None:
            raise WorkerGone(self._gone)
        try:
            if not self._started:
                self._wait(self._start_timeout_s, "start")
                self._connection.recv()  # the child's "ready"
                self._started = True
            self._connection.send((method, args))
            self._wait(self._call_timeout_s, method)
            succeeded, value = self._connection.recv()
        except (EOFError, OSError):
            self._process.join(timeout=1.0)
            self._gone = f"{self.name}: the engine process stopped (exit code {self._process.exitcode})"
            log.error("engine_process_stopped", worker=self.name, exit_code=self._process.exitcode)
            raise WorkerGone(self._gone) from None
        if succeeded:
            return value
        raise value

    def _wait(self, timeout_s: float, what: str) -> None:
        """Wait for the child's next message; one that does not come in time means it hangs: its
        calls would wait for ever. Killed, it is replaced like a crashed one."""
        if self._connection.poll(timeout_s):
            return
        self._process.kill()
        self._process.join(timeout=1.0)
        self._gone = f"{self.name}: the engine process did not answer {what} within {timeout_s:g} s"
        log.error("engine_process_hung", worker=self.name, waiting_for=what, waited_s=timeout_s)
        raise WorkerGone(self._gone)

    async def close(self, timeout_s: float = 5.0) -> None:
        """Ask the child to exit after the calls already made; kill it if it has not by then.
        Closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._stop, timeout_s)
        self._thread.shutdown(wait=False)

    def _stop(self, timeout_s: float) -> None:
        if self._gone is None:
            self._gone = f"{self.name}: the engine process was closed"
            with contextlib.suppress(OSError):  # already gone
                self._connection.send(_STOP)
        self._process.join(timeout_s)
        if self._process.is_alive():
            log.warning("engine_process_killed", worker=self.name, waited_s=timeout_s)
            self._process.kill()
            self._process.join(timeout_s)
        self._connection.close()


def _serve(connection: Connection, log_level: str, factory: Callable[..., object], args: tuple[Any, ...]) -> None:
    """The child's main loop: build the engine, then answer each request until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(log_level)
    engine: object | None = None
    failure: BaseException | None = None
    try:
        engine = factory(*args)
    except Exception as error:
        failure = error
    connection.send(("ready", None))
    while True:
        try:
            request = connection.recv()
        except EOFError:  # the parent is gone
            return
        if request is _STOP:
            return
        method, call_args = request
        try:
            if failure is not None:
                raise failure
            reply = (True, getattr(engine, method)(*call_args))
        except Exception as error:
            reply = (False, error)
        try:
            connection.send(reply)
        except Exception as error:  # an unpicklable result or exception
            connection.send((False, RuntimeError(f"{type(error).__name__}: {error} (in reply to {method})")))


Worker = ThreadWorker | ProcessWorker
