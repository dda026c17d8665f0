"""The campaign store against a real SQLite file: migrations, campaigns, actions, turns, memories."""
from __future__ import annotations

import asyncio
import sqlite3

import numpy as np
import pytest
import pytest_asyncio

from engine.store import migrations
from engine.errors import BadInput
from engine.records import NewMemory, memory_key
from engine.store.campaigns import Store

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def store(tmp_path):
    store = await Store.open(str(tmp_path / "data" / "campaigns.sqlite3"))
    yield store
    await store.close()


@pytest_asyncio.fixture
async def campaign(store):
    return await store.create_campaign(100, "The Sunken Crown", premise="A drowned kingdom.")


def exact(text: str, vector=None, embedder: str = "mini", **kwargs) -> NewMemory:
    return NewMemory("exact", text, vector, embedder, **kwargs)


def raw(path, sql: str, params=()) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql, params).fetchall()


async def snapshot(store: Store, campaign_id: int) -> tuple:
    turns = await store.recent_turns(campaign_id, 1000)
    return (
        [a.id for a in await store.pending_actions(campaign_id)],
        [(t.number, t.narration, [a.id for a in t.actions]) for t in turns],
        [(m.id, m.kind, m.text, m.turn_from, m.turn_to) for m in await store.memories(campaign_id)],
    )


async def test_migrations_applied_and_reopen_keeps_data(tmp_path, monkeypatch):
    path = str(tmp_path / "nested" / "folder" / "db.sqlite3")
    store = await Store.open(path)
    created = await store.create_campaign(1, "Alpha", settings={"summarize_every": 4})
    await store.add_action(created.id, 7, "Ann", "I open the door.")
    await store.close()
    assert raw(path, "PRAGMA user_version") == [(len(migrations.MIGRATIONS),)]
    assert raw(path, "PRAGMA journal_mode") == [("wal",)]

    # A new migration is applied once; re-opening again does not re-run it (it would fail).
    extra = "CREATE TABLE pictures (id INTEGER PRIMARY KEY, url TEXT NOT NULL);"
    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS, extra))
    for _ in range(2):
        store = await Store.open(path)
        assert await store.get_campaign(created.id) == created
        assert [a.text for a in await store.pending_actions(created.id)] == ["I open the door."]
        await store.close()
    assert raw(path, "PRAGMA user_version") == [(len(migrations.MIGRATIONS),)]


async def test_a_database_of_the_last_release_gets_its_words_indexed_and_hashes_renewed(tmp_path, monkeypatch):
    path = str(tmp_path / "old.sqlite3")
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:3])  # as version 3 shipped
    old = await Store.open(path)
    campaign = await old.create_campaign(1, "Old")
    for text in ("Ann: The Marigold sails at dawn.", "Ann: the marigold sails at dawn!"):  # copies then
        await old._conn.execute(
            "INSERT INTO memories (campaign_id, kind, text, content_hash, embedder, created)"
            " VALUES (?, 'exact', ?, 'old-hash', '', 0)", (campaign.id, text))
    await old.close()
    monkeypatch.undo()
    store = await Store.open(path)
    assert raw(path, "PRAGMA user_version") == [(len(migrations.MIGRATIONS),)]
    first, second = await store.memories(campaign.id)
    assert first.speaker is None and first.text == "Ann: The Marigold sails at dawn."  # kept as it was
    assert sorted(i for i, _ in await store.search_words(campaign.id, ["marigold"], 10)) == [first.id, second.id]
    assert {h for (h,) in raw(path, "SELECT content_hash FROM memories")} == {memory_key(first.text, None, False)}
    again = await store.add_memory(campaign.id, exact("Ann: THE MARIGOLD SAILS AT DAWN", embedder=""))
    assert again.id == first.id and await store.memory_count(campaign.id) == 2  # no third copy
    await store.close()


