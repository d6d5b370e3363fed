"""Bad configs and bad data stop the job early with a message that names the problem."""

from __future__ import annotations

import gzip
import re
import shutil

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from cvsweep.config import (
    OPTIMIZER_SCHEMAS,
    ConfigError,
    optimizer_config,
    register_schemas,
    unused_with_phases,
    validate,
)
from cvsweep.model import build_model

from .conftest import QUICK, REPO, cli_env, db_uri, run_train


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("optimizer.lr=-1", "optimizer.lr"),
        ("trainer.batch_size=0", "trainer.batch_size"),
        ("trainer.epochs=0", "trainer.epochs"),
        ("dataset.train_limit=0", "dataset.train_limit"),
        ("trainer.device=tpu", "trainer.device"),
        ("augment.degrees=200", "augment.degrees"),
        ("dataset.mean=nan", "dataset.mean"),  # no range to check: finite is the rule
        ("optimizer.lr=inf", "optimizer.lr"),  # > 0, but not a rate
        ("trainer.split_bias_grad=sometimes", "trainer.split_bias_grad"),
        ("tracking.experiment=''", "tracking.experiment"),
        ("schedule=cosine schedule.min_lr=1", "schedule.min_lr"),
        ("model.layers.0.kernel=50", "model.layers.0.kernel"),  # larger than the image
        ("model.layers.2.kernel=13", "model.layers.2.kernel"),  # conv2 gets pool1's 12x12
        (
            "schedule=sgd_then_adam schedule.phases.0.optimizer.name=foo",
            "schedule.phases.0.optimizer.name",
        ),
        ("model.image_size=32", "model.image_size"),  # was a shape error mid-run
        # torch's ValueError traceback at the first step:
        ("optimizer=sgd optimizer.nesterov=true optimizer.momentum=0", "optimizer.momentum"),
        ("optimizer=rmsprop optimizer.alpha=1.5", "optimizer.alpha"),  # NaN, "lower the lr"
        ("model.layers.2.name=conv1", "model.layers.2.name"),  # would replace conv1
        (
            "schedule=sgd_then_adam schedule.scheduler=cosine schedule.min_lr=0.001",
            "schedule.min_lr",  # the phases train at 1e-4: "annealing" would climb
        ),
    ],
)
def test_out_of_range_values_name_the_key(tmp_path, data_dir, override, key):
    proc = run_train([*override.split(), f"tracking.uri={db_uri(tmp_path)}"], tmp_path, data_dir)
    assert proc.returncode == 2
    assert f"Invalid config value {key}=" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()  # rejected before any tracking


