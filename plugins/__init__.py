"""hrsbench's built-in plugins. Each module registers through the ``hrsbench`` entry-point group
in ``pyproject.toml``, exactly as a third-party package does."""