async def test_failing_migration_rolls_back_and_keeps_version(tmp_path, monkeypatch):
    path = str(tmp_path / "db.sqlite3")
    await (await Store.open(path)).close()
    version = len(migrations.MIGRATIONS)
    broken = "CREATE TABLE half (x); CREATE TABLE half (x);"
    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS, broken))
    with pytest.raises(sqlite3.OperationalError):
        await Store.open(path)
    assert raw(path, "PRAGMA user_version") == [(version,)]
    assert raw(path, "SELECT name FROM sqlite_master WHERE name = 'half'") == []


async def test_one_active_campaign_per_channel(store, tmp_path):
    first = await store.create_campaign(5, "Alpha", language="fr", settings={"temperature": 0.5})
    assert first.active and first.settings == {"temperature": 0.5} and first.language == "fr"
    with pytest.raises(BadInput, match="already has a campaign running: Alpha"):
        await store.create_campaign(5, "Beta")
    other = await store.create_campaign(6, "Alpha")
    assert await store.campaign_for_channel(5) == first

    # The partial unique index holds even for writes that skip the store's own check.
    with pytest.raises(sqlite3.IntegrityError):
        raw(store.path, "INSERT INTO campaigns (channel_id, name, created) VALUES (5, 'x', 0)")

    await store.end_campaign(first.id)
    assert await store.campaign_for_channel(5) is None
    ended = await store.get_campaign(first.id)
    assert ended is not None and not ended.active and ended.settings == first.settings
    second = await store.create_campaign(5, "Beta")
    assert await store.campaign_for_channel(5) == second
    assert [c.id for c in await store.list_campaigns()] == [first.id, other.id, second.id]
    with pytest.raises(BadInput):
        await store.create_campaign(7, "   ")


async def test_update_campaign_changes_only_given_fields(store, campaign):
    updated = await store.update_campaign(campaign.id, style="grim", settings={"top_k": 10})
    assert (updated.premise, updated.style, updated.settings) == ("A drowned kingdom.", "grim",
                                                                  {"top_k": 10})
    assert await store.get_campaign(campaign.id) == updated
    assert await store.update_campaign(campaign.id) == updated
    with pytest.raises(BadInput):
        await store.update_campaign(9999, style="x")


async def test_actions_pending_in_insertion_order(store, campaign):
    texts = ["I draw my sword.", "I hide.", "I cast light.", "I wait."]
    added = [await store.add_action(campaign.id, i, f"p{i}", t) for i, t in enumerate(texts)]
    assert added[0].turn_id is None
    assert await store.pending_actions(campaign.id) == added
    assert await store.withdraw_action(campaign_id=campaign.id, author_id=1) == added[1]
    assert await store.withdraw_action(campaign_id=campaign.id, author_id=1) is None
    assert [a.text for a in await store.pending_actions(campaign.id)] == [
        "I draw my sword.", "I cast light.", "I wait."]


async def test_commit_turn_consumes_actions_and_adds_memories(store, campaign):
    a = await store.add_action(campaign.id, 1, "Ann", "I pick the lock.")
    b = await store.add_action(campaign.id, 2, "Bob", "I keep watch.")
    late = await store.add_action(campaign.id, 3, "Cy", "I arrive late.")
    turn, added = await store.commit_turn(
        campaign.id, [a.id, b.id], "The lock clicks open.",
        [exact("Ann picks the lock."), NewMemory("summary", "Arc so far", None, "", 0, 5)])
    assert turn.number == 1 and turn.narration == "The lock clicks open."
    assert [x.id for x in turn.actions] == [a.id, b.id]
    assert all(x.turn_id == turn.id for x in turn.actions)
    assert [(m.turn_from, m.turn_to) for m in added] == [(1, 1), (0, 5)]
    assert await store.pending_actions(campaign.id) == [late]

    turn2, none = await store.commit_turn(campaign.id, [late.id], "Cy joins.")
    assert (turn2.number, none) == (2, [])
    assert await store.turn_count(campaign.id) == 2
    assert await store.last_turn(campaign.id) == turn2
    assert await store.recent_turns(campaign.id, 1) == [turn2]
    assert await store.recent_turns(campaign.id, 10) == [turn, turn2]
    assert await store.turns_since(campaign.id, 1) == [turn2]
    assert await store.turns_since(campaign.id, 0) == [turn, turn2]
    assert await store.last_summary_turn(campaign.id) == 5

    # Turn numbers count per campaign.
    other = await store.create_campaign(200, "Elsewhere")
    assert (await store.commit_turn(other.id, [], "Opening."))[0].number == 1


