"""`cvsweep rerun RUN_ID`: train again from a run's logged config and compare the numbers.

It uses the logged config (not today's defaults), so a run can be reproduced after the code's
defaults have moved. The id is checked before anything is downloaded or written.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from .config import OPTIMIZER_SCHEMAS, ConfigError, TrainConfig
from .hydra_errors import keyless, list_item, past_the_end, renamed_group, unknown_key
from .identity import GROUPS, config_hash, read_job_result
from .job_folder import (
    data_root_for,
    launched_from,
    local_store_hint,
    read_yaml,
    setting,
    trained_root,
)
from .model_source import CHECKPOINT_NAME, MODEL_NAME, RUN_ID
from .outputs import OutputPathError, check_folder
from .signals import HeldSignals, import_held
from .store_errors import (
    EXIT_USER_ERROR,
    StoreError,
    open_client,
    quiet_downloads,
    store_failure,
)
from .store_proxy import TRACKING_INCOMPLETE
from .tracking import TrackingError, store_flag, with_retry
from .user_errors import ERRORS_FOR_USER, one_line, print_user_error

if TYPE_CHECKING:
    from types import ModuleType

GROUP_NAMES = ("dataset", "model", "optimizer", "augment", "schedule", "tracking", "experiment")
COMPARED = ("final_test_acc", "best_test_acc", "final_test_loss", "final_train_loss")


class RerunError(ValueError):
    """A run id or override that cannot be rerun; exit code 2."""


def check_run_id(run_id: str) -> str:
    """Only plain hex ids: nothing that could name a path outside the store."""
    if not RUN_ID.match(run_id.lower()):
        raise RerunError(
            f"{run_id!r} is not an MLflow run id: expected 32 (or 40) hex digits, as "
            "shown in the MLflow UI or printed as `mlflow run:` at the end of a job."
        )
    return run_id.lower()  # MLflow's ids are lowercase; a copy from elsewhere may not be


def typed_config(raw: dict[str, Any]) -> DictConfig:
    """The logged config under today's schemas, with the optimizer's own schema."""
    schema = OmegaConf.structured(TrainConfig)
    name = raw.get("optimizer", {}).get("name")
    if name in OPTIMIZER_SCHEMAS:
        schema.optimizer = OmegaConf.structured(OPTIMIZER_SCHEMAS[name])
    try:
        return OmegaConf.merge(schema, raw)
    except Exception as exc:
        raise RerunError(f"The logged config no longer fits today's schema: {exc}") from None


def apply_overrides(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """The logged config with the rerun's overrides, read as `train.py` reads them (Hydra's
    override grammar, list items by index: `model.layers.0.out=8`)."""
    for item in overrides:
        key, sep, _ = item.partition("=")
        if key.lstrip("+~") in GROUP_NAMES:
            raise RerunError(
                f"Override {item!r}: rerun takes key=value overrides of the logged config "
                "(e.g. trainer.epochs=5 or optimizer.lr=0.01). To switch a config group, run "
                "`python train.py` with the run's `command` tag and your change."
            )
        if not sep and not item.startswith("~"):
            raise RerunError(
                f"Override {item!r} gives no value: rerun takes key=value overrides of the "
                f"logged config (e.g. {item}=VALUE)."
            )
    listed = list_item(overrides)
    if listed:
        raise RerunError(listed)
    merged = OmegaConf.merge(cfg)  # a copy, under the same schemas
    for item, override in zip(overrides, _parsed(overrides), strict=True):
        if override.is_sweep_override():
            raise RerunError(
                f"Override {item!r} gives several values, and a rerun trains one run: give one "
                "value, or sweep with `python train.py -m` and the run's `command` tag."
            )
        if override.is_delete():
            raise RerunError(
                f"Override {item!r}: a rerun changes values of the logged config and removes "
                "none; every run has this setting, so give it a value instead (key=value)."
            )
        # `+key=value` adds a key in Hydra; the schemas say which keys exist, so the `+` only
        # changes how an unknown key is named.
        try:
            OmegaConf.update(merged, override.key_or_group, override.value(), merge=True)
        except (ConfigKeyError, ConfigAttributeError) as exc:
            raise RerunError(unknown_key(exc, override.key_or_group)) from None
        except Exception as exc:
            missing = past_the_end(exc) if isinstance(exc, OmegaConfBaseException) else None
            if missing:
                raise RerunError(f"Override {item!r}: {missing}.") from None
            said = str(exc).splitlines()[0].rstrip(".") if str(exc) else type(exc).__name__
            raise RerunError(f"Override {item!r} does not fit the logged config: {said}.") from None
    _refuse_renamed_groups(cfg, overrides)
    _refuse_untracked(merged, overrides)
    return merged


def _parsed(overrides: list[str]) -> list[Any]:
    """Each override as Hydra's parser reads it on a `train.py` command line."""
    missing_key = keyless(overrides)
    if missing_key:
        raise RerunError(missing_key)
    try:
        return OverridesParser.create().parse_overrides(overrides)
    except HydraException as exc:
        first = str(exc).splitlines()[0]
        raise RerunError(f"Cannot read the overrides {overrides}: {first}.") from None


