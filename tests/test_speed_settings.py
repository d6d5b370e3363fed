"""Speed settings change how the step computes, never what it computes."""

from __future__ import annotations

import copy
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from bench.compare import compose_config
from cvsweep.model import SplitBiasConv2d, build_model, split_conv_bias_grads

from .conftest import QUICK, REPO, cli_env, run_train

POINT = re.compile(r"step +\d+ \| train loss ([\d.]+) acc +([\d.]+)% \| test loss ([\d.]+)")


def test_split_bias_grad_keeps_parameters_and_gradients():
    torch.manual_seed(0)
    plain = build_model(compose_config(["tracking.enabled=false"]).model)
    split = split_conv_bias_grads(copy.deepcopy(plain))
    assert isinstance(split.conv1[0], SplitBiasConv2d)
    assert list(split.state_dict()) == list(plain.state_dict())  # checkpoints load either way
    x, y = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    for model in (plain, split):
        F.cross_entropy(model(x), y).backward()
    for (name, a), b in zip(plain.named_parameters(), split.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, rtol=1e-5, atol=1e-7), name
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the bias gradient stays fp32
        out = split(x)
    F.cross_entropy(out.float(), y).backward()
    assert split.conv1[0].bias.grad.dtype == torch.float32


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_split_bias_grad_trains_like_autograds_own(tmp_path, data_dir, device):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    # fp32: under bf16 autocast a last-bit difference can flip one image's prediction.
    base = [*QUICK, "trainer.log_every=2", "trainer.precision=fp32", "tracking.enabled=false"]
    base.append(f"trainer.device={device}")
    if device == "cuda":  # atomics in cuDNN's default kernels would add their own noise
        base += ["trainer.deterministic=true", "dataset.train_limit=4096", "trainer.log_every=16"]
    runs = {}
    for value in ("on", "off"):
        proc = run_train([*base, f"trainer.split_bias_grad={value}"], tmp_path / value, data_dir)
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs[value] = [tuple(map(float, m.groups())) for m in POINT.finditer(proc.stdout)]
    assert len(runs["on"]) == len(runs["off"]) >= 4
    for on, off in zip(runs["on"], runs["off"], strict=True):
        assert on == pytest.approx(off, abs=0.5), (on, off)  # printed values, last digits


def test_cuda_graphs_on_without_a_gpu_says_it_is_not_followed(tmp_path, data_dir):
    args = [*QUICK, "trainer.device=cpu", "trainer.cuda_graphs=on", "tracking.enabled=false"]
    proc = run_train(args, tmp_path, data_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "note: trainer.cuda_graphs=on: CUDA graphs need a CUDA device; on cpu" in proc.stdout
    assert "final test accuracy:" in proc.stdout


def test_jobs_in_one_process_share_the_device_data(data_dir):
    """A sweep's jobs run in one process: the second job reuses the first one's tensors."""
    from cvsweep.data import cached_device_data

    cpu = torch.device("cpu")
    first = cached_device_data(data_dir, "mnist", 0.1307, 0.3081, cpu, 256, 100)
    assert cached_device_data(data_dir, "mnist", 0.1307, 0.3081, cpu, 256, 100) is first
    other = cached_device_data(data_dir, "mnist", 0.1307, 0.3081, cpu, 512, 100)
    assert other is not first and len(other.train_y) == 512 and len(first.train_y) == 256
    assert torch.equal(other.train_x[:256], first.train_x)


def test_a_later_setting_at_its_default_keeps_earlier_runs_hashes():
    """Stores hold runs hashed before trainer.split_bias_grad existed: they must still match."""
    from omegaconf import OmegaConf

    from cvsweep.identity import config_hash

    cfg = compose_config(["tracking.enabled=false"])
    before = OmegaConf.to_container(cfg, resolve=True)
    del before["trainer"]["split_bias_grad"]  # a config as logged before the setting existed
    assert config_hash(cfg) == config_hash(before)
    on = compose_config(["tracking.enabled=false", "trainer.split_bias_grad=on"])
    assert config_hash(on) != config_hash(cfg)
    # The shape report's batch size was once left out of the hash: at its default it still is.
    del before["trainer"]["report_batch_size"]
    assert config_hash(cfg) == config_hash(before)
    at_64 = compose_config(["tracking.enabled=false", "trainer.report_batch_size=64"])
    assert config_hash(at_64) != config_hash(cfg)


def test_rotation_takes_any_flip_mask_and_unbatched_images_convolve():
    from cvsweep.augment import apply_params

    x = torch.randn(3, 1, 28, 28)
    angles = torch.tensor([10.0, -5.0, 0.0])
    as_bool = apply_params(x, torch.tensor([True, False, True]), angles, 0.0)
    assert torch.equal(apply_params(x, torch.tensor([1, 0, 1]), angles, 0.0), as_bool)
    conv = split_conv_bias_grads(torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3)))
    assert conv(torch.randn(1, 8, 8)).shape == (4, 6, 6)


# Steps at batch 256 with rot_flip, as the engine runs them on CPU; prints whether cvsweep set
# glibc's thresholds and the page faults per step once warm.
FAULTS_PER_STEP = """
import resource, torch, torch.nn.functional as F
from bench.compare import compose_config
from cvsweep.augment import augment_batch
from cvsweep.engine import ready_for
from cvsweep.model import build_model
from cvsweep.runtime import keep_freed_memory, speed_settings
kept = keep_freed_memory()
torch.set_num_threads(2)
cfg = compose_config(["tracking.enabled=false"])
model = ready_for(build_model(cfg.model), speed_settings(cfg.trainer, torch.device("cpu")))
opt = torch.optim.Adam(model.parameters(), fused=True)
x, y = torch.randn(256, 1, 28, 28), torch.randint(0, 10, (256,))
def step():
    xb = augment_batch(x, 0.5, 15.0, -0.42).contiguous(memory_format=torch.channels_last)
    loss = F.cross_entropy(model(xb), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
for _ in range(5):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(kept, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")
def test_steps_reuse_freed_memory_instead_of_faulting_in_new_pages(data_dir):
    """Without the thresholds glibc hands each step's activations back to the OS and the next
    step faults on every page again (docs/performance.md, "Host memory")."""
    faults = {}
    for name, extra in {"kept": {}, "glibc's own": {"MALLOC_TRIM_THRESHOLD_": "131072"}}.items():
        proc = subprocess.run(
            [sys.executable, "-c", FAULTS_PER_STEP],
            cwd=REPO,
            env=cli_env(data_dir, **extra),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        kept, per_step = proc.stdout.split()
        assert kept == str(name == "kept")  # a user's own malloc setting is left alone
        faults[name] = float(per_step)
    # 0-30 measured on a quiet machine, up to ~120 beside other tests; about 18,000 without.
    assert faults["kept"] < 1000, faults
    assert faults["glibc's own"] > 50 * max(faults["kept"], 1), faults


def test_keeping_freed_memory_changes_no_number(tmp_path, data_dir):
    args = [
        *QUICK,
        "trainer.batch_size=128",
        "trainer.log_every=2",
        "augment=rot_flip",
        "tracking.enabled=false",
    ]
    printed = {}
    for name, extra in {"kept": {}, "glibc's own": {"MALLOC_TRIM_THRESHOLD_": "131072"}}.items():
        proc = run_train(
            args, tmp_path / name.split("'")[0], data_dir, env=cli_env(data_dir, **extra)
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        printed[name] = POINT.findall(proc.stdout)
    assert len(printed["kept"]) >= 2
    assert printed["kept"] == printed["glibc's own"]
