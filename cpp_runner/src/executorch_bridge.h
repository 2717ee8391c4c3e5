// The ExecuTorch side of the ExecuTorch runtime, behind an interface of plain C++ types. ExecuTorch's headers carry
// their own copy of c10 (portable_type/c10), which cannot share a translation unit with LibTorch's: this header is
// the only thing both sides see. executorch_bridge.cpp is compiled alone against ExecuTorch's package (a library of
// its own, cpp_runner/CMakeLists.txt); runtime_executorch.cpp converts between it and ATen tensors.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace torchconform::executorch_bridge {

// A dense, contiguous CPU tensor (dtype = the ScalarType code, which ExecuTorch numbers as c10 does). Outputs: a
// scalar the program returned (an int, a float or a bool) comes back as a 0-dim tensor of int64, float64 or bool.
// Inputs: a program keeps the constants torch.export specialized on as inputs of their own (ints, floats, bools,
// None), passed as such.
struct Value {
  enum class Kind { kTensor, kInt, kDouble, kBool, kNone } kind = Kind::kTensor;
  int dtype = 0;
  std::vector<int64_t> sizes;
  std::vector<uint8_t> bytes;
  int64_t i = 0;
  double d = 0;
  bool b = false;
};

class Program {
 public:
  // Loads a .pte from its bytes (kept by the program) and its `forward` method. Throws std::runtime_error naming
  // ExecuTorch's error.
  explicit Program(std::vector<uint8_t> bytes);
  ~Program();
  Program(const Program&) = delete;
  Program& operator=(const Program&) = delete;
  // Calls forward on tensors; throws std::runtime_error naming ExecuTorch's error (an unregistered operator or
  // backend, a shape the memory plan does not fit...).
  std::vector<Value> forward(const std::vector<Value>& inputs);
  // The backends this runtime has registered (e.g. XnnpackBackend), for the runtimes line.
  static std::vector<std::string> backends();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace torchconform::executorch_bridge
