"""SQLite: the schema, its migrations and every table (campaigns, actions, turns, memories, players, cards)."""
from engine.store.campaigns import Store
from engine.store.memories import PINNED_KEY, turn_key

__all__ = ["PINNED_KEY", "Store", "turn_key"]
