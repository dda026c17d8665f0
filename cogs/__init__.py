"""The Discord layer: thin cogs that parse, check, defer, hand jobs to the engine and render."""
