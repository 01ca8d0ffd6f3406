"""search.py, an Optuna study of train.py runs (runs/search.py): bad trials pruned and listed as pruned, the study read
by optuna-dashboard's own loader, two workers filling one study, an interrupted search continued, and docs/scale.md's
commands run as written (apart from SCALE_SHORTENING and the data and log folders)."""

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import optuna
import pytest
from optuna.trial import TrialState

from runs.search import check_settings
from tests.helpers.commands import REPO, SCALE_SHORTENING
from tests.helpers.compose import compose_config
from tests.helpers.csv_rows import read_rows
from user_errors import UserError

# docs/scale.md, verbatim
WORKER = "python search.py hparams_search=mnist_optuna search.n_trials=4"
JOURNAL = "python search.py hparams_search=mnist_optuna search.n_trials=3 'search.storage=${search.dir}/journal.log'"
DASHBOARD = "optuna-dashboard sqlite:///logs/search/mnist_optuna/optuna.db"

# a search built to have bad trials: Adam at lr 5 stays at chance level, at lr -1 it cannot start
BAD_TRIALS = """# @package _global_
search:
  study_name: bad_lr
  n_trials: 4
  pruner:
    n_startup_trials: 1
    n_warmup_steps: 0
  params:
    optimizer: adam
    optimizer.lr: choice(0.003, 5.0, -1.0)
"""
# the order of the trials, put into the study first with Optuna's enqueue_trial: good, bad, bad, failing
ENQUEUED = [0.003, 5.0, 5.0, -1.0]
STATE = {"complete": "COMPLETE", "failed": "FAIL"}
SHORT = [
    "trainer=cpu",
    "trainer.max_epochs=2",
    "data.batch_size=32",
    "data.val_size=100",
    "data.download=false",
    "test=false",
    "callbacks.progress_bar.refresh_rate=0",
]


def environment(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0", **extra}


def search(*overrides: str, **extra_env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "search.py", *overrides],
        cwd=REPO,
        env=environment(**extra_env),
        capture_output=True,
        text=True,
        timeout=600,
    )


def documented(command: str, mnist_dir: Path, log_dir: Path) -> list[str]:
    """A command of docs/scale.md as the arguments of this interpreter, shortened, with the test's folders."""
    return [*shlex.split(command)[1:], *SCALE_SHORTENING, f"data.data_dir={mnist_dir}", f"paths.log_dir={log_dir}"]


