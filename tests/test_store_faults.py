"""A tracking store that cannot be used is reported before training, or tolerated on request."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import signal
import time
from pathlib import Path

import pytest

from cvsweep.server import free_port

from .conftest import QUICK, read_until, run_train, start_train
from .test_ui import CliProcess


def test_unwritable_store_is_a_clear_error_before_training(tmp_path, data_dir):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = run_train(
        [*QUICK, f"tracking.uri=sqlite:///{blocker}/sub/mlflow.db"], tmp_path, data_dir
    )
    assert proc.returncode == 2
    said = f"cannot be made: {blocker} is a file, so no folder can be made there"
    assert said in proc.stderr and "tracking.required=false" in proc.stderr, proc.stderr
    assert "training cnn" not in proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("uri", ["sqlite:///{tmp}", "sqlite:///"])
def test_store_uri_naming_a_folder_is_a_clear_error(tmp_path, data_dir, uri):
    # `sqlite:///` alone resolves to the folder the command runs in.
    proc = run_train([*QUICK, f"tracking.uri={uri.format(tmp=tmp_path)}"], tmp_path, data_dir)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"Tracking store sqlite:///{tmp_path} names a folder, not a database file" in (
        proc.stderr
    )
    assert f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}" in proc.stderr
    assert "Traceback" not in proc.stderr and "training cnn" not in proc.stdout


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("foo://bar", "tracking.uri='foo://bar': MLflow cannot keep runs in a 'foo' store"),
        ("sqlite://", "tracking.uri='sqlite://' is an in-memory SQLite store"),  # logs, then gone
        ("sqlite:///:memory:", "tracking.uri='sqlite:///:memory:' is an in-memory SQLite store"),
    ],
)
def test_store_uri_of_a_scheme_mlflow_cannot_use_is_a_clear_error(tmp_path, data_dir, uri, message):
    proc = run_train([*QUICK, f"tracking.uri={uri}"], tmp_path, data_dir)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"error: {message}" in proc.stderr
    assert "Traceback" not in proc.stderr and "training cnn" not in proc.stdout
    assert not (tmp_path / ":memory:").exists() and not (tmp_path / "mlruns").exists()


def test_optional_store_trains_and_warns(tmp_path, data_dir):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = run_train(
        [*QUICK, f"tracking.uri=sqlite:///{blocker}/mlflow.db", "tracking.required=false"],
        tmp_path,
        data_dir,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "warning:" in proc.stdout and "Training without tracking" in proc.stdout
    assert (tmp_path / "run" / "model.pth").is_file()


def test_server_down_is_a_clear_error(tmp_path, data_dir):
    port = free_port()
    proc = run_train([*QUICK, f"tracking.uri=http://127.0.0.1:{port}"], tmp_path, data_dir)
    assert proc.returncode == 2
    assert f"error: Tracking server http://127.0.0.1:{port} is not answering" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "or set tracking.required=false to train anyway" in proc.stderr
    assert "not made" not in proc.stderr  # a store never reached lost no write
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    optional = [f"tracking.uri=http://127.0.0.1:{port}", "tracking.required=false"]
    anyway = run_train([*QUICK, *optional, "trainer.shapes_only=true"], tmp_path, data_dir)
    assert anyway.returncode == 0, anyway.stderr[-2000:]
    # The warning does not advise the setting the command already has.
    assert "Start it with `cvsweep server --port PORT` or fix tracking.uri. Training without " in (
        anyway.stdout
    )
    assert "tracking.required=false to train anyway" not in anyway.stdout + anyway.stderr


@pytest.mark.skipif(
    importlib.util.find_spec("MySQLdb") is not None, reason="the MySQL driver is installed"
)
def test_a_database_store_without_its_driver_names_the_missing_module(tmp_path, data_dir):
    proc = run_train([*QUICK, "tracking.uri=mysql://user@127.0.0.1/runs"], tmp_path, data_dir)
    assert proc.returncode == 2
    assert (
        "error: A mysql:// tracking store needs the Python module 'MySQLdb' (its database "
        "driver), which is not installed here." in proc.stderr
    )
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "training cnn" not in proc.stdout


def test_bad_value_in_a_sweep_creates_no_runs(tmp_path, data_dir):
    db = tmp_path / "mlflow.db"
    proc = run_train(
        ["-m", "optimizer.lr=0.01,-2", *QUICK, f"tracking.uri=sqlite:///{db}"], tmp_path, data_dir
    )
    assert proc.returncode == 2
    assert "job #1 (optimizer.lr=-2" in proc.stderr
    assert "Invalid config value optimizer.lr=-2.0" in proc.stderr
    assert "training cnn" not in proc.stdout  # not even the valid job ran
    assert not db.exists()


def _start_server(store: Path, port: int) -> CliProcess:
    cli = CliProcess(
        ["server", "--port", str(port), "--tracking-uri", f"sqlite:///{store / 'mlflow.db'}"],
        cwd=store,
    )
    cli.wait_for(r"(?m)^tracking\.uri=")
    return cli


def _checkpoint_epoch(uri: str) -> str | None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("cvsweep")
    runs = client.search_runs([exp.experiment_id]) if exp else []
    return runs[0].data.tags.get("cvsweep.checkpoint_epoch") if runs else None


def _wait_for_checkpoint(uri: str, epoch: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while _checkpoint_epoch(uri) != epoch and time.monotonic() < deadline:
        time.sleep(0.2)


def _server_run(tmp: Path) -> tuple[Path, Path, int, str, list[str]]:
    """A store folder, a work folder, a free port, its URI, and a 3-epoch run logging to it
    every 2 mini-batches (the server itself is started by the test)."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        os.environ.pop(var, None)
    store, work = tmp / "store", tmp / "work"
    store.mkdir()
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    quick = [a for a in QUICK if not a.startswith(("trainer.epochs=", "trainer.log_every="))]
    return (
        store,
        work,
        port,
        uri,
        [*quick, "trainer.epochs=3", "trainer.log_every=2", f"tracking.uri={uri}"],
    )