def _imported(stderr: str) -> set[str]:
    """The modules `python -X importtime` reports (the tracking process's included)."""
    return set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", stderr, re.M))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.lr=-1", "error: Invalid config value optimizer.lr=-1.0"),
        ("dataset.root=/no/such/folder/at/all", "error: Invalid config value dataset.root="),
    ],
)
def test_a_single_runs_bad_value_is_refused_before_torch_loads(
    tmp_path, data_dir, override, message
):
    """torch's import was 2 s of the 2.3 s a mistyped value took to be named; the config and
    the data root are now checked before it, with the same message, train.log line and exit."""
    proc = run_train([override], tmp_path, data_dir, python_flags=("-X", "importtime"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    imported = _imported(proc.stderr)
    assert "hydra" in imported and "cvsweep.config" in imported  # the report is read right
    assert not {"torch", "cvsweep.job", "cvsweep.engine"} & imported
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(message), errors
    assert errors[0] in (tmp_path / "run" / "train.log").read_text()
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "optimizer=nesterov",
            "Unknown option optimizer=nesterov: the options are adam, adamw, rmsprop, sgd.",
        ),
        (
            "trainer.epochs=many",
            "Invalid config value trainer.epochs=many: Value 'many' of type 'str' could not be "
            "converted to Integer.",
        ),
        ("trainer.unknown_key=1", "Unknown config key trainer.unknown_key: trainer has no"),
        (
            "optimizer.lr=abc",
            "Invalid config value optimizer.lr=abc: Value 'abc' of type 'str' could not be "
            "converted to Float.",
        ),
        ("optimizer=sgd_schema", "Unknown option optimizer=sgd_schema: the options are adam,"),
        (
            "optimizer.lr=[1",
            "Cannot read the override 'optimizer.lr=[1': no viable alternative at input '[1'",
        ),
        (
            "model.layers.9.out=3",
            "Invalid config key in model.layers.9.out=3: model.layers has 7 item(s), "
            "model.layers.0 to model.layers.6, so there is no model.layers.9;",
        ),
        ("optimizer=adam", None),  # control: a valid option passes composition
    ],
)
def test_hydra_rejects_unknown_options_types_and_keys(tmp_path, data_dir, override, message):
    args = [override, "trainer.shapes_only=true", "tracking.enabled=false"]
    proc = run_train(args, tmp_path, data_dir)
    if message is None:
        assert proc.returncode == 0, proc.stderr[-2000:]
    else:
        assert proc.returncode == 2, proc.stderr[-2000:]  # the user's to fix, like any config
        # One paragraph: no config search path, no OmegaConf key block, no traceback
        assert proc.stderr.startswith("error: "), proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert message in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["optimizer.lrr=0.1"],
            "error: Unknown config key optimizer.lrr: the adam optimizer has no setting 'lrr'; "
            "valid keys for adam: name, lr, weight_decay, betas, eps. Did you mean optimizer.lr?",
            id="misspelled",
        ),
        pytest.param(
            ["trainr.epochs=2"],
            "error: Unknown config key trainr.epochs: the top level has no setting 'trainr'; "
            "valid keys there: dataset,",
            id="misspelled-group",
        ),
        pytest.param(
            ["optimizer=adamm"],
            "error: Unknown option optimizer=adamm: the options are adam, adamw, rmsprop, sgd. "
            "Did you mean optimizer=adam?",
            id="option",
        ),
        pytest.param(
            ["-m", "optimizer.lr=0.1,abc"],
            "error: job #1 (optimizer.lr=abc ...): Invalid config value optimizer.lr=abc: Value "
            "'abc' of type 'str' could not be converted to Float.",
            id="sweep-value",
        ),
        pytest.param(
            ["-m", "optimizer.lrr=0.1,0.2"],
            "error: job #0 (optimizer.lrr=0.1 ...): Unknown config key optimizer.lrr: the adam "
            "optimizer has no setting 'lrr';",
            id="sweep-key",
        ),
        pytest.param(
            ["schedule=sgd_then_adam", "schedule.phases.1.optimizer.momentum=0.5"],
            "error: Unknown config key schedule.phases.1.optimizer.momentum: "
            "schedule.phases.1.optimizer has only name, lr; add a new one with "
            "+schedule.phases.1.optimizer.momentum=VALUE.",
            id="phase-setting",
        ),
    ],
)
def test_a_misspelled_key_or_option_is_named_with_what_was_meant(tmp_path, data_dir, args, message):
    """Hydra's hint for a misspelled key was to add it with `+`, which cvsweep then rejects."""
    proc = run_train(
        [*args, "trainer.shapes_only=true", "tracking.enabled=false"], tmp_path, data_dir
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    first, rest = message.split(" ...)", 1) if " ...)" in message else (message, "")
    assert first in proc.stderr and rest in proc.stderr, proc.stderr
    assert "To append to your config use +" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "multirun").exists() or not any((tmp_path / "multirun").rglob("*.pth"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param(
            ["+optimizer.lrr=0.1"],
            "Unknown config key optimizer.lrr: the adam optimizer has no setting 'lrr'; "
            "valid keys for adam: name, lr, weight_decay, betas, eps.",
            id="optimizer",
        ),
        pytest.param(
            ["schedule=sgd_then_adam", "+schedule.phases.1.optimizer.momentum=0.9"],
            "Unknown config key schedule.phases.1.optimizer.momentum: the adam optimizer has no "
            "setting 'momentum'; valid keys for adam:",
            id="phase",
        ),
        pytest.param(
            ["+trainer.nonsense=1"],
            "Unknown config key trainer.nonsense: trainer has no setting 'nonsense'; "
            "valid keys there: epochs, batch_size,",
            id="trainer",
        ),
        pytest.param(
            ["+something_unknown_at_top_level=1"],
            "Unknown config key something_unknown_at_top_level: the top level has no setting",
            id="top_level",
        ),
    ],
)
def test_unknown_key_added_with_plus_stops_before_any_run(tmp_path, data_dir, overrides, message):
    proc = run_train([*overrides, *QUICK, f"tracking.uri={db_uri(tmp_path)}"], tmp_path, data_dir)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"error: {message}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "shape report" not in proc.stdout  # stopped before any data was read
    assert not (tmp_path / "mlflow.db").exists()  # and before any tracking run existed


