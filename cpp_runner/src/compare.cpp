#include <torchconform/compare.h>
#include <torchconform/corpus.h>  // printable

#include <ATen/ATen.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <set>
#include <sstream>

namespace torchconform {

std::string dtype_name(c10::ScalarType t) {
  switch (t) {
    case c10::kHalf: return "float16";
    case c10::kBFloat16: return "bfloat16";
    case c10::kFloat: return "float32";
    case c10::kDouble: return "float64";
    case c10::kComplexFloat: return "complex64";
    case c10::kComplexDouble: return "complex128";
    case c10::kByte: return "uint8";
    case c10::kChar: return "int8";
    case c10::kShort: return "int16";
    case c10::kInt: return "int32";
    case c10::kLong: return "int64";
    case c10::kBool: return "bool";
    default: return c10::toString(t);
  }
}

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// snprintf rather than ostringstream throughout: compare() runs after every call of a verification, and stream
// construction was a measurable part of its cost on small outputs (docs/bench.md).
std::string fmt(double v, const char* format = "%.9g") {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}


// Maps the bit pattern of a float to an integer that is monotonic in the value, with +0 and -0 both at 0.
int64_t ordered(double v, c10::ScalarType dtype) {
  int64_t bits = 0, sign_mask = 0;
  switch (dtype) {
    case c10::kDouble: {
      uint64_t u;
      std::memcpy(&u, &v, 8);
      if (u >> 63) return -static_cast<int64_t>(u & ~(uint64_t{1} << 63));
      return static_cast<int64_t>(u);
    }
    case c10::kFloat: {
      float f = static_cast<float>(v);
      uint32_t u;
      std::memcpy(&u, &f, 4);
      bits = u;
      sign_mask = int64_t{1} << 31;
      break;
    }
    case c10::kHalf:
      bits = c10::Half(static_cast<float>(v)).x;
      sign_mask = 1 << 15;
      break;
    case c10::kBFloat16:
      bits = c10::BFloat16(static_cast<float>(v)).x;
      sign_mask = 1 << 15;
      break;
    default:
      TORCH_INTERNAL_ASSERT(false, "ordered(): not a real floating dtype: ", dtype_name(dtype));
  }
  return (bits & sign_mask) ? -(bits & (sign_mask - 1)) : bits;
}

double machine_epsilon(c10::ScalarType dtype) {
  switch (dtype) {
    case c10::kHalf: return std::ldexp(1.0, -10);
    case c10::kBFloat16: return std::ldexp(1.0, -7);
    case c10::kFloat: return std::ldexp(1.0, -23);
    default: return std::ldexp(1.0, -52);
  }
}

bool is_real_floating(c10::ScalarType t) {
  return t == c10::kHalf || t == c10::kBFloat16 || t == c10::kFloat || t == c10::kDouble;
}

std::string tolerance_text(const Tolerance& tol, double rtol, double atol, bool floating) {
  if (!floating) return "exact (integer/bool)";
  std::string out = to_string(tol.mode);
  if (tol.mode == ToleranceMode::kAllClose) out += " rtol=" + fmt(rtol, "%g") + " atol=" + fmt(atol, "%g");
  if (tol.mode == ToleranceMode::kUlp) out += " max_ulp=" + std::to_string(tol.max_ulp);
  if (!tol.equal_nan) out += " nan!=nan";
  return out;
}

std::string index_text(int64_t flat, at::IntArrayRef shape) {
  if (shape.empty()) return "[]";
  std::vector<int64_t> idx(shape.size());
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    idx[d] = shape[d] ? flat % shape[d] : 0;
    flat = shape[d] ? flat / shape[d] : 0;
  }
  std::string out = "[";
  for (size_t i = 0; i < idx.size(); ++i) out += (i ? ", " : "") + std::to_string(idx[i]);
  return out + "]";
}

