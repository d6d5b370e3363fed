"""What users type that no run can use: said in one paragraph naming the key, before any run."""

from __future__ import annotations

import os
import shutil
import signal
import time

import pytest

from .conftest import QUICK, REPO, db_uri, read_until, run_train, start_train

LIST_OF_OPTIONS = (
    "is a list of options: Hydra would merge them into one {group} config (the last one's "
    "values winning), and a run trains one {group}. To compare them, sweep: "
    "python train.py -m {group}={options}."
)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        pytest.param(
            "seed=99999999999999999999",
            "Invalid config value seed=99999999999999999999: must be an integer from 0 to "
            "18446744073709551615.",
            id="seed-too-large",  # was an overflow traceback from torch.manual_seed, exit 1
        ),
        pytest.param(
            "trainer.num_threads=100000",
            "Invalid config value trainer.num_threads=100000: 0 (torch's choice) or a thread "
            "count from 1 to 1024.",
            id="threads",  # was a segmentation fault, exit 139
        ),
        pytest.param(
            "~seed",
            "Missing config value seed: every run needs it, and it was removed (~seed) or never "
            "set; give it one with seed=VALUE.",
            id="removed-key",  # was an attribute-error traceback, exit 1
        ),
        pytest.param(
            "~optimizer",
            "Missing config value optimizer: every run needs it, and it was removed "
            "(~optimizer) or never set; give it one with optimizer=OPTION (one of "
            "conf/optimizer/).",
            id="removed-group",
        ),
        pytest.param(
            "~trainer.epochs",
            "Cannot remove trainer.epochs (~trainer.epochs): every run has this setting; give "
            "it another value with trainer.epochs=VALUE.",
            id="removed-schema-key",
        ),
        pytest.param(
            "~trainer.fault_at_step",
            "Cannot remove trainer.fault_at_step (~trainer.fault_at_step): no run has such a "
            "setting, or it is null (unset) already",
            id="remove-a-null-key",  # "'trainer.fault_at_step' does not exist", yet it does
        ),
        pytest.param(
            "+experiment=speedrun",
            "Cannot add +experiment=speedrun: experiment already has its default option; "
            "choose another with experiment=speedrun, without the +.",
            id="plus-group",  # Hydra's advice was defaults-list syntax: 'override experiment: ...'
        ),
        pytest.param(
            "optimizer=[sgd,adam]",
            "optimizer=[sgd,adam] " + LIST_OF_OPTIONS.format(group="optimizer", options="sgd,adam"),
            id="list-that-fails",  # was "AdamConfig is not a subclass of SGDConfig"
        ),
        pytest.param(
            "augment=[flip,rotate]",
            "augment=[flip,rotate] "
            + LIST_OF_OPTIONS.format(group="augment", options="flip,rotate"),
            id="list-that-merges",  # trained and logged augment=rotate, with no word
        ),
        pytest.param(
            "optimizer=sgd,adam",
            "optimizer=sgd,adam gives several values: to run one job for each, sweep "
            "(python train.py -m optimizer=sgd,adam); a run trains one optimizer.",
            id="sweep-without-m",  # Hydra's first advice was optimizer=[sgd,adam]
        ),
        pytest.param(
            "seed=0,1",
            "seed=0,1 gives several values: to run one job for each, sweep (python train.py "
            "-m seed=0,1); for one list value write seed=[...], for one string quote it: "
            "seed='...'.",
            id="values-without-m",
        ),
        pytest.param(
            "tracking.experiment=my exp, v2",
            "gives several values: to run one job for each, sweep (python train.py -m "
            "'tracking.experiment=my exp, v2');",
            id="values-with-spaces-without-m",  # the command it named could not be pasted
        ),
        pytest.param(
            "experiment=shapes,optimizers",
            "experiment=shapes,optimizers names several presets: a command runs one preset (its "
            "own sweep), so run each as its own command: `python train.py experiment=shapes`; "
            "`python train.py experiment=optimizers`.",
            id="presets-without-m",  # advised -m experiment=shapes,optimizers, which cannot run
        ),
        pytest.param(
            "hydra.output_subdir=hcfg",
            "hydra.output_subdir=hcfg: cvsweep keeps each job's config in Hydra's default folder, "
            "<job folder>/.hydra, and reads it back there",
            id="config-folder-elsewhere",  # trained; evaluate of the folder then found no config
        ),
        pytest.param(
            "trainer.progress=false",
            "Invalid config value trainer.progress=false: allowed: auto, on, off (for false, "
            "write trainer.progress=off).",
            id="bool-for-tri-state",  # showed the value as 'False'
        ),
        pytest.param(
            "hydra.launcher.n_jobs=2",
            "valid keys there: _target_. Settings under hydra.launcher are those of the "
            "launcher chosen with hydra/launcher=... (the default runs jobs one after another "
            "and has none): hydra/launcher=joblib takes n_jobs,",
            id="launcher-setting-without-launcher",
        ),
        pytest.param(
            "model.layers.6.out=11",
            "Invalid config value model.layers.6.out=11: the last layer (fc2) gives one score "
            "per class: out = num_classes (10).",
            id="last-layer-out",  # named model.layers='last layer fc2'
        ),
        pytest.param(
            "schedule.phases.0.epochs=3",
            "Invalid config key in schedule.phases.0.epochs=3: schedule.phases is empty, so "
            "there is no schedule.phases.0;",
            id="phase-of-no-phases",  # said schedule.phases.0 to schedule.phases.-1
        ),
        pytest.param(
            "schedule.phases=[{epochs:1,optimizer:{name:sgd}}]",
            "Missing config value schedule.phases.0.optimizer.lr: sgd has no default lr, and a "
            "phase that switches to another optimizer takes none of the run's settings; give it "
            "one with schedule.phases.0.optimizer.lr=VALUE.",
            id="phase-optimizer-without-lr",  # was a MissingMandatoryValue traceback, exit 1
        ),
        pytest.param(
            "schedule.phases=[{epochs:1,optimizer:{name:sgd,lr:abc}}]",
            "Invalid optimizer settings {'name': 'sgd', 'lr': 'abc'} for sgd: Value 'abc' of "
            "type 'str' could not be converted to Float; full_key: lr; object_type=SGDConfig.",
            id="phase-lr-not-a-number",  # was three lines
        ),
        pytest.param(
            "dataset.name=fashion_mnist",
            "dataset.name=fashion_mnist renames the dataset option without switching to it: the "
            "other settings of dataset=mnist would stay, and the run would be logged as "
            "dataset=mnist. To train with another dataset, choose it: python train.py "
            "dataset=fashion_mnist.",
            id="group-renamed",  # trained Fashion-MNIST with MNIST's mean/std, logged as mnist
        ),
        pytest.param(
            "dataset.name=cifar",
            "dataset.name=cifar names no dataset option (dataset.name only renames the chosen "
            "one, dataset=mnist): the dataset options are fashion_mnist, mnist. To train with "
            "another dataset, choose it: python train.py dataset=OPTION.",
            id="group-renamed-to-no-option",  # advised `dataset=cifar`, itself refused
        ),
        pytest.param(
            "model.layers.conv1.out=32",
            "Invalid config key model.layers.conv1.out: model.layers is a list, so each layer in "
            "it is addressed by its index, not its name; conv1 is model.layers.0 in model=cnn: "
            "write model.layers.0.out=32.",
            id="list-item-by-name",  # a TypeError traceback from OmegaConf
        ),
        pytest.param(
            "~schedule.phases.0",
            "Cannot remove schedule.phases.0 (~schedule.phases.0): Hydra removes keys, not "
            "single items of a list; give schedule.phases as a whole list without that phase "
            "(schedule.phases=[...]).",
            id="remove-a-list-item",  # a TypeError traceback from Hydra
        ),
        pytest.param(
            "model.layers.0.name=train",
            "Invalid config value model.layers.0.name='train': torch's modules already use that "
            "name (a method or attribute of nn.Module); rename the layer.",
            id="layer-name-of-a-module-method",  # said after the store was made
        ),
        pytest.param(
            "dataset.root=~/x",
            "(Hydra's override syntax); a ~ is not expanded here: write the full path "
            "(dataset.root=$HOME/...).",
            id="unexpanded-tilde",
        ),
    ],
)
def test_a_run_that_cannot_be_made_stops_with_one_paragraph(tmp_path, data_dir, override, message):
    args = [*QUICK, override, f"tracking.uri={db_uri(tmp_path)}"]
    proc = run_train(args, tmp_path, data_dir)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.startswith("error: ") and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "shape report" not in proc.stdout.lower()
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        pytest.param(
            ["optimizer.lr=interval(0.001,0.1)"],
            "error: Cannot expand the sweep: interval(low,high) is a range to sample from, "
            "which only sampling sweepers (Optuna, Ax, ...) take; the default sweeper runs the "
            "values it is given: list them (optimizer.lr=0.001,0.01,0.1) or use "
            "range(start,stop,step).\n",
            id="interval",  # was a warning, then Hydra's traceback twice, exit 1
        ),
        pytest.param(
            ["seed=range(0,0)"],
            "error: Cannot expand the sweep: seed=range(0,0) ",
            id="empty-range",  # a parent run, a report of no job, exit 0
        ),
        pytest.param(
            ["optimizer=sgd,adam", "seed=0,1", "hydra.sweep.subdir=${optimizer.name}"],
            "error: job #1 (optimizer=sgd seed=1 ",
            id="shared-job-folder",  # job #1 overwrote job #0's model; "1 jobs ended"
        ),
        pytest.param(
            ['+hydra.sweeper.params.optimizer.lr="0.01,-1"'],
            "error: hydra.sweeper.params cannot be set on the command line: Hydra's sweeper "
            "reads it from a config file",
            id="sweeper-params-on-the-command-line",  # an AssertionError traceback from OmegaConf
        ),
        pytest.param(
            ["seed=0,1", "hydra.output_subdir=null"],
            "error: hydra.output_subdir=null (no config folder at all): cvsweep keeps each job's "
            "config in Hydra's default folder",
            id="no-config-folder",  # trained runs that rerun and evaluate then could not read
        ),
        pytest.param(
            ["augment=[flip,rotate]"],
            "error: augment=[flip,rotate] "
            + LIST_OF_OPTIONS.format(group="augment", options="flip,rotate")
            + "\n",
            id="list-of-options",
        ),
        pytest.param(
            ["optimizer.name=sgd,adam"],
            "error: optimizer.name=sgd,adam renames the optimizer option without switching to "
            "it: the other settings of optimizer=adam would stay, and the run would be logged "
            "as optimizer=adam. To train with another optimizer, choose it: python train.py -m "
            "optimizer=sgd,adam.\n",
            id="group-renamed",  # job sgd failed on Adam's betas; job adam ran
        ),
        pytest.param(
            ["optimizer=sgd,rmsprop", "optimizer.momentum=0.5"],
            "error: Unknown config key optimizer.momentum: a sweep over optimizer=sgd,rmsprop is "
            "composed once with the default optimizer (adam) before its jobs, and the adam "
            "optimizer has no setting 'momentum'. To set it in each job whose optimizer has it, "
            "write ++optimizer.momentum=0.5; a job whose optimizer has no such setting is then "
            "named.\n",
            id="setting-of-swept-optimizers",  # named adam, which the sweep did not train
        ),
        pytest.param(
            ["model.layers.conv1.out=16,32"],
            "error: job #0 (model.layers.conv1.out=16 ",
            id="swept-list-item-by-name",  # a TypeError traceback, exit 1
        ),
        pytest.param(
            ["model.layers.0.name=conv1,training"],
            "error: job #1 (model.layers.0.name=training ",
            id="swept-layer-name-of-a-module-method",  # job #0 trained, then #1 failed
        ),
        pytest.param(
            ["trainer.device=cpu,cuda"],
            "error: job #1 (trainer.device=cuda ",
            id="swept-device-that-is-not-here",  # job #0 trained, then #1 failed
            marks=pytest.mark.skipif(
                bool(shutil.which("nvidia-smi")), reason="a CUDA device may be here"
            ),
        ),
        pytest.param(
            ["augment=[flip],[rotate,none]"],
            "error: augment=[flip],[rotate,none] "
            + LIST_OF_OPTIONS.format(group="augment", options="flip,rotate,none")
            + "\n",
            id="sweep-of-lists-of-options",  # the advice was "-m augment=[flip],[rotate,none]"
        ),
    ],
)
def test_a_sweep_that_cannot_run_as_asked_stops_before_its_parent_run(
    tmp_path, data_dir, sweep, message
):
    args = ["-m", *sweep, *QUICK, "trainer.shapes_only=true", f"tracking.uri={db_uri(tmp_path)}"]
    proc = run_train(args, tmp_path, data_dir)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.startswith(message), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "Warning" not in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()
    assert not list((tmp_path / "multirun").glob("*/.hydra"))  # no job started


