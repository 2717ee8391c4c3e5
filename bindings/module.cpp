// torchconform._core: the C++ runner library (cpp_runner/) exposed to Python. Nothing here loads or compares on
// its own; every function forwards to torchconform::runner, so Python and ctest get the same verdicts. The module's
// errors and basics are here; each core header's bindings are in its bind_*.cpp (bind.h).
#include "bind.h"

using namespace torchconform;
using namespace torchconform::bindings;

PYBIND11_MODULE(_core, m) {
  m.doc() = "torchconform's C++ core (corpus reader, runner, comparator) for Python";
  static py::exception<CorpusError> corpus_error(m, "CorpusError", PyExc_ValueError);
  static py::exception<UsageError> usage_error(m, "UsageError", PyExc_ValueError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const CorpusError& e) {
      PyErr_SetString(corpus_error.ptr(), e.what());
    } catch (const UsageError& e) {
      PyErr_SetString(usage_error.ptr(), e.what());
    } catch (const c10::Error& e) {
      // The same message as the C++ CLI prints, without LibTorch's C++ backtrace.
      PyErr_SetString(PyExc_RuntimeError, e.what_without_backtrace());
    }
  });
  m.attr("__version__") = torchconform_version();
  m.def("libtorch_version", &libtorch_version);
  m.def("printable", &printable, py::arg("text"),
        "Corpus text made safe to print (control, invisible and bidirectional characters escaped): the one "
        "definition the CLI, the reports and the Python faces share.");

  bind_compare(m);
  bind_corpus(m);
  bind_result(m);
  bind_plan(m);
  bind_run(m);
  bind_verify(m);
  bind_bench(m);
}
