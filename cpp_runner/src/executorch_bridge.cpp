// ExecuTorch only (no LibTorch header may be included here: see executorch_bridge.h).
#include "executorch_bridge.h"

#include <executorch/extension/data_loader/buffer_data_loader.h>
#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#include <executorch/runtime/backend/interface.h>
#include <executorch/runtime/platform/platform.h>

#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace torchconform::executorch_bridge {

namespace et = ::executorch;

namespace {
// ExecuTorch logs through its platform layer; its info and debug lines (XNNPACK's CPU probing, on every load) would
// interleave with the runner's output: only errors reach stderr, prefixed so that they say whose they are.
void emit_log(et_timestamp_t, et_pal_log_level_t level, const char* filename, const char*, size_t line,
              const char* message, size_t length) {
  if (level != kError && level != kFatal) return;
  std::fprintf(stderr, "executorch %c %s:%zu] %.*s\n", static_cast<char>(level), filename ? filename : "?", line,
               static_cast<int>(length), message);
}

void quiet_logging() {
  static const bool registered =
      et::runtime::register_pal(et::runtime::PalImpl::create(emit_log, __FILE__));
  (void)registered;
}

std::string error_text(et::runtime::Error e) {
  return std::string("ExecuTorch error ") + et::runtime::to_string(e) + " (" + std::to_string(static_cast<int>(e)) +
         ")";
}
}  // namespace

struct Program::Impl {
  std::vector<uint8_t> bytes;
  std::unique_ptr<et::extension::Module> module;
};

Program::Program(std::vector<uint8_t> bytes) : impl_(std::make_unique<Impl>()) {
  quiet_logging();
  impl_->bytes = std::move(bytes);
  auto loader = std::make_unique<et::extension::BufferDataLoader>(impl_->bytes.data(), impl_->bytes.size());
  impl_->module = std::make_unique<et::extension::Module>(std::move(loader));
  const auto loaded = impl_->module->load(et::runtime::Program::Verification::InternalConsistency);
  if (loaded != et::runtime::Error::Ok) throw std::runtime_error("loading the program: " + error_text(loaded));
  const auto method = impl_->module->load_method("forward");
  if (method != et::runtime::Error::Ok)
    throw std::runtime_error("loading its forward method: " + error_text(method) +
                             " (an operator or a delegate this runtime does not register?)");
}

Program::~Program() = default;

std::vector<Value> Program::forward(const std::vector<Value>& inputs) {
  std::vector<et::extension::TensorPtr> keep;
  std::vector<et::runtime::EValue> args;
  for (const auto& v : inputs) {
    switch (v.kind) {
      case Value::Kind::kTensor: {
        std::vector<et::aten::SizesType> sizes(v.sizes.begin(), v.sizes.end());
        keep.push_back(et::extension::from_blob(const_cast<uint8_t*>(v.bytes.data()), sizes,
                                                static_cast<et::aten::ScalarType>(v.dtype)));
        args.emplace_back(keep.back());
        break;
      }
      case Value::Kind::kInt: args.emplace_back(v.i); break;
      case Value::Kind::kDouble: args.emplace_back(v.d); break;
      case Value::Kind::kBool: args.emplace_back(v.b); break;
      case Value::Kind::kNone: args.emplace_back(et::runtime::EValue()); break;
    }
  }
  const auto result = impl_->module->forward(args);
  if (!result.ok()) throw std::runtime_error("forward: " + error_text(result.error()));
  std::vector<Value> out;
  for (const auto& e : *result) {
    Value v;
    if (e.isTensor()) {
      const auto& t = e.toTensor();
      v.dtype = static_cast<int>(t.scalar_type());
      for (auto s : t.sizes()) v.sizes.push_back(s);
      const auto* p = static_cast<const uint8_t*>(t.const_data_ptr());
      v.bytes.assign(p, p + t.nbytes());
    } else if (e.isInt()) {
      const int64_t x = e.toInt();
      v.dtype = static_cast<int>(et::aten::ScalarType::Long);
      v.bytes.resize(sizeof x);
      std::memcpy(v.bytes.data(), &x, sizeof x);
    } else if (e.isDouble()) {
      const double x = e.toDouble();
      v.dtype = static_cast<int>(et::aten::ScalarType::Double);
      v.bytes.resize(sizeof x);
      std::memcpy(v.bytes.data(), &x, sizeof x);
    } else if (e.isBool()) {
      v.dtype = static_cast<int>(et::aten::ScalarType::Bool);
      v.bytes.assign(1, e.toBool() ? 1 : 0);
    } else {
      throw std::runtime_error("forward returned a value that is not a tensor, an int, a float or a bool (tag " +
                               std::to_string(static_cast<int>(e.tag)) + ")");
    }
    out.push_back(std::move(v));
  }
  return out;
}

std::vector<std::string> Program::backends() {
  std::vector<std::string> out;
  const size_t n = et::runtime::get_num_registered_backends();
  for (size_t i = 0; i < n; ++i) {
    const auto name = et::runtime::get_backend_name(i);
    if (name.ok()) out.emplace_back(*name);
  }
  return out;
}

}  // namespace torchconform::executorch_bridge
