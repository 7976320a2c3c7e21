"""Kept for imports written before events moved to :mod:`assist.events` (a leaf module that
the engine, the trackers and user callbacks all import)."""

from assist.events import Callback, Event, EventRecorder  # noqa: F401

__all__ = ["Callback", "Event", "EventRecorder"]