// The element loop of compare_floating over values of type T (float or double read in place, others widened).
template <typename T>
int64_t floating_loop(const T* ep, const T* ap, int64_t n, c10::ScalarType dtype, const Tolerance& tol, double rtol,
                      double atol, LeafReport& leaf) {
  // Bitwise-equal outputs (frequent: same kernels on both sides) pass in every mode with all statistics 0 and the
  // first element as the "worst" - what the loop below finds too - unless NaNs must not compare equal.
  if (n > 0 && std::memcmp(ep, ap, static_cast<size_t>(n) * sizeof(T)) == 0 &&
      (tol.equal_nan || std::none_of(ep, ep + n, [](T v) { return std::isnan(static_cast<double>(v)); }))) {
    leaf.worst_expected = leaf.worst_actual = fmt(static_cast<double>(ep[0]));
    return 0;
  }
  int64_t worst = -1;
  double worst_score = -1;
  for (int64_t i = 0; i < n; ++i) {
    const double x = static_cast<double>(ep[i]), y = static_cast<double>(ap[i]);
    bool ok = false;
    double abs_diff, rel_diff, ulp;
    if (std::isnan(x) || std::isnan(y)) {
      ok = std::isnan(x) && std::isnan(y) && tol.equal_nan;
      abs_diff = rel_diff = ulp = ok ? 0 : kInf;
      if (!ok) leaf.needed_rtol = leaf.needed_atol = kInf;
    } else if (std::isinf(x) || std::isinf(y)) {
      ok = x == y;
      abs_diff = rel_diff = ulp = ok ? 0 : kInf;
      if (!ok) leaf.needed_rtol = leaf.needed_atol = kInf;
    } else {
      abs_diff = std::fabs(y - x);
      rel_diff = x != 0 ? abs_diff / std::fabs(x) : (abs_diff > 0 ? kInf : 0);
      ulp = ulp_distance(x, y, dtype);
      // The smallest rtol (at this atol) and atol (at this rtol) that would accept this pair.
      const double slack_rtol = abs_diff <= atol ? 0 : (x != 0 ? (abs_diff - atol) / std::fabs(x) : kInf);
      leaf.needed_rtol = std::max(leaf.needed_rtol, slack_rtol);
      leaf.needed_atol = std::max(leaf.needed_atol, std::max(0.0, abs_diff - rtol * std::fabs(x)));
      switch (tol.mode) {
        case ToleranceMode::kAllClose: ok = abs_diff <= atol + rtol * std::fabs(x); break;
        case ToleranceMode::kUlp: ok = ulp <= static_cast<double>(tol.max_ulp); break;
        case ToleranceMode::kExact: ok = ordered(x, dtype) == ordered(y, dtype) && std::signbit(x) == std::signbit(y);
          break;
      }
    }
    leaf.max_abs = std::max(leaf.max_abs, abs_diff);
    leaf.max_rel = std::max(leaf.max_rel, rel_diff);
    leaf.max_ulp = std::max(leaf.max_ulp, ulp);
    // The worst element: any mismatch outranks every match; among equals, the larger absolute difference.
    const double score = (ok ? 0.0 : 1e308) + (std::isinf(abs_diff) ? 1e307 : std::min(abs_diff, 1e306));
    if (!ok) ++leaf.mismatched;
    if (score > worst_score) {
      worst_score = score;
      worst = i;
    }
  }
  if (worst >= 0) {
    leaf.worst_expected = fmt(static_cast<double>(ep[worst]));
    leaf.worst_actual = fmt(static_cast<double>(ap[worst]));
  }
  return worst;
}

