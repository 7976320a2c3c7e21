"""Run directories: the source of truth for every run's config, metrics and summary."""

from assist.tracking.run_dir import RunDirError, RunFinished, RunStore

__all__ = ["RunDirError", "RunFinished", "RunStore"]
