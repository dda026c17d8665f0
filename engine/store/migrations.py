"""Numbered schema migrations for the campaign store; `PRAGMA user_version` holds how many ran.

Append new scripts to MIGRATIONS, never edit one that has shipped.
"""
from __future__ import annotations

import logging

import aiosqlite

from engine.records import memory_key

log = logging.getLogger(__name__)

MIGRATIONS: tuple[str, ...] = (
    # 1: campaigns, turns, pending actions, memories with their vectors.
    """
    CREATE TABLE campaigns (
        id          INTEGER PRIMARY KEY,
        channel_id  INTEGER NOT NULL,
        name        TEXT    NOT NULL,
        premise     TEXT    NOT NULL DEFAULT '',
        style       TEXT    NOT NULL DEFAULT '',
        language    TEXT    NOT NULL DEFAULT 'en',
        settings    TEXT    NOT NULL DEFAULT '{}',
        active      INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
        created     REAL    NOT NULL
    );
    CREATE UNIQUE INDEX campaigns_one_active_per_channel ON campaigns (channel_id) WHERE active = 1;
    CREATE INDEX campaigns_active_name ON campaigns (name COLLATE NOCASE, id) WHERE active = 1;

    CREATE TABLE turns (
        id          INTEGER PRIMARY KEY,
        campaign_id INTEGER NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
        number      INTEGER NOT NULL CHECK (number >= 1),
        narration   TEXT    NOT NULL,
        created     REAL    NOT NULL,
        UNIQUE (campaign_id, number)
    );

    CREATE TABLE actions (
        id          INTEGER PRIMARY KEY,
        campaign_id INTEGER NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
        author_id   INTEGER NOT NULL,
        author_name TEXT    NOT NULL,
        text        TEXT    NOT NULL,
        created     REAL    NOT NULL,
        turn_id     INTEGER REFERENCES turns (id) ON DELETE SET NULL
    );
    CREATE INDEX actions_pending ON actions (campaign_id, id) WHERE turn_id IS NULL;
    CREATE INDEX actions_by_turn ON actions (turn_id, id) WHERE turn_id IS NOT NULL;

    CREATE TABLE memories (
        id           INTEGER PRIMARY KEY,
        campaign_id  INTEGER NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
        kind         TEXT    NOT NULL CHECK (kind IN ('exact', 'summary', 'fact')),
        text         TEXT    NOT NULL,
        content_hash TEXT    NOT NULL,
        vector       BLOB,
        dim          INTEGER,
        embedder     TEXT    NOT NULL DEFAULT '',
        turn_from    INTEGER,
        turn_to      INTEGER,
        pinned       INTEGER NOT NULL DEFAULT 0 CHECK (pinned IN (0, 1)),
        created      REAL    NOT NULL,
        CHECK ((vector IS NULL) = (dim IS NULL)),
        CHECK (vector IS NULL OR length(vector) = 4 * dim)
    );
    CREATE INDEX memories_by_campaign ON memories (campaign_id, pinned, id);
    CREATE INDEX memories_by_embedder ON memories (campaign_id, embedder, id);
    CREATE INDEX memories_by_turn ON memories (campaign_id, turn_to);
    CREATE INDEX memories_by_hash ON memories (campaign_id, content_hash);
    """,
    # 2: how each named character looks, so pictures keep them recognisable.
    """
    CREATE TABLE looks (
        campaign_id  INTEGER NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
        name         TEXT    NOT NULL COLLATE NOCASE,
        description  TEXT    NOT NULL,
        updated      REAL    NOT NULL,
        PRIMARY KEY (campaign_id, name)
    );
    """,
    # 3: translation. The engine works in the model's language; what players wrote and read is kept
    # beside it, and a glossary keeps names the same both ways.
    """
    ALTER TABLE actions ADD COLUMN original TEXT;  -- as the player wrote it, when `text` is a translation
    ALTER TABLE turns ADD COLUMN shown TEXT;       -- the narration as posted, when translated
    CREATE TABLE glossary (
        campaign_id  INTEGER NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
        source       TEXT    NOT NULL COLLATE NOCASE,  -- in the players' language
        target       TEXT    NOT NULL,                 -- in the model's language
        auto         INTEGER NOT NULL DEFAULT 0 CHECK (auto IN (0, 1)),  -- 1: a player's name, added by itself
        PRIMARY KEY (campaign_id, source)
    );
    """,
    # 4: recall by words beside meaning, one copy of each memory, and what each turn's prompt recalled.
    # The FTS5 index lives in the same file and follows the memories table through triggers, so every
    # transaction that changes memories changes it too. Entries written before this migration keep
    # their speaker inside their text; the content hash is recomputed over normalised text.
    """
    ALTER TABLE memories ADD COLUMN speaker TEXT;  -- who said it; shown with the entry, never embedded
    ALTER TABLE turns ADD COLUMN context TEXT;     -- JSON: what went into this turn's prompt from memory
    UPDATE memories SET content_hash = dm_memory_key(text, speaker, pinned);
    CREATE VIRTUAL TABLE memories_fts USING fts5(
        text, content = 'memories', content_rowid = 'id', tokenize = 'unicode61 remove_diacritics 2'
    );
    INSERT INTO memories_fts (rowid, text) SELECT id, text FROM memories;
    CREATE TRIGGER memories_fts_insert AFTER INSERT ON memories BEGIN
        INSERT INTO memories_fts (rowid, text) VALUES (new.id, new.text);
    END;
    CREATE TRIGGER memories_fts_delete AFTER DELETE ON memories BEGIN
        INSERT INTO memories_fts (memories_fts, rowid, text) VALUES ('delete', old.id, old.text);
    END;
    CREATE TRIGGER memories_fts_update AFTER UPDATE OF text ON memories BEGIN
        INSERT INTO memories_fts (memories_fts, rowid, text) VALUES ('delete', old.id, old.text);
        INSERT INTO memories_fts (rowid, text) VALUES (new.id, new.text);
    END;
    """,
    # 5: the Discord message an action came from, so deleting or editing it withdraws or changes it.
    """
    ALTER TABLE actions ADD COLUMN message_id INTEGER;
    CREATE INDEX actions_by_message ON actions (message_id) WHERE message_id IS NOT NULL;
    """,
    # 6: how far the story is summarised, kept apart from the summaries themselves: a piece whose summary
    # repeats an earlier one word for word (stored once) or says nothing still counts as summarised.
    """
    ALTER TABLE campaigns ADD COLUMN summarised_to INTEGER NOT NULL DEFAULT 0;
    UPDATE campaigns SET summarised_to = COALESCE(
        (SELECT MAX(turn_to) FROM memories WHERE campaign_id = campaigns.id AND kind = 'summary'), 0);
    """,
    # 7: who plays in a campaign's rounds: joined (/dm join, waited for) or away (/dm leave, not waited for).
    """
    CREATE TABLE players (
        campaign_id INTEGER NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
        author_id   INTEGER NOT NULL,
        name        TEXT    NOT NULL,
        joined      INTEGER NOT NULL CHECK (joined IN (0, 1)),
        updated     REAL    NOT NULL,
        PRIMARY KEY (campaign_id, author_id)
    );
    """,
    # 8: story cards: lore that enters the prompt when one of its keys is mentioned (World Info, AI Dungeon's
    # story cards). Keys and text in the model's language; what the admin wrote kept beside them.
    """
    CREATE TABLE cards (
        id          INTEGER PRIMARY KEY,
        campaign_id INTEGER NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
        keys        TEXT    NOT NULL,
        text        TEXT    NOT NULL,
        written     TEXT    NOT NULL,
        created     REAL    NOT NULL
    );
    CREATE INDEX cards_by_campaign ON cards (campaign_id, id);
    """,
    # 9: character sheets, one per player per campaign (engine/game/sheets.py's JSON).
    """
    CREATE TABLE sheets (
        campaign_id INTEGER NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
        author_id   INTEGER NOT NULL,
        data        TEXT    NOT NULL,
        updated     REAL    NOT NULL,
        PRIMARY KEY (campaign_id, author_id)
    );
    """,
    # 10: what a turn's markers did (engine/game/ledger.py's record, and the rolls the DM asked for), so undo
    # and retry take it back; a secret roll is shown to its roller and the admins only.
    """
    ALTER TABLE turns ADD COLUMN effects TEXT;
    ALTER TABLE actions ADD COLUMN secret INTEGER NOT NULL DEFAULT 0;
    """,
    # 11: the fight a campaign is in (engine/game/combat.py's JSON; no row: no fight) and its quests.
    """
    CREATE TABLE fights (
        campaign_id INTEGER PRIMARY KEY REFERENCES campaigns (id) ON DELETE CASCADE,
        data        TEXT    NOT NULL,
        updated     REAL    NOT NULL
    );
    CREATE TABLE quests (
        id          INTEGER PRIMARY KEY,
        campaign_id INTEGER NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
        title       TEXT    NOT NULL,
        giver       TEXT    NOT NULL DEFAULT '',
        reward      TEXT    NOT NULL DEFAULT '',
        status      TEXT    NOT NULL DEFAULT 'active',
        steps       TEXT    NOT NULL DEFAULT '[]',
        created     REAL    NOT NULL,
        updated     REAL    NOT NULL
    );
    CREATE INDEX quests_by_campaign ON quests (campaign_id, id);
    """,
)