// How sensitive a golden is under its tolerance, judged from its values (never from what a manifest says): the
// relative error that passes on every element (e * (1 + r) passes |a - e| <= atol + rtol * |e| while
// r <= atol / max|e| + rtol) and on most of them (at the median |e| of the nonzero elements: a zero is held by atol
// itself, and a ReLU output is half zeros), and why the golden checks nothing real: empty
// (nothing is compared), constant (a runtime returning that constant passes), or every |value| within atol (zeros
// pass). "" when none of these. ULP mode accepts max_ulp * eps of relative error whatever the values; exact none.
// Whether the accepted error is too large for the user is compare()'s `sensitivity` (Comparison::weak).
template <typename T>
std::string weak_golden(const T* ep, int64_t n, const Tolerance& tol, double rtol, double atol, double eps,
                        LeafReport& leaf) {
  leaf.accepts_rel_error = leaf.accepts_rel_error_median = 0;
  if (n == 0) return "empty tensor (nothing is compared)";
  bool constant = n > 1;
  double biggest = 0;
  std::vector<double> magnitudes;
  magnitudes.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const double x = static_cast<double>(ep[i]);
    if (constant && !(x == static_cast<double>(ep[0]) || (std::isnan(x) && std::isnan(static_cast<double>(ep[0])))))
      constant = false;
    if (std::isfinite(x)) {
      biggest = std::max(biggest, std::fabs(x));
      // Relative error is the error of nonzero values: a zero (ReLU's half of an output) is held by atol itself.
      if (x != 0) magnitudes.push_back(std::fabs(x));
    }
  }
  if (tol.mode == ToleranceMode::kUlp)
    leaf.accepts_rel_error = leaf.accepts_rel_error_median = static_cast<double>(tol.max_ulp) * eps;
  if (tol.mode == ToleranceMode::kAllClose) {
    double median = 0;
    if (!magnitudes.empty()) {
      auto mid = magnitudes.begin() + static_cast<std::ptrdiff_t>(magnitudes.size() / 2);
      std::nth_element(magnitudes.begin(), mid, magnitudes.end());
      median = *mid;
    }
    leaf.accepts_rel_error = biggest > 0 ? atol / biggest + rtol : kInf;
    leaf.accepts_rel_error_median = median > 0 ? atol / median + rtol : kInf;
    leaf.golden_max_abs = biggest;
    leaf.golden_median_abs = median;
  }
  if (constant) return "all " + std::to_string(n) + " elements are " + fmt(static_cast<double>(ep[0])) + " (constant)";
  if (tol.mode == ToleranceMode::kAllClose && biggest <= atol)
    return "every |value| is at most " + fmt(biggest) + ", within atol " + fmt(atol) + " (zeros would pass)";
  return "";
}

std::string percent(double r) {
  if (std::isinf(r)) return "any";
  std::ostringstream os;
  os.precision(3);
  os << r * 100 << "%";
  return os.str();
}

