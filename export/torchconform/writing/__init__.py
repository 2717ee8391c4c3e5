"""Writing a corpus: the call protocol of an input set (``protocol.py``), values as the corpus stores them
(``values.py``), the writer (``writer.py``: artifacts, goldens, manifests), the atomic replacement of a corpus
(``swap.py``) and AOTInductor packages compiled from its exported programs (``aoti.py``, ``aoti_build.py``)."""
