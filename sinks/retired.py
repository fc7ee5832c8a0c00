"""Learners retired with ``edxstream forget``: the list both sinks read, and the deletion
of a learner's rows.

The list is the MySQL table ``retired_learners``. It holds keys, not identities: a
learner's keys are the pseudonyms of their user id and of their username
(``edxstream.core.privacy``), which is also what the analyst tables hold. Each sink keeps
the set in memory, re-reads it every REFRESH_SECONDS, and drops the events of a retired
learner before writing; the ClickHouse sink also deletes the rows of learners retired
since it last looked, so ``forget`` works while it holds the embedded engine's folder.
"""

from __future__ import annotations

import logging
import time

import pymysql
from clickhouse_connect.driver.binding import format_query_value

from edxstream.core import privacy
from edxstream.core.records import EnrichedEvent
from edxstream.core.settings import Settings

log = logging.getLogger(__name__)

REFRESH_SECONDS = 5.0


def learner_keys(user_ids: set[int], usernames: set[str], key: str) -> set[str]:
    """The keys of a learner known by these ids and names."""
    return {str(privacy.pseudonym_user_id(i, key)) for i in user_ids} | {
        privacy.pseudonym_username(n, key) for n in usernames if n
    }


def event_keys(event: EnrichedEvent, key: str, pseudonymized: bool) -> tuple[str | None, str | None]:
    """(user id key, username key) of an event, as stored (``pseudonymized``) or raw."""
    if pseudonymized:
        return (None if event.user_id is None else str(event.user_id)), event.username
    return (
        None if event.user_id is None else str(privacy.pseudonym_user_id(event.user_id, key)),
        privacy.pseudonym_username(event.username, key) if event.username else None,
    )


class RetiredList:
    """The retired learners' keys, re-read from MySQL at most every REFRESH_SECONDS."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.keys: frozenset[str] = frozenset()
        self._loaded_at = float("-inf")
        self._conn: pymysql.connections.Connection | None = None

    def current(self) -> frozenset[str]:
        if time.monotonic() - self._loaded_at < REFRESH_SECONDS:
            return self.keys
        self._loaded_at = time.monotonic()
        try:
            if self._conn is None:
                self._conn = pymysql.connect(**self.settings.mysql, connect_timeout=5, autocommit=True)
            with self._conn.cursor() as cur:
                cur.execute("SELECT user_key FROM retired_learners")
                self.keys = frozenset(k for (k,) in cur.fetchall())
        except pymysql.err.ProgrammingError:
            pass  # the table's migration is not applied yet: nobody is retired
        except pymysql.err.Error as exc:
            # Keep the last list: the sink goes on and reads it again soon.
            log.warning("cannot read the retired learners from MySQL (%s); using the last list", exc)
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        return self.keys

    def is_retired(self, event: EnrichedEvent, keys: frozenset[str], pseudonymized: bool) -> bool:
        uid, name = event_keys(event, self.settings.pseudonym_key, pseudonymized)
        return (uid is not None and uid in keys) or (name is not None and name in keys)


def delete_from_clickhouse(
    client, keys: set[str], raw_ids: set[int] = frozenset(), raw_names: set[str] = frozenset()
) -> int:
    """Delete the events of these learners from the analyst database; returns how many
    rows there were. ``raw_*``: the identities themselves, for tables written with
    pseudonymisation off."""
    conds = []
    if keys:
        values = ", ".join(format_query_value(k) for k in sorted(keys))
        conds.append(f"toString(user_id) IN ({values}) OR username IN ({values})")
    if raw_ids:
        conds.append(f"user_id IN ({', '.join(str(int(i)) for i in sorted(raw_ids))})")
    if raw_names:
        conds.append(f"username IN ({', '.join(format_query_value(n) for n in sorted(raw_names))})")
    if not conds:
        return 0
    where = " OR ".join(f"({c})" for c in conds)
    n = int(client.command(f"SELECT count() FROM events WHERE {where}"))
    if n:
        # a lightweight delete: the rows are gone for every query at once; the engine
        # drops them from its files at the next merges
        client.command(f"DELETE FROM events WHERE {where}", settings={"mutations_sync": 2})
    return n