// Element-wise comparison of two same-dtype, same-shape CPU tensors of a real floating dtype.
void compare_floating(const at::Tensor& e_in, const at::Tensor& a_in, c10::ScalarType dtype, const Tolerance& tol,
                      LeafReport& leaf) {
  const auto [default_rtol, default_atol] = default_rtol_atol(dtype);
  const double rtol = tol.rtol.value_or(default_rtol), atol = tol.atol.value_or(default_atol);
  leaf.tolerance = tolerance_text(tol, rtol, atol, true);
  leaf.applied = tol;
  if (tol.mode == ToleranceMode::kAllClose) {
    leaf.applied.rtol = rtol;
    leaf.applied.atol = atol;
  }
  // Anything but the dtype's assert_close default is shown with the result; a tolerance that accepts pairs the
  // default rejects is "loosened" and counted in every summary (a manifest with rtol 1e9 must not read as a plain
  // PASS). k ULPs are never looser than allclose while k * eps <= rtol (one ULP of x is at most eps * |x|).
  leaf.custom_tolerance = tol.mode != ToleranceMode::kAllClose || rtol != default_rtol || atol != default_atol ||
                          !tol.equal_nan;
  leaf.loosened = (tol.mode == ToleranceMode::kAllClose && (rtol > default_rtol || atol > default_atol)) ||
                  (tol.mode == ToleranceMode::kUlp &&
                   static_cast<double>(tol.max_ulp) > std::floor(default_rtol / machine_epsilon(dtype)));
  leaf.total = e_in.numel();
  leaf.floating = true;
  int64_t worst = -1;
  // float32 and float64 are read in place (contiguous() is free for the usual contiguous outputs); float16 and
  // bfloat16 are widened to float64 first (exactly).
  if (dtype == c10::kFloat || dtype == c10::kDouble) {
    const at::Tensor e = e_in.contiguous(), a = a_in.contiguous();
    if (dtype == c10::kFloat) {
      worst = floating_loop(e.data_ptr<float>(), a.data_ptr<float>(), leaf.total, dtype, tol, rtol, atol, leaf);
      leaf.weak = weak_golden(e.data_ptr<float>(), leaf.total, tol, rtol, atol, machine_epsilon(dtype), leaf);
    } else {
      worst = floating_loop(e.data_ptr<double>(), a.data_ptr<double>(), leaf.total, dtype, tol, rtol, atol, leaf);
      leaf.weak = weak_golden(e.data_ptr<double>(), leaf.total, tol, rtol, atol, machine_epsilon(dtype), leaf);
    }
  } else {
    const at::Tensor e = e_in.to(at::kDouble).contiguous(), a = a_in.to(at::kDouble).contiguous();
    worst = floating_loop(e.data_ptr<double>(), a.data_ptr<double>(), leaf.total, dtype, tol, rtol, atol, leaf);
    leaf.weak = weak_golden(e.data_ptr<double>(), leaf.total, tol, rtol, atol, machine_epsilon(dtype), leaf);
  }
  if (worst >= 0) leaf.worst_index = index_text(worst, e_in.sizes());
}

void compare_integral(const at::Tensor& e_in, const at::Tensor& a_in, LeafReport& leaf) {
  leaf.tolerance = "exact (integer/bool)";
  at::Tensor e = e_in.to(at::kLong).contiguous(), a = a_in.to(at::kLong).contiguous();
  const int64_t* ep = e.data_ptr<int64_t>();
  const int64_t* ap = a.data_ptr<int64_t>();
  const int64_t n = e.numel();
  leaf.total = n;
  int64_t worst = -1;
  double worst_diff = -1;
  for (int64_t i = 0; i < n; ++i) {
    // In double: an int64 difference can overflow, and the statistics are doubles anyway.
    const double diff = std::fabs(static_cast<double>(ap[i]) - static_cast<double>(ep[i]));
    const bool ok = ep[i] == ap[i];
    if (!ok) ++leaf.mismatched;
    const double rel = ep[i] != 0 ? diff / std::fabs(static_cast<double>(ep[i])) : (ok ? 0 : kInf);
    leaf.max_abs = std::max(leaf.max_abs, ok ? 0.0 : std::max(diff, 1.0));
    leaf.max_rel = std::max(leaf.max_rel, rel);
    leaf.max_ulp = leaf.max_abs;
    const double score = ok ? 0 : 1 + diff;
    if (score > worst_diff) {
      worst_diff = score;
      worst = i;
    }
  }
  if (worst >= 0) {
    leaf.worst_index = index_text(worst, e_in.sizes());
    leaf.worst_expected = std::to_string(ep[worst]);
    leaf.worst_actual = std::to_string(ap[worst]);
  }
}

void finish(LeafReport& leaf) {
  if (leaf.mismatched > 0) {
    leaf.ok = false;
    std::ostringstream os;
    os << leaf.mismatched << "/" << leaf.total << " elements mismatched (" << leaf.tolerance << "); worst at "
       << leaf.worst_index << ": expected " << leaf.worst_expected << ", actual " << leaf.worst_actual;
    if (leaf.floating && std::isfinite(leaf.needed_rtol) + std::isfinite(leaf.needed_atol) > 0)
      os << "; would pass with rtol >= " << fmt(leaf.needed_rtol) << " (atol as is) or atol >= "
         << fmt(leaf.needed_atol) << " (rtol as is) or max_ulp >= " << fmt(leaf.max_ulp);
    leaf.message = os.str();
  }
}

