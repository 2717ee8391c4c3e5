#include <torchconform/corpus.h>

#include "files.h"
#include "schema.h"

#include <torch/version.h>

#include <fnmatch.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <iterator>
#include <set>
#include <sstream>

namespace torchconform {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kFormat = "torchconform-corpus";
constexpr int kFormatVersion = 2;  // 2: variants

// --- SHA-256 (FIPS 180-4) ------------------------------------------------------------------------------------
class Sha256 {
 public:
  void update(const uint8_t* p, size_t n) {
    total_ += n;
    // Whole blocks straight from the input (no copy): hashing is most of what reading a corpus costs.
    while (used_ == 0 && n >= 64) {
      block(p);
      p += 64;
      n -= 64;
    }
    while (n > 0) {
      const size_t take = std::min(n, size_t{64} - used_);
      std::memcpy(buf_.data() + used_, p, take);
      used_ += take;
      p += take;
      n -= take;
      if (used_ == 64) {
        block(buf_.data());
        used_ = 0;
      }
    }
  }
  std::string hex() {
    const uint64_t bits = total_ * 8;
    const uint8_t pad = 0x80, zero = 0;
    update(&pad, 1);
    while (used_ != 56) update(&zero, 1);
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(bits >> (56 - 8 * i));
    update(len, 8);
    std::ostringstream os;
    for (uint32_t v : h_) os << std::hex << std::setw(8) << std::setfill('0') << v;
    return os.str();
  }