async def register_functions(conn: aiosqlite.Connection) -> None:
    """SQL functions the migrations use: registered on the connection before they run."""
    await conn.create_function("dm_memory_key", 3, memory_key, deterministic=True)


async def apply_migrations(conn: aiosqlite.Connection) -> int:
    """Run the migrations not yet applied, each in its own transaction; returns the new version.

    The connection must be in autocommit mode (isolation_level=None). SQL functions the scripts
    call are registered first. Each script runs inside
    BEGIN IMMEDIATE ... COMMIT together with its user_version bump, so a failing script leaves
    the file at the previous version.
    """
    await register_functions(conn)
    async with conn.execute("PRAGMA user_version") as cursor:
        (version,) = await cursor.fetchone()
    if version > len(MIGRATIONS):
        raise RuntimeError(
            f"the database is at schema version {version}, newer than this code ({len(MIGRATIONS)})"
        )
    for number in range(version + 1, len(MIGRATIONS) + 1):
        script = MIGRATIONS[number - 1]
        try:
            # executescript commits any open transaction first, so BEGIN/COMMIT live in the script.
            await conn.executescript(
                f"BEGIN IMMEDIATE;\n{script}\n;PRAGMA user_version = {number};\nCOMMIT;"
            )
        except BaseException:
            if conn.in_transaction:
                await conn.rollback()
            raise
        log.info("store schema migrated to version %d", number)
    return len(MIGRATIONS)
