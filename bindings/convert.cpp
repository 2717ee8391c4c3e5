// torchconform._core: what the bindings share (Python values <-> IValues, tolerance policies and run options from
// Python arguments, marks as Python sees them, a case by name).
#include "bind.h"

namespace torchconform::bindings {

// Python value -> IValue, keeping tuple vs list and int vs float vs bool, as the corpus does.
c10::IValue to_ivalue(const py::handle& obj, const std::string& where) {
  if (obj.is_none()) return c10::IValue();
  if (THPVariable_Check(obj.ptr())) return THPVariable_Unpack(obj.ptr());
  if (py::isinstance<py::bool_>(obj)) return obj.cast<bool>();
  if (py::isinstance<py::int_>(obj)) return obj.cast<int64_t>();
  if (py::isinstance<py::float_>(obj)) return obj.cast<double>();
  if (py::isinstance<py::str>(obj)) return obj.cast<std::string>();
  if (py::isinstance<py::tuple>(obj)) {
    std::vector<c10::IValue> items;
    size_t i = 0;
    for (const auto& x : obj) items.push_back(to_ivalue(x, where + "[" + std::to_string(i++) + "]"));
    return c10::ivalue::Tuple::create(std::move(items));
  }
  if (py::isinstance<py::list>(obj)) {
    std::vector<c10::IValue> items;
    size_t i = 0;
    for (const auto& x : obj) items.push_back(to_ivalue(x, where + "[" + std::to_string(i++) + "]"));
    // Typed as torch.load types it (List[Tensor], List[int]...) when the elements agree, so that a TorchScript
    // method taking List[Tensor] accepts it; Any otherwise.
    c10::TypePtr element = c10::AnyType::get();
    if (!items.empty()) {
      const c10::TypePtr first = items[0].type();
      if (std::all_of(items.begin(), items.end(), [&](const c10::IValue& x) { return *x.type() == *first; }) &&
          (items[0].isTensor() || items[0].isInt() || items[0].isDouble() || items[0].isBool() ||
           items[0].isString()))
        element = items[0].isTensor() ? c10::TensorType::get() : first;
    }
    c10::impl::GenericList list(element);
    for (auto& x : items) list.push_back(std::move(x));
    return list;
  }
  if (py::isinstance<py::dict>(obj)) {
    // str, int and bool keys, as the comparator compares them (raw, each kind apart).
    c10::impl::GenericDict dict(c10::AnyType::get(), c10::AnyType::get());
    for (const auto& kv : obj.cast<py::dict>()) {
      if (!py::isinstance<py::str>(kv.first) && !py::isinstance<py::int_>(kv.first))
        throw py::type_error(where + ": dict keys must be str, int or bool, got " +
                             std::string(py::str(py::type::handle_of(kv.first))));
      const c10::IValue key = to_ivalue(kv.first, where + " key");
      dict.insert(key, to_ivalue(kv.second, where + "[" + std::string(py::repr(kv.first)) + "]"));
    }
    return dict;
  }
  throw py::type_error(where + ": cannot compare a value of type " + std::string(py::str(py::type::handle_of(obj))));
}

py::object to_python(const c10::IValue& v) {
  if (v.isNone()) return py::none();
  if (v.isTensor()) return py::reinterpret_steal<py::object>(THPVariable_Wrap(v.toTensor()));
  if (v.isBool()) return py::bool_(v.toBool());
  if (v.isInt()) return py::int_(v.toInt());
  if (v.isDouble()) return py::float_(v.toDouble());
  if (v.isString()) return py::str(v.toStringRef());
  if (v.isTuple()) {
    const auto& items = v.toTupleRef().elements();
    py::tuple t(items.size());
    for (size_t i = 0; i < items.size(); ++i) t[i] = to_python(items[i]);
    return std::move(t);
  }
  if (v.isList()) {
    py::list l;
    for (const auto& x : v.toListRef()) l.append(to_python(x));
    return std::move(l);
  }
  if (v.isGenericDict()) {
    py::dict d;
    for (const auto& kv : v.toGenericDict()) d[to_python(kv.key())] = to_python(kv.value());
    return std::move(d);
  }
  throw py::type_error(std::string("cannot convert a value of kind ") + v.tagKind() + " to Python");
}

TolerancePolicy policy_from(const py::object& tolerance) {
  if (tolerance.is_none()) return TolerancePolicy{};
  // Same parser as the manifests' "tolerance" object: one definition of what a tolerance means.
  const auto text = py::module_::import("json").attr("dumps")(tolerance).cast<std::string>();
  return parse_tolerance_policy(text, "tolerance");
}

// One device (cpu or cuda), with the numerics policy applied; the GIL must be released by the caller first.
RunOptions run_options(const std::string& device, int threads, int repeat, const std::string& aoti_cache) {
  std::string skipped;
  const auto devices = resolve_devices(device, &skipped);
  if (devices.size() != 1) throw UsageError("this runs on one device: cpu or cuda");
  RunOptions o;
  o.device = devices[0];
  o.threads = threads;
  o.repeat = repeat;
  o.aoti_cache = aoti_cache;
  apply_policy(o);
  return o;
}

// A mark as Python sees it: the reason where it applies to this LibTorch on CPU (what this runner would apply there),
// and the mark as written ({"reason", "torch", "device"}) for faces that judge another PyTorch's results or another
// device (applicable_mark with that version and device).
std::optional<std::string> local_reason(const std::optional<Mark>& m) {
  return m && m->applies_to(libtorch_version(), "cpu") ? std::optional<std::string>(m->reason) : std::nullopt;
}
py::object mark_dict(const std::optional<Mark>& m) {
  if (!m) return py::none();
  py::dict d;
  d["reason"] = m->reason;
  d["torch"] = m->torch;
  d["device"] = m->device;
  return std::move(d);
}

const CaseSpec& find_case(const Corpus& corpus, const std::string& name) {
  for (const auto& c : corpus.cases)
    if (c.name == name) return c;
  throw CorpusError(corpus.root.string() + ": no case named '" + name + "'");
}

}  // namespace torchconform::bindings