def test_a_layer_list_that_cannot_be_built_is_a_config_error():
    register_schemas()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train")
    cfg.model.layers[0].kind = "linear"  # conv1 as a linear layer: pool1 would get a flat input
    cfg.model.layers[0].kernel = 1  # (a linear layer has no kernel of 5)
    with pytest.raises(
        ConfigError,
        match=r"model\.layers\.1\.kind='maxpool': a maxpool layer "
        r"cannot follow the linear layer conv1",
    ):
        validate(cfg)


def _composed(*overrides: str):
    register_schemas()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=list(overrides))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.in_channels=3", "model.in_channels=3: mnist images have 1 channel; it must be 1"),
        (
            "model.num_classes=5 model.layers.6.out=5",
            "model.num_classes=5: mnist has 10 classes; it must be 10",
        ),
        ("model.layers.5.name=fc.1", "model.layers.5.name='fc.1': a layer name is a letter"),
        ("model.layers.5.name=''", "model.layers.5.name='': a layer name is a letter"),
        (
            "model.layers.1.padding=2",
            "model.layers.1.padding=2: a maxpool's padding can be at most half its kernel (2)",
        ),
        (
            "model.layers.0.padding=5",
            "model.layers.0.padding=5: a conv's padding can be at most its kernel - 1 (4)",
        ),
        (
            "schedule=sgd_then_adam schedule.phases=[]",
            "schedule.phases=[]: schedule=sgd_then_adam is its phases, and without them the run "
            "would train adam at a constant rate",
        ),
        # Settings the layer's kind has no use for, which were ignored without a word:
        ("model.layers.1.out=5", "model.layers.1.out=5: the maxpool layer pool1 keeps its"),
        ("model.layers.5.kernel=3", "model.layers.5.kernel=3: the linear layer fc1 has no kernel"),
    ],
)
def test_a_model_that_does_not_fit_its_data_or_names_is_a_config_error(override, message):
    with pytest.raises(ConfigError, match=re.escape(f"Invalid config value {message}")):
        validate(_composed(*override.split()))


def test_a_layer_named_like_a_module_attribute_is_a_config_error():
    """Refused with the config, before any store is opened, and by build_model for a model
    whose config comes from elsewhere (a saved run's)."""
    cfg = _composed("model.layers.5.name=forward")
    said = "Invalid config value model.layers.5.name='forward': torch's modules already use"
    with pytest.raises(ConfigError, match=re.escape(said)):
        validate(cfg)
    with pytest.raises(ConfigError, match=re.escape(said)):
        build_model(cfg.model)


def test_a_maxpool_pads_as_configured():
    """padding was ignored for pools: 24x24 padded by 1 pools to 13x13, as torch's own does."""
    cfg = _composed("model.layers.1.padding=1")
    validate(cfg)
    model = build_model(cfg.model)
    assert model.pool1(torch.zeros(1, 16, 24, 24)).shape == (1, 16, 13, 13)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize(("choice", "unused"), [("sgd", []), ("rmsprop", ["optimizer=rmsprop"])])
def test_the_optimizer_group_is_used_when_a_phase_starts_from_it(choice, unused):
    """sgd_then_adam's first phase is sgd: with optimizer=sgd it starts from that group's
    settings (its weight_decay, say), so the choice is not moot; rmsprop's would be."""
    cfg = _composed("schedule=sgd_then_adam", f"optimizer={choice}")
    assert unused_with_phases(cfg, [f"optimizer={choice}"]) == unused


