"""Helpers of the event model (course keys, classification table). The public entry
point is :mod:`edxstream.core.model`."""
