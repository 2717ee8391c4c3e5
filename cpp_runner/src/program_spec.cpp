// An exported program's calling convention, shared by the runtimes that run one from flat tensors (AOTInductor's
// packages, ExecuTorch's programs): an input set flattened by the program's input treespec, checked against the
// leaves and guards the manifest records, and the flat outputs rebuilt by its output treespec.
#include "runtime.h"

#include <nlohmann/json.hpp>

#include "archive.h"
#include "schema.h"  // parse_json: depth-limited, refuses repeated object keys

#include <algorithm>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

namespace torchconform {
using nlohmann::json;
namespace {


// The kinds of container the pytree JSON names: builtins and collections ones by their own names, user ones by the
// names the manifest's pytree_types gives them.
enum class SpecNode { kLeaf, kSequence, kDict, kNamedTuple, kDataclass, kNode, kUnknown };

SpecNode node_of(const nlohmann::json& spec, const VariantSpec& v, const PytreeType** user) {
  const auto& type = spec.at("type");
  if (type.is_null()) return SpecNode::kLeaf;
  const std::string name = type.get<std::string>();
  if (name == "builtins.tuple" || name == "builtins.list" || name == "collections.deque") return SpecNode::kSequence;
  if (name == "builtins.dict" || name == "collections.OrderedDict") return SpecNode::kDict;
  if (name == "collections.namedtuple") return SpecNode::kNamedTuple;
  for (const auto& t : v.pytree_types) {
    if (t.name != name) continue;
    if (t.kind == PytreeType::Kind::kMapping) return SpecNode::kDict;  // its context is its keys, as a dict's
    if (t.kind == PytreeType::Kind::kNode) return SpecNode::kNode;
    if (t.kind == PytreeType::Kind::kDataclass) {
      *user = &t;
      return SpecNode::kDataclass;
    }
  }
  return SpecNode::kUnknown;
}

// A list of str names from a spec's context, each once: torch's pytree keeps the last value of a key named twice,
// a first-wins reader the first, so a repeated key would let one value go uncompared.
std::vector<std::string> unique_names(const nlohmann::json& names, const std::string& what, const std::string& who) {
  if (!names.is_array()) throw CorpusError(who + ": " + what + " in the program's spec is not a list");
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& k : names) {
    if (!k.is_string()) throw CorpusError(who + ": only str " + what + " are supported in a program's spec");
    if (!seen.insert(k.get<std::string>()).second)
      throw CorpusError(who + ": " + what + " '" + printable(k.get<std::string>()) + "' appear twice in the "
                        "program's spec (readers would disagree on which value it names); refused");
    out.push_back(k.get<std::string>());
  }
  return out;
}

nlohmann::json context_of(const nlohmann::json& spec, const std::string& who) {
  const auto& context = spec.at("context");
  if (!context.is_string()) throw CorpusError(who + ": a container's context in the program's spec is not a string");
  return parse_json(context.get<std::string>(), who + ": program spec context");
}

// The names of a registered pytree node's children, by the rule writing/values.py's registered_node follows on the
// eager value: its serialized context when that is a list of distinct strings, one per child (the keys a dict-like
// node such as transformers' DynamicCache flattens to), else the children's positions "0", "1", ...
std::vector<std::string> node_child_names(const nlohmann::json& spec, size_t n, const std::string& who) {
  const auto& raw = spec.at("context");
  const nlohmann::json context = raw.is_string() ? parse_json(raw.get<std::string>(), who + ": program spec context")
                                                 : raw;
  // The context when it is n distinct strings; or its first element when that is (a node that keeps more beside its
  // children's names: transformers' DynamicCache serializes [["key_cache", "value_cache"], layout]); else positions.
  auto child_names = [n](const nlohmann::json& candidate) {
    std::vector<std::string> names;
    std::set<std::string> seen;
    if (candidate.is_array() && candidate.size() == n)
      for (const auto& k : candidate)
        if (k.is_string() && seen.insert(k.get<std::string>()).second) names.push_back(k.get<std::string>());
    return names;
  };
  auto names = child_names(context);
  if (names.size() != n && context.is_array() && !context.empty()) names = child_names(context[0]);
  if (names.size() == n) return names;
  names.clear();
  for (size_t i = 0; i < n; ++i) names.push_back(std::to_string(i));
  return names;
}

// A dict node's keys, from its context (a JSON list in a JSON string).
std::vector<std::string> dict_keys(const nlohmann::json& spec, const std::string& who) {
  return unique_names(context_of(spec, who), "dict keys", who);
}

// A registered dataclass's fields as the program serialized them (torch.export.register_dataclass: the context is
// [[fields with a value], [fields that were None]]): the program decides the order, never the manifest, whose
// pytree_types must agree (they register stand-ins for `torchconform compile`).
std::pair<std::vector<std::string>, std::vector<std::string>> dataclass_fields(const nlohmann::json& spec,
                                                                               const PytreeType& declared,
                                                                               const std::string& who) {
  const auto context = context_of(spec, who);
  if (!context.is_array() || context.size() != 2)
    throw CorpusError(who + ": dataclass '" + printable(declared.name) + "' has no [fields, none_fields] context in "
                      "the program's spec");
  auto fields = unique_names(context[0], "dataclass fields", who);
  auto none_fields = unique_names(context[1], "dataclass fields", who);
  auto sorted = [](std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    return v;
  };
  std::vector<std::string> all = fields, declared_all = declared.fields;
  all.insert(all.end(), none_fields.begin(), none_fields.end());
  declared_all.insert(declared_all.end(), declared.none_fields.begin(), declared.none_fields.end());
  if (fields != declared.fields || sorted(all) != sorted(declared_all))
    throw CorpusError(who + ": the manifest's pytree_types lists dataclass '" + printable(declared.name) +
                      "' with other fields or another field order than the program's spec; refused");
  for (const auto& f : all)
    if (std::count(all.begin(), all.end(), f) > 1)
      throw CorpusError(who + ": dataclass field '" + printable(f) + "' appears twice in the program's spec");
  return {std::move(fields), std::move(none_fields)};
}

// An input set's leaves in the order the program takes them, following the program's input spec: sequences by
// position, dicts by the keys the program was captured with (in that order). A set of another structure is refused
// naming where it differs, before anything runs.
void flatten_by_spec(const nlohmann::json& spec, const c10::IValue& value, const VariantSpec& v,
                     std::vector<c10::IValue>& out, const std::string& where, const std::string& who) {
  const PytreeType* user = nullptr;
  const auto& children = spec.at("children_spec");
  const SpecNode node = node_of(spec, v, &user);
  switch (node) {
    case SpecNode::kLeaf:
      out.push_back(value);
      return;
    case SpecNode::kSequence:
    case SpecNode::kNamedTuple: {
      std::vector<c10::IValue> items;
      if (value.isTuple()) items = value.toTupleRef().elements().vec();
      else if (value.isList()) items = value.toListRef().vec();
      else throw CorpusError(who + ": input " + where + " is " + value.tagKind() + ", the program takes a sequence");
      if (items.size() != children.size())
        throw CorpusError(who + ": input " + where + " has " + std::to_string(items.size()) + " items, the program "
                          "takes " + std::to_string(children.size()));
      for (size_t i = 0; i < items.size(); ++i)
        flatten_by_spec(children[i], items[i], v, out, where + "[" + std::to_string(i) + "]", who);
      return;
    }
    case SpecNode::kDict:
    case SpecNode::kNode: {  // (a registered node is stored as the dict of its named children, as outputs are)
      if (!value.isGenericDict())
        throw CorpusError(who + ": input " + where + " is " + value.tagKind() + ", the program takes a dict");
      const auto d = value.toGenericDict();
      const auto keys = node == SpecNode::kDict ? dict_keys(spec, who) : node_child_names(spec, children.size(), who);
      if (d.size() != keys.size())
        throw CorpusError(who + ": input " + where + " has " + std::to_string(d.size()) + " keys, the program "
                          "takes " + std::to_string(keys.size()));
      for (size_t i = 0; i < keys.size(); ++i) {
        const auto it = d.find(c10::IValue(keys[i]));
        if (it == d.end())
          throw CorpusError(who + ": input " + where + " has no key '" + printable(keys[i]) + "' (the program "
                            "was captured with it)");
        flatten_by_spec(children.at(i), it->value(), v, out, where + "['" + printable(keys[i]) + "']", who);
      }
      return;
    }
    case SpecNode::kDataclass:
    case SpecNode::kUnknown:
      break;
  }
  throw CorpusError(who + ": the program takes a " + spec.at("type").get<std::string>() + " at input " + where +
                    ", which an input set cannot hold");
}

// Whether a tensor meets the program's guards on it (dtype, rank, static sizes, symbol ranges, equal symbols):
// AOTInductor's generated code does not check (unless built with AOTI_RUNTIME_CHECK_INPUTS) and would read out of
// bounds or run on a shape it was never specialized for. "" when it does.
std::string guard_violation(const ProgramInput& spec, const at::Tensor& t, std::map<std::string, int64_t>& symbols) {
  if (!spec.dtype.empty() && dtype_name(t.scalar_type()) != spec.dtype)
    return "is " + dtype_name(t.scalar_type()) + ", the program was captured for " + spec.dtype;
  if (!spec.shape) return "";
  const auto& dims = *spec.shape;
  if (static_cast<size_t>(t.dim()) != dims.size())
    return "has " + std::to_string(t.dim()) + " dimensions, the program was captured for " +
           std::to_string(dims.size());
  for (size_t d = 0; d < dims.size(); ++d) {
    const int64_t n = t.size(static_cast<int64_t>(d));
    const std::string at = "dimension " + std::to_string(d) + " is " + std::to_string(n) + ", ";
    if (dims[d].size && n != *dims[d].size)
      return at + "the program was captured for " + std::to_string(*dims[d].size) + " only (static)";
    if (dims[d].symbol.empty()) continue;
    const auto& sym = dims[d];
    if (n < sym.min || (sym.max && n > *sym.max))
      return at + "outside the range of " + sym.symbol + " [" + std::to_string(sym.min) + ", " +
             (sym.max ? std::to_string(*sym.max) : std::string("inf")) + "] the program was captured for";
    const auto [it, first] = symbols.emplace(sym.symbol, n);
    if (!first && it->second != n)
      return at + "but " + sym.symbol + " is " + std::to_string(it->second) + " in an earlier input (the program "
             "requires them equal)";
  }
  return "";
}

}  // namespace

