// Structural comparison of a result tree against its golden, under a tolerance policy.
#pragma once

#include <ATen/core/ivalue.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace torchconform {

// The corpus's name of a dtype: "float32", "int64", "bool"... (c10::toString for any other).
std::string dtype_name(c10::ScalarType t);

enum class ToleranceMode {
  kAllClose,  // |actual - expected| <= atol + rtol * |expected|, per-dtype defaults
  kUlp,       // at most max_ulp representable values apart, in the tensor's own dtype
  kExact,     // bitwise equal
};

const char* to_string(ToleranceMode mode);

// How floating-point leaves are compared. Integer, bool and str leaves are always compared exactly.
struct Tolerance {
  ToleranceMode mode = ToleranceMode::kAllClose;
  // Unset: the torch.testing.assert_close default for the leaf's dtype (see default_rtol_atol).
  std::optional<double> rtol;
  std::optional<double> atol;
  int64_t max_ulp = 0;     // kUlp only
  bool equal_nan = true;   // NaN matches NaN (any payload)
};

// Case default plus per-output overrides keyed by output path ("$", "$[0]", "$['logits'][1]").
struct TolerancePolicy {
  Tolerance base;
  std::map<std::string, Tolerance> outputs;
  const Tolerance& for_path(const std::string& path) const;
};

// torch.testing.assert_close defaults: float16 1e-3/1e-5, bfloat16 1.6e-2/1e-5, float32 1.3e-6/1e-5,
// float64 1e-7/1e-7 (complex: those of the component dtype); integers and bool 0/0.
std::pair<double, double> default_rtol_atol(c10::ScalarType dtype);

// Distance in units in the last place between two values of a floating dtype (they must be representable in it).
// +0 and -0 are 0 apart; NaN, or an infinity against anything but itself, is infinitely far (returns +inf).
double ulp_distance(double a, double b, c10::ScalarType dtype);

// One compared leaf of the result tree (a tensor or a scalar) or a structural mismatch at a node.
struct LeafReport {
  std::string path;  // "$[1]"
  std::string kind;  // "Tensor", "int", "float", "bool", "str", "None", or the mismatching node's kind
  bool ok = true;
  std::string message;  // empty when ok
  std::string dtype;    // tensors: "float32"...
  int64_t mismatched = 0;
  int64_t total = 0;
  double max_abs = 0;  // over all elements (NaN-vs-number and inf mismatches count as +inf)
  double max_rel = 0;
  double max_ulp = 0;  // floating leaves: in their dtype; integer leaves: the integer difference
  std::string worst_index;  // "[2, 7]" (empty for scalars)
  std::string worst_expected;
  std::string worst_actual;
  std::string tolerance;  // "allclose rtol=1.3e-06 atol=1e-05", "exact"... (display text; `applied` is the data)
  // The tolerance the leaf was compared under, as data: the mode, and for allclose rtol and atol resolved (the dtype's
  // defaults where the policy leaves them unset); non-floating leaves: exact. The JSON report carries it as fields.
  Tolerance applied{ToleranceMode::kExact, std::nullopt, std::nullopt, 0, true};
  bool custom_tolerance = false;  // floating leaf compared under something other than its dtype's default
  bool loosened = false;          // ... under a tolerance that accepts pairs the default rejects
  // The minimum tolerance that would have passed every element (Polygraphy prints the same): the smallest rtol at
  // this leaf's atol, the smallest atol at this leaf's rtol (allclose: |a - e| <= atol + rtol * |e|), and max_ulp
  // above for ULP mode. Integer, bool and non-tensor leaves: 0 when equal, +inf when not (no tolerance applies).
  double needed_rtol = 0;
  double needed_atol = 0;
  bool floating = false;  // a floating tensor leaf (not serialized: the dtype says it)
  // Floating leaves: why the golden checks little, judged from its values ("" when it does not): empty, constant,
  // every |value| within the absolute tolerance (a runtime returning zeros would pass), or a tolerance that accepts
  // more than compare()'s `sensitivity` of relative error on most elements.
  std::string weak;
  // Floating leaves: the relative error the tolerance accepts on every element of this golden (an output wrong by
  // this much everywhere passes): atol / max|e| + rtol for allclose, max_ulp * eps for ULP, 0 for exact; and on most
  // elements (atol / median|e| + rtol, the median over the nonzero elements). +inf when the golden gives no scale (all
  // zero).
  double accepts_rel_error = 0;
  double accepts_rel_error_median = 0;
  double golden_max_abs = 0;     // (not serialized: what the weak message quotes)
  double golden_median_abs = 0;
};

struct Comparison {
  bool ok = true;
  std::vector<LeafReport> leaves;
  std::vector<std::string> overrides_used;  // the policy's per-output paths that reached a compared leaf
  const LeafReport* first_failure() const;
  // Totals and maxima over all leaves.
  int64_t mismatched() const;
  int64_t total() const;
  double max_abs() const;
  double max_rel() const;
  double max_ulp() const;
  double needed_rtol() const;  // maxima of the leaves' (LeafReport::needed_rtol)
  double needed_atol() const;
  // One-line description: statistics when ok, the first failure (path, index, values) otherwise.
  std::string summary() const;
  bool loosened() const;  // some leaf was compared under a loosened tolerance
  // "" when every golden leaf checks what it seems to, else "$[0]: all 40 elements are 0 (constant); ..."
  std::string weak_note() const;
  // "" when every floating leaf used its dtype's default tolerance, else the tolerances used, by path:
  // "tolerance: $[0] allclose rtol=1e+09 atol=1e-05 (LOOSENED); $[1] exact".
  std::string tolerance_note() const;
};

// What to do with a per-output tolerance whose path reaches no compared leaf. kEach: the comparison fails (one
// comparison, one policy: a typo must not pass silently). kCollect: only record which were used
// (Comparison::overrides_used); the runner checks a case's overrides against all its input sets, since sets that
// call other methods may return other structures.
enum class OverrideCheck { kEach, kCollect };

// Compare kinds first (Tensor / Tuple / List / Dict / None / bool / int / float / str), then per tensor dtype,
// shape and values. `actual` may live on any device; it is compared on the CPU, with conj/neg bits resolved (what
// torch.load would give). Dict keys are compared raw (str, int, bool).
// `sensitivity`: the relative error a tolerance must be able to detect on most elements of a floating golden; past
// it the leaf is `weak` (a warning, never a failure).
constexpr double kDefaultSensitivity = 0.01;
Comparison compare(const c10::IValue& expected, const c10::IValue& actual, const TolerancePolicy& policy,
                   OverrideCheck overrides = OverrideCheck::kEach, double sensitivity = kDefaultSensitivity);

// Why an equal comparison verified nothing ("" when it compared at least one element): equal structures with no
// element in them (empty tensors, empty containers). Such a result is not a pass: the runner's rule, which the faces
// that judge outputs produced elsewhere get through the bindings' compare_output.
std::string compared_nothing(const Comparison& c);

}  // namespace torchconform
