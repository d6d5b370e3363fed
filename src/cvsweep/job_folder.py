"""What a job's recorded files say about how it ran: the YAML Hydra wrote in `.hydra/` (the job
folder's own, or the `config/` copy logged to its run), the folder it was launched from, the
data root it read, and the store it was tracked in.

`evaluate`, `rerun` and `load_model` meet folders written by earlier versions and folders
edited by hand, so a file that is missing or not valid YAML reads as empty here and each caller
says what it lacks. Importing this module loads neither torch nor mlflow (commands import it
before they know they will train).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import yaml

from .store_option import given


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping, or {} where the file is missing, unreadable or not a mapping."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return {}
    return raw if isinstance(raw, dict) else {}


def setting(raw: dict[str, Any], *keys: str) -> Any:
    """raw[k1][k2]...; None where a level is missing or not a mapping."""
    for key in keys:
        raw = raw.get(key) if isinstance(raw, dict) else None
    return raw


def launched_from(config_dir: Path) -> Path | None:
    """Hydra's runtime.cwd from a `.hydra` folder or its logged copy: relative paths in the
    job's config (dataset.root, a sqlite store) were resolved against it."""
    launched = setting(read_yaml(config_dir / "hydra.yaml"), "hydra", "runtime", "cwd")
    return Path(launched) if isinstance(launched, str) and launched else None


def launch_dir(folder: Path) -> Path | None:
    """The folder a job folder's job was launched from."""
    return launched_from(folder / ".hydra")


def job_config(folder: Path) -> dict[str, Any]:
    """The job's config as Hydra saved it (interpolations unresolved)."""
    return read_yaml(folder / ".hydra" / "config.yaml")


def tracked_in(folder: Path) -> str | None:
    """The tracking.uri a job folder's config names, where it names one outright."""
    uri = setting(job_config(folder), "tracking", "uri")
    return uri if isinstance(uri, str) and uri and "${" not in uri else None


def trained_root(logged: Any, launched: Path | None) -> Path | None:
    """The data root a run read, from the dataset.root it logged resolved (its param, or its
    job result's data_root): a relative one is taken from the folder it was launched in."""
    if not isinstance(logged, str) or not logged:
        return None
    root = Path(logged)
    if root.is_absolute():
        return root
    return launched / root if launched is not None else None


def data_root_for(
    now: str,
    trained: Path | None,
    dataset: str,
    splits: tuple[str, ...] = ("train", "test"),
    option: str = "dataset.root=",
) -> tuple[str, str | None]:
    """The root to read `dataset` from, and a note where it is not `now`.

    `now` is the logged dataset.root as it resolves today. Its default comes from
    $CVSWEEP_DATA, so a run trained with that set, and evaluated or rerun in a shell without it,
    would otherwise look in data/ (or fetch the data there). Where `now` lacks the dataset and
    the root the run read still holds it, that root is used, and said so; the files are
    checked against the same pinned hashes either way. `option` is how the command that asks
    is given a root (evaluate's --data-root, rerun's dataset.root=).
    """
    from .data import missing_files

    if trained is None or Path(now) == trained or not missing_files(now, dataset, splits):
        return now, None
    try:
        if missing_files(trained, dataset, splits):
            return now, None
    except OSError:  # another user's folder this one may not read: as if it were gone
        return now, None
    return str(trained), (
        f"dataset.root resolves to {now} here, which does not hold {dataset}; reading it from "
        f"{trained}, where the run read it (set CVSWEEP_DATA or pass {option}DIR to choose)"
    )


def holds_run(folder: Path, run_id: str) -> bool:
    """Are a folder's model and checkpoint still run `run_id`'s own? A run's `output_dir` tag
    names the folder it trained in, but a fixed `hydra.run.dir` (or sweep folder) used again
    gives that folder to later jobs: its `job_result.json` then names another run, or a job
    that was skipped as identical to this one and trained nothing there."""
    from .identity import read_job_result

    result = read_job_result(folder)
    if not result or result.get("run_id") != run_id:
        return False
    return result.get("status") != "SKIPPED" or bool(result.get("trained_here"))


def local_store_hint(run_id: str, looked_in: str | None = None) -> str:
    """Where the run's own job folder, if one is here, says it was tracked: the default store
    is the wrong place to look for a run that was logged to a server or another file. Nothing
    where that is the store `looked_in` already."""
    from .identity import read_job_result
    from .tracking import TrackingError, resolve_uri

    here = Path(".")
    for found in [*here.glob("outputs/*/*/"), *here.glob("multirun/*/*/*/"), *here.glob("*/")]:
        result = read_job_result(found)
        if not result or result.get("run_id") != run_id:
            continue
        uri = tracked_in(found)
        if uri:
            with contextlib.suppress(TrackingError):  # said as the folder names it
                uri = resolve_uri(uri, launch_dir(found))
            if uri == looked_in:
                return ""
            return f"Run {run_id}'s job folder {found} was tracked in {uri}: pass {given(uri)}."
    return ""