def test_a_sweep_over_presets_that_sweep_themselves_names_one_command_each(tmp_path, data_dir):
    """Hydra expands `-m experiment=a,b` before it reads the presets: their own sweeps (seeds,
    augment, batch 256) would be lost, and each job would train once at the defaults."""
    args = ["-m", "experiment=augmentation,speedrun", "trainer.epochs=1"]
    proc = run_train([*args, f"tracking.uri={db_uri(tmp_path)}"], tmp_path, data_dir)
    assert proc.returncode == 2, proc.stderr[-3000:]
    err = proc.stderr
    assert err.startswith(
        "error: Cannot sweep experiment=augmentation,speedrun trainer.epochs=1"
    ), err
    assert "the presets augmentation and speedrun each sweep themselves" in err, err
    assert "`python train.py experiment=augmentation trainer.epochs=1 " in err, err
    assert "`python train.py experiment=speedrun trainer.epochs=1 " in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "mlflow.db").exists()
    assert not list((tmp_path / "multirun").glob("*/*/.hydra"))  # no job started


def test_two_jobs_in_one_folder_are_named_with_the_fix(tmp_path, data_dir):
    args = ["-m", "optimizer=sgd,adam", "hydra.sweep.subdir=x", *QUICK, "tracking=none"]
    proc = run_train(args, tmp_path, data_dir)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert (
        "jobs #0 and #1 would both write to the job folder 'x' (hydra.sweep.subdir), the second "
        "over the first's model and checkpoint; make it differ between jobs, e.g. "
        "${hydra.job.num} (the default) or ${hydra.job.override_dirname}" in proc.stderr
    )


