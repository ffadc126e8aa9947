"""The reading side of hrsbench: everything here reads result lines (``results.jsonl``) and
nothing else. It imports neither torch, ART nor the plugin registry, so a report renders the
same on every machine from the same files, and modules import one way:

- :mod:`.frame` (which model, missing, threat and comparison columns, base choice) and
  :mod:`.tables` (markdown tables and number formats) at the bottom;
- :mod:`.behaviour` (base, η, behaviour range: light enough for the command line's defaults);
- :mod:`.des` (the Defense Efficiency Score), :mod:`.merge` (several result files as one);
- :mod:`.stats` (bootstrap intervals and ties), then :mod:`.sanity` (gradient-masking checks),
  :mod:`.worstcase` (the worst case over attacks) and :mod:`.seeds` (lines of several training
  seeds pooled);
- :mod:`.build` (the numbers a leaderboard shows), :mod:`.plots` (the paper's figures; the
  only module importing matplotlib, on use), :mod:`.reference` (a paper's numbers beside ours),
  :mod:`.reprogramming` (the reprogramming report);
- :mod:`.leaderboard` (the markdown report) on top.
"""