@pytest.mark.slow
def test_server_lost_mid_run_ends_quickly_and_the_run_resumes_later(tmp_path, data_dir):
    """The server dies while a run trains: the job ends in seconds, says what was not written,
    keeps its files; once the server is back, the same command resumes the run."""
    store, work, port, uri, args = _server_run(tmp_path)
    args.append(f"hydra.run.dir={work}/run")
    server = _start_server(store, port)
    proc = start_train(args, work, data_dir)
    try:
        read_until(proc, "epoch   2/3  batch     2/8")  # epoch 1 ended and was sent
        os.kill(proc.pid, signal.SIGSTOP)  # the trainer waits; its tracking process uploads
        _wait_for_checkpoint(uri, "1")
        assert _checkpoint_epoch(uri) == "1"
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    finally:
        assert server.stop() == 0
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 3, out[-3000:]  # trained, but the store is incomplete
    assert "Traceback" not in out
    assert "error: training finished and its files are complete, but the tracking store" in out
    assert f"the tracking store {uri} stopped answering (a write failed at" in out
    assert "connection refused" in out
    assert "writes were not made" in out and "run the same command again" in out
    run_id = re.search(r"mlflow run: (\w+)", out).group(1)  # type: ignore[union-attr]
    assert (work / "run" / "model.pth").is_file() and (work / "run" / "checkpoint.pt").is_file()
    # the snapshots of epochs 2 and 3 were never uploaded: not left as hidden full copies
    assert not list((work / "run").glob(".checkpoint-*")), sorted((work / "run").iterdir())

    server = _start_server(store, port)
    try:
        again = start_train(args, work, data_dir)
        again_out, _ = again.communicate(timeout=300)
        assert again.returncode == 0, again_out[-3000:]
        assert f"note: run {run_id} was left RUNNING by a process that is gone" in again_out
        # Training went on to the end while the server was away: the job folder's final
        # state is ahead of the store's (step 8), so the run resumes from there, trains
        # nothing more and sends the points the store missed from that state's history.
        folder = work / "run"
        resumed = f"resuming run {run_id} (KILLED) from the checkpoint in its job folder {folder}"
        assert f"{resumed} at step 24" in again_out
        assert "epoch   3/3" not in again_out  # nothing trained again
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        steps = [m.step for m in client.get_metric_history(run_id, "test_acc")]
        # the points sent before the server went away were written with the checkpoint
        assert steps[:4] == [2, 4, 6, 8] and set(steps) == set(range(2, 25, 2))
        assert len(steps) == len(set(steps))
        # ...and the same values the first launch printed for them
        printed = re.findall(r"step +(\d+) \|.*\| test loss [\d.]+ acc +([\d.]+)%", out)
        stored = {m.step: m.value for m in client.get_metric_history(run_id, "test_acc")}
        assert printed and all(abs(100 * stored[int(s)] - float(a)) < 0.01 for s, a in printed)
        epochs = [m.step for m in client.get_metric_history(run_id, "epoch_test_acc")]
        assert sorted(epochs) == [1, 2, 3]
        assert run.data.tags["cvsweep.checkpoint_epoch"] == "3"
        names = {a.path for a in client.list_artifacts(run_id)}
        assert {"model.pth", "curves.png", "checkpoint"} <= names
        assert "final_test_acc" in run.data.metrics
    finally:
        assert server.stop() == 0


