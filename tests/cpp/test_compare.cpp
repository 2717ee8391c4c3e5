// Unit tests of the comparator: each check is paired with the input that must make it fail.
#include <torchconform/compare.h>
#include <torchconform/corpus.h>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

using namespace torchconform;
using c10::IValue;

namespace {

const TolerancePolicy kDefault{};

Comparison cmp(const IValue& e, const IValue& a, const TolerancePolicy& p = kDefault) { return compare(e, a, p); }

IValue tuple(std::vector<IValue> v) { return c10::ivalue::Tuple::create(std::move(v)); }

IValue int_list(std::vector<int64_t> v) { return c10::List<int64_t>(v); }

constexpr double kNan = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

}  // namespace

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_hex("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc", 3), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  EXPECT_EQ(sha256_hex(two_blocks.data(), two_blocks.size()),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_NE(sha256_hex("abd", 3), sha256_hex("abc", 3));
}

TEST(Ulp, NeighboursAndZero) {
  const float one = 1.0f;
  EXPECT_EQ(ulp_distance(one, std::nextafter(one, 2.0f), c10::kFloat), 1);
  EXPECT_EQ(ulp_distance(one, std::nextafter(std::nextafter(one, 2.0f), 2.0f), c10::kFloat), 2);
  EXPECT_EQ(ulp_distance(1.0, std::nextafter(1.0, 2.0), c10::kDouble), 1);
  // Across zero: +0 and -0 are the same point; the two smallest denormals of opposite sign are 2 apart.
  EXPECT_EQ(ulp_distance(0.0, -0.0, c10::kFloat), 0);
  const float tiny = std::numeric_limits<float>::denorm_min();
  EXPECT_EQ(ulp_distance(tiny, -tiny, c10::kFloat), 2);
  EXPECT_EQ(ulp_distance(-1.0, 1.0, c10::kFloat), 2.0 * 0x3f800000);
  // float64 extremes do not overflow.
  const double big = std::numeric_limits<double>::max();
  EXPECT_GT(ulp_distance(-big, big, c10::kDouble), 1.8e19);
}

TEST(Ulp, HalfAndBFloat16UseTheirOwnSpacing) {
  // 1 + 2^-10 is the next float16 after 1; in bfloat16 (7 mantissa bits) 1 + 2^-7 is.
  EXPECT_EQ(ulp_distance(1.0, 1.0 + std::ldexp(1.0, -10), c10::kHalf), 1);
  EXPECT_EQ(ulp_distance(1.0, 1.0 + std::ldexp(1.0, -7), c10::kBFloat16), 1);
  EXPECT_EQ(ulp_distance(1.0, 1.0 + std::ldexp(1.0, -7), c10::kFloat), 1 << 16);
}

TEST(Ulp, NanAndInfinity) {
  EXPECT_TRUE(std::isinf(ulp_distance(kNan, 1.0, c10::kFloat)));
  EXPECT_TRUE(std::isinf(ulp_distance(kInf, std::numeric_limits<float>::max(), c10::kFloat)));
  EXPECT_EQ(ulp_distance(kInf, kInf, c10::kFloat), 0);
  EXPECT_THROW(ulp_distance(1, 2, c10::kLong), c10::Error);
}

TEST(Compare, Float32DefaultsMatchAssertClose) {
  auto e = at::tensor({1.0f, 100.0f, 0.0f});
  // Inside atol + rtol*|e| everywhere.
  auto ok = at::tensor({1.0f + 1e-6f, 100.0f + 1e-4f, 9e-6f});
  EXPECT_TRUE(cmp(e, ok).ok) << cmp(e, ok).summary();
  // 0 + 2e-5 exceeds atol=1e-5 at index 2.
  auto bad = at::tensor({1.0f, 100.0f, 2e-5f});
  const auto c = cmp(e, bad);
  ASSERT_FALSE(c.ok);
  EXPECT_EQ(c.mismatched(), 1);
  EXPECT_EQ(c.leaves[0].worst_index, "[2]");
  EXPECT_NE(c.summary().find("rtol=1.3e-06 atol=1e-05"), std::string::npos) << c.summary();
}

TEST(Compare, WorstIndexIsMultiDimensional) {
  auto e = at::zeros({3, 4});
  auto a = e.clone();
  a.index_put_({1, 2}, 0.5);
  a.index_put_({2, 3}, 0.25);
  const auto c = cmp(e, a);
  ASSERT_FALSE(c.ok);
  EXPECT_EQ(c.mismatched(), 2);
  EXPECT_EQ(c.leaves[0].worst_index, "[1, 2]");
  EXPECT_EQ(c.leaves[0].worst_expected, "0");
  EXPECT_EQ(c.leaves[0].worst_actual, "0.5");
  EXPECT_DOUBLE_EQ(c.max_abs(), 0.5);
}