// The tensors an exported program takes for `args`; the other leaves must equal the constants it was specialized on,
// and the tensors must meet its guards.
std::vector<at::Tensor> program_inputs(const VariantSpec& v, const nlohmann::json& in_spec, const SplitArgs& args,
                                       const std::string& who) {
  std::vector<c10::IValue> leaves;
  // in_spec is (args, kwargs): the positional arguments, then the keyword arguments as a dict
  const auto& parts = in_spec.at("children_spec");
  if (parts.size() != 2) throw CorpusError(who + ": the program's input spec is not (args, kwargs)", ErrorKind::kLoad);
  flatten_by_spec(parts.at(0), c10::ivalue::Tuple::create(args.positional), v, leaves, "args", who);
  c10::impl::GenericDict kwargs(c10::StringType::get(), c10::AnyType::get());
  for (const auto& [name, value] : args.keywords) kwargs.insert(name, value);
  flatten_by_spec(parts.at(1), kwargs, v, leaves, "kwargs", who);
  if (leaves.size() != v.inputs.size())
    throw CorpusError(who + ": the input set has " + std::to_string(leaves.size()) +
                      " input leaves, the exported program was captured with " + std::to_string(v.inputs.size()));
  std::vector<at::Tensor> tensors;
  std::map<std::string, int64_t> symbols;
  for (size_t i = 0; i < leaves.size(); ++i) {
    const auto& spec = v.inputs[i];
    if (spec.tensor) {
      if (!leaves[i].isTensor())
        throw CorpusError(who + ": input leaf " + std::to_string(i) + " must be a tensor, got " + leaves[i].tagKind());
      tensors.push_back(leaves[i].toTensor());
      const std::string why = guard_violation(spec, tensors.back(), symbols);
      if (!why.empty())
        throw CorpusError(who + ": input leaf " + std::to_string(i) + " " + why + ": the call would break the "
                          "exported program's guards (not run)", ErrorKind::kCall);
    } else {
      const bool same = leaves[i].tagKind() == spec.value.tagKind() &&
                        (spec.value.isNone() || (spec.value.isInt() && leaves[i].toInt() == spec.value.toInt()) ||
                         (spec.value.isBool() && leaves[i].toBool() == spec.value.toBool()) ||
                         (spec.value.isDouble() && leaves[i].toDouble() == spec.value.toDouble()) ||
                         (spec.value.isString() && leaves[i].toStringRef() == spec.value.toStringRef()));
      if (!same) {
        std::ostringstream os;
        os << who << ": input leaf " << i << " is " << leaves[i] << ", but the exported program was specialized on "
           << spec.value << " (a guard would fail)";
        throw CorpusError(os.str());
      }
    }
  }
  return tensors;
}