async def test_commit_turn_failure_mid_transaction_changes_nothing(store, campaign):
    a = await store.add_action(campaign.id, 1, "Ann", "I jump.")
    b = await store.add_action(campaign.id, 2, "Bob", "I duck.")
    await store.add_memory(campaign.id, NewMemory("fact", "The king is dead.", None, "", pinned=True))
    before = await snapshot(store, campaign.id)

    # The second memory breaks the kind CHECK after the turn, actions and first memory were written.
    bad = [exact("fine"), NewMemory("gossip", "nope", None, "")]
    with pytest.raises(sqlite3.IntegrityError):
        await store.commit_turn(campaign.id, [a.id, b.id], "Narration", bad)
    assert await snapshot(store, campaign.id) == before

    # An action that is not pending (unknown, or of another campaign) aborts the whole turn.
    other = await store.create_campaign(300, "Other")
    foreign = await store.add_action(other.id, 9, "Zed", "Hi.")
    for ids in ([a.id, 999_999], [a.id, foreign.id]):
        with pytest.raises(BadInput):
            await store.commit_turn(campaign.id, ids, "Narration", [exact("m")])
        assert await snapshot(store, campaign.id) == before
    assert await store.pending_actions(other.id) == [foreign]

    # A retried turn must not consume the same actions twice.
    turn, _ = await store.commit_turn(campaign.id, [a.id, b.id], "Once.", [exact("once")])
    after = await snapshot(store, campaign.id)
    with pytest.raises(BadInput):
        await store.commit_turn(campaign.id, [a.id, b.id], "Twice.", [exact("twice")])
    assert await snapshot(store, campaign.id) == after
    assert await store.turn_count(campaign.id) == 1


async def test_concurrent_commits_of_the_same_actions_only_one_wins(store, campaign):
    a = await store.add_action(campaign.id, 1, "Ann", "Go.")
    results = await asyncio.gather(
        *(store.commit_turn(campaign.id, [a.id], f"take {i}", [exact(f"m{i}")]) for i in range(5)),
        return_exceptions=True)
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, BadInput) for r in results if isinstance(r, Exception))
    assert await store.turn_count(campaign.id) == 1 and await store.memory_count(campaign.id) == 1


async def test_undo_returns_actions_and_drops_the_turns_memories(store, campaign):
    a = await store.add_action(campaign.id, 1, "Ann", "first")
    turn1, _ = await store.commit_turn(campaign.id, [a.id], "One.", [exact("turn one")])
    b = await store.add_action(campaign.id, 1, "Ann", "second")
    c = await store.add_action(campaign.id, 2, "Bob", "third")
    turn2, _ = await store.commit_turn(campaign.id, [b.id, c.id], "Two.", [
        exact("turn two"),
        NewMemory("summary", "turns one and two", None, "", 1, 2),
        NewMemory("fact", "the password is swordfish", None, "", pinned=True),
    ])
    d = await store.add_action(campaign.id, 3, "Cy", "fourth, still pending")

    removed = await store.undo_last_turn(campaign.id)
    assert removed == turn2
    assert [x.id for x in await store.pending_actions(campaign.id)] == [b.id, c.id, d.id]
    assert [m.text for m in await store.memories(campaign.id)] == [
        "the password is swordfish", "turn one"]
    assert await store.turn_count(campaign.id) == 1
    assert await store.last_turn(campaign.id) == turn1

    redo, _ = await store.commit_turn(campaign.id, [b.id, c.id], "Two again.")
    assert redo.number == 2
    assert await store.undo_last_turn(campaign.id) == redo
    assert await store.undo_last_turn(campaign.id) == turn1
    assert await store.undo_last_turn(campaign.id) is None
    assert [x.id for x in await store.pending_actions(campaign.id)] == [a.id, b.id, c.id, d.id]
    assert [m.text for m in await store.memories(campaign.id)] == ["the password is swordfish"]


