"""The result vocabulary and its storage: what a result line is (:mod:`.record`), its
per-example outcomes (:mod:`.outcomes`), older schemas brought forward (:mod:`.migrate`) and
``results.jsonl`` itself (:mod:`.store`). Light: no torch, ART or matplotlib, so the report side,
which reads nothing else, stays fast to import."""
