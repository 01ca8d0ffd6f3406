"""The background writer: tasks run in a helper process without holding up the caller, results and failures come back."""

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from callbacks.background_worker import BackgroundWorker
from user_errors import UserError


def heavy_modules_loaded() -> list[str]:
    """Run in the helper: which of the training process's big libraries it has imported."""
    return [name for name in ("torch", "lightning", "hydra", "torchvision") if name in sys.modules]


def process_ids() -> tuple[int, int]:
    return os.getpid(), os.getpgid(0)


def append_line(path: Path, line: str, delay: float = 0.0) -> None:
    time.sleep(delay)
    with path.open("a") as file:
        file.write(line + "\n")


@pytest.fixture
def worker():
    worker = BackgroundWorker()
    yield worker
    worker.close()


def test_tasks_run_in_a_light_helper_process_of_its_own_session(worker):
    results = []
    worker.submit(process_ids, what="the ids", on_done=results.append)
    worker.submit(heavy_modules_loaded, what="the modules", on_done=results.append)
    worker.collect(wait=True)
    (helper_pid, helper_group), loaded = results
    assert helper_pid != os.getpid()
    assert helper_group != os.getpgid(0)  # Ctrl-C in a terminal signals our group, not the helper
    assert loaded == []  # numpy and matplotlib only: it starts in about half a second


def test_submit_returns_at_once_and_tasks_run_in_order(worker, tmp_path):
    out = tmp_path / "lines.txt"
    started = time.perf_counter()
    worker.submit(append_line, out, "first", delay=1.0, what="the first line")
    worker.submit(append_line, out, "second", what="the second line")
    submitted = time.perf_counter() - started
    assert submitted < 0.5
    assert not out.exists()
    worker.collect()  # without waiting: nothing finished yet, nothing raised
    worker.collect(wait=True)
    assert out.read_text() == "first\nsecond\n"


def test_a_file_that_cannot_be_written_is_one_sentence_naming_it(worker, tmp_path):
    target = tmp_path / "a_file" / "predictions.csv"
    (tmp_path / "a_file").write_text("not a folder")
    worker.submit(append_line, target, "x", what=f"the prediction file {target}")
    with pytest.raises(
        UserError,
        match=r"Could not write the prediction file .*predictions\.csv \(Not a directory\): free disk space or point paths.log_dir",
    ):
        worker.collect(wait=True)


def test_a_bug_in_a_task_comes_back_with_its_traceback(worker):
    worker.submit(int, "not a number", what="a number")
    with pytest.raises(RuntimeError, match=r"(?s)failed on a number:.*ValueError: invalid literal"):
        worker.collect(wait=True)


def test_a_helper_that_dies_is_reported_and_replaced(worker, tmp_path):
    worker.submit(time.sleep, 30, what="a long task")
    time.sleep(0.5)
    os.kill(worker._process.pid, signal.SIGKILL)
    with pytest.raises(UserError, match=r"The background writer ended \(exit code -9\) before it wrote a long task"):
        worker.collect(wait=True)
    out = tmp_path / "after.txt"
    worker.submit(append_line, out, "written by a new helper", what="the next file")
    worker.collect(wait=True)
    assert out.read_text() == "written by a new helper\n"


def test_close_lets_the_helper_finish_its_queue(tmp_path):
    worker = BackgroundWorker()
    out = tmp_path / "lines.txt"
    worker.submit(append_line, out, "last words", delay=0.3, what="the last line")
    worker.close()
    assert out.read_text() == "last words\n"
