"""The shapes section: the assignment's parameter counts checked against the shape report each
run measured from the real model (nothing is trained).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ...tracking import with_retry
from ..document import Context, Doc, _figure_path
from ..presets import Preset
from ..runs import Measured, Variant


def _shape_report(client: Any, run_id: str) -> dict[str, Any] | None:
    import json

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = with_retry(lambda: client.download_artifacts(run_id, "shape_report.json", tmp))
            return json.loads(Path(path).read_text())
        except Exception:
            return None


def section_shapes(doc: Doc, ctx: Context, preset: Preset, v: Variant, suffix: str) -> None:
    latest: dict[str, Measured] = {}
    for r in sorted(v.runs, key=lambda r: r.end_ms):
        latest[r.value("model")] = r
    reports = {m: _shape_report(ctx.client, r.summary.run_id) for m, r in latest.items()}
    rows, verdicts = [], []
    for model, rep in sorted(reports.items()):
        claimed = preset.claim(model, "total_params")
        measured = rep["total_params"] if rep else None
        conv1 = next((row for row in (rep or {}).get("rows", []) if row["layer"] == "conv1"), None)
        ok = claimed is not None and measured == int(claimed)
        rows.append(
            [
                f"model={model}",
                str(conv1["output_shape"][1]) if conv1 else "?",
                "–" if claimed is None else f"{int(claimed):,}",
                "–" if measured is None else f"{measured:,}",
                "yes" if ok else "no",
            ]
        )
        if measured is not None and claimed is not None:
            off = measured - int(claimed)
            verdicts.append(
                f"model={model}: measured {measured:,} trainable parameters, claimed "
                f"{int(claimed):,} ({'the same' if ok else f'off by {off:+,}'})."
            )
    doc.table(["model", "conv1 channels", "claimed total", "measured total", "match"], rows)
    for model, rep in sorted(reports.items()):
        if not rep:
            doc.add(f"model={model}: the run has no shape_report.json artifact.", "")
            continue
        doc.add(f"Measured shape report, model={model}, batch {rep['batch_size']}:", "")
        body = []
        for row in rep["rows"]:
            shape_in = "" if not row["input_shape"] else str(tuple(row["input_shape"]))
            body.append(
                [
                    row["layer"],
                    row["kind"],
                    shape_in,
                    str(tuple(row["output_shape"])),
                    f"{row['params']:,}",
                ]
            )
        body.append(["**total**", "", "", "", f"**{rep['total_params']:,}**"])
        doc.table(
            ["layer", "kind", "input shape", "output shape", "trainable params"],
            body,
            "|---|---|---|---|---:|",
        )
    if reports and all(reports.values()):
        path = _figure_path(doc, preset.name, suffix)
        _shapes_figure(reports, path)
        doc.figure(path, "trainable parameters per layer")
    doc.add(
        "**Discussion.** "
        + " ".join(verdicts)
        + (
            " The two totals differ only through conv1's output channels, which feed conv2: "
            "the question's 16-channel network is the one `model=cnn` builds; the hand-written "
            "table computed the 6-channel variant."
            if len(verdicts) == 2
            else ""
        ),
        "",
    )


def _shapes_figure(reports: dict[str, dict[str, Any]], path: Path) -> None:
    from ...plots import plt

    layers = [r["layer"] for r in next(iter(reports.values()))["rows"] if r["params"]]
    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    width = 0.8 / max(len(reports), 1)
    for i, (model, rep) in enumerate(sorted(reports.items())):
        by_layer = {r["layer"]: r["params"] for r in rep["rows"]}
        xs = [j + i * width for j in range(len(layers))]
        bars = ax.bar(
            xs,
            [by_layer.get(name, 0) for name in layers],
            width,
            label=f"model={model} (total {rep['total_params']:,})",
        )
        ax.bar_label(bars, fmt="{:,.0f}", fontsize=7)
    ax.set_xticks([j + width * (len(reports) - 1) / 2 for j in range(len(layers))], layers)
    ax.set_ylabel("trainable parameters")
    ax.set_title("trainable parameters per layer")
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    fig.savefig(path, dpi=100)
    plt.close(fig)