// Rebuilds the program's output value from its flat tensors with the output treespec AOTInductor stores
// (torch.utils._pytree JSON: {"type": "builtins.tuple", "children_spec": [...]}, leaves have type null). Kept by hand:
// LibTorch has no C++ pytree for it, and the runner must not need Python.
static c10::IValue unflatten(const nlohmann::json& spec, const std::vector<at::Tensor>& flat, size_t& next,
                             const VariantSpec& v, const std::string& who) {
  const PytreeType* user = nullptr;
  const SpecNode node = node_of(spec, v, &user);
  if (node == SpecNode::kLeaf) {
    if (next >= flat.size()) throw CorpusError(who + ": the program returned fewer tensors than its output spec");
    const at::Tensor& t = flat[next++];
    // AOTInductor returns a Python int (e.g. from .item()) as a 0-dim int64 tensor; the manifest declares it.
    if (v.int_outputs_as_tensors && t.dim() == 0 && c10::isIntegralType(t.scalar_type(), /*includeBool=*/false))
      return t.item<int64_t>();
    return t;
  }
  const std::string name = spec.at("type").get<std::string>();
  if (node == SpecNode::kUnknown)
    throw CorpusError(who + ": unsupported container '" + name + "' in the program's output spec (a pytree type "
                      "the manifest's pytree_types does not list; export records every registered one)");
  std::vector<c10::IValue> children;
  for (const auto& child : spec.at("children_spec")) children.push_back(unflatten(child, flat, next, v, who));
  // A namedtuple is compared as the tuple of its fields (the goldens store it so), a deque as a list.
  if (name == "builtins.tuple" || node == SpecNode::kNamedTuple) return c10::ivalue::Tuple::create(std::move(children));
  if (node == SpecNode::kSequence) {
    bool all_int = !children.empty();
    for (const auto& x : children) all_int = all_int && x.isInt();
    if (all_int) {
      c10::List<int64_t> l;
      for (const auto& x : children) l.push_back(x.toInt());
      return l;
    }
    c10::impl::GenericList l(c10::AnyType::get());
    for (auto& x : children) l.push_back(std::move(x));
    return l;
  }
  // dicts, OrderedDicts (every torchvision segmentation model) and dataclasses (their fields; those that were None
  // when captured are None) are str-keyed dicts, as the goldens store them; names come from the program's spec
  std::vector<std::string> keys, none_keys;
  if (node == SpecNode::kDict) keys = dict_keys(spec, who);
  else if (node == SpecNode::kNode) keys = node_child_names(spec, children.size(), who);
  else std::tie(keys, none_keys) = dataclass_fields(spec, *user, who);
  if (keys.size() != children.size())
    throw CorpusError(who + ": '" + printable(name) + "' has " + std::to_string(keys.size()) + " keys for " +
                      std::to_string(children.size()) + " values in the program's output spec");
  c10::impl::GenericDict d(c10::StringType::get(), c10::AnyType::get());
  for (size_t i = 0; i < children.size(); ++i) d.insert(keys[i], children[i]);
  for (const auto& k : none_keys) d.insert(k, c10::IValue());
  return d;
}