def start(arguments: list[str], **extra_env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *arguments],
        cwd=REPO,
        env=environment(**extra_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture(scope="module")
def pruned_search(mnist_dir, tmp_path_factory) -> tuple[str, Path]:
    """The bad-trials search, run once: (its storage, its log folder)."""
    root = tmp_path_factory.mktemp("search")
    (root / "conf" / "hparams_search").mkdir(parents=True)
    (root / "conf" / "hparams_search" / "bad_lr.yaml").write_text(BAD_TRIALS)
    storage = f"sqlite:///{root}/logs/search/bad_lr/optuna.db"
    (root / "logs" / "search" / "bad_lr").mkdir(parents=True)
    study = optuna.create_study(study_name="bad_lr", storage=storage, direction="maximize")
    for lr in ENQUEUED:
        study.enqueue_trial({"optimizer.lr": lr})
    result = search(
        f"hydra.searchpath=[file://{root}/conf]",
        "hparams_search=bad_lr",
        *SHORT,
        f"data.data_dir={mnist_dir}",
        f"paths.log_dir={root}/logs",
    )
    assert result.returncode == 0, result.stderr[-5000:]
    return storage, root / "logs"


def test_bad_trials_are_pruned_and_the_summary_lists_them(pruned_search):
    storage, log_dir = pruned_search
    trials = optuna.load_study(study_name="bad_lr", storage=storage).trials
    assert [trial.params["optimizer.lr"] for trial in trials] == ENQUEUED
    assert [trial.state for trial in trials] == [
        TrialState.COMPLETE,
        TrialState.PRUNED,
        TrialState.PRUNED,
        TrialState.FAIL,
    ]
    study_dir = log_dir / "search" / "bad_lr"
    for trial in trials[:3]:
        run_dir = study_dir / "trials" / str(trial.number)
        assert trial.user_attrs["run_dir"] == str(run_dir)
        # a run directory as train.py writes it; a pruned run stopped after its first epoch
        assert (run_dir / "train.log").is_file() and (run_dir / "tensorboard").is_dir()
        stored = (run_dir / ".hydra" / "config.yaml").read_text()
        assert (
            "task_name: train" in stored and "search:" not in stored and f"lr: {trial.params['optimizer.lr']}" in stored
        )
        epochs = 1 if trial.state == TrialState.PRUNED else 2
        assert sorted(trial.intermediate_values) == list(range(epochs))
        assert (run_dir / "checkpoints" / "epoch001.ckpt").is_file() == (epochs == 2)
    assert "lr" in trials[3].user_attrs["failure"]  # the one sentence of the failed run: its learning rate
    summary = (study_dir / "summary.md").read_text()
    assert "4 trials: 1 complete, 2 pruned, 1 failed, 0 running." in summary
    assert f"best_val_top1 {trials[0].value:.4f}" in summary
    rows = read_rows(study_dir / "summary.csv")
    assert [row["state"] for row in rows] == ["complete", "pruned", "pruned", "failed"]
    assert (
        rows[1]["note"] == f"pruned after epoch 0 ({trials[1].intermediate_values[0]:.4f})"
        and rows[1]["value"] == ""
        and rows[3]["note"] == trials[3].user_attrs["failure"]
    )


def test_the_dashboard_reads_the_study(pruned_search):
    """As `optuna-dashboard <storage>` does: its storage loader, then its web app's API."""
    from optuna_dashboard import wsgi
    from optuna_dashboard._storage_url import get_storage

    storage, _ = pruned_search
    app = wsgi(get_storage(storage))

    def get(path: str):
        environ, answer = {"PATH_INFO": path}, {}
        setup_testing_defaults(environ)
        body = b"".join(app(environ, lambda status, headers, exc_info=None: answer.update(status=status)))
        assert answer["status"].startswith("200"), (path, answer, body[:500])
        return json.loads(body)

    (summary,) = get("/api/studies")["study_summaries"]
    assert summary["study_name"] == "bad_lr"
    detail = get(f"/api/studies/{summary['study_id']}")
    assert [trial["state"] for trial in detail["trials"]] == ["Complete", "Pruned", "Pruned", "Fail"]
    assert [len(trial["intermediate_values"]) for trial in detail["trials"][:3]] == [2, 1, 1]


def test_a_mistake_in_the_search_settings_is_one_sentence(tmp_path):
    """search.py itself for one mistake (exit 2, one line, nothing written); check_settings in-process for the others."""
    result = search("search.n_trials=0", f"paths.log_dir={tmp_path}")
    said = "error: search.n_trials=0 must be a whole number of trials, 1 or more."
    assert result.returncode == 2 and result.stderr.strip() == said, result.stderr[-2000:]
    assert not (tmp_path / "search" / "mnist_optuna").exists() and not list(tmp_path.rglob("search.log"))
    for override, sentence in (
        ("trainer.devices=2", "A search runs each trial in one process"),
        ("+search.params.model='glob(*)'", "search.params: 'model: glob(*)' is not a search range"),
        ("search.params.optimizer='choice(sgd, adamm)'", "search.params: conf/optimizer/ has no option adamm"),
    ):
        cfg = compose_config([override], tmp_path, config_name="search")
        with pytest.raises(UserError) as refused:
            check_settings(cfg)
        assert str(refused.value).startswith(sentence) and "\n" not in str(refused.value)


@pytest.mark.slow
def test_two_workers_fill_one_study(mnist_dir, tmp_path):
    """docs/scale.md's worker command twice at once; the second as the task of node 1 of a SLURM job would start it."""
    node1 = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "1", "SLURM_PROCID": "1"}
    workers = [start(documented(WORKER, mnist_dir, tmp_path)), start(documented(WORKER, mnist_dir, tmp_path), **node1)]
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    for worker, output in zip(workers, outputs):
        assert worker.returncode == 0, output[-5000:]
    trials = optuna.load_study(
        study_name="mnist_optuna", storage=f"sqlite:///{tmp_path}/search/mnist_optuna/optuna.db"
    ).trials
    # each worker stops once the study has 4 trials; two finishing at the same moment may both start one more
    assert len(trials) in (4, 5) and all(trial.state == TrialState.COMPLETE for trial in trials)
    assert len({tuple(sorted(trial.params.items())) for trial in trials}) == len(trials)  # no trial twice
    ran_by = [
        {int(line.split()[4].rstrip(":")) for line in output.splitlines() if "][runs.search][INFO] - Trial " in line}
        for output in outputs
    ]
    assert ran_by[0] and ran_by[1] and not ran_by[0] & ran_by[1] and ran_by[0] | ran_by[1] == set(range(len(trials)))
    first, second = sorted(trials, key=lambda trial: trial.datetime_start)[:2]
    assert second.datetime_start < first.datetime_complete  # at the same time
    for trial in trials:  # the SLURM task's runs too: written as by a single process, not as rank 1 of a job
        run_dir = Path(trial.user_attrs["run_dir"])
        assert (run_dir / ".hydra" / "config.yaml").is_file() and any((run_dir / "checkpoints").glob("best-*.ckpt"))
    assert not list((tmp_path / "search" / "runs").glob("slurm-*"))  # the worker's own folder is its own too
    rows = read_rows(tmp_path / "search" / "mnist_optuna" / "summary.csv")
    assert len(rows) == len(trials)


