"""The report's body, one writer per preset: each preset asks its own question, so each has its
own table, figure and discussion. SECTIONS says which writer a preset gets.
"""

from __future__ import annotations

from ..document import Section
from .augmentation import section_augmentation
from .fashion import section_fashion_better, section_fashion_two_phase
from .optimizers import section_optimizers, section_optimizers_tuned
from .shapes import section_shapes
from .speedrun import section_speedrun
from .target99 import section_target99

SECTIONS: dict[str, Section] = {
    "shapes": section_shapes,
    "optimizers": section_optimizers,
    "optimizers_tuned": section_optimizers_tuned,
    "target99": section_target99,
    "fashion_two_phase": section_fashion_two_phase,
    "fashion_better": section_fashion_better,
    "augmentation": section_augmentation,
    "augmentation_long": section_augmentation,
    "speedrun": section_speedrun,
}
