"""The Dungeon Master's engine, in wings that import only the wings below them (never discord).

floor: records, errors, generation, text      textgen/: the text backends
store/: SQLite                                 jobs/: the runner, the model worker, the prompt guard
translation/: providers, markup, glossary      memory/: embeddings, index, recall, summaries
pictures/: AUTOMATIC1111, queue, prompt        game/: dice, sheets, combat (to come)
table/: the turn pipeline and everything a campaign is edited through
"""
