// ExecuTorch: an ExecuTorch program (.pte, lowered at export from the case's torch.export program by
// `torchconform export --executorch`: portable kernels, or the XNNPACK delegate) runs in ExecuTorch's C++ runtime
// (extension::Module), flat tensors in, the program's output treespec out (program_spec.cpp, as for AOTInductor).
// The ExecuTorch side lives in executorch_bridge.cpp, compiled alone: its headers carry their own copy of c10.
#include "runtime.h"

#ifdef TORCHCONFORM_HAVE_EXECUTORCH
#include "executorch_bridge.h"
#endif

#include "files.h"
#include "schema.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>

namespace torchconform {
namespace {

#ifdef TORCHCONFORM_HAVE_EXECUTORCH
namespace bridge = executorch_bridge;

bridge::Value to_value(const at::Tensor& t) {
  const at::Tensor c = t.to(c10::Device(c10::kCPU)).contiguous();
  bridge::Value v;
  v.dtype = static_cast<int>(c.scalar_type());
  v.sizes = c.sizes().vec();
  v.bytes.resize(c.nbytes());
  if (c.nbytes()) std::memcpy(v.bytes.data(), c.data_ptr(), c.nbytes());
  return v;
}

at::Tensor to_tensor(const bridge::Value& v) {
  at::Tensor t = at::empty(v.sizes, at::TensorOptions().dtype(static_cast<at::ScalarType>(v.dtype)));
  if (static_cast<size_t>(t.nbytes()) != v.bytes.size())
    throw CorpusError("ExecuTorch returned " + std::to_string(v.bytes.size()) + " bytes for a tensor of " +
                          std::to_string(t.nbytes()),
                      ErrorKind::kCall);
  if (t.nbytes()) std::memcpy(t.data_ptr(), v.bytes.data(), t.nbytes());
  return t;
}

std::string backends_text() {
  std::string out;
  for (const auto& b : bridge::Program::backends()) out += (out.empty() ? "" : ", ") + b;
  return out.empty() ? "none" : out;
}
#endif

class ExecuTorch final : public Runtime {
 public:
  RuntimeKind kind() const override { return RuntimeKind::kExecuTorch; }
  RuntimeInfo info() const override {
#ifdef TORCHCONFORM_HAVE_EXECUTORCH
    return {"executorch", true,
            "ExecuTorch " TORCHCONFORM_EXECUTORCH_VERSION " C++ runtime (extension::Module; delegates: " +
                backends_text() + ")"};
#else
    return {"executorch", false,
            "this runner was built without ExecuTorch's C++ runtime (configure with the executorch package's CMake "
            "config on CMAKE_PREFIX_PATH and CMake >= 3.28: ci/executorch.sh)"};
#endif
  }

  Loaded load(const CaseSpec& c, const PlannedArtifact& a, const RunOptions& o, LoadMode mode) const override {
    const std::string who = artifact_who(c, a);
#ifdef TORCHCONFORM_HAVE_EXECUTORCH
    if (!o.device.is_cpu())
      throw CorpusError(who + ": not run: ExecuTorch's C++ runtime runs programs on the CPU (its CUDA delegate is "
                              "not in this build)",
                        ErrorKind::kNotRun);
    Loaded out;
    const VariantSpec& v = *a.variant;
    auto t0 = Clock::now();
    std::string bytes;
    if (mode == LoadMode::kVerified) {
      bytes = read_verified(c, *a.file);
    } else {
      bytes = read_inside(c.root, c.name + "/" + a.file->file, a.file->bytes, kMaxUndeclaredBytes, c.name);
    }
    out.read_seconds = since(t0);
    // A .pte carries no treespec: the structure of its inputs and outputs is the exported program's it was lowered
    // from, read from that program's own file; the manifest's copy must say the same.
    const auto from = std::find_if(c.variants.begin(), c.variants.end(), [&](const VariantSpec& p) {
      return p.name == v.lowered_from && p.kind == VariantKind::kExportedProgram && p.file;
    });
    if (from == c.variants.end())
      throw CorpusError(who + ": lowered_from '" + v.lowered_from + "' names no exported program of the case: the "
                        "structure of the program's inputs and outputs cannot be checked; refused");
    const auto specs = program_call_specs(c, *from);
    const nlohmann::json in_spec = specs.first, out_spec = specs.second;
    try {
      if (parse_json(v.in_spec, who + ": in_spec").at(1) != in_spec ||
          parse_json(v.out_spec, who + ": out_spec").at(1) != out_spec)
        throw CorpusError(who + ": the manifest's in_spec/out_spec differ from those of " + from->file->file +
                          ", the program it was lowered from; refused");
    } catch (const nlohmann::json::exception& e) {
      throw CorpusError(who + ": unreadable in_spec/out_spec in the manifest: " + e.what());
    }
    t0 = Clock::now();
    std::shared_ptr<bridge::Program> program;
    try {
      program = std::make_shared<bridge::Program>(std::vector<uint8_t>(bytes.begin(), bytes.end()));
    } catch (const std::exception& e) {
      throw CorpusError(who + ": ExecuTorch cannot load " + a.file->file + ": " + e.what(), ErrorKind::kLoad);
    }
    out.load_seconds = since(t0);
    const VariantSpec* variant = &v;
    out.prepare = [variant, who, program, in_spec, out_spec](const InputSetSpec& s, std::vector<c10::IValue> args) {
      if (!s.prelude.empty())
        throw CorpusError(who + "/" + s.name + ": an ExecuTorch program has no methods for the set's prelude");
      const auto tensors = program_inputs(*variant, in_spec, split_keywords(s, std::move(args), who + "/" + s.name),
                                          who + "/" + s.name);
      // Every leaf in the program's order: its tensors, and the constants it was specialized on (program_inputs
      // checked that the set's leaves equal them), which an ExecuTorch program keeps as inputs.
      std::vector<bridge::Value> inputs;
      size_t next = 0;
      for (const auto& leaf : variant->inputs) {
        if (leaf.tensor) {
          inputs.push_back(to_value(tensors.at(next++)));
          continue;
        }
        bridge::Value c;
        const c10::IValue& x = leaf.value;
        if (x.isInt()) c.kind = bridge::Value::Kind::kInt, c.i = x.toInt();
        else if (x.isDouble()) c.kind = bridge::Value::Kind::kDouble, c.d = x.toDouble();
        else if (x.isBool()) c.kind = bridge::Value::Kind::kBool, c.b = x.toBool();
        else if (x.isNone()) c.kind = bridge::Value::Kind::kNone;
        else throw CorpusError(who + "/" + s.name + ": a " + x.tagKind() + " constant input cannot be passed to an "
                               "ExecuTorch program (ints, floats, bools and None can)", ErrorKind::kCall);
        inputs.push_back(std::move(c));
      }
      return Call([variant, who, program, out_spec, inputs]() {
        std::vector<bridge::Value> got;
        try {
          got = program->forward(inputs);
        } catch (const std::exception& e) {
          throw CorpusError(who + ": " + e.what(), ErrorKind::kCall);
        }
        std::vector<at::Tensor> flat;
        for (const auto& x : got) flat.push_back(to_tensor(x));
        return program_outputs(out_spec, flat, *variant, who);
      });
    };
    return out;
#else
    (void)o;
    (void)mode;
    throw CorpusError(who + ": " + info().detail, ErrorKind::kNotRun);
#endif
  }
};

}  // namespace

const Runtime& executorch_runtime() {
  static const ExecuTorch runtime;
  return runtime;
}

}  // namespace torchconform
