"""GPU paths: the CUDA-graph step trains exactly like the eager step (needs a CUDA device)."""

from __future__ import annotations

import re

import pytest
import torch

from .conftest import run_train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

POINT = re.compile(
    r"step +(\d+) \| train loss ([\d.]+) acc +([\d.]+)% \| test loss ([\d.]+) acc +([\d.]+)%"
)


def _points(out: str) -> list[tuple[float, ...]]:
    return [tuple(float(x) for x in m.groups()) for m in POINT.finditer(out)]


@pytest.mark.parametrize(("optimizer", "augment"), [("adam", "rot_flip"), ("sgd", "none")])
def test_cuda_graph_matches_eager(tmp_path, data_dir, optimizer, augment):
    base = [
        "trainer.device=cuda",
        "trainer.epochs=2",
        "dataset.train_limit=8192",
        "trainer.log_every=64",
        "tracking.enabled=false",
        "trainer.progress=off",
        # cuDNN's default weight-gradient kernels add with atomics, so two runs of the same
        # path differ in the last bits, and early training amplifies that past any fixed
        # tolerance; deterministic algorithms leave only the graph-vs-eager difference.
        "trainer.deterministic=true",
        f"optimizer={optimizer}",
        f"augment={augment}",
    ]
    eager = run_train([*base, "trainer.cuda_graphs=off"], tmp_path / "eager", data_dir)
    graph = run_train([*base, "trainer.cuda_graphs=on"], tmp_path / "graph", data_dir)
    assert eager.returncode == 0, eager.stderr[-3000:]
    assert graph.returncode == 0, graph.stderr[-3000:]
    a, b = _points(eager.stdout), _points(graph.stdout)
    assert len(a) == len(b) >= 4
    for pa, pb in zip(a, b, strict=True):
        assert pa[0] == pb[0]
        assert pa[1:] == pytest.approx(pb[1:], abs=0.5), (pa, pb)  # printed %, 2 decimals
    assert a[-1][4] > 90.0


def test_two_phase_schedule_on_cuda_graphs(tmp_path, data_dir):
    phases = (
        "schedule.phases=[{epochs:1,optimizer:{name:sgd,lr:0.01,momentum:0.9}},"
        "{epochs:1,optimizer:{name:adam,lr:0.001}}]"
    )
    proc = run_train(
        [
            "trainer.device=cuda",
            "schedule=sgd_then_adam",
            phases,
            "dataset.train_limit=4096",
            "trainer.log_every=1000",
            "tracking.enabled=false",
            "trainer.cuda_graphs=on",
        ],
        tmp_path,
        data_dir,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(_points(proc.stdout)) == 2