 private:
  static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
  void block(const uint8_t* p) {
    static constexpr uint32_t k[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
    uint32_t w[64];
    for (int i = 0; i < 16; ++i)
      w[i] = uint32_t{p[4 * i]} << 24 | uint32_t{p[4 * i + 1]} << 16 | uint32_t{p[4 * i + 2]} << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; ++i) {
      const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6], h = h_[7];
    for (int i = 0; i < 64; ++i) {
      const uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
      const uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h_[0] += a; h_[1] += b; h_[2] += c; h_[3] += d; h_[4] += e; h_[5] += f; h_[6] += g; h_[7] += h;
  }
  std::array<uint32_t, 8> h_ = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::array<uint8_t, 64> buf_{};
  size_t used_ = 0;
  uint64_t total_ = 0;
};

// Typed access to manifest fields with errors that name the file and the key.
struct Fields {
  const json& j;
  std::string who;
  const json& at(const char* key, json::value_t type, const char* type_name) const {
    if (!j.is_object()) throw CorpusError(who + ": expected a JSON object");
    auto it = j.find(key);
    if (it == j.end()) throw CorpusError(who + ": missing key '" + key + "'");
    const bool ok = it->type() == type || (type == json::value_t::number_integer && it->is_number_unsigned()) ||
                    (type == json::value_t::number_float && it->is_number());
    if (!ok) throw CorpusError(who + ": key '" + key + "' must be " + type_name + ", got " + it->type_name());
    return *it;
  }
  std::string str(const char* key) const { return at(key, json::value_t::string, "a string").get<std::string>(); }
  int64_t integer(const char* key) const {
    return at(key, json::value_t::number_integer, "an integer").get<int64_t>();
  }
  const json& array(const char* key) const { return at(key, json::value_t::array, "an array"); }
  const json& object(const char* key) const { return at(key, json::value_t::object, "an object"); }
  bool has(const char* key) const { return j.is_object() && j.contains(key) && !j.at(key).is_null(); }
};

FileRef file_ref(const json& j, const std::string& who) {
  Fields f{j, who};
  FileRef r{f.str("file"), f.str("sha256"), std::nullopt};
  if (r.sha256.size() != 64 || r.sha256.find_first_not_of("0123456789abcdef") != std::string::npos)
    throw CorpusError(who + ": sha256 of '" + r.file + "' is not 64 lowercase hex digits");
  check_relative_path(r.file, who);
  if (f.has("bytes")) {
    const int64_t n = f.integer("bytes");
    if (n < 1) throw CorpusError(who + ": 'bytes' of '" + r.file + "' must be >= 1");
    r.bytes = static_cast<uint64_t>(n);
  }
  return r;
}

Tolerance parse_tolerance(const json& j, const std::string& who) {
  Fields f{j, who};
  Tolerance t;
  const std::string mode = f.str("mode");
  if (mode == "allclose") t.mode = ToleranceMode::kAllClose;
  else if (mode == "ulp") t.mode = ToleranceMode::kUlp;
  else if (mode == "exact") t.mode = ToleranceMode::kExact;
  else throw CorpusError(who + ": unknown tolerance mode '" + mode + "' (allclose, ulp or exact)");
  auto nonneg = [&](const char* key) -> std::optional<double> {
    if (!f.has(key)) return std::nullopt;
    const double v = f.at(key, json::value_t::number_float, "a number").get<double>();
    if (!(v >= 0)) throw CorpusError(who + ": tolerance '" + key + "' must be >= 0");
    return v;
  };
  t.rtol = nonneg("rtol");
  t.atol = nonneg("atol");
  if (t.mode == ToleranceMode::kUlp) {
    t.max_ulp = f.integer("max_ulp");
    if (t.max_ulp < 0) throw CorpusError(who + ": tolerance 'max_ulp' must be >= 0");
  }
  if (f.has("equal_nan")) t.equal_nan = f.at("equal_nan", json::value_t::boolean, "a boolean").get<bool>();
  return t;
}

TolerancePolicy parse_policy(const json& j, const std::string& who) {
  const Fields tol{j, who};
  TolerancePolicy p;
  p.base = parse_tolerance(tol.object("default"), who + ".default");
  if (tol.has("outputs"))
    for (const auto& [path, t] : tol.object("outputs").items())
      p.outputs[path] = parse_tolerance(t, who + ".outputs['" + path + "']");
  return p;
}

c10::IValue json_scalar(const json& v, const std::string& who) {
  switch (v.type()) {
    case json::value_t::null: return c10::IValue();
    case json::value_t::boolean: return v.get<bool>();
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return v.get<int64_t>();
    case json::value_t::number_float: return v.get<double>();
    case json::value_t::string: return v.get<std::string>();
    default: throw CorpusError(who + ": arguments must be JSON scalars, got " + std::string(v.type_name()));
  }
}

// An xfail mark; with "torch": "<2.14" it applies only where this runner's LibTorch version matches.
std::optional<std::string> parse_xfail(const json& j, const std::string& who) {
  const Fields f{j, who};
  const std::string reason = f.str("reason");
  if (f.has("torch") && !version_matches(TORCH_VERSION, f.str("torch"))) return std::nullopt;
  return reason;
}

VariantSpec parse_variant(const json& j, const CaseSpec& c, const std::string& who) {
  VariantSpec v;
  v.name = Fields{j, who + ": variant"}.str("name");
  const std::string vwho = who + ": variant '" + v.name + "'";
  const Fields f{j, vwho};
  for (const auto& other : c.variants)
    if (other.name == v.name) throw CorpusError(vwho + " appears twice");
  v.kind = f.str("kind");
  v.description = f.str("description");
  v.transform = f.str("transform");
  if (f.has("xfail")) v.xfail = parse_xfail(f.object("xfail"), vwho + ": xfail");
  v.tolerance = f.has("tolerance") ? parse_policy(f.object("tolerance"), vwho + ": tolerance") : c.tolerance;
  if (f.has("file")) {
    v.file = file_ref(j, vwho);
  } else {
    // No artifact: only a capture that failed at export, recorded as an expected failure, may say so.
    v.error = f.has("error") ? f.str("error") : "";
    if (v.error.empty() || !v.xfail)
      throw CorpusError(vwho + ": no 'file', and not a failed capture ('error' with an 'xfail' mark)");
  }
  if (f.has("input_sets")) {
    for (const json& n : f.array("input_sets")) {
      const std::string name = n.get<std::string>();
      if (std::none_of(c.sets.begin(), c.sets.end(), [&](const InputSetSpec& s) { return s.name == name; }))
        throw CorpusError(vwho + ": names input set '" + name + "', which the case does not have");
      v.input_sets.push_back(name);
    }
  } else {
    for (const auto& s : c.sets) v.input_sets.push_back(s.name);
  }
  if (v.kind == "exported_program" && v.file) {
    for (const json& r : f.array("runtimes")) v.runtimes.push_back(r.get<std::string>());
    for (const json& in : f.array("inputs")) {
      ProgramInput pi;
      pi.tensor = in.at("kind") == "tensor";
      if (!pi.tensor) pi.value = json_scalar(in.contains("value") ? in.at("value") : json(), vwho + ": inputs");
      v.inputs.push_back(std::move(pi));
    }
    if (f.has("int_outputs_as_tensors"))
      v.int_outputs_as_tensors = f.at("int_outputs_as_tensors", json::value_t::boolean, "a boolean").get<bool>();
  }
  return v;
}

CaseSpec parse_case(const fs::path& dir, const json& m, const std::string& expected_name) {
  const std::string who = expected_name + "/manifest.json";
  require_valid("manifest", m, who);
  Fields f{m, who};
  if (f.str("format") != kFormat) throw CorpusError(who + ": 'format' is not " + std::string(kFormat));
  if (f.integer("format_version") != kFormatVersion)
    throw CorpusError(who + ": unsupported format_version " + std::to_string(f.integer("format_version")));
  CaseSpec c;
  c.name = f.str("case");
  if (c.name != expected_name)
    throw CorpusError(who + ": manifest names case '" + c.name + "' but corpus.json lists it as '" + expected_name + "'");
  c.mode = f.str("mode");
  c.description = f.str("description");
  c.dir = dir;
  // Mode "export" has no TorchScript artifact: its exported program (a variant) is what runs.
  c.has_artifact = f.has("artifact");
  if (c.has_artifact) c.artifact = file_ref(f.object("artifact"), who + ": artifact");
  else if (c.mode != "export") throw CorpusError(who + ": missing key 'artifact' (only mode 'export' has none)");
  c.exported_torch = Fields{f.object("exported_with"), who + ": exported_with"}.str("torch");
  if (f.has("xfail")) c.xfail = parse_xfail(f.object("xfail"), who + ": xfail");
  c.tolerance = parse_policy(f.object("tolerance"), who + ": tolerance");

  std::set<std::string> names;
  for (const json& s : f.array("input_sets")) {
    const Fields sf{s, who + ": input set"};
    InputSetSpec spec;
    spec.name = sf.str("name");
    const std::string swho = who + ": input set '" + spec.name + "'";
    if (!names.insert(spec.name).second) throw CorpusError(swho + " appears twice");
    const Fields sfn{s, swho};
    spec.description = sfn.str("description");
    spec.method = sfn.str("method");
    if (sfn.has("seed")) spec.seed = sfn.integer("seed");
    for (const json& call : sfn.array("prelude")) {
      const Fields cf{call, swho + ": prelude"};
      PreludeCall pc;
      pc.method = cf.str("method");
      std::string text = pc.method + "(";
      for (const json& a : cf.array("args")) {
        pc.args.push_back(json_scalar(a, swho + ": prelude " + pc.method));
        text += (pc.args.size() > 1 ? ", " : "") + a.dump();
      }
      pc.text = text + ")";
      spec.prelude.push_back(std::move(pc));
    }
    if (sfn.has("xfail")) spec.xfail = parse_xfail(sfn.object("xfail"), swho + ": xfail");
    spec.inputs = file_ref(sfn.object("inputs"), swho + ": inputs");
    spec.expected = file_ref(sfn.object("expected"), swho + ": expected");
    c.sets.push_back(std::move(spec));
  }
  if (c.sets.empty()) throw CorpusError(who + ": no input sets");
  if (f.has("variants"))
    for (const json& v : f.array("variants")) c.variants.push_back(parse_variant(v, c, who));
  if (!c.has_artifact && std::none_of(c.variants.begin(), c.variants.end(),
                                      [](const VariantSpec& v) { return v.kind == "exported_program"; }))
    throw CorpusError(who + ": mode 'export' without an exported_program variant: nothing to run");
  return c;
}

}  // namespace

bool version_matches(const std::string& version, const std::string& spec) {
  // "2.13.0+cpu" -> {2, 13, 0}; missing components count as 0 ("2.14" == "2.14.0").
  auto numbers = [](const std::string& text) {
    std::vector<long> out;
    size_t i = 0;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
      size_t end = i;
      while (end < text.size() && std::isdigit(static_cast<unsigned char>(text[end]))) ++end;
      out.push_back(std::stol(text.substr(i, end - i)));
      if (end >= text.size() || text[end] != '.') break;
      i = end + 1;
    }
    return out;
  };
  auto cmp = [](std::vector<long> a, std::vector<long> b) {
    a.resize(std::max(a.size(), b.size()));
    b.resize(a.size());
    return a < b ? -1 : a > b ? 1 : 0;
  };
  const auto have = numbers(version);
  std::stringstream clauses(spec);
  for (std::string clause; std::getline(clauses, clause, ',');) {
    clause.erase(std::remove(clause.begin(), clause.end(), ' '), clause.end());
    size_t n = clause.find_first_of("0123456789");
    if (n == 0 || n == std::string::npos) throw CorpusError("torch version condition '" + spec + "': bad clause");
    const std::string op = clause.substr(0, n);
    const int c = cmp(have, numbers(clause.substr(n)));
    const bool ok = op == "==" ? c == 0 : op == "!=" ? c != 0 : op == "<" ? c < 0 : op == "<=" ? c <= 0
                  : op == ">" ? c > 0 : op == ">=" ? c >= 0 : throw CorpusError("torch version condition '" +
                                                                                spec + "': bad operator " + op);
    if (!ok) return false;
  }
  return true;
}