void compare_tensor(const at::Tensor& expected_any, const at::Tensor& actual_any, const Tolerance& tol,
                    LeafReport& leaf) {
  leaf.kind = "Tensor";
  leaf.dtype = dtype_name(expected_any.scalar_type());
  if (expected_any.layout() != at::kStrided || actual_any.layout() != at::kStrided) {
    leaf.ok = false;
    leaf.message = "only strided (dense) tensors are supported";
    return;
  }
  // Either side may come from a device; the element loops read CPU memory. They read raw storage, so the conj and
  // neg bits are resolved first: a golden saved as torch._neg_view(t) is -t to torch.load, and must be compared as
  // -t (it passed against t when the bit was ignored).
  auto values = [](const at::Tensor& t) {
    const at::Tensor cpu = t.device().is_cpu() ? t : t.to(at::kCPU);
    return cpu.resolve_conj().resolve_neg();
  };
  const at::Tensor expected = values(expected_any);
  const at::Tensor actual = values(actual_any);
  if (expected.scalar_type() != actual.scalar_type()) {
    leaf.ok = false;
    leaf.message = "dtype mismatch: expected " + leaf.dtype + ", actual " + dtype_name(actual.scalar_type());
    return;
  }
  if (expected.sizes() != actual.sizes()) {
    std::ostringstream os;
    os << "shape mismatch: expected " << expected.sizes() << ", actual " << actual.sizes();
    leaf.ok = false;
    leaf.message = os.str();
    return;
  }
  const auto dtype = expected.scalar_type();
  if (is_real_floating(dtype)) {
    compare_floating(expected, actual, dtype, tol, leaf);
  } else if (dtype == c10::kComplexFloat || dtype == c10::kComplexDouble) {
    // Real and imaginary parts are compared as a trailing dimension of size 2.
    compare_floating(at::view_as_real(expected), at::view_as_real(actual),
                     dtype == c10::kComplexFloat ? c10::kFloat : c10::kDouble, tol, leaf);
  } else if (c10::isIntegralType(dtype, /*includeBool=*/true)) {
    compare_integral(expected, actual, leaf);
  } else {
    leaf.ok = false;
    leaf.message = "unsupported dtype " + leaf.dtype;
    return;
  }
  finish(leaf);
}

std::string kind_of(const c10::IValue& v) {
  if (v.isTensor()) return "Tensor";
  if (v.isTuple()) return "Tuple";
  if (v.isList()) return "List";
  if (v.isGenericDict()) return "Dict";
  if (v.isNone()) return "None";
  if (v.isBool()) return "bool";
  if (v.isInt()) return "int";
  if (v.isDouble()) return "float";
  if (v.isString()) return "str";
  return v.tagKind();
}

// A dict key as printed in paths and messages (escaped); keys are compared raw (DictKey), never as printed: two keys
// that print alike ("\x01" and "\\x01") must stay two entries.
std::string key_text(const c10::IValue& k) {
  if (k.isString()) {
    // Backslashes doubled before escaping, so that no two keys print alike ("\x01" is \x01, "\\x01" is \\x01).
    std::string raw;
    for (char ch : k.toStringRef()) raw += ch == '\\' ? std::string("\\\\") : std::string(1, ch);
    return "'" + printable(raw) + "'";
  }
  std::ostringstream os;
  os << k;
  return os.str();
}

// (kind, raw bytes): str keys by their bytes, int and bool keys by value, each kind apart from the others.
using DictKey = std::pair<std::string, std::string>;
std::optional<DictKey> dict_key(const c10::IValue& k) {
  if (k.isString()) return DictKey{"str", k.toStringRef()};
  if (k.isInt()) return DictKey{"int", std::to_string(k.toInt())};
  if (k.isBool()) return DictKey{"bool", k.toBool() ? "True" : "False"};
  return std::nullopt;
}