def test_a_sweep_with_an_impossible_layer_stops_before_any_job(tmp_path, data_dir):
    proc = run_train(
        ["-m", "model.layers.0.kernel=5,50", *QUICK, f"tracking.uri={db_uri(tmp_path)}"],
        tmp_path,
        data_dir,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "job #1 (model.layers.0.kernel=50" in proc.stderr
    assert "layer conv1 gets a 28x28 input (padding 0), smaller than its kernel" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "training cnn" not in proc.stdout  # job #0 did not run either
    assert not (tmp_path / "mlflow.db").exists()


def test_unknown_optimizer_key_names_the_settings_not_an_empty_dict():
    with pytest.raises(ConfigError, match=r"optimizer\.lrr.*valid keys for adam") as err:
        optimizer_config({"name": "adam", "lr": 0.1, "lrr": 0.1}, None)
    assert "{}" not in str(err.value)
    with pytest.raises(ConfigError, match=r"\{'name': 'sgd', 'lr': 'abc'\} for sgd"):
        optimizer_config({"name": "adam", "lr": 0.1}, {"name": "sgd", "lr": "abc"})


def test_schemas_are_not_offered_as_optimizer_options(tmp_path, data_dir):
    proc = run_train(["optimizer=foo", "tracking.enabled=false"], tmp_path, data_dir)
    assert proc.returncode == 2
    listed = proc.stderr.split("the options are ")[1].split(".")[0]
    assert listed.split(", ") == ["adam", "adamw", "rmsprop", "sgd"]
    assert "_schema" not in proc.stderr


@pytest.mark.parametrize("name", sorted(OPTIMIZER_SCHEMAS))
def test_each_optimizer_option_is_typed_by_its_schema(name):
    register_schemas()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"optimizer={name}"])
    assert OmegaConf.get_type(cfg.optimizer) is OPTIMIZER_SCHEMAS[name]
    validate(cfg)


def test_momentum_is_not_an_adam_setting(tmp_path, data_dir):
    proc = run_train(
        ["optimizer=adam", "optimizer.momentum=0.9", "tracking.enabled=false"], tmp_path, data_dir
    )
    assert proc.returncode == 2
    assert "momentum" in proc.stderr


def _copy_data(src, dst):
    shutil.copytree(src / "MNIST", dst / "MNIST")
    return dst / "MNIST" / "raw"


def _flip_byte(path):
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[5000] ^= 0xFF
    path.write_bytes(gzip.compress(bytes(raw)))


def _truncate_gz(path):
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])


def _truncated_raw(path):
    raw = gzip.decompress(path.read_bytes())
    path.unlink()
    path.with_suffix("").write_bytes(raw[:-100])


def _wrong_magic(path):
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[3] = 0x09
    path.unlink()
    path.with_suffix("").write_bytes(bytes(raw))


@pytest.mark.parametrize(
    ("damage", "expect"),
    [
        (_flip_byte, "is corrupt"),
        (_truncate_gz, "truncated or corrupt"),
        (_truncated_raw, "is corrupt"),
        (_wrong_magic, "is corrupt"),
    ],
)
@pytest.mark.parametrize("optimize", [False, True])
def test_damaged_data_file_is_named(tmp_path, data_dir, damage, expect, optimize):
    raw = _copy_data(data_dir, tmp_path / "data")
    target = raw / "t10k-images-idx3-ubyte.gz"
    damage(target)
    env_data = tmp_path / "data"
    args = [*QUICK, f"tracking.uri={db_uri(tmp_path)}"]
    proc = run_train(args, tmp_path, env_data, python_flags=("-O",) if optimize else ())
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "t10k-images-idx3-ubyte" in proc.stderr
    assert expect in proc.stderr
    assert "Traceback" not in proc.stderr
    from mlflow import MlflowClient

    if (tmp_path / "mlflow.db").exists():
        client = MlflowClient(db_uri(tmp_path))
        exps = client.search_experiments()
        assert all(not client.search_runs([e.experiment_id]) for e in exps)


def test_a_sweep_whose_jobs_fail_before_their_runs_reports_each_and_why(tmp_path, data_dir):
    """Damaged data fails every job before it has a run: the report still has a row per job
    with its error, and the parent run says why it failed."""
    raw = _copy_data(data_dir, tmp_path / "data")
    _truncate_gz(raw / "t10k-labels-idx1-ubyte.gz")
    args = ["-m", "optimizer=sgd,adam", *QUICK, f"tracking.uri={db_uri(tmp_path)}"]
    proc = run_train(args, tmp_path, tmp_path / "data")
    assert proc.returncode == 1, proc.stderr[-2000:]
    report = (tmp_path / "multirun" / "comparison.md").read_text()
    for job in ("optimizer=sgd", "optimizer=adam"):
        assert f"| {job} |  | FAILED (Data file " in report, report
    assert "**2 run(s) did not finish:**" in report
    assert "sweep: 2 jobs ended" in proc.stdout
    from mlflow import MlflowClient

    client = MlflowClient(db_uri(tmp_path))
    (parent,) = client.search_runs([client.get_experiment_by_name("cvsweep").experiment_id])
    assert parent.info.status == "FAILED"
    reason = parent.data.tags["failure_reason"]
    assert reason.startswith("2 job(s) failed before their runs were created: Data file ")