async def test_replace_narration_swaps_only_this_turns_exact_memories(store, campaign):
    await store.commit_turn(campaign.id, [], "One.", [exact("turn one")])
    turn2, _ = await store.commit_turn(campaign.id, [], "Two.", [
        exact("old two a"), exact("old two b"),
        NewMemory("summary", "summary of two", None, ""),
        exact("spans one-two", turn_from=1, turn_to=2),
    ])
    turn, added = await store.replace_narration(turn2.id, "Two, retold.", [exact("new two")])
    assert (turn.id, turn.number, turn.narration) == (turn2.id, 2, "Two, retold.")
    assert [(m.text, m.turn_from, m.turn_to) for m in added] == [("new two", 2, 2)]
    assert sorted(m.text for m in await store.memories(campaign.id)) == [
        "new two", "spans one-two", "summary of two", "turn one"]
    assert (await store.last_turn(campaign.id)).narration == "Two, retold."
    with pytest.raises(BadInput):
        await store.replace_narration(999_999, "x")


async def test_reset_memory_is_one_transaction(store, campaign):
    other = await store.create_campaign(400, "Other")
    await store.add_memory(other.id, exact("other campaign"))
    for i in range(5):
        await store.add_memory(campaign.id, exact(f"m{i}", pinned=i == 0))
    statements: list[str] = []
    await store._conn.set_trace_callback(statements.append)
    assert await store.reset_memory(campaign.id, keep_pinned=True) == 4
    await store._conn.set_trace_callback(None)
    assert statements[0] == "BEGIN IMMEDIATE" and statements[-1] == "COMMIT"
    # one DELETE statement (the trace repeats it for each row its FTS5 trigger follows)
    assert len({s for s in statements if s.startswith("DELETE FROM memories ")}) == 1
    assert [m.text for m in await store.memories(campaign.id)] == ["m0"]
    assert await store.reset_memory(campaign.id) == 1
    assert await store.memory_count(campaign.id) == 0
    assert await store.memory_count(other.id) == 1


async def test_vectors_round_trip_and_embedders_do_not_mix(store, campaign):
    rng = np.random.default_rng(3)
    mini = rng.standard_normal((3, 8)).astype(np.float32)
    mini[0, :3] = [np.float32(1e-38), np.float32(-0.0), np.float32(3.4e38)]
    big = rng.standard_normal((2, 16))  # float64 in, float32 stored
    ids_mini = [(await store.add_memory(campaign.id, exact(f"m{i}", v, "mini"))).id
                for i, v in enumerate(mini)]
    ids_big = [(await store.add_memory(campaign.id, exact(f"b{i}", v, "big"))).id
               for i, v in enumerate(big)]
    await store.add_memory(campaign.id, exact("no vector", None, "mini"))

    ids, matrix, keys = await store.memory_vectors(campaign.id, "mini")
    assert ids == ids_mini and matrix.dtype == np.float32 and matrix.shape == (3, 8)
    assert matrix.tobytes() == mini.tobytes() and keys == [-1, -1, -1]  # in no turn
    ids, matrix, _ = await store.memory_vectors(campaign.id, "big")
    assert ids == ids_big and np.array_equal(matrix, big.astype(np.float32))
    ids, matrix, keys = await store.memory_vectors(campaign.id, "unknown")
    assert ids == [] == keys and matrix.shape == (0, 0) and matrix.dtype == np.float32

    stored = await store.memories(campaign.id, embedder="mini")
    assert [m.text for m in stored] == ["m0", "m1", "m2", "no vector"]
    assert stored[0].vector.dtype == np.float32 and stored[0].vector.tobytes() == mini[0].tobytes()
    assert stored[-1].vector is None
    got = await store.get_memories(np.array([ids_big[1], 999_999, ids_mini[2]]))
    assert [m.text for m in got] == ["b1", "m2"]
    assert raw(store.path, "SELECT content_hash, dim FROM memories WHERE id = ?", (ids_mini[1],)) == [
        (memory_key("m1", None, False), 8)]
    with pytest.raises(ValueError):
        await store.add_memory(campaign.id, exact("matrix", np.zeros((2, 2)), "mini"))


