"""Files the trainer hands to the tracking process to upload and forget."""

from __future__ import annotations

import contextlib
from pathlib import Path


def remove_snapshot(path: Path) -> None:
    """Delete an uploaded checkpoint snapshot and the folder made for it alone.

    Called by the tracking process after the upload, or by the trainer when the tracking
    process is lost and will never upload it: a snapshot is a full checkpoint, so one left
    behind per epoch would fill the job folder with hidden copies.
    """
    with contextlib.suppress(OSError):
        path.unlink()
    with contextlib.suppress(OSError):
        path.parent.rmdir()
