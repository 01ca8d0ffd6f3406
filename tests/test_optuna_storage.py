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
from pathlib import Path

import pytest

from tests.helpers.commands import REPO, SCALE_SHORTENING, run_entry
from tests.helpers.csv_rows import read_rows

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None,
        reason="hydra-optuna-sweeper is not installed (pip install -e '.[optuna]')",
    ),
]

# docs/scale.md, verbatim apart from SCALE_SHORTENING, the data and log folders (`logs/` in CREATE_STUDY) and <first sweep dir>
SEARCH = "python train.py hparams_search=mnist_optuna hydra.sweeper.n_trials=2"
WORKER = "python train.py hparams_search=mnist_optuna hydra.sweeper.n_trials=2 'hydra.sweeper.storage=sqlite:///${paths.log_dir}/optuna.db' hydra.sweeper.study_name=mnist_shared hydra.sweeper.sampler.seed=null"
CREATE_STUDY = "optuna create-study --storage sqlite:///logs/optuna.db --study-name mnist_shared --direction maximize --skip-if-exists"
CONTINUE = "python train.py hparams_search=mnist_optuna hydra.sweeper.n_trials=2 hydra.sweeper.storage=sqlite:///<first sweep dir>/optuna.db hydra.sweeper.sampler.seed=null"


def arguments(command: str, mnist_dir, log_dir) -> list[str]:
    return [*shlex.split(command)[1:], *SCALE_SHORTENING, f"data.data_dir={mnist_dir}", f"paths.log_dir={log_dir}"]


def trials(storage: str, study_name: str):
    import optuna

    return optuna.load_study(study_name=study_name, storage=storage).trials


def read_status(job_dir):
    return json.loads((job_dir / "status.json").read_text())


def sweep_dirs(log_dir):
    return sorted((log_dir / "train" / "multiruns").iterdir())


def start(command: str, mnist_dir, log_dir) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, *arguments(command, mnist_dir, log_dir)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(condition, process: subprocess.Popen, timeout_s: float = 300) -> None:
    deadline = time.time() + timeout_s
    while not condition():
        assert process.poll() is None and time.time() < deadline, process.communicate()[0][-5000:]
        time.sleep(0.2)


def test_two_workers_share_one_study(mnist_dir, tmp_path):
    # the study made first (two processes creating one SQLite schema at the same moment can collide), then both workers at once
    create = shlex.split(CREATE_STUDY.replace("sqlite:///logs/", f"sqlite:///{tmp_path}/"))
    subprocess.run(
        [str(Path(sys.executable).parent / create[0]), *create[1:]], cwd=REPO, check=True, capture_output=True
    )  # this environment's optuna
    workers = [start(WORKER, mnist_dir, tmp_path) for _ in range(2)]
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    for worker, output in zip(workers, outputs):
        assert worker.returncode == 0, output[-5000:]
    stored = trials(f"sqlite:///{tmp_path}/optuna.db", "mnist_shared")
    assert sorted(trial.number for trial in stored) == [0, 1, 2, 3] and all(
        trial.state.name == "COMPLETE" for trial in stored
    )
    assert (
        len({tuple(sorted(trial.params.items())) for trial in stored}) == 4
    )  # four different trials, not each worker's pair twice
    first, second = sweep_dirs(tmp_path)
    spans = [
        [
            (status["started"], status["started"] + status["wall_s"])
            for status in map(read_status, (sweep / "0", sweep / "1"))
        ]
        for sweep in (first, second)
    ]
    assert any(
        begin < end_other and begin_other < end for begin, end in spans[0] for begin_other, end_other in spans[1]
    )  # trials ran at the same time
    # each worker's study.md, written at its end, lists every trial the study held then; the later one all four
    listed = [len(read_rows(sweep / "study.csv")) for sweep in (first, second)]
    assert max(listed) == 4 and min(listed) >= 2


def test_an_interrupted_search_continues_from_its_database(mnist_dir, tmp_path):
    search = start(SEARCH, mnist_dir, tmp_path)
    wait_for(
        lambda: any((sweep / "1" / "status.json").is_file() for sweep in sweep_dirs_or_none(tmp_path)), search
    )  # trial 0 done, 1 started
    search.send_signal(signal.SIGINT)  # Ctrl-C
    output = search.communicate(timeout=300)[0]
    assert search.returncode != 0, output[-3000:]
    # the study was kept in SQLite in the sweep directory (the default storage): trial 0 with its value
    (first,) = sweep_dirs(tmp_path)
    storage = f"sqlite:///{first}/optuna.db"
    (trial0, trial1) = trials(storage, "mnist_optuna")
    assert (trial0.state.name, trial1.state.name) == ("COMPLETE", "RUNNING")  # 1: stopped with its worker
    assert trial0.value == pytest.approx(json.loads((first / "0" / "status.json").read_text())["result"])

    run_entry(*arguments(CONTINUE.replace("<first sweep dir>", str(first)), mnist_dir, tmp_path))
    stored = trials(storage, "mnist_optuna")
    assert [trial.number for trial in stored] == [0, 1, 2, 3]
    assert [trial.state.name for trial in stored] == ["COMPLETE", "RUNNING", "COMPLETE", "COMPLETE"]
    assert (
        len({tuple(sorted(trial.params.items())) for trial in stored}) == 4
    )  # new parameters, not the first search's drawn again
    (second,) = [sweep for sweep in sweep_dirs(tmp_path) if sweep != first]
    # the continued search ran trials 2 and 3 in its own sweep directory; its study.md lists all four
    assert [float(row["best_val_top1"]) for row in read_rows(second / "summary.csv")] == pytest.approx(
        [stored[2].value, stored[3].value]
    )
    rows = read_rows(second / "study.csv")
    assert [(row["trial"], row["state"]) for row in rows] == [
        ("0", "COMPLETE"),
        ("1", "RUNNING"),
        ("2", "COMPLETE"),
        ("3", "COMPLETE"),
    ]
    assert [row["optimizer"] for row in rows] == [trial.params["optimizer"] for trial in stored]
    assert "4 trials; 3 complete." in (second / "study.md").read_text()


def sweep_dirs_or_none(log_dir):
    return sweep_dirs(log_dir) if (log_dir / "train" / "multiruns").is_dir() else []


def test_docs_show_the_commands_these_tests_run():
    page = (REPO / "docs" / "scale.md").read_text()
    assert (
        all(command in page for command in (SEARCH, CREATE_STUDY, WORKER, CONTINUE))
        and " ".join(SCALE_SHORTENING) in page
    )