# Set by the rerun itself: it is logged in the store it reads the original from, as a run of
# its own, so that the two can be compared.
SET_BY_RERUN = ("tracking.uri", "tracking.parent_run_id", "tracking.skip_finished")


def _refuse_untracked(cfg: DictConfig, overrides: list[str]) -> None:
    """A rerun that would not be logged beside the original could not be compared with it: it
    would train in full and only then fail, or log elsewhere than the user asked."""
    for item in overrides:
        key = item.lstrip("+").partition("=")[0]
        if key in SET_BY_RERUN:
            raise RerunError(
                f"Override {item!r}: a rerun sets {key} itself, since it is logged as a run of "
                "its own in the store the original is read from, to be compared with it; "
                "--tracking-uri names that store."
            )
    if not cfg.tracking.enabled:
        raise RerunError(
            "Override tracking.enabled=false: a rerun is logged so that it can be compared with "
            "the original. To train the run's config without tracking, run `python train.py` "
            "with the run's `command` tag and tracking=none."
        )


RERUN_SWITCH = (
    "A rerun keeps the run's options; to switch {group}, run `python train.py` with the run's "
    "`command` tag and {switch}."
)


def _refuse_renamed_groups(cfg: DictConfig, overrides: list[str]) -> None:
    """`dataset.name=fashion_mnist` would keep the rest of the logged option (MNIST's mean and
    std, Adam's betas) and log the run under the old option's name: refused as train.py does,
    with the way to switch that a rerun cannot take."""
    logged = {g: cfg[g].name for g in GROUPS if "name" in cfg.get(g, {})}
    said = renamed_group(overrides, logged, advice=RERUN_SWITCH)
    if said:
        raise RerunError(f"Override {said}")


def _load_logged(
    client: Any, run_id: str, into: Path
) -> tuple[dict, list[str], dict[str, str], Path | None]:
    """The logged config, overrides, group choices, and the folder the run was launched in."""
    try:
        local = Path(with_retry(lambda: client.download_artifacts(run_id, "config", str(into))))
    except StoreError:  # the store, not the run, is what is wrong (served_artifacts)
        raise
    except Exception as exc:
        raise RerunError(
            f"Run {run_id} has no logged config/ artifacts to rerun from ({exc})."
        ) from None
    cfg = yaml.safe_load((local / "config.yaml").read_text())
    overrides_file = local / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.exists() else []
    found = setting(read_yaml(local / "hydra.yaml"), "hydra", "runtime", "choices")
    found = found if isinstance(found, dict) else {}
    choices = {k: str(v) for k, v in found.items() if v is not None}
    return cfg, list(overrides or []), choices, launched_from(local)