TEST(Compare, NanAndInfPolicy) {
  auto e = at::tensor({kNan, kInf, -kInf}, at::kDouble);
  EXPECT_TRUE(cmp(e, e.clone()).ok);
  TolerancePolicy strict;
  strict.base.equal_nan = false;
  EXPECT_FALSE(cmp(e, e.clone(), strict).ok);
  EXPECT_FALSE(cmp(e, at::tensor({kNan, -kInf, -kInf}, at::kDouble)).ok);
  EXPECT_FALSE(cmp(e, at::tensor({kNan, 1e308, -kInf}, at::kDouble)).ok);
  EXPECT_FALSE(cmp(e, at::tensor({0.0, kInf, -kInf}, at::kDouble)).ok);
}

TEST(Compare, DtypeThenShape) {
  auto e = at::zeros({2, 3});
  const auto d = cmp(e, at::zeros({2, 3}, at::kDouble));
  ASSERT_FALSE(d.ok);
  EXPECT_NE(d.summary().find("dtype mismatch: expected float32, actual float64"), std::string::npos) << d.summary();
  const auto s = cmp(e, at::zeros({3, 2}));
  ASSERT_FALSE(s.ok);
  EXPECT_NE(s.summary().find("shape mismatch"), std::string::npos) << s.summary();
}

TEST(Compare, IntegersAndBoolAreExact) {
  auto e = at::tensor({1, 2, 3}, at::kLong);
  EXPECT_TRUE(cmp(e, e.clone()).ok);
  const auto c = cmp(e, at::tensor({1, 2, 4}, at::kLong));
  ASSERT_FALSE(c.ok);
  EXPECT_EQ(c.leaves[0].worst_index, "[2]");
  TolerancePolicy loose;
  loose.base.atol = 10;  // tolerances never apply to integers
  EXPECT_FALSE(cmp(e, at::tensor({1, 2, 4}, at::kLong), loose).ok);
  EXPECT_FALSE(cmp(at::tensor({1, 0}).to(at::kBool), at::tensor({1, 1}).to(at::kBool)).ok);
  EXPECT_TRUE(cmp(at::tensor({1, 0}).to(at::kBool), at::tensor({1, 0}).to(at::kBool)).ok);
}

TEST(Compare, ExactAndUlpModes) {
  auto e = at::tensor({1.0f, 0.0f});
  auto one_ulp = at::tensor({std::nextafter(1.0f, 2.0f), 0.0f});
  auto neg_zero = at::tensor({1.0f, -0.0f});
  TolerancePolicy exact;
  exact.base.mode = ToleranceMode::kExact;
  EXPECT_TRUE(cmp(e, e.clone(), exact).ok);
  EXPECT_FALSE(cmp(e, one_ulp, exact).ok);
  EXPECT_FALSE(cmp(e, neg_zero, exact).ok);  // bitwise: -0 is not +0
  EXPECT_TRUE(cmp(e, neg_zero).ok);          // allclose: it is
  TolerancePolicy ulp;
  ulp.base.mode = ToleranceMode::kUlp;
  ulp.base.max_ulp = 1;
  EXPECT_TRUE(cmp(e, one_ulp, ulp).ok);
  auto two_ulp = at::tensor({std::nextafter(std::nextafter(1.0f, 2.0f), 2.0f), 0.0f});
  const auto c = cmp(e, two_ulp, ulp);
  EXPECT_FALSE(c.ok);
  EXPECT_EQ(c.max_ulp(), 2);
}

TEST(Compare, EmptyAndNonContiguous) {
  EXPECT_TRUE(cmp(at::zeros({0, 3}), at::zeros({0, 3})).ok);
  EXPECT_FALSE(cmp(at::zeros({0, 3}), at::zeros({3, 0})).ok);
  auto base = at::arange(12, at::kFloat).reshape({3, 4});
  auto e = base.t().contiguous();
  auto a = base.t();  // same values, transposed strides
  ASSERT_FALSE(a.is_contiguous());
  EXPECT_TRUE(cmp(e, a).ok);
  auto wrong = base.clone().t();
  wrong.index_put_({3, 1}, 100.0f);
  const auto c = cmp(e, wrong);
  ASSERT_FALSE(c.ok);
  EXPECT_EQ(c.leaves[0].worst_index, "[3, 1]");
}

