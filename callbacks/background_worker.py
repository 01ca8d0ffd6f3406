"""A helper process that writes epoch-end files and draws figures while training goes on.

Formatting a validation epoch's prediction file and drawing its figures (CSV, matplotlib) in the training
loop would stop training for that long every epoch, with an idle GPU meanwhile. Instead, process 0 hands the numbers (numpy arrays, lists of
strings) to one helper process and trains on. The helper is a fresh interpreter that imports numpy,
matplotlib and the writing functions only (half a second; not torch or Lightning), started when a stage
sets up (or at the first task) and shared by every callback of the process. It runs in a session of its own, so that Ctrl-C in the
terminal reaches the training process alone, which decides when to stop; it ends when the training
process closes its input or dies.

`submit(function, ...)` queues a module-level function (pickled by name) and its arguments and returns at
once (a thread of the training process feeds the helper); `on_done` gets the result in the training
process, from `collect()`, which the callbacks call at epoch ends (without waiting) and at the end of
fit, test and predict (waiting for everything): when trainer.fit returns, every file is written. A task
that could not write its file raises a UserError there, naming the file; any other failure raises a
RuntimeError with the helper's traceback.

    python -m callbacks.background_worker    # the helper itself: pickled (id, function, args, kwargs) on stdin, results on stdout
"""

import atexit
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from user_errors import UserError

REPOSITORY = Path(__file__).resolve().parents[1]
# tasks in flight before submit waits for the oldest: bounds memory when epochs end faster than files are written
MAX_PENDING = 8
_STOP = None  # the message that ends the helper
_FINISHED = object()  # what the reader thread queues when the helper's output ends


class BackgroundWorker:
    def __init__(self):
        self._process: subprocess.Popen | None = None
        self._outbox: queue.Queue | None = None  # messages for the helper, sent by the feeder thread
        self._results: queue.Queue | None = None  # replies, queued by the reader thread
        self._pending: dict[int, tuple[str, Callable[[Any], None] | None]] = {}  # id -> (what it writes, on_done)
        self._next_id = 0

    def submit(
        self,
        function: Callable[..., Any],
        *args: Any,
        what: str,
        on_done: Callable[[Any], None] | None = None,
        **kwargs: Any,
    ) -> None:
        """Run function(*args, **kwargs) in the helper; `what` names the task in errors ("the prediction file x.csv")."""
        while len(self._pending) >= MAX_PENDING:
            self._collect_one(block=True)
        self.start()
        task_id, self._next_id = self._next_id, self._next_id + 1
        self._pending[task_id] = (what, on_done)
        self._outbox.put((task_id, function, args, kwargs))

    def collect(self, wait: bool = False) -> None:
        """Hand finished results to their on_done; with wait, until no task is left. Raises the first failure."""
        while self._pending and self._collect_one(block=wait):
            pass

    def _collect_one(self, block: bool) -> bool:
        try:
            message = self._results.get(block=block)
        except queue.Empty:
            return False
        if message is _FINISHED:  # the helper died: the next task starts another
            lost = ", ".join(what for what, _ in self._pending.values())
            self._pending.clear()
            process, self._process = self._process, None
            raise UserError(
                f"The background writer ended (exit code {process.wait()}) before it wrote {lost}; what it printed is above."
            )
        task_id, outcome, result = message
        what, on_done = self._pending.pop(task_id)
        if outcome == "os_error":
            raise UserError(
                f"Could not write {what} ({result}): free disk space or point paths.log_dir at a disk you can write to."
            )
        if outcome == "error":
            raise RuntimeError(f"The background writer failed on {what}:\n{result}")
        if on_done is not None:
            on_done(result)
        return True

    def close(self) -> None:
        """Let the helper finish its tasks and exit (results not yet collected are dropped)."""
        process, self._process = self._process, None
        if process is not None:
            # an explicit stop: a loader worker forked from this process may hold the helper's input open
            self._outbox.put(_STOP)
            process.wait()

    def start(self) -> None:
        """Start the helper now rather than at the first task, so that its imports are done by then."""
        if self._process is not None:
            return
        self._outbox, self._results = queue.Queue(), queue.Queue()
        environment = dict(
            os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))
        )
        self._process = subprocess.Popen(
            [sys.executable, "-m", "callbacks.background_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=environment,
            start_new_session=True,
        )
        threading.Thread(
            target=_feed, args=(self._outbox, self._process.stdin), name="background-writer-feeder", daemon=True
        ).start()
        threading.Thread(
            target=_read, args=(self._process.stdout, self._results), name="background-writer-reader", daemon=True
        ).start()


def _feed(outbox: queue.Queue, requests: BinaryIO) -> None:
    """Training process: send each queued message (the pipe blocks while the helper is busy; this thread waits, not training)."""
    try:
        while True:
            message = outbox.get()
            pickle.dump(message, requests, protocol=pickle.HIGHEST_PROTOCOL)
            requests.flush()
            if message is _STOP:
                requests.close()
                return
    except (BrokenPipeError, OSError):  # the helper died; the reader reports it
        return


def _read(replies: BinaryIO, results: queue.Queue) -> None:
    """Training process: queue each result as it arrives."""
    while True:
        try:
            results.put(pickle.load(replies))
        except (EOFError, OSError, pickle.UnpicklingError):
            results.put(_FINISHED)
            return


_shared: BackgroundWorker | None = None


def shared_worker() -> BackgroundWorker:
    """The process's one helper, closed when the process exits."""
    global _shared
    if _shared is None:
        _shared = BackgroundWorker()
        atexit.register(_shared.close)
    return _shared


def serve(requests: BinaryIO, replies: BinaryIO) -> None:
    """The helper's loop: run each task in turn, reply (id, "ok", result), (id, "os_error", reason) or (id, "error", traceback)."""
    for signum in (signal.SIGINT, signal.SIGTERM):  # the training process decides when to stop; the helper ends with it
        signal.signal(signum, signal.SIG_IGN)
    while True:
        try:
            task = pickle.load(requests)
        except EOFError:  # the training process died
            return
        if task is _STOP:
            return
        task_id, function, args, kwargs = task
        try:
            reply = (task_id, "ok", function(*args, **kwargs))
        except OSError as error:  # a full disk, a folder that cannot be written: the user can fix it
            reply = (task_id, "os_error", error.strerror or str(error))
        except Exception:
            reply = (task_id, "error", traceback.format_exc())
        pickle.dump(reply, replies, protocol=pickle.HIGHEST_PROTOCOL)
        replies.flush()


if __name__ == "__main__":
    # results go to a copy of stdout; stdout itself becomes stderr, so that a stray print cannot corrupt them
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin.buffer, replies)
