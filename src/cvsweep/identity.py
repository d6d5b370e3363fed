"""What makes two runs "the same": a stable hash of the settings that change results.

The hash leaves out where files go, how the run is tracked and how it is displayed, so the same
experiment hashes the same on any machine, in any folder, in any process.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

# The config groups a run chooses from; each choice is logged as a param of the group's name.
GROUPS = ("dataset", "model", "optimizer", "augment", "schedule")

# Keys that do not change what a run computes.
NON_RESULT_KEYS = (
    "tracking",
    "experiment",
    "dataset.root",
    "trainer.progress",
    "trainer.checkpoint_every_epoch",
)

# Keys left out of the hash at their default, so that a store's earlier runs are still skipped
# and resumed: settings added after runs were logged, and the shape report's batch size (it was
# left out once; a report at another size is what a run logs, and the whole result of a
# shapes-only run, so a run asking for one is not "identical" to a run at 16).
LATER_KEYS = {"trainer.split_bias_grad": "auto", "trainer.report_batch_size": "16"}


# on/off settings, each spelled several ways: `off` on a command line stays the word, while
# YAML (the defaults) and Hydra (`=false`) read a boolean, which the str field keeps as `False`.
SWITCH_KEYS = (
    "trainer.cuda_graphs",
    "trainer.channels_last",
    "trainer.cudnn_benchmark",
    "trainer.split_bias_grad",
)
# One spelling each in the hash: the booleans' (the defaults'), so earlier runs keep theirs.
_HASHED_SWITCH = {"off": "False", "on": "True"}


def switch_word(value: Any) -> str:
    """An on/off/auto setting as the word the docs use: `False` and `false` are `off`."""
    word = str(value).lower()
    return {"false": "off", "true": "on"}.get(word, word)


def _get(tree: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def _drop(tree: dict[str, Any], dotted: str) -> None:
    head, _, rest = dotted.partition(".")
    if head not in tree:
        return
    if rest:
        if isinstance(tree[head], dict):
            _drop(tree[head], rest)
    else:
        del tree[head]


def result_config(cfg: DictConfig | dict[str, Any], *, without_seed: bool = False) -> dict:
    tree = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    tree = json.loads(json.dumps(tree))  # a deep copy of plain data
    for key in NON_RESULT_KEYS:
        _drop(tree, key)
    for key in SWITCH_KEYS:
        head, _, leaf = key.rpartition(".")
        node = _get(tree, head)
        if isinstance(node, dict) and leaf in node:
            node[leaf] = _HASHED_SWITCH.get(switch_word(node[leaf]), node[leaf])
    for key, default in LATER_KEYS.items():
        if str(_get(tree, key)).lower() == default:
            _drop(tree, key)
    if without_seed:
        tree.pop("seed", None)
    return tree


def config_hash(cfg: DictConfig | dict[str, Any], *, without_seed: bool = False) -> str:
    """16 hex digits of SHA-256 over the canonical JSON of the result-changing config."""
    canonical = json.dumps(
        result_config(cfg, without_seed=without_seed), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


RESULT_FILE = "job_result.json"  # each job's outcome, in its folder, for the sweep report


def read_job_result(folder: Path) -> dict[str, Any] | None:
    """A job folder's job_result.json (how its job ended); None where it has no readable one
    (not written yet, cut short, or not a job folder)."""
    try:
        result = json.loads((folder / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) else None


def raw_overrides(node: Any) -> list[str]:
    """Overrides as the user typed them: a `${...}` in one is resolved (and, when wrong,
    reported as an invalid config) with the job's config, not while listing them."""
    if node is None:
        return []
    listed = OmegaConf.to_container(node, resolve=False) if OmegaConf.is_config(node) else node
    return [str(o) for o in listed]


def run_name(overrides: list[str]) -> str:
    """The overrides that define the job, readable: `optimizer=adam augment=rot_flip`."""
    shown = [o for o in overrides if not o.lstrip("+~").startswith(("tracking.", "hydra"))]
    return " ".join(shown) if shown else "defaults"