def _write_config_dir(folder: Path, cfg: DictConfig, overrides: list[str], source: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, folder / "config.yaml")
    (folder / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if (source / "hydra.yaml").exists():
        (folder / "hydra.yaml").write_text((source / "hydra.yaml").read_text())


def compare_runs(client: Any, original: Any, rerun_id: str) -> tuple[list[str], float, str, int]:
    """A side-by-side table, the largest absolute difference over the numbers both runs
    logged, why the runs cannot match whatever the tolerance ('' when they can), and how many
    numbers were compared.

    A run that was stopped (KILLED) or failed logged only part of its curve and no final
    numbers: what it did log is compared, and the table says where it ended.
    """
    rerun = client.get_run(rerun_id)
    lines = [f"{'metric':<22}{'original':>14}{'rerun':>14}{'difference':>14}"]
    largest, compared = 0.0, 0
    for key in COMPARED:
        a, b = original.data.metrics.get(key), rerun.data.metrics.get(key)
        if a is None or b is None:
            shown = [f"{v:>14.6f}" if v is not None else f"{'-':>14}" for v in (a, b)]
            lines.append(f"{key:<22}{shown[0]}{shown[1]}{'n/a':>14}")
            continue
        largest, compared = max(largest, abs(a - b)), compared + 1
        lines.append(f"{key:<22}{a:>14.6f}{b:>14.6f}{b - a:>14.2e}")
    hist_a = {m.step: m.value for m in client.get_metric_history(original.info.run_id, "test_acc")}
    hist_b = {m.step: m.value for m in client.get_metric_history(rerun_id, "test_acc")}
    common = sorted(set(hist_a) & set(hist_b))
    diff = max((abs(hist_a[s] - hist_b[s]) for s in common), default=0.0)
    largest, compared = max(largest, diff), compared + len(common)
    lines.append(
        f"test_acc history: {len(common)} common log points, largest difference {diff:.2e}"
    )
    status = original.info.status
    mismatch = ""
    if status != "FINISHED":
        failed_at = str(original.data.tags.get("failure_step", ""))
        last = int(failed_at) if failed_at.isdigit() else max(hist_a, default=0)
        lines.append(
            f"note: the original run ended {status} at step {last}: only what it logged up to "
            "there is compared; its final numbers were never logged"
        )
        missing = sorted(hist_a.keys() - hist_b.keys())
        if status == "FAILED" and rerun.info.status == "FINISHED":
            reason = original.data.tags.get("failure_reason", "an error")
            mismatch = (
                f"the original ended FAILED ({reason}) at step {last} and the rerun FINISHED: "
                "the failure did not reproduce"
            )
        elif missing:
            mismatch = (
                f"the rerun did not log test_acc at {len(missing)} of the {len(hist_a)} steps "
                f"the original did (first: step {missing[0]}), as when an override changes "
                "batch size or log_every"
            )
    elif set(hist_a) != set(hist_b):
        mismatch = (
            f"the runs logged test_acc at different steps (original: {len(hist_a)} log points "
            f"up to step {max(hist_a, default=0)}; rerun: {len(hist_b)} up to step "
            f"{max(hist_b, default=0)}), as when an override changes epochs, batch size or "
            "log_every: a rerun with such overrides is a new run, not a reproduction"
        )
    if not compared and not mismatch and rerun.info.status != "FAILED":
        mismatch = (
            "nothing could be compared: the original logged no test_acc point and no final numbers"
        )
    return lines, largest, mismatch, compared


def _failed_alike(client: Any, original: Any, status: str, rerun_id: str | None) -> str:
    """A failed run whose rerun failed the same way at the same step (a learning rate that
    diverges, say): the failure is what reproduces, so the numbers logged up to it are compared
    as any rerun's are. '' for anything else."""
    if status != "FAILED" or rerun_id is None or original.info.status != "FAILED":
        return ""
    was, now = original.data.tags, client.get_run(rerun_id).data.tags
    reason = was.get("failure_reason")
    if not reason or any(was.get(k) != now.get(k) for k in ("failure_reason", "failure_step")):
        return ""
    step = f" at mini-batch {was['failure_step']}" if was.get("failure_step") else ""
    return (
        f"the rerun ended FAILED as the original did ({one_line(reason, 200)}{step}): the numbers "
        "both logged up to there are compared"
    )


def same_threads(cfg: DictConfig, original: Any) -> str | None:
    """Train with the thread count the original run had; returns a note when that matters.

    On a CPU the thread count changes how float sums are split, so the numbers too. A run
    logged with trainer.num_threads=0 (auto) got its count at launch: the machine's, or the
    share a parallel launcher gave it through CVSWEEP_NUM_THREADS. The count is passed the
    same way here, so the config (and its hash) stays the original's. An explicit count in
    the config, or CVSWEEP_NUM_THREADS set by the user, is left alone.
    """
    import torch

    logged = str(original.data.tags.get("num_threads", ""))
    if int(cfg.trainer.num_threads) > 0 or not logged.isdigit() or int(logged) < 1:
        return None
    if os.environ.get("CVSWEEP_NUM_THREADS"):
        return None
    os.environ["CVSWEEP_NUM_THREADS"] = logged
    if int(logged) == torch.get_num_threads():
        return None
    return (
        f"note: the original run trained with {logged} CPU thread(s) (trainer.num_threads=0 "
        f"chose them at launch); the rerun uses {logged} too, not this machine's "
        f"{torch.get_num_threads()}, since the thread count changes the numbers on a CPU"
    )


def other_cpu(original: Any) -> str | None:
    """A note where the original trained on a CPU whose torch kernels differ from this one's.

    The kernels follow the instruction set (AVX2, AVX512, ...), and wider vectors add in
    another order: a bit-exact check can fail for that alone. Runs logged before the tag
    existed, or trained on a GPU, say nothing here.
    """
    import torch

    logged = original.data.tags.get("cpu_capability")
    here = torch.backends.cpu.get_cpu_capability()
    if not logged or original.data.tags.get("device") != "cpu" or logged == here:
        return None
    return (
        f"note: the original run trained with torch's {logged} CPU kernels; this machine's are "
        f"{here}, which add in another order: on its CPU the numbers may differ in the last "
        "digits (rerun on the same kind of machine, or give --check a --tolerance)"
    )


def logged_run(client: Any, uri: str, run_id: str, hint: str = "") -> Any:
    """The run as the store has it; an unknown id is the user's to fix (RerunError), with
    `hint` saying where its job folder says it was tracked, where that is another store."""
    from mlflow.exceptions import MlflowException

    try:
        return with_retry(lambda: client.get_run(run_id))
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise store_failure(uri, exc) from None
        raise RerunError(
            f"Run {run_id} does not exist in the store {uri}." + (f" {hint}" if hint else "")
        ) from None


def deleted_note(run: Any) -> str | None:
    """A run named by id that is in the store's trash is still used, but not silently."""
    if run.info.lifecycle_stage != "deleted":
        return None
    return (
        f"run {run.info.run_id} is deleted (in the store's trash until it is restored or "
        "garbage-collected); it is used as it was logged"
    )


def _check_rerunnable(original: Any, run_id: str, uri: str, check: bool) -> None:
    """Runs that have nothing to rerun, or nothing to check, are refused before training."""
    if original.data.tags.get("cvsweep.sweep") == "true":
        command = original.data.tags.get("command", "")
        raise RerunError(
            f"Run {run_id} is the parent run of a sweep: it holds the sweep's comparison, "
            "not a trained model, so there is no config to rerun. Rerun one of its runs by "
            f"id (`cvsweep compare {run_id}{store_flag(uri)}` lists them)"
            + (f", or run the whole sweep again with `{command}`." if command else ".")
        )
    if check and original.info.status == "KILLED" and "test_acc" not in original.data.metrics:
        raise RerunError(
            f"Run {run_id} was stopped (KILLED) before its first log point: it logged no test "
            "accuracy and no final numbers, so --check would train it and have nothing to "
            "compare. Rerun it without --check to train it as a new run."
        )
    if check and str(original.data.params.get("trainer.shapes_only")).lower() == "true":
        raise RerunError(
            f"Run {run_id} only reported the model's shapes (trainer.shapes_only=true) and "
            "logged no numbers, so --check has nothing to compare. Rerun it without --check "
            "to print its shapes again."
        )


def _original_root(
    cfg: DictConfig, overrides: list[str], launched: Path | None, original: Any
) -> str | None:
    """The data the original run read, unless an override names the root: a relative
    dataset.root is taken from the folder it was launched in (where that folder still has
    it), and a root that resolves elsewhere today (its default comes from $CVSWEEP_DATA) gives
    way to the one it read, where that still holds the dataset; the note says so."""
    if any(o.lstrip("+").startswith("dataset.root=") for o in overrides):
        return None
    try:
        root = Path(str(cfg.dataset.root))
    except Exception:
        return None  # an interpolation that fails is reported by the job's own checks
    if launched is not None and not root.is_absolute() and (launched / root).is_dir():
        root = (launched / root).resolve()
    trained = trained_root(original.data.params.get("dataset.root"), launched)
    chosen, note = data_root_for(str(root), trained, str(cfg.dataset.name))
    if chosen != str(cfg.dataset.root):
        cfg.dataset.root = chosen
    return note


def _refuse_other_job(folder: Path, run_id: str, cfg_hash: str) -> None:
    """--out may resume a stopped rerun of this config, never replace another job's files."""
    result = read_job_result(folder)
    config = folder / ".hydra" / "config.yaml"
    # The files a job writes, found in a folder no job records: the user's own, not to replace.
    theirs = [n for n in (MODEL_NAME, CHECKPOINT_NAME) if (folder / n).exists()]
    if result is None and not config.exists() and not theirs:
        return
    other = ""
    if result is None and not config.exists():
        other = f"it holds {' and '.join(theirs)} of no job that cvsweep records there"
    elif result is not None and result.get("run_id") == run_id:
        other = f"it is the job folder of run {run_id} itself"
    elif result is not None and result.get("status") == "FINISHED":
        other = f"it holds the finished job of run {result.get('run_id')}"
    else:
        try:
            held = config_hash(yaml.safe_load(config.read_text()) or {})
        except (OSError, yaml.YAMLError, TypeError, ValueError):
            held = ""
        if held != cfg_hash:
            other = "it holds the job of another config"
    if other:
        raise OutputPathError(
            f"--out {folder}: {other}, whose files the rerun would replace. Choose a new "
            "folder (or leave out --out for outputs/rerun/<run id>-<time>)."
        )


def _remove_unused(folder: Path, before: set[str] | None) -> None:
    """What a rejected rerun wrote holds only the config it was refused for: it is removed, a
    folder it made with it, so that an --out folder of the user's is as it was (left there,
    it would read as another config's job and refuse the next rerun). `before`: the names the
    folder held when the rerun started, None for a folder it made."""
    if not folder.is_dir():
        return
    added = {p.name for p in folder.iterdir()} - (before or set())
    if not added <= {".hydra", "train.log"}:
        return
    if before is None:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for name in added:
        if (folder / name).is_dir():
            shutil.rmtree(folder / name, ignore_errors=True)
        else:
            (folder / name).unlink(missing_ok=True)


def _stopped_before_comparing(signum: int, run_id: str, rerun_id: str, uri: str) -> int:
    """Ctrl-C or SIGTERM as the rerun finished: the run is complete; the signal still stops the
    command, and the user is told how to see the comparison it did not print."""
    print(
        f"Interrupted by {signal.Signals(signum).name} as the rerun finished: run {rerun_id} is "
        f"complete, but it was not compared with {run_id}; `cvsweep compare {run_id},{rerun_id} "
        f"--tracking-uri {shlex.quote(uri)}` shows both.",
        file=sys.stderr,
        flush=True,
    )
    return 128 + signum


def _load_job() -> ModuleType:
    """The training side (torch), loaded only once there is a run to rerun."""
    import_held("cvsweep.job")
    from . import job

    return job


def _job_folder(chosen: str | None, run_id: str) -> Path:
    """--out, or outputs/rerun/<id>-<time> under the current folder; checked before training."""
    if chosen:
        return check_folder(Path(chosen), "--out")
    default = Path("outputs") / "rerun" / f"{run_id[:8]}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        return check_folder(default, "the rerun's job folder")
    except OutputPathError as exc:
        raise OutputPathError(f"{exc} Choose another folder with --out DIR.") from None


@contextlib.contextmanager
def job_log(out_dir: Path) -> Iterator[None]:
    """The rerun's job folder gets the train.log a job folder has: Hydra opens it for a job
    that train.py starts, and a rerun starts its job itself. Appended to, as a resumed rerun
    adds to what its stopped attempt printed."""
    from .joblog import console_in_job_log

    handler = logging.FileHandler(out_dir / "train.log")
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with console_in_job_log(out_dir):
            yield
    finally:
        root.removeHandler(handler)
        handler.close()


def rerun_main(args: argparse.Namespace) -> int:
    """Exit 0 (1 with --check when the numbers differ), 2 for what the user must fix, 3 when
    the tracking store missed some of the rerun."""
    quiet_downloads()
    out_dir: Path | None = None
    before: set[str] | None = None
    try:
        run_id = check_run_id(args.run_id)
        hint = "" if args.tracking_uri else local_store_hint(run_id)
        client, uri = open_client(args.tracking_uri, missing_hint=hint)
        elsewhere = local_store_hint(run_id, uri) if hint else ""
        original = logged_run(client, uri, run_id, elsewhere)
        _check_rerunnable(original, run_id, uri, args.check)
        deleted = deleted_note(original)
        if deleted:
            print(f"note: {deleted}", flush=True)
        job = _load_job()
        with tempfile.TemporaryDirectory() as tmp:
            raw, logged_overrides, choices, launched = _load_logged(client, run_id, Path(tmp))
            cfg = apply_overrides(typed_config(raw), list(args.overrides))
            if args.check and cfg.trainer.shapes_only:
                raise RerunError(
                    "trainer.shapes_only=true: the rerun would only report the model's shapes "
                    "and log no numbers, so --check has nothing to compare."
                )
            root_note = _original_root(cfg, list(args.overrides), launched, original)
            if root_note:
                print(f"note: {root_note}", flush=True)
            with_tracking = {"uri": uri, "parent_run_id": None, "skip_finished": False}
            cfg = OmegaConf.merge(cfg, {"tracking": with_tracking})
            for note in (same_threads(cfg, original), other_cpu(original)):
                if note:
                    print(note, flush=True)
            out_dir = _job_folder(args.out, run_id)
            before = {p.name for p in out_dir.iterdir()} if out_dir.is_dir() else None
            if args.out:
                _refuse_other_job(out_dir, run_id, config_hash(cfg))
            overrides = [
                o for o in logged_overrides if not o.startswith("tracking.parent_run_id=")
            ] + list(args.overrides)
            _write_config_dir(out_dir / ".hydra", cfg, overrides, Path(tmp) / "config")
        ctx = job.JobContext(
            output_dir=out_dir.resolve(),
            overrides=overrides,
            choices=choices,
            config_dir=(out_dir / ".hydra").resolve(),
            command=" ".join(shlex.quote(a) for a in ["cvsweep", "rerun", run_id, *args.overrides]),
            extra_tags={"rerun_of": run_id},
        )
        held = HeldSignals(signal.SIGINT, signal.SIGTERM, second_ctrl_c_stops=True)
        try:
            with job_log(out_dir):
                outcome = job.run_job(cfg, ctx, held)
        finally:
            held.release()
    except (RerunError, StoreError, ConfigError, TrackingError, OutputPathError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if out_dir is not None:
            _remove_unused(out_dir, before)
        return EXIT_USER_ERROR
    except ERRORS_FOR_USER as exc:  # a DataError: the others are caught above
        print_user_error(exc)
        if out_dir is not None:
            _remove_unused(out_dir, before)
        return EXIT_USER_ERROR
    if outcome.status == "KILLED":  # the line above says by what and where its state is
        print(
            f"note: the rerun was stopped, so nothing is compared; `cvsweep rerun {run_id}` "
            "with the same overrides resumes it from its saved state and then compares",
            flush=True,
        )
        return outcome.exit_code
    failed_alike = _failed_alike(client, original, outcome.status, outcome.run_id)
    if (outcome.status != "FINISHED" or outcome.run_id is None) and not failed_alike:
        print(f"error: the rerun ended {outcome.status}: {outcome.error}", file=sys.stderr)
        return 1
    if failed_alike:
        print(f"note: {failed_alike}", flush=True)
    if held.first is not None:  # arrived as the rerun recorded its end: stop before comparing
        return _stopped_before_comparing(held.first, run_id, outcome.run_id, uri)
    if outcome.tracking_problems:
        print(
            "error: the rerun trained, but the tracking store did not get all of it (the "
            "warnings above say what), so its numbers are not compared. Its files are in "
            f"{out_dir}.",
            file=sys.stderr,
        )
        return TRACKING_INCOMPLETE
    if cfg.trainer.shapes_only:  # a table of dashes would read as numbers that were lost
        print(
            f"\nrerun of {run_id} -> {outcome.run_id}: trainer.shapes_only=true, so the rerun "
            "only reported the model's shapes; there are no numbers to compare"
        )
        return 0
    lines, largest, mismatch, compared = compare_runs(client, original, outcome.run_id)
    print(f"\nrerun of {run_id} -> {outcome.run_id}")
    print("\n".join(lines))
    if mismatch and not args.check:
        print(f"note: {mismatch}")
    if args.check:
        if mismatch:
            print(f"check failed: {mismatch}", file=sys.stderr)
            return 1
        if largest > args.tolerance:
            print(
                f"check failed: largest difference {largest:.3e} > tolerance {args.tolerance}",
                file=sys.stderr,
            )
            return 1
        if not compared:  # only a failure that reproduces gets here: it is what matched
            print(
                "check passed: the rerun failed as the original did, at the same mini-batch; "
                "neither logged a number before it"
            )
            return 0
        print(f"check passed: largest difference {largest:.3e} <= tolerance {args.tolerance}")
    return 0
