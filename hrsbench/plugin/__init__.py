"""The plugin API: what a plugin subclasses (:class:`~.defense.Defense`,
:class:`~.attack.Attack`, :class:`~.threat.Threat`, :class:`~.dataset.Dataset`), what it
receives (:class:`~.training.Trainer`, :class:`~.estimator.Classifier`,
:class:`~.cache.ModelCache`), the helpers it builds on (:mod:`.models`, :mod:`.gradient`,
:mod:`.metrics`, :mod:`.params`) and how it registers (:mod:`.hookspecs`, :mod:`.registry`).
Plugins import these names from ``hrsbench``; the modules here are where they are defined."""