def test_value_that_cannot_be_resolved_is_a_config_error(tmp_path, data_dir):
    """A preset whose interpolation names a missing key: one message, exit 2, no run."""
    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf)
    (conf / "experiment" / "broken.yaml").write_text(
        "# @package _global_\noptimizer:\n  lr: ${experiment.lr.${optimizer.name}}\n"
        "experiment:\n  lr: {sgd: 0.01}\n"
    )
    env = {**cli_env(data_dir), "CVSWEEP_CONF": str(conf)}
    db = tmp_path / "mlflow.db"
    for extra in (["optimizer=adam"], ["-m", "optimizer=sgd,adam"]):
        args = [*extra, "experiment=broken", *QUICK, f"tracking.uri=sqlite:///{db}"]
        proc = run_train(args, tmp_path, data_dir, env=env)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert "Invalid config: Interpolation key 'experiment.lr.adam' not found" in proc.stderr
        assert "Traceback" not in proc.stderr and "training cnn" not in proc.stdout
        assert not db.exists()


@pytest.mark.parametrize("extra", [[], ["-m", "seed=0,1"]])
def test_an_interpolation_typed_on_the_command_line_that_cannot_resolve(tmp_path, data_dir, extra):
    """`optimizer.lr=${oops}`: the same one message and exit 2 as from a preset, before any run
    or job, not a traceback from listing the overrides."""
    db = tmp_path / "mlflow.db"
    args = [*extra, *QUICK, "optimizer.lr=${oops}", f"tracking.uri=sqlite:///{db}"]
    proc = run_train(args, tmp_path, data_dir)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Invalid config: Interpolation key 'oops' not found" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout and "UserWarning" not in proc.stderr
    assert "training cnn" not in proc.stdout and not db.exists()


@pytest.mark.parametrize("extra", [[], ["-m", "optimizer=sgd,adam"]])
def test_a_mistyped_data_root_is_not_created_and_filled_by_a_download(tmp_path, data_dir, extra):
    """Refused before the store opens or a sweep's parent run exists: no mlflow.db is left
    behind by a first run that could never start."""
    root = tmp_path / "dtaa"
    proc = run_train([*extra, f"dataset.root={root}"], tmp_path, data_dir)
    assert proc.returncode == 2, proc.stderr[-2000:]
    job = "job #0 (optimizer=sgd dataset.root={root}): " if extra else ""
    said = f"error: {job}Invalid config value dataset.root={root}: no such "
    assert proc.stderr.startswith(said.format(root=root)), proc.stderr
    assert f"`cvsweep data fetch mnist --root {root}`" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not root.exists() and "fetching" not in proc.stdout
    assert not (tmp_path / "mlflow.db").exists() and "parent run" not in proc.stdout


def test_hydras_own_flag_checks_are_one_paragraph_too(tmp_path, data_dir):
    proc = run_train(["-m", "--cfg", "job", "tracking.enabled=false"], tmp_path, data_dir)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr == (
        "error: Only one of --run, --multirun, --cfg, --info and --shell_completion can be "
        "specified\n"
    )


def test_the_errors_of_parallel_jobs_say_whose_they_are(tmp_path, data_dir):
    """Two joblib workers fail on damaged data at once: each error line names its job."""
    raw = _copy_data(data_dir, tmp_path / "data")
    _truncate_gz(raw / "t10k-labels-idx1-ubyte.gz")
    args = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1", *QUICK]
    proc = run_train([*args, "tracking.enabled=false"], tmp_path, tmp_path / "data")
    assert proc.returncode == 1, proc.stderr[-2000:]
    errors = sorted(line[:20] for line in proc.stderr.splitlines() if "Data file" in line)
    assert errors == ["[#0] error: Data fil", "[#1] error: Data fil"], proc.stderr[-2000:]