std::pair<nlohmann::json, nlohmann::json> program_call_specs(const CaseSpec& c, const VariantSpec& program) {
  const std::string what = c.name + "/" + program.file->file;
  const std::string bytes = read_verified(c, *program.file);
  const auto records = check_zip(bytes, what);
  const json model = parse_json(std::string(stored_record(bytes, records, "/models/model.json", what)),
                                what + ": models/model.json");
  try {
    for (const json& entry : model.at("graph_module").at("module_call_graph")) {
      if (entry.at("fqn") != "") continue;
      const json& sig = entry.at("signature");
      return {parse_json(sig.at("in_spec").get<std::string>(), what + ": in_spec").at(1),
              parse_json(sig.at("out_spec").get<std::string>(), what + ": out_spec").at(1)};
    }
  } catch (const json::exception& e) {
    throw CorpusError(what + ": unreadable module call graph in models/model.json: " + e.what());
  }
  throw CorpusError(what + ": models/model.json has no signature of the root module");
}

std::string program_call_problem(const CaseSpec& c, const VariantSpec& program, const InputSetSpec& s) {
  const std::string who = c.name + ":" + program.name + "/" + s.name;
  try {
    if (!program.file) throw CorpusError(who + ": the program has no file (its capture failed)");
    const auto [in_spec, out_spec] = program_call_specs(c, program);
    (void)out_spec;
    auto [inputs, expected] = read_input_set(c, s);
    (void)expected;
    program_inputs(program, in_spec, split_keywords(s, inputs.toTupleRef().elements().vec(), who), who);
  } catch (const CorpusError& e) {
    return e.what();
  }
  return "";
}

c10::IValue program_outputs(const nlohmann::json& out_spec, const std::vector<at::Tensor>& flat, const VariantSpec& v,
                            const std::string& who) {
  size_t next = 0;
  auto value = unflatten(out_spec, flat, next, v, who);
  if (next != flat.size())
    throw CorpusError(who + ": the program returned " + std::to_string(flat.size()) + " values, its output spec has " +
                          std::to_string(next),
                      ErrorKind::kCall);
  return value;
}

}  // namespace torchconform
