"""The faces users meet: the ``torchconform`` command (``cli.py``), the pytest plugin (``pytest_plugin.py``) and the
Markdown report (``report.py``). Each is thin: verdicts come from the C++ core (``torchconform._core``)."""