std::string scalar_text(const c10::IValue& v) {
  if (v.isString()) return "'" + printable(v.toStringRef()) + "'";
  if (v.isDouble()) return fmt(v.toDouble());
  std::ostringstream os;
  os << v;
  return os.str();
}

// `used`: the override paths that reached a compared leaf (an override that reaches none is an error, see compare).
void walk(const c10::IValue& e, const c10::IValue& a, const std::string& path, const TolerancePolicy& policy,
          std::set<std::string>& used, std::vector<LeafReport>& out) {
  LeafReport leaf;
  leaf.path = path;
  leaf.kind = kind_of(e);
  const std::string actual_kind = kind_of(a);
  if (leaf.kind != actual_kind) {
    leaf.ok = false;
    leaf.message = "kind mismatch: expected " + leaf.kind + ", actual " + actual_kind;
    out.push_back(std::move(leaf));
    return;
  }
  const Tolerance& tol = policy.for_path(path);
  if (!(e.isTuple() || e.isList() || e.isGenericDict()) && policy.outputs.count(path)) used.insert(path);
  if (e.isTensor()) {
    compare_tensor(e.toTensor(), a.toTensor(), tol, leaf);
  } else if (e.isTuple() || e.isList()) {
    const auto& ev = e.isTuple() ? e.toTupleRef().elements().vec() : e.toListRef().vec();
    const auto& av = a.isTuple() ? a.toTupleRef().elements().vec() : a.toListRef().vec();
    if (ev.size() != av.size()) {
      leaf.ok = false;
      leaf.message = "length mismatch: expected " + std::to_string(ev.size()) + " elements, actual " +
                     std::to_string(av.size());
      out.push_back(std::move(leaf));
      return;
    }
    for (size_t i = 0; i < ev.size(); ++i) walk(ev[i], av[i], path + "[" + std::to_string(i) + "]", policy, used, out);
    return;
  } else if (e.isGenericDict()) {
    const auto ed = e.toGenericDict(), ad = a.toGenericDict();
    std::map<DictKey, std::pair<c10::IValue, c10::IValue>> em, am;  // key -> (key, value)
    for (const auto& [dict, into] : {std::pair{&ed, &em}, std::pair{&ad, &am}}) {
      for (const auto& kv : *dict) {
        const auto key = dict_key(kv.key());
        if (!key) {
          leaf.ok = false;
          leaf.message = "dict key " + key_text(kv.key()) + " of kind " + kind_of(kv.key()) +
                         " (only str, int and bool keys are compared)";
          out.push_back(std::move(leaf));
          return;
        }
        into->emplace(*key, std::pair{kv.key(), kv.value()});
      }
    }
    std::string missing, extra;
    for (const auto& [k, kv] : em)
      if (!am.count(k)) missing += (missing.empty() ? "" : ", ") + key_text(kv.first);
    for (const auto& [k, kv] : am)
      if (!em.count(k)) extra += (extra.empty() ? "" : ", ") + key_text(kv.first);
    if (!missing.empty() || !extra.empty()) {
      leaf.ok = false;
      leaf.message = "dict keys differ: missing {" + missing + "}, unexpected {" + extra + "}";
      out.push_back(std::move(leaf));
      return;
    }
    for (const auto& [k, kv] : em)
      walk(kv.second, am.at(k).second, path + "[" + key_text(kv.first) + "]", policy, used, out);
    return;
  } else if (e.isDouble()) {
    compare_floating(at::scalar_tensor(e.toDouble(), at::kDouble), at::scalar_tensor(a.toDouble(), at::kDouble),
                     c10::kDouble, tol, leaf);
    leaf.worst_index.clear();
    finish(leaf);
    if (!leaf.ok) leaf.message = "expected " + leaf.worst_expected + ", actual " + leaf.worst_actual + " (" +
                                 leaf.tolerance + ")";
  } else if (e.isNone() || e.isBool() || e.isInt() || e.isString()) {
    leaf.total = 1;
    leaf.tolerance = "exact";
    const bool same = e.isNone() || (e.isBool() ? e.toBool() == a.toBool()
                                     : e.isInt()  ? e.toInt() == a.toInt()
                                                  : e.toStringRef() == a.toStringRef());
    if (!same) {
      leaf.ok = false;
      leaf.mismatched = 1;
      leaf.worst_expected = scalar_text(e);
      leaf.worst_actual = scalar_text(a);
      leaf.message = "expected " + leaf.worst_expected + ", actual " + leaf.worst_actual;
      if (e.isInt()) leaf.max_abs = leaf.max_ulp = std::fabs(static_cast<double>(a.toInt()) - e.toInt());
    }
  } else {
    leaf.ok = false;
    leaf.message = "cannot compare values of kind " + leaf.kind;
  }
  out.push_back(std::move(leaf));
}

}  // namespace

