"""The run: a config (:mod:`.config`) expanded into cells (:mod:`.cells`), each cell's model
trained and attacked (:mod:`.runner`) by an executor (:mod:`.executors`), lines appended to
``results.jsonl``; :mod:`.plan` estimates a run before it starts. Imports the plugin API and the
result vocabulary, never the report."""
