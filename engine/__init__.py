"""The Dungeon Master's engine: store, memory, models, runner and turn pipeline. No Discord here."""
