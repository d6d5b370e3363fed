"""`cvsweep ui`/`server` on a new store make its tables under the lock a first run takes.

Started together on a missing `mlflow.db`, a server and a first `python train.py` would
otherwise both run MLflow's migrations on the same file.
"""

from __future__ import annotations

import fcntl
import sqlite3
import time
from pathlib import Path

from cvsweep.server import free_port
from tests.test_ui import CliProcess, _children


def test_a_new_store_waits_for_a_first_run_making_its_tables(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    with open(f"{db}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as train.py holds it while it makes the tables
        cli = CliProcess(
            ["ui", "--port", str(free_port()), "--tracking-uri", f"sqlite:///{db}"], tmp_path
        )
        try:
            time.sleep(4)  # past its imports: it is waiting on the lock by now
            assert cli.proc.poll() is None, cli.output
            assert not _children(cli.proc.pid), "MLflow's server started before the lock was free"
            assert not db.exists()
        except BaseException:
            cli.stop()
            raise
    try:
        cli.wait_for(r"store: sqlite:///\S+  \(new: nothing was logged here before\)")
        with sqlite3.connect(db) as conn:
            tables = {name for (name,) in conn.execute("select name from sqlite_master")}
        assert {"experiments", "runs", "alembic_version"} <= tables
        assert "Creating initial MLflow database tables" not in cli.output
        # The tables made, the UI lets go of the lock: a first run does not wait on it.
        with open(f"{db}.lock", "a") as again:
            fcntl.flock(again, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        assert cli.stop() == 0, cli.output
