"""``edxstream forget --user ID|USERNAME``: remove one learner, as Open edX's user
retirement (and the GDPR's right to erasure) asks.

What it does, in an order that is safe to interrupt and run again:

1. finds the learner's other identifier in MySQL's events (a user id gives the usernames
   it was logged with, and the other way round);
2. adds the learner's keys (the keyed pseudonyms of the id and of the name, never the
   identity itself) to ``retired_learners``, which both sinks read: from then on they
   leave the learner's events out, also those still in the topics or replayed;
3. deletes the learner's events from MySQL, and the dead letters whose raw line names
   them;
4. deletes the learner's events from ClickHouse, or, while the ClickHouse sink holds the
   embedded engine's folder, leaves that to the sink, which does it within seconds;
5. appends an audit line (time, keys, rows removed; no identity) to
   ``<home>/audit/forget.log``.

Window counts stay: they are aggregates over all learners of a course and name no one.
The raw, enriched and dead-letter topics keep the learner's lines until their retention
ends (docs/privacy.md).
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone

from edxstream.core import clickhouse, privacy
from edxstream.core.errors import UserError
from edxstream.core.settings import Settings
from sinks import migrate
from sinks import retired as retired_mod


def _identities(cur, who: str) -> tuple[set[int], set[str]]:
    """All user ids and usernames MySQL's events link to ``who`` (an id or a username)."""
    ids: set[int] = set()
    names: set[str] = set()
    if who.isdigit():
        ids.add(int(who))
        cur.execute("SELECT DISTINCT username FROM events WHERE user_id = %s AND username IS NOT NULL", (int(who),))
        names |= {n for (n,) in cur.fetchall() if n}
    else:
        names.add(who)
        cur.execute("SELECT DISTINCT user_id FROM events WHERE username = %s AND user_id IS NOT NULL", (who,))
        ids |= {int(i) for (i,) in cur.fetchall()}
    return ids, names


def _dead_letter_pattern(ids: set[int], names: set[str]) -> str:
    """A MariaDB REGEXP for raw lines that name the learner in a username or user_id field."""
    parts = [rf'"username" *: *"{re.escape(n)}"' for n in names]
    parts += [rf'"user_id" *: *"?{i}[^0-9]' for i in ids]
    return "|".join(parts)


def forget(settings: Settings, who: str) -> dict:
    """Remove the learner ``who`` (a user id or a username); returns what was done."""
    who = who.strip()
    if not who:
        raise UserError("--user needs a user id or a username")
    privacy.check_key(settings)  # the keys below are pseudonyms under this key
    conn = migrate.mysql_connect(settings)
    try:
        migrate.migrate_mysql(settings, conn=conn)
        with conn.cursor() as cur:
            ids, names = _identities(cur, who)
            keys = retired_mod.learner_keys(ids, names, settings.pseudonym_key)
            now = datetime.now(timezone.utc).replace(tzinfo=None)
            cur.executemany(
                "INSERT IGNORE INTO retired_learners (user_key, retired_at) VALUES (%s, %s)",
                [(k, now) for k in sorted(keys)],
            )
            conn.commit()  # the sinks keep the learner out from here on
            mysql_events = 0
            if ids:
                mysql_events += cur.execute(
                    f"DELETE FROM events WHERE user_id IN ({', '.join(['%s'] * len(ids))})", sorted(ids)
                )
            if names:
                mysql_events += cur.execute(
                    f"DELETE FROM events WHERE username IN ({', '.join(['%s'] * len(names))})", sorted(names)
                )
            dead = cur.execute("DELETE FROM dead_letters WHERE raw REGEXP %s", (_dead_letter_pattern(ids, names),))
        conn.commit()
    finally:
        conn.close()

    try:
        client = clickhouse.connect(settings)
    except UserError:
        client = None  # the ClickHouse sink holds the embedded folder: it deletes the rows itself
    if client is not None:
        migrate.migrate_clickhouse(settings, client=client)
        raw = settings.pseudonymize is False
        ch_events: int | str = retired_mod.delete_from_clickhouse(
            client, keys, raw_ids=ids if raw else set(), raw_names=names if raw else set()
        )
    else:
        ch_events = "by the running ClickHouse sink"

    done = {
        "at": datetime.now(timezone.utc).isoformat(),
        "keys": sorted(keys),
        "mysql_events": mysql_events,
        "mysql_dead_letters": dead,
        "clickhouse_events": ch_events,
    }
    audit = settings.data_dir / "audit" / "forget.log"
    audit.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(audit, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as f:
        f.write(json.dumps(done) + "\n")
    return done
