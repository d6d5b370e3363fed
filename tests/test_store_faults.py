"""A tracking store that cannot be used is reported before training, or tolerated on request."""

from __future__ import annotations

from .conftest import QUICK, run_train


def test_unwritable_store_is_a_clear_error_before_training(tmp_path, data_dir):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = run_train(
        [*QUICK, f"tracking.uri=sqlite:///{blocker}/sub/mlflow.db"], tmp_path, data_dir
    )
    assert proc.returncode == 2
    assert "is not writable" in proc.stderr and "tracking.required=false" in proc.stderr
    assert "training cnn" not in proc.stdout
    assert "Traceback" not in proc.stderr


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
    from cvsweep.server import free_port

    port = free_port()
    proc = run_train([*QUICK, f"tracking.uri=http://127.0.0.1:{port}"], tmp_path, data_dir)
    assert proc.returncode == 2
    assert f"Tracking server http://127.0.0.1:{port} is not answering" in proc.stderr
    assert "Traceback" not in proc.stderr


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