@pytest.mark.slow
def test_server_away_for_a_while_leaves_a_hole_that_the_same_command_fills(tmp_path, data_dir):
    """The server goes away during epoch 2 and is back before the run ends: the run ends
    FINISHED but tagged incomplete (a hole in its history), the command exits 3, and the same
    command resumes the run from its job folder and fills the hole instead of skipping it."""
    store, work, port, uri, args = _server_run(tmp_path)
    server = _start_server(store, port)
    proc = start_train([*args, f"hydra.run.dir={work}/run"], work, data_dir)
    try:
        read_until(proc, "epoch   2/3  batch     2/8")
        os.kill(proc.pid, signal.SIGSTOP)
        _wait_for_checkpoint(uri, "1")
        assert server.stop() == 0
        os.kill(proc.pid, signal.SIGCONT)
        read_until(proc, "epoch   3/3  batch     2/8")  # epoch 2's points: not written
        os.kill(proc.pid, signal.SIGSTOP)
        time.sleep(15)  # the tracking process gives up on its write (6-9 s): server lost
        server = _start_server(store, port)
        time.sleep(8)  # it looks at the server again every 5 s: back
        os.kill(proc.pid, signal.SIGCONT)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 3, out[-3000:]
        assert "the tracking store did not get everything" in out
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        run_id = re.search(r"mlflow run: (\w+)", out).group(1)  # type: ignore[union-attr]
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and "cvsweep.incomplete" in run.data.tags
        holed = {m.step for m in client.get_metric_history(run_id, "test_acc")}
        # step 18 was sent just before the pause: written or lost depending on timing
        assert {2, 4, 6, 8, 20, 22, 24} <= holed and not holed >= set(range(10, 17, 2))

        again = run_train(args, tmp_path / "again", data_dir)  # a new job folder
        assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
        assert "skipped" not in again.stdout
        folder = work / "run"
        resumed = f"resuming run {run_id} (FINISHED) from the checkpoint in its job folder {folder}"
        assert f"{resumed} at step 24" in again.stdout
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and "cvsweep.incomplete" not in run.data.tags
        steps = [m.step for m in client.get_metric_history(run_id, "test_acc")]
        assert sorted(steps) == list(range(2, 25, 2))  # the hole filled, every point once
        printed = re.findall(r"step +(\d+) \|.*\| test loss [\d.]+ acc +([\d.]+)%", out)
        stored = {m.step: m.value for m in client.get_metric_history(run_id, "test_acc")}
        assert all(abs(100 * stored[int(s)] - float(a)) < 0.01 for s, a in printed)
        assert run.data.tags["output_dir"] == str(tmp_path / "again" / "run")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        server.stop()


def test_damaged_store_is_a_clear_error_and_stays_as_it_was(tmp_path, data_dir):
    db = tmp_path / "mlflow.db"
    junk = bytes(range(256)) * 80
    db.write_bytes(junk)
    for extra in ([], ["-m", "optimizer=sgd,adam"]):
        proc = run_train([*extra, *QUICK, f"tracking.uri=sqlite:///{db}"], tmp_path, data_dir)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert f"error: The tracking store {db} is damaged or is not an MLflow database" in (
            proc.stderr
        )
        assert "Traceback" not in proc.stderr and "sqlalche.me" not in proc.stderr
        assert "training cnn" not in proc.stdout
        assert db.read_bytes() == junk


def test_sqlite_file_of_something_else_is_refused_and_left_alone(tmp_path, data_dir):
    import sqlite3

    db = tmp_path / "notes.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE notes (text)")
        conn.execute("INSERT INTO notes VALUES ('keep me')")
        conn.commit()
    before = db.read_bytes()
    proc = run_train([*QUICK, f"tracking.uri=sqlite:///{db}"], tmp_path, data_dir)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "is an SQLite database of something else (tables: notes)" in proc.stderr
    assert "Traceback" not in proc.stderr and "training cnn" not in proc.stdout
    assert db.read_bytes() == before


def test_two_commands_started_at_once_in_a_new_folder_share_one_store(tmp_path, data_dir):
    """Both open a store that does not exist yet: one creates its tables, the other waits for
    that instead of running MLflow's migrations at the same time (which can wreck the file)."""
    uri = f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"
    single = start_train(
        [*QUICK, "seed=1", uri, f"hydra.run.dir={tmp_path}/one"], tmp_path, data_dir
    )
    sweep = start_train(
        ["-m", *QUICK, "seed=2,3", uri, f"hydra.sweep.dir={tmp_path}/two"], tmp_path, data_dir
    )
    outputs = [proc.communicate(timeout=300)[0] for proc in (single, sweep)]
    assert [single.returncode, sweep.returncode] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    for out in outputs:
        assert "warning" not in out and "already exists" not in out, out[-3000:]
    from mlflow import MlflowClient

    client = MlflowClient(uri.split("=", 1)[1])
    exp = client.get_experiment_by_name("cvsweep")
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.data.params.get("seed", "sweep") for r in runs) == ["1", "2", "3", "sweep"]
    assert {r.info.status for r in runs} == {"FINISHED"}