@pytest.mark.skipif(bool(shutil.which("srun") or shutil.which("sbatch")), reason="SLURM here")
def test_the_slurm_example_without_slurm_says_so_before_any_run(tmp_path, data_dir):
    """It created a FAILED parent run and advised changing the launcher's settings."""
    args = ["-m", "hydra/launcher=slurm_example", "optimizer=sgd,adam", *QUICK]
    proc = run_train([*args, f"tracking.uri={db_uri(tmp_path)}"], tmp_path, data_dir)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr == (
        "error: hydra/launcher=slurm_example submits the jobs to a SLURM cluster, and this "
        "machine has none (no srun or sbatch on PATH). Run the command on the cluster's login "
        "node, or run the jobs here with hydra/launcher=submitit_local or "
        "hydra/launcher=joblib.\n"
    )
    assert "sweep parent run" not in proc.stdout
    assert not (tmp_path / "mlflow.db").exists()


def test_ctrl_c_while_a_long_sweep_is_checked_stops_it_there(tmp_path, data_dir):
    """Ctrl-C was held until every job's config had been checked (0.1 s a job)."""
    db = tmp_path / "mlflow.db"
    args = ["-m", "seed=range(0,400)", *QUICK, "trainer.shapes_only=true"]
    proc = start_train(
        [*args, f"tracking.uri=sqlite:///{db}", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        tmp_path,
        data_dir,
    )
    seen = read_until(proc, "checking the config of each of the 400 jobs")
    assert "(Ctrl-C stops)" in seen[-1], "".join(seen)
    time.sleep(1)
    pressed = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    out = "".join(seen) + proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, out
    assert time.monotonic() - pressed < 15, out  # not after the remaining checks
    assert "Interrupted by SIGINT while starting: nothing was trained." in out
    assert "Launching" not in out and "Traceback" not in out
    assert not db.exists() and not (tmp_path / "sweep").exists()


def test_an_unexpected_error_in_a_sweep_hook_stops_the_command():
    """Hydra turns a callback's exception into a warning and carries on without its set-up."""
    from cvsweep.sweep import _not_swallowed

    @_not_swallowed
    def hook() -> None:
        raise RuntimeError("boom")

    with pytest.raises(SystemExit) as stop:
        hook()
    assert stop.value.code == 1
    # Every hook the sweep's callback has is guarded so (one wrapper code object for all).
    from hydra.experimental.callback import Callback

    from cvsweep.sweep import MlflowSweepCallback

    hooks = [n for n in vars(Callback) if n.startswith("on_") and n in vars(MlflowSweepCallback)]
    assert {"on_run_start", "on_multirun_start", "on_multirun_end"} <= set(hooks), hooks
    for name in hooks:
        assert getattr(MlflowSweepCallback, name).__code__ is hook.__code__, name


def test_experimental_rerun_of_a_file_that_is_no_config_pickle(tmp_path, data_dir):
    """Hydra unpickles what --experimental-rerun names: a text file or the config.yaml beside
    config.pickle ended in an UnpicklingError traceback."""
    for name, text in (("notes.txt", "garbage\n"), ("config.yaml", "seed: 0\n")):
        (tmp_path / name).write_text(text)
        proc = run_train(["--experimental-rerun", str(tmp_path / name)], tmp_path, data_dir)
        assert proc.returncode == 2, proc.stderr[-2000:]
        err = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
        assert len(err) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert err[0].startswith(
            "error: --experimental-rerun could not read its file as a job's config ("
        ), err
        assert "`cvsweep rerun <run id>` reruns any logged run without it." in err[0]


def test_a_key_set_under_a_node_removed_on_the_same_line_is_named_so(tmp_path, data_dir):
    """`~trainer trainer.shapes_only=true`: the error said the top level has no `trainer`,
    listed `trainer` among its valid keys, and asked "Did you mean trainer?"."""
    proc = run_train(["~trainer", "trainer.shapes_only=true"], tmp_path, data_dir)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr == (
        "error: Cannot set trainer.shapes_only: trainer was removed (~trainer) on the same "
        "command line, so nothing is left to set under it; drop ~trainer.\n"
    )


def test_the_shipped_layer_names_are_free_in_torch_modules():
    """config.validate passes these names without importing torch to look: the check it skips
    must hold for them, and every shipped model may use only them."""
    from omegaconf import OmegaConf
    from torch import nn

    from cvsweep.config import _SHIPPED_LAYER_NAMES

    used = {
        str(layer.name)
        for path in (REPO / "conf" / "model").glob("*.yaml")
        for layer in OmegaConf.load(path).layers
    }
    assert used <= _SHIPPED_LAYER_NAMES
    assert not [n for n in _SHIPPED_LAYER_NAMES if hasattr(nn.Sequential(), n)]