async def test_memories_pinned_first_delete_and_last_summary(store, campaign):
    one = await store.add_memory(campaign.id, exact("plain"))
    pinned = await store.add_memory(campaign.id, NewMemory("fact", "pinned", None, "", pinned=True))
    assert (one.turn_from, one.turn_to) == (None, None)
    assert [m.id for m in await store.memories(campaign.id)] == [pinned.id, one.id]
    assert await store.last_summary_turn(campaign.id) == 0
    await store.add_memory(campaign.id, NewMemory("summary", "s1", None, "", 1, 6))
    await store.add_memory(campaign.id, NewMemory("summary", "s2", None, "", 7, 12))
    assert await store.last_summary_turn(campaign.id) == 12
    other = await store.create_campaign(500, "Other")
    assert not await store.delete_memory(other.id, one.id)  # not that campaign's
    assert await store.delete_memory(campaign.id, one.id)
    assert not await store.delete_memory(campaign.id, one.id)
    assert await store.memory_count(campaign.id) == 3


async def test_a_summary_that_repeats_an_earlier_one_still_moves_the_summarised_mark(store, campaign, tmp_path,
                                                                                     monkeypatch):
    """A small model summarised two pieces word for word alike; the copy was not stored (one copy of each
    memory), and the mark that came from the summaries' turns stayed behind: the summary never advanced."""
    await store.add_memory(campaign.id, NewMemory("summary", "The war in the north.", None, "", 1, 2))
    copy = await store.add_memory(campaign.id, NewMemory("summary", "The war in the north.", None, "", 3, 3))
    assert (copy.turn_from, copy.turn_to) == (1, 2) and await store.memory_count(campaign.id) == 1
    assert await store.last_summary_turn(campaign.id) == 3
    await store.mark_summarised(campaign.id, 5)  # a piece the model said nothing about
    await store.mark_summarised(campaign.id, 4)  # never backwards
    assert await store.last_summary_turn(campaign.id) == 5
    for n in range(1, 6):
        await store.commit_turn(campaign.id, [], f"Turn {n}.")
    await store.undo_last_turn(campaign.id)  # turn 5 is gone, and so is its place in a summary
    assert await store.last_summary_turn(campaign.id) == 4
    await store.reset_memory(campaign.id)
    assert await store.last_summary_turn(campaign.id) == 0
    # a database of the last release: the mark starts where its summaries end
    path = str(tmp_path / "v5.sqlite3")
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:5])
    old = await Store.open(path)
    other = await old.create_campaign(9, "Old")
    await old._conn.execute("INSERT INTO memories (campaign_id, kind, text, content_hash, embedder, created,"
                            " turn_from, turn_to) VALUES (?, 'summary', 's', 'h', '', 0, 1, 7)", (other.id,))
    await old.close()
    monkeypatch.undo()
    reopened = await Store.open(path)
    assert await reopened.last_summary_turn(other.id) == 7
    await reopened.close()


async def test_on_memory_change_tells_what_each_commit_added_and_removed(store, campaign):
    calls: list[tuple[int, list[str], list[int]]] = []
    store.on_memory_change = lambda cid, added, removed: calls.append((cid, [m.text for m in added], list(removed)))
    a = await store.add_action(campaign.id, 1, "Ann", "x")
    await store.commit_turn(campaign.id, [a.id], "No memories.")
    assert calls == []
    turn, (t2,) = await store.commit_turn(campaign.id, [], "With.", [exact("t2")])
    memory = await store.add_memory(campaign.id, exact("loose"))
    _, (t2b,) = await store.replace_narration(turn.id, "Retold.", [exact("t2b")])
    await store.delete_memory(campaign.id, memory.id)
    await store.undo_last_turn(campaign.id)
    again = await store.add_memory(campaign.id, exact("again"))
    await store.reset_memory(campaign.id)
    assert calls == [(campaign.id, ["t2"], []), (campaign.id, ["loose"], []), (campaign.id, ["t2b"], [t2.id]),
                     (campaign.id, [], [memory.id]), (campaign.id, [], [t2b.id]), (campaign.id, ["again"], []),
                     (campaign.id, [], [again.id])]
    assert await store.reset_memory(campaign.id) == 0 and len(calls) == 7  # nothing removed, nobody told

    def broken(*args) -> None:
        raise RuntimeError("listener bug")

    store.on_memory_change = broken
    assert (await store.add_memory(campaign.id, exact("still saved"))).id
    assert await store.memory_count(campaign.id) == 1