const char* to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kNone: return "none";
    case ErrorKind::kCorpus: return "corpus";
    case ErrorKind::kLoad: return "load";
    case ErrorKind::kMissingPackage: return "missing_package";
    case ErrorKind::kNotRun: return "not_run";
    case ErrorKind::kCall: return "call";
    case ErrorKind::kCrash: return "crash";
    case ErrorKind::kTimeout: return "timeout";
  }
  return "?";
}

ErrorKind error_kind_from(const std::string& name) {
  for (ErrorKind k : {ErrorKind::kNone, ErrorKind::kCorpus, ErrorKind::kLoad, ErrorKind::kMissingPackage,
                      ErrorKind::kNotRun, ErrorKind::kCall, ErrorKind::kCrash, ErrorKind::kTimeout})
    if (name == to_string(k)) return k;
  throw std::invalid_argument("unknown error kind '" + name + "'");
}

std::string sha256_hex(const void* data, size_t size) {
  Sha256 h;
  h.update(static_cast<const uint8_t*>(data), size);
  return h.hex();
}

TolerancePolicy parse_tolerance_policy(const std::string& json_text, const std::string& who) {
  const json j = parse_json(json_text, who);
  require_valid("policy", j, who);
  return parse_policy(j, who);
}

std::string read_verified(const CaseSpec& c, const FileRef& ref) {
  const std::string who = c.name + "/" + ref.file;
  check_relative_path(ref.file, c.name);
  const std::string bytes = read_inside(c.root, c.name + "/" + ref.file, ref.bytes, kMaxUndeclaredBytes, c.name);
  if (bytes.empty()) throw CorpusError(who + ": file is empty");
  const std::string got = sha256_hex(bytes.data(), bytes.size());
  if (got != ref.sha256)
    throw CorpusError(who + ": SHA-256 mismatch (manifest " + ref.sha256 + ", file " + got + ")");
  return bytes;
}