@pytest.mark.slow
def test_an_interrupted_search_continues(mnist_dir, tmp_path):
    """docs/scale.md's journal-file command, stopped with Ctrl-C during its second trial, then started again."""
    arguments = documented(JOURNAL, mnist_dir, tmp_path)
    first = start(arguments)
    second_trial = tmp_path / "search" / "mnist_optuna" / "trials" / "1" / "train.log"
    deadline = time.monotonic() + 300
    while not (second_trial.is_file() and "Seed set" in second_trial.read_text()):
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()[0][-5000:]
        time.sleep(0.2)
    first.send_signal(signal.SIGINT)
    output = first.communicate(timeout=300)[0]
    assert first.returncode == 128 + signal.SIGINT and "stopped: " in output, output[-3000:]

    journal = tmp_path / "search" / "mnist_optuna" / "journal.log"
    stored = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    trials = optuna.load_study(study_name="mnist_optuna", storage=stored).trials
    # stopped in training: the trial failed, marked stopped, not one of the study's 3; a signal that came as its
    # training ended (no batch left to stop after): the trial completed, and the search stopped after it
    stopped = trials[1].state == TrialState.FAIL
    assert [trial.state for trial in trials] == [TrialState.COMPLETE, trials[1].state]
    assert "stopped" in trials[1].user_attrs if stopped else trials[1].state == TrialState.COMPLETE

    result = subprocess.run(
        [sys.executable, *arguments], cwd=REPO, env=environment(), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-5000:]
    trials = optuna.load_study(study_name="mnist_optuna", storage=stored).trials
    states = ["complete", "failed", "complete", "complete"] if stopped else ["complete"] * 3
    assert [trial.state.name for trial in trials] == [STATE[state] for state in states]
    assert len({tuple(sorted(trial.params.items())) for trial in trials}) == len(
        trials
    )  # new values, not the first ones again
    rows = read_rows(tmp_path / "search" / "mnist_optuna" / "summary.csv")
    assert [row["state"] for row in rows] == states
    assert rows[1]["note"].startswith("stopped with its worker") == stopped


@pytest.mark.slow
def test_the_pruning_benchmark_reports_both_searches(mnist_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.search_pruning", "--trials", "2", "--out", str(tmp_path), *SHORT]
        + ["trainer.limit_train_batches=3", f"data.data_dir={mnist_dir}"],
        cwd=REPO,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| search | complete | pruned | failed | best val top-1 |") and len(table) == 4
    # 2 trials: fewer than the pruner's 5 start-up trials, so none pruned; the same seed, so the same best
    assert table[2].startswith("| median pruner (the default) | 2 | 0 | 0 | ") and table[3].startswith(
        "| no pruning | 2 | 0 | 0 | "
    )
    assert table[2].split(" | ")[4:6] == table[3].split(" | ")[4:6]


def test_the_docs_show_the_commands_these_tests_run():
    page = (REPO / "docs" / "scale.md").read_text()
    assert all(command in page for command in (WORKER, JOURNAL, DASHBOARD)) and " ".join(SCALE_SHORTENING) in page