async def test_a_memory_is_stored_once(store, campaign):
    first = await store.add_memory(campaign.id, exact("The door creaks open.", speaker="Ann"))
    # the same words in other case, spacing and punctuation: the same memory
    assert (await store.add_memory(campaign.id, exact("the door  creaks open!", speaker="Ann"))).id == first.id
    other_speaker = await store.add_memory(campaign.id, exact("The door creaks open.", speaker="Bram"))
    pinned = await store.add_memory(campaign.id, exact("The door creaks open.", pinned=True))
    assert len({first.id, other_speaker.id, pinned.id}) == 3  # another speaker, or a pinned fact, is another memory
    a = await store.add_action(campaign.id, 1, "Ann", "x")
    turn, added = await store.commit_turn(campaign.id, [a.id], "The door creaks open.",
                                          [exact("The door creaks open.", speaker="Ann"), exact("Dust falls."),
                                           exact("dust falls")])
    assert [m.text for m in added] == ["Dust falls."]  # one copy within a turn, none of what was stored
    assert await store.memory_count(campaign.id) == 4
    await store.undo_last_turn(campaign.id)
    assert await store.memory_count(campaign.id) == 3
    assert (await store.get_memories([first.id]))[0].speaker == "Ann"


async def test_the_words_index_follows_the_memories_table(store, campaign):
    async def found(word: str) -> list[int]:
        return [i for i, _ in await store.search_words(campaign.id, [word], 10)]

    other = await store.create_campaign(401, "Other")
    elsewhere = await store.add_memory(other.id, exact("The Marigold sails elsewhere."))
    one = await store.add_memory(campaign.id, exact("We sail on the Marigold at dawn."))
    a = await store.add_action(campaign.id, 1, "Ann", "x")
    turn, (told,) = await store.commit_turn(campaign.id, [a.id], "n", [exact("The Marigold's captain is Orsk.")])
    assert await found("marigold") == [one.id, told.id] or await found("marigold") == [told.id, one.id]
    assert (await store.word_counts(["marigold", "orsk", "nothing"])) == {"marigold": 3, "orsk": 1}
    _, (retold,) = await store.replace_narration(turn.id, "n2", [exact("Orsk sold the Marigold.")])
    assert set(await found("marigold")) == {one.id, retold.id} and await found("captain") == []
    await store.undo_last_turn(campaign.id)
    assert await found("marigold") == [one.id] and await found("orsk") == []
    assert await store.delete_memory(campaign.id, one.id)
    assert await found("marigold") == []
    await store.add_memory(campaign.id, exact("Marigold again."))
    await store.reset_memory(campaign.id)
    assert await found("marigold") == [] and await store.word_counts(["marigold"]) == {"marigold": 1}
    assert [i for i, _ in await store.search_words(other.id, ["marigold"], 10)] == [elsewhere.id]


async def test_concurrent_add_action_all_stored(store, campaign):
    async def player(i: int):
        return await store.add_action(campaign.id, i, f"p{i}", f"action {i}")

    readers = [store.pending_actions(campaign.id) for _ in range(20)]
    results = await asyncio.gather(*(player(i) for i in range(200)), *readers)
    added = results[:200]
    assert len({a.id for a in added}) == 200
    pending = await store.pending_actions(campaign.id)
    assert sorted(a.text for a in pending) == sorted(f"action {i}" for i in range(200))
    assert [a.id for a in pending] == sorted(a.id for a in added)
