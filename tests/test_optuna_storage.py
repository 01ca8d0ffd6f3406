"""hparams_search=mnist_optuna with its study in a database, as docs/scale.md shows it: SQLite in the sweep directory
by default, two sweeper processes sharing one study, an interrupted search continued from the database, and study.md
listing every trial."""

import importlib.util
import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, run_entry
from tests.csv_rows import read_rows

pytestmark = pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None, reason="hydra-optuna-sweeper is not installed (pip install -e '.[optuna]')")

# docs/scale.md, verbatim apart from SHORT, the data and log folders and <first sweep dir>
SEARCH = "python train.py hparams_search=mnist_optuna hydra.sweeper.n_trials=2"
WORKER = "python train.py hparams_search=mnist_optuna hydra.sweeper.n_trials=2 'hydra.sweeper.storage=sqlite:///${paths.log_dir}/optuna.db' hydra.sweeper.study_name=mnist_shared"
CONTINUE = "python train.py hparams_search=mnist_optuna hydra.sweeper.n_trials=2 hydra.sweeper.storage=sqlite:///<first sweep dir>/optuna.db"
# the shortening overrides (listed in docs/scale.md)
SHORT = ["trainer=cpu", "trainer.max_epochs=1", "trainer.limit_train_batches=4", "trainer.limit_val_batches=2", "test=false", "data.download=false", "callbacks.progress_bar.refresh_rate=0"]


def arguments(command: str, mnist_dir, log_dir) -> list[str]:
    return [*shlex.split(command)[2:], *SHORT, f"data.data_dir={mnist_dir}", f"paths.log_dir={log_dir}"]


def trials(storage: str, study_name: str):
    import optuna

    return optuna.load_study(study_name=study_name, storage=storage).trials


def sweep_dirs(log_dir):
    return sorted((log_dir / "train" / "multiruns").iterdir())


def test_a_search_keeps_its_study_in_sqlite_in_the_sweep_directory(mnist_dir, tmp_path):
    run_entry(*arguments(SEARCH, mnist_dir, tmp_path))
    (sweep_dir,) = sweep_dirs(tmp_path)
    stored = trials(f"sqlite:///{sweep_dir}/optuna.db", "mnist_optuna")
    assert [trial.state.name for trial in stored] == ["COMPLETE", "COMPLETE"]
    results = [json.loads((sweep_dir / job / "status.json").read_text())["result"] for job in ("0", "1")]
    assert [trial.value for trial in stored] == pytest.approx(results)
    rows = read_rows(sweep_dir / "study.csv")
    assert [(row["trial"], row["state"]) for row in rows] == [("0", "COMPLETE"), ("1", "COMPLETE")]
    assert [row["optimizer"] for row in rows] == [trial.params["optimizer"] for trial in stored]


def test_two_workers_share_one_study(mnist_dir, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    workers = [subprocess.Popen([sys.executable, *arguments(WORKER, mnist_dir, tmp_path)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    for worker, output in zip(workers, outputs):
        assert worker.returncode == 0, output[-5000:]
    stored = trials(f"sqlite:///{tmp_path}/optuna.db", "mnist_shared")
    assert sorted(trial.number for trial in stored) == [0, 1, 2, 3] and all(trial.state.name == "COMPLETE" for trial in stored)
    assert len({tuple(sorted(trial.params.items())) for trial in stored}) == 4  # four different trials, not each worker's pair twice
    first, second = sweep_dirs(tmp_path)
    # each worker's study.md, written at its end, lists every trial the study held then; the later one all four
    listed = [len(read_rows(sweep / "study.csv")) for sweep in (first, second)]
    assert max(listed) == 4 and min(listed) >= 2


def test_an_interrupted_search_continues_from_its_database(mnist_dir, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    search = subprocess.Popen([sys.executable, *arguments(SEARCH, mnist_dir, tmp_path)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while not any((sweep / "1" / "status.json").is_file() for sweep in sweep_dirs_or_none(tmp_path)):  # trial 0 done, trial 1 started
        assert search.poll() is None and time.time() < deadline, search.communicate()[0][-5000:]
        time.sleep(0.2)
    search.send_signal(signal.SIGINT)  # Ctrl-C
    output = search.communicate(timeout=300)[0]
    assert search.returncode != 0, output[-3000:]
    (first,) = sweep_dirs(tmp_path)
    storage = f"sqlite:///{first}/optuna.db"
    assert [trial.state.name for trial in trials(storage, "mnist_optuna")][:1] == ["COMPLETE"]

    run_entry(*arguments(CONTINUE.replace("<first sweep dir>", str(first)), mnist_dir, tmp_path))
    stored = trials(storage, "mnist_optuna")
    assert [trial.number for trial in stored] == [0, 1, 2, 3]
    assert [trial.state.name for trial in stored][0] == "COMPLETE" and [trial.state.name for trial in stored][2:] == ["COMPLETE", "COMPLETE"]
    (second,) = [sweep for sweep in sweep_dirs(tmp_path) if sweep != first]
    # the continued search ran trials 2 and 3 in its own sweep directory; its study.md lists all four
    assert [float(row["best_val_top1"]) for row in read_rows(second / "summary.csv")] == pytest.approx([stored[2].value, stored[3].value])
    assert [row["trial"] for row in read_rows(second / "study.csv")] == ["0", "1", "2", "3"]
    assert "4 trials; 3 complete." in (second / "study.md").read_text()


def sweep_dirs_or_none(log_dir):
    return sweep_dirs(log_dir) if (log_dir / "train" / "multiruns").is_dir() else []


def test_docs_show_the_commands_these_tests_run():
    page = (REPO / "docs" / "scale.md").read_text()
    assert all(command in page for command in (SEARCH, WORKER, CONTINUE)) and " ".join(SHORT) in page