const char* to_string(ToleranceMode mode) {
  switch (mode) {
    case ToleranceMode::kAllClose: return "allclose";
    case ToleranceMode::kUlp: return "ulp";
    case ToleranceMode::kExact: return "exact";
  }
  return "?";
}

const Tolerance& TolerancePolicy::for_path(const std::string& path) const {
  auto it = outputs.find(path);
  return it == outputs.end() ? base : it->second;
}

std::pair<double, double> default_rtol_atol(c10::ScalarType dtype) {
  switch (dtype) {
    case c10::kHalf: return {1e-3, 1e-5};
    case c10::kBFloat16: return {1.6e-2, 1e-5};
    case c10::kFloat:
    case c10::kComplexFloat: return {1.3e-6, 1e-5};
    case c10::kDouble:
    case c10::kComplexDouble: return {1e-7, 1e-7};
    default: return {0, 0};
  }
}

double ulp_distance(double a, double b, c10::ScalarType dtype) {
  TORCH_CHECK(is_real_floating(dtype), "ulp_distance: ", dtype_name(dtype), " is not a real floating dtype");
  if (std::isnan(a) || std::isnan(b)) return kInf;
  if (std::isinf(a) || std::isinf(b)) return a == b ? 0 : kInf;
  const int64_t x = ordered(a, dtype), y = ordered(b, dtype);
  // Differences of float64 orderings can exceed int64; unsigned arithmetic on the ordered pair cannot.
  const uint64_t d = x >= y ? static_cast<uint64_t>(x) - static_cast<uint64_t>(y)
                            : static_cast<uint64_t>(y) - static_cast<uint64_t>(x);
  return static_cast<double>(d);
}

const LeafReport* Comparison::first_failure() const {
  for (const auto& l : leaves)
    if (!l.ok) return &l;
  return nullptr;
}

int64_t Comparison::mismatched() const {
  int64_t n = 0;
  for (const auto& l : leaves) n += l.mismatched;
  return n;
}

int64_t Comparison::total() const {
  int64_t n = 0;
  for (const auto& l : leaves) n += l.total;
  return n;
}

#define TORCHCONFORM_MAX_OF(field)                      \
  double Comparison::field() const {                    \
    double m = 0;                                       \
    for (const auto& l : leaves) m = std::max(m, l.field); \
    return m;                                           \
  }
TORCHCONFORM_MAX_OF(max_abs)
TORCHCONFORM_MAX_OF(max_rel)
TORCHCONFORM_MAX_OF(max_ulp)
TORCHCONFORM_MAX_OF(needed_rtol)
TORCHCONFORM_MAX_OF(needed_atol)
#undef TORCHCONFORM_MAX_OF

