"""A run trained with $CVSWEEP_DATA set, met later in a shell without it: `evaluate` and
`rerun` read the data the run read (and say so) instead of failing on, or fetching into, data/."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from .conftest import cli_env, run_cvsweep, store_uri, tracked_quick_run

# The tests share a module-scoped fixture: pytest-xdist runs them all on one worker.
pytestmark = pytest.mark.xdist_group("data_root")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    """One tracked quick run with CVSWEEP_DATA set: (launch folder, job folder, run id, acc)."""
    return tracked_quick_run(tmp_path_factory.mktemp("data_root"), data_dir)


def _without_data_env(data_dir: Path) -> dict[str, str]:
    return {k: v for k, v in cli_env(data_dir).items() if k != "CVSWEEP_DATA"}


def test_the_job_records_the_data_root_it_read(trained, data_dir):
    _, folder, _, _ = trained
    result = json.loads((folder / "job_result.json").read_text())
    assert result["data_root"] == str(data_dir.resolve())


def test_evaluate_and_rerun_read_the_data_the_run_read(trained, tmp_path, data_dir):
    launch, folder, run_id, acc = trained
    env = _without_data_env(data_dir)
    # The root as it resolves now: data/ of the folder the run was launched from (a job
    # folder says which), else of the folder the command runs in.
    note = re.compile(
        r"note: dataset\.root resolves to (\S*/)?data here, which does not hold mnist; "
        f"reading it from {re.escape(str(data_dir.resolve()))}, where the run read it"
    )
    store = ["--tracking-uri", store_uri(launch)]
    for source in ([str(folder)], [run_id, *store]):
        proc = run_cvsweep(["evaluate", *source], tmp_path, env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert note.search(proc.stdout), proc.stdout
        assert f"the run logged {acc}% on these images: the same" in proc.stdout

    proc = run_cvsweep(["rerun", run_id, "--check", *store], tmp_path, env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert note.search(proc.stdout), proc.stdout
    assert "check passed" in proc.stdout
    assert not (tmp_path / "data").exists()  # nothing fetched into the folder it ran in


def test_a_root_set_on_purpose_is_used_and_a_root_since_removed_is_not(trained, tmp_path, data_dir):
    """--data-root wins without a note; where the recorded root no longer holds the data, the
    error is about the root as it resolves now, as before the root was recorded."""
    launch, folder, _, _ = trained
    env = _without_data_env(data_dir)
    proc = run_cvsweep(
        ["evaluate", str(folder), "--data-root", str(data_dir)], tmp_path, env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "note: dataset.root" not in proc.stdout

    job = tmp_path / "job"
    shutil.copytree(folder, job)
    result = json.loads((job / "job_result.json").read_text())
    result["data_root"] = str(tmp_path / "removed")
    (job / "job_result.json").write_text(json.dumps(result))
    proc = run_cvsweep(["evaluate", str(job)], tmp_path, env, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    now = launch / "data"  # the default root, in the folder the run was launched from
    assert f"Dataset mnist is incomplete in {now}/MNIST/raw" in proc.stderr
    assert f"Run `cvsweep data fetch mnist --root {now}` or place the files" in proc.stderr