TEST(Compare, NestedStructures) {
  auto probs = at::tensor({0.25f, 0.75f});
  IValue e = tuple({probs, int_list({3, 1, 4})});
  EXPECT_TRUE(cmp(e, tuple({probs.clone(), int_list({3, 1, 4})})).ok);
  const auto list_off = cmp(e, tuple({probs.clone(), int_list({3, 1, 5})}));
  ASSERT_FALSE(list_off.ok);
  EXPECT_EQ(list_off.first_failure()->path, "$[1][2]");
  c10::impl::GenericList as_list(c10::AnyType::get());
  as_list.push_back(probs);
  as_list.push_back(int_list({3, 1, 4}));
  const auto kind = cmp(e, as_list);
  ASSERT_FALSE(kind.ok);
  EXPECT_NE(kind.summary().find("kind mismatch: expected Tuple, actual List"), std::string::npos);
  EXPECT_FALSE(cmp(e, tuple({probs})).ok);
  // int vs float is a kind mismatch, not a tolerance question.
  EXPECT_FALSE(cmp(tuple({IValue(int64_t{1})}), tuple({IValue(1.0)})).ok);
}

TEST(Compare, DictsAndScalars) {
  c10::impl::GenericDict e(c10::StringType::get(), c10::AnyType::get());
  e.insert("a", IValue(1.5));
  e.insert("b", IValue(std::string("x")));
  c10::impl::GenericDict same(c10::StringType::get(), c10::AnyType::get());
  same.insert("b", IValue(std::string("x")));
  same.insert("a", IValue(1.5 + 1e-12));
  EXPECT_TRUE(cmp(e, same).ok);
  c10::impl::GenericDict other(c10::StringType::get(), c10::AnyType::get());
  other.insert("a", IValue(1.5));
  other.insert("c", IValue(std::string("x")));
  const auto keys = cmp(e, other);
  ASSERT_FALSE(keys.ok);
  EXPECT_NE(keys.summary().find("missing {'b'}"), std::string::npos) << keys.summary();
  EXPECT_FALSE(cmp(IValue(1.5), IValue(1.6)).ok);
  EXPECT_TRUE(cmp(IValue(), IValue()).ok);
  EXPECT_FALSE(cmp(IValue(), IValue(int64_t{0})).ok);
  EXPECT_FALSE(cmp(IValue(true), IValue(false)).ok);
  EXPECT_FALSE(cmp(IValue(std::string("a")), IValue(std::string("b"))).ok);
}

TEST(Compare, PerOutputOverride) {
  IValue e = tuple({at::tensor({1.0f}), at::tensor({1.0f})});
  IValue a = tuple({at::tensor({1.001f}), at::tensor({1.001f})});
  TolerancePolicy p;
  p.outputs["$[1]"].atol = 1e-2;
  const auto c = cmp(e, a, p);
  ASSERT_FALSE(c.ok);
  EXPECT_EQ(c.first_failure()->path, "$[0]");
  ASSERT_EQ(c.leaves.size(), 2u);
  EXPECT_TRUE(c.leaves[1].ok);
}

TEST(Compare, HalfDefaults) {
  auto e = at::tensor({1.0f}).to(at::kHalf);
  EXPECT_TRUE(cmp(e, at::tensor({1.0009f}).to(at::kHalf)).ok);  // rtol 1e-3
  EXPECT_FALSE(cmp(e, at::tensor({1.01f}).to(at::kHalf)).ok);
  auto b = at::tensor({1.0f}).to(at::kBFloat16);
  EXPECT_TRUE(cmp(b, at::tensor({1.0078125f}).to(at::kBFloat16)).ok);  // rtol 1.6e-2
  EXPECT_FALSE(cmp(b, at::tensor({1.03f}).to(at::kBFloat16)).ok);
}

TEST(Printable, EscapesControlAndInvalidBytesKeepsUtf8) {
  EXPECT_EQ(printable("plain text"), "plain text");
  EXPECT_EQ(printable("caf\xc3\xa9 \xe2\x9c\x93"), "caf\xc3\xa9 \xe2\x9c\x93");  // valid UTF-8 stays
  EXPECT_EQ(printable("a\nb\x1b[31m"), "a\\x0ab\\x1b[31m");                  // no forged lines, no escapes
  EXPECT_EQ(printable("\xa0\xff\xc3"), "\\xa0\\xff\\xc3");                    // invalid or truncated sequences
  EXPECT_EQ(printable("\xed\xa0\x80"), "\\xed\\xa0\\x80");                    // a UTF-16 surrogate
  EXPECT_EQ(std::string(CorpusError("x\ny").what()), "x\\x0ay");
}