std::string Comparison::summary() const {
  std::ostringstream os;
  if (const LeafReport* f = first_failure()) {
    os << f->path << " " << f->kind << (f->dtype.empty() ? "" : " " + f->dtype) << ": " << f->message;
    int failing = 0;
    for (const auto& l : leaves) failing += !l.ok;
    if (failing > 1) os << " (+" << failing - 1 << " more failing leaves)";
    return os.str();
  }
  os << "max_abs=" << fmt(max_abs()) << " max_rel=" << fmt(max_rel()) << " max_ulp=" << fmt(max_ulp())
     << " mismatched=" << mismatched() << "/" << total();
  return os.str();
}

std::string compared_nothing(const Comparison& c) {
  if (!c.ok || c.total() > 0) return "";
  return "compared 0 elements: the golden holds nothing to compare (empty), so nothing was verified; a result that "
         "compares nothing is not a pass";
}

std::string Comparison::weak_note() const {
  std::string out;
  for (const auto& l : leaves)
    if (!l.weak.empty()) out += (out.empty() ? "" : "; ") + l.path + ": " + l.weak;
  return out;
}

bool Comparison::loosened() const {
  return std::any_of(leaves.begin(), leaves.end(), [](const LeafReport& l) { return l.loosened; });
}

std::string Comparison::tolerance_note() const {
  // Paths grouped by the tolerance they were compared under, in first-seen order.
  std::vector<std::pair<std::string, std::string>> groups;  // tolerance text -> paths
  for (const auto& l : leaves) {
    if (!l.custom_tolerance) continue;
    const std::string text = l.tolerance + (l.loosened ? " (LOOSENED)" : "");
    auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == text; });
    if (it == groups.end()) groups.emplace_back(text, l.path);
    else it->second += ", " + l.path;
  }
  std::string out;
  for (const auto& [text, paths] : groups) out += (out.empty() ? "tolerance: " : "; ") + paths + " " + text;
  return out;
}

Comparison compare(const c10::IValue& expected, const c10::IValue& actual, const TolerancePolicy& policy,
                   OverrideCheck overrides, double sensitivity) {
  Comparison c;
  std::set<std::string> used;
  walk(expected, actual, "$", policy, used, c.leaves);
  // A tolerance that lets most elements be wrong by more than `sensitivity` checks little (a golden of logits at
  // most 4.7e-5 under atol 1e-5 passes an output 20% wrong everywhere).
  for (auto& l : c.leaves)
    if (l.floating && l.weak.empty() && l.accepts_rel_error_median > sensitivity)
      l.weak = "the tolerance (" + l.tolerance + ") accepts a " + percent(l.accepts_rel_error) +
               " error on every element and " + percent(l.accepts_rel_error_median) +
               " on most: |values| of at most " + fmt(l.golden_max_abs, "%.3g") + ", median " +
               fmt(l.golden_median_abs, "%.3g") +
               " (more than " + percent(sensitivity) + " would pass)";
  c.overrides_used.assign(used.begin(), used.end());
  // A per-output tolerance that applies to nothing is a manifest error, never silently ignored (a typo would
  // otherwise leave the output it meant under the default, or hide that an override was meant to loosen something).
  if (overrides == OverrideCheck::kEach && c.first_failure() == nullptr) {
    for (const auto& [path, tol] : policy.outputs) {
      if (used.count(path)) continue;
      LeafReport leaf;
      leaf.path = path;
      leaf.kind = "tolerance";
      leaf.ok = false;
      leaf.message = "tolerance override for '" + printable(path) + "' matches no compared output";
      c.leaves.push_back(std::move(leaf));
    }
  }
  // What no tolerance can pass (an integer, bool or str mismatch, a structural one) needs an unbounded one.
  for (auto& l : c.leaves)
    if (!l.floating && !l.ok) l.needed_rtol = l.needed_atol = kInf;
  c.ok = c.first_failure() == nullptr;
  return c;
}

}  // namespace torchconform
