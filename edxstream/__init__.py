"""edxstream: near-real-time learning analytics for Open edX tracking logs."""

__version__ = "0.1.0"
