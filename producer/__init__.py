"""The shipper: tracking-log lines from an Open edX host into the raw topic.

- ``edxstream ship PATH`` follows a live ``tracking.log`` (``tail -F`` semantics,
  checkpointed by file fingerprint + byte offset, see :mod:`producer.follow`).
- ``edxstream backfill PATH...`` ships rotated history once (:mod:`producer.backfill`).

Both hand lines to :class:`producer.sender.Sender`, which keys, produces and tracks the
broker's acknowledgements so that a checkpoint never passes an unacknowledged line.
Nothing here parses events beyond finding a message key; the stream app does the rest.
"""
