"""Authoring: what a case is (``case.py``), the registry (``registry.py``), the user API (``api.py``: ``declare``,
``@case``), the built-in cases (``builtin/``, one file per model of the spec), the spec's models (``models.py``), the
variants a case adds (``variants.py``: TorchScript optimizations, ``torch.export`` capture) and warning capture.
Nothing here writes files or runs the core."""