Corpus Corpus::open(const fs::path& root) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) throw CorpusError(root.string() + ": not a corpus directory");
  // Every file of the corpus is resolved against this path and must stay inside it (files.h).
  const fs::path real_root = fs::canonical(root, ec);
  if (ec) throw CorpusError(root.string() + ": cannot resolve the corpus directory: " + ec.message());
  const std::string index_who = (root / "corpus.json").string();
  if (!fs::exists(root / "corpus.json", ec) && !fs::is_symlink(root / "corpus.json", ec))
    throw CorpusError(root.string() + ": no corpus.json (not a torchconform corpus, or an empty directory)");
  const std::string index_text = read_inside(real_root, "corpus.json", std::nullopt, kMaxJsonBytes, index_who);
  const json index = parse_json(index_text, index_who);
  require_valid("corpus", index, index_who);
  const Fields f{index, index_who};
  if (f.str("format") != kFormat) throw CorpusError(index_who + ": 'format' is not " + kFormat);
  Corpus corpus;
  corpus.root = root;
  corpus.index_sha256 = sha256_hex(index_text.data(), index_text.size());
  corpus.format_version = static_cast<int>(f.integer("format_version"));
  if (corpus.format_version != kFormatVersion)
    throw CorpusError(index_who + ": unsupported format_version " + std::to_string(corpus.format_version));
  const Fields env{f.object("exported_with"), index_who + ": exported_with"};
  corpus.exported_torch = env.str("torch");
  corpus.exported_python = env.str("python");
  std::set<std::string> seen;
  for (const json& entry : f.array("cases")) {
    const Fields ef{entry, index_who + ": cases[]"};
    const std::string name = ef.str("name");
    if (!seen.insert(name).second) throw CorpusError(index_who + ": case '" + name + "' listed twice");
    if (name.empty() || name.size() > 128 || name[0] < 'a' || name[0] > 'z' ||
        name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") != std::string::npos)
      throw CorpusError(index_who + ": case name '" + name + "' is not [a-z][a-z0-9_]*");
    const FileRef ref{ef.str("manifest"), ef.str("sha256"), std::nullopt};
    const fs::path dir = root / name;
    try {
      // A case directory must be a real directory inside the corpus, not a link to somewhere else.
      if (fs::is_symlink(dir, ec)) throw CorpusError(name + ": case directory is a symbolic link");
      if (!fs::is_directory(dir, ec)) throw CorpusError(name + ": case directory " + dir.string() + " is missing");
      if (ref.file != name + "/manifest.json")
        throw CorpusError(name + ": corpus.json points at manifest '" + ref.file + "', expected " + name +
                          "/manifest.json");
      const std::string text = read_inside(real_root, ref.file, std::nullopt, kMaxJsonBytes, name);
      if (sha256_hex(text.data(), text.size()) != ref.sha256)
        throw CorpusError(name + "/manifest.json: SHA-256 mismatch against corpus.json");
      corpus.cases.push_back(parse_case(dir, parse_json(text, name + "/manifest.json"), name));
      corpus.cases.back().root = real_root;
      corpus.cases.back().manifest_text = text;
    } catch (const std::exception& e) {
      CaseSpec broken;
      broken.name = name;
      broken.dir = dir;
      broken.root = real_root;
      broken.error = dynamic_cast<const CorpusError*>(&e) ? e.what() : name + "/manifest.json: " + e.what();
      corpus.cases.push_back(std::move(broken));
    }
  }
  if (corpus.cases.empty()) throw CorpusError(index_who + ": the corpus lists no cases");
  return corpus;
}

std::vector<const CaseSpec*> Corpus::select(const std::vector<std::string>& globs) const {
  std::vector<const CaseSpec*> out;
  if (globs.empty()) {
    for (const auto& c : cases) out.push_back(&c);
    return out;
  }
  for (const auto& g : globs) {
    bool hit = false;
    for (const auto& c : cases) {
      if (fnmatch(g.c_str(), c.name.c_str(), 0) != 0) continue;
      hit = true;
      if (std::find(out.begin(), out.end(), &c) == out.end()) out.push_back(&c);
    }
    if (!hit) {
      std::string known;
      for (const auto& c : cases) known += (known.empty() ? "" : ", ") + c.name;
      throw CorpusError("--case '" + g + "' matches no case in " + root.string() + " (cases: " + known + ")");
    }
  }
  return out;
}

}  // namespace torchconform
