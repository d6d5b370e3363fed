"""The shape report is measured from the real model and matches the assignment's table."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from cvsweep.config import ModelConfig
from cvsweep.model import build_model
from cvsweep.report import shape_report

from .conftest import REPO

EXPECTED = {
    "cnn": [
        ("input", None, (16, 1, 28, 28), 0),
        ("conv1", (16, 1, 28, 28), (16, 16, 24, 24), 416),
        ("pool1", (16, 16, 24, 24), (16, 16, 12, 12), 0),
        ("conv2", (16, 16, 12, 12), (16, 32, 10, 10), 4640),
        ("pool2", (16, 32, 10, 10), (16, 32, 5, 5), 0),
        ("conv3", (16, 32, 5, 5), (16, 16, 5, 5), 528),
        ("fc1", (16, 16, 5, 5), (16, 64), 25664),
        ("fc2", (16, 64), (16, 10), 650),
    ],
    "cnn_c6": [
        ("input", None, (16, 1, 28, 28), 0),
        ("conv1", (16, 1, 28, 28), (16, 6, 24, 24), 156),
        ("pool1", (16, 6, 24, 24), (16, 6, 12, 12), 0),
        ("conv2", (16, 6, 12, 12), (16, 32, 10, 10), 1760),
        ("pool2", (16, 32, 10, 10), (16, 32, 5, 5), 0),
        ("conv3", (16, 32, 5, 5), (16, 16, 5, 5), 528),
        ("fc1", (16, 16, 5, 5), (16, 64), 25664),
        ("fc2", (16, 64), (16, 10), 650),
    ],
}
TOTALS = {"cnn": 31898, "cnn_c6": 28758}


def _model(name: str):
    cfg = OmegaConf.merge(
        OmegaConf.structured(ModelConfig), OmegaConf.load(REPO / "conf" / "model" / f"{name}.yaml")
    )
    return build_model(cfg)


@pytest.mark.parametrize("name", ["cnn", "cnn_c6"])
def test_every_row_of_the_table(name: str) -> None:
    report = shape_report(_model(name), name, (1, 28, 28), batch_size=16)
    got = [
        (r.layer, tuple(r.input_shape) or None, tuple(r.output_shape), r.params)
        for r in report.rows
    ]
    assert got == EXPECTED[name]
    assert report.total_params == TOTALS[name]
    md = report.to_markdown()
    assert f"**{TOTALS[name]:,}**" in md
    assert "| conv1 | Conv2d+ReLU | (16, 1, 28, 28) |" in md
    data = json.loads(report.to_json())
    assert data["total_params"] == TOTALS[name]
    assert [r["layer"] for r in data["rows"]] == [row[0] for row in EXPECTED[name]]


def test_batch_size_follows_the_argument() -> None:
    report = shape_report(_model("cnn"), "cnn", (1, 28, 28), batch_size=3)
    assert report.rows[0].output_shape == [3, 1, 28, 28]
    assert report.rows[-1].output_shape == [3, 10]
