// torchconform._core, one bind_*.cpp per core header (bind_compare.cpp: compare.h, bind_corpus.cpp: corpus.h, ...),
// compiled as one unity translation unit (bindings/CMakeLists.txt): torch/python.h is costly to compile more than once.
#pragma once

#include <torchconform/bench.h>
#include <torchconform/runner.h>

#include <torch/serialize.h>  // pickle_load of saved outputs
#include <torch/python.h>  // at::Tensor <-> torch.Tensor casters (same storage: no copy)

#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>

namespace py = pybind11;

namespace torchconform::bindings {

// Python value -> IValue, keeping tuple vs list and int vs float vs bool, as the corpus does; and back.
c10::IValue to_ivalue(const py::handle& obj, const std::string& where);
py::object to_python(const c10::IValue& v);
// A manifest tolerance object given from Python (None: the defaults), parsed by the manifests' parser.
TolerancePolicy policy_from(const py::object& tolerance);
RunOptions run_options(const std::string& device, int threads, int repeat, const std::string& aoti_cache);
// A mark as Python sees it (convert.cpp says how).
std::optional<std::string> local_reason(const std::optional<Mark>& m);
py::object mark_dict(const std::optional<Mark>& m);
const CaseSpec& find_case(const Corpus& corpus, const std::string& name);

// The bindings of each core header, in the order the module registers them (a class before the functions that name
// it in their signatures).
void bind_compare(py::module_& m);
void bind_corpus(py::module_& m);
void bind_result(py::module_& m);
void bind_plan(py::module_& m);
void bind_run(py::module_& m);
void bind_verify(py::module_& m);
void bind_bench(py::module_& m);

}  // namespace torchconform::bindings
