"""Tools built on the pipeline: ``bench`` (with ``naive_loop``, the Python loop it compares with) and ``compat`` (the
upgrade matrix; ``compat_probe`` runs inside other PyTorch versions, where the compiled core is absent)."""
