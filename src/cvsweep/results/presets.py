"""The presets as the report knows them: which questions there are, and what each one's YAML
says about them.

Read straight from conf/experiment/<name>.yaml, without composing Hydra, so that the report
sees the notes and sweep exactly as written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

PRESETS = (
    "shapes",
    "optimizers",
    "optimizers_tuned",
    "target99",
    "fashion_two_phase",
    "fashion_better",
    "augmentation",
    "augmentation_long",
    "speedrun",
)
TIMED = ("speedrun",)  # presets whose point is a timing: repeated runs all count


@dataclass
class Preset:
    """What conf/experiment/<name>.yaml says: notes (question, claims, budget) and the sweep."""

    name: str
    notes: dict[str, Any]
    sweep: dict[str, str]

    @property
    def command(self) -> str:
        return f"python train.py experiment={self.name}"

    @property
    def compared(self) -> list[str]:
        """Swept keys with several values, seed excepted (seeds are repeats, not a comparison)."""
        return [k for k, v in self.sweep.items() if k != "seed" and "," in str(v)]

    def claim(self, *path: str) -> Any:
        node: Any = self.notes.get("claims") or {}
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return node


def load_presets(conf: Path) -> dict[str, Preset]:
    """Read every preset's notes and sweep params straight from the YAML (no Hydra compose)."""
    from omegaconf import OmegaConf

    presets = {}
    for name in PRESETS:
        path = conf / "experiment" / f"{name}.yaml"
        notes: dict[str, Any] = {}
        sweep: dict[str, str] = {}
        if path.is_file():
            raw = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
            assert isinstance(raw, dict)
            notes = dict(raw.get("experiment") or {})
            params = ((raw.get("hydra") or {}).get("sweeper") or {}).get("params") or {}
            sweep = {str(k): str(v) for k, v in params.items()}
        presets[name] = Preset(name, notes, sweep)
    return presets
