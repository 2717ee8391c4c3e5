// The golden corpus, one test per (case, input set, device), plus library-level negative controls.
#include <torchconform/runner.h>

#include "runtime.h"  // program_outputs: an exported program's output structure

#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/script.h>

#include <torch/serialize.h>

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

using namespace torchconform;
namespace fs = std::filesystem;

namespace {

fs::path corpus_dir() {
  const char* env = std::getenv("TORCHCONFORM_CORPUS");
  return env && *env ? fs::path(env) : fs::path(TORCHCONFORM_GOLDEN);
}

// Opened once per process; an unreadable corpus registers no round-trip tests and fails CorpusOpens instead.
const Corpus* corpus() {
  static const Corpus* c = []() -> const Corpus* {
    try {
      return new Corpus(Corpus::open(corpus_dir()));
    } catch (const std::exception&) {
      return nullptr;
    }
  }();
  return c;
}

struct Param {
  std::string case_name, set_name, device;
};

std::vector<Param> params() {
  std::vector<Param> out;
  if (!corpus()) return out;
  for (const auto& c : corpus()->cases)
    for (const auto& s : c.sets)
      for (const char* d : {"cpu", "cuda"}) out.push_back({c.name, s.name, d});
  return out;
}

const CaseSpec& find_case(const std::string& name) {
  for (const auto& c : corpus()->cases)
    if (c.name == name) return c;
  throw std::runtime_error("no case " + name);
}

}  // namespace

TEST(GoldenCorpus, Opens) {
  try {
    const Corpus c = Corpus::open(corpus_dir());
    EXPECT_FALSE(c.cases.empty());
  } catch (const std::exception& e) {
    FAIL() << "cannot open corpus " << corpus_dir() << ": " << e.what();
  }
}

class RoundTrip : public ::testing::TestWithParam<Param> {};

TEST_P(RoundTrip, Verify) {
  const Param& p = GetParam();
  if (p.device == "cuda" && !torch::cuda::is_available()) GTEST_SKIP() << "CUDA is not available to this LibTorch";
  const CaseSpec& full = find_case(p.case_name);
  CaseSpec one = full;  // the case as if it had this set only: what the plan for one set is
  one.sets.erase(std::remove_if(one.sets.begin(), one.sets.end(),
                                [&](const InputSetSpec& s) { return s.name != p.set_name; }),
                 one.sets.end());
  RunOptions options;
  options.device = c10::Device(p.device);
  apply_policy(options);
  const auto results = run_case(full, options, {p.set_name});
  // Exactly the planned results: the TorchScript artifact, each variant that applies to the set (per runtime this
  // build has), each capture that failed at export. None may go missing silently.
  const auto planned = plan(one);
  const size_t want = planned.size();
  ASSERT_EQ(results.size(), want);
  for (size_t i = 0; i < results.size() && i < want; ++i) {
    EXPECT_EQ(results[i].artifact, planned[i].label);
    EXPECT_EQ(results[i].set_name, planned[i].set);
  }
  EXPECT_EQ(results[0].set_name, p.set_name);
  for (const auto& r : results)  // an expected failure (strict: XPASS fails) is a conforming outcome
    EXPECT_TRUE(r.verdict == Verdict::kPass || r.verdict == Verdict::kXFail) << format_result(r);
}

INSTANTIATE_TEST_SUITE_P(Golden, RoundTrip, ::testing::ValuesIn(params()),
                         [](const ::testing::TestParamInfo<Param>& info) {
                           return info.param.case_name + "__" + info.param.set_name + "__" + info.param.device;
                         });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(RoundTrip);

// Negative control at the library level: the artifact's real output against a golden moved beyond tolerance at one
// element must fail, naming that element.
TEST(NegativeControl, PerturbedGoldenFailsAtItsIndex) {
  ASSERT_NE(corpus(), nullptr);
  const CaseSpec& c = find_case("simple_cnn");
  const auto& set = *std::find_if(c.sets.begin(), c.sets.end(), [](const auto& s) { return s.name == "b4_32x32"; });
  std::istringstream bytes(read_verified(c, c.artifact));
  auto module = torch::jit::load(bytes);
  module.eval();
  c10::InferenceMode guard;
  const auto inputs = load_value(read_verified(c, set.inputs), "inputs").toTupleRef().elements().vec();
  const auto actual = module.forward(inputs);
  const auto expected = load_value(read_verified(c, set.expected), "expected").toTensor();
  ASSERT_TRUE(compare(expected, actual, c.tolerance).ok);
  auto perturbed = expected.clone();
  perturbed.index_put_({2, 7}, perturbed.index({2, 7}) + 1e-3);
  const auto cmp = compare(perturbed, actual, c.tolerance);
  ASSERT_FALSE(cmp.ok);
  EXPECT_EQ(cmp.mismatched(), 1);
  EXPECT_EQ(cmp.first_failure()->worst_index, "[2, 7]");
}

TEST(CorpusErrors, MissingAndEmptyDirectories) {
  EXPECT_THROW(Corpus::open("/nonexistent/torchconform"), CorpusError);
  const fs::path empty = fs::temp_directory_path() / "torchconform-empty-corpus";
  fs::create_directories(empty);
  try {
    Corpus::open(empty);
    FAIL() << "an empty directory opened as a corpus";
  } catch (const CorpusError& e) {
    EXPECT_NE(std::string(e.what()).find("no corpus.json"), std::string::npos) << e.what();
  }
  fs::remove_all(empty);
}

TEST(CorpusErrors, UnmatchedCaseGlob) {
  ASSERT_NE(corpus(), nullptr);
  EXPECT_EQ(corpus()->select({"simple_*"}).size(), 1u);
  EXPECT_THROW(corpus()->select({"no_such_case"}), CorpusError);
}

TEST(VersionConditions, Clauses) {
  EXPECT_TRUE(version_matches("2.13.0", ">=2.13,<2.14"));
  EXPECT_FALSE(version_matches("2.14.1", ">=2.13,<2.14"));
  EXPECT_TRUE(version_matches("2.14.1+cu130", "==2.14.1"));
  EXPECT_TRUE(version_matches("2.14", "==2.14.0"));
  EXPECT_TRUE(version_matches("1.13.1", "<2"));
  EXPECT_FALSE(version_matches("1.13.1", "!=1.13.1"));
  EXPECT_TRUE(version_matches("2.13.0", " > 2.12.9 "));
  EXPECT_THROW(version_matches("2.13.0", "~=2.13"), CorpusError);
  EXPECT_THROW(version_matches("2.13.0", "2.13"), CorpusError);
}

// Negative controls for the exported-program path, at the library level: on a copy of simple_cnn, a golden moved
// beyond tolerance fails the AOTInductor run (and every other artifact) at its index; a damaged .pt2 is an error
// naming the file; a program whose hash no package matches is an error naming `torchconform compile`.
TEST(NegativeControl, ExportedProgramPath) {
  ASSERT_NE(corpus(), nullptr);
  const CaseSpec& golden = find_case("simple_cnn");
  const auto program = std::find_if(golden.variants.begin(), golden.variants.end(),
                                    [](const VariantSpec& v) { return v.kind == VariantKind::kExportedProgram; });
  if (program == golden.variants.end()) GTEST_SKIP() << "this corpus's simple_cnn has no exported program";
  const fs::path tmp = fs::temp_directory_path() / ("torchconform_negctl_" + std::to_string(::getpid()));
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  fs::copy(golden.dir, tmp / "simple_cnn", fs::copy_options::recursive);
  CaseSpec c = golden;
  c.dir = tmp / "simple_cnn";
  c.root = fs::canonical(tmp);  // files are resolved (and must stay) inside the corpus root
  c.sets.erase(std::remove_if(c.sets.begin(), c.sets.end(), [](const auto& s) { return s.name != "b4_32x32"; }),
               c.sets.end());
  ASSERT_EQ(c.sets.size(), 1u);
  RunOptions options;
  apply_policy(options);
  const std::string label = program->name + "@aoti";
  auto row = [&](const std::vector<SetResult>& rs, const std::string& artifact) {
    auto it = std::find_if(rs.begin(), rs.end(), [&](const SetResult& r) { return r.artifact == artifact; });
    EXPECT_NE(it, rs.end()) << artifact;
    return it == rs.end() ? SetResult{} : *it;
  };
  ASSERT_EQ(row(run_case(c, options), label).verdict, Verdict::kPass);

  // A golden moved by 1e-3 at [2, 7]: written back with torch::pickle_save, re-signed in the in-memory manifest.
  auto expected = load_value(read_verified(c, c.sets[0].expected), "expected").toTensor().clone();
  expected.index_put_({2, 7}, expected.index({2, 7}) + 1e-3);
  const std::vector<char> bytes = torch::pickle_save(expected);
  std::ofstream(c.dir / c.sets[0].expected.file, std::ios::binary).write(bytes.data(), bytes.size());
  c.sets[0].expected.sha256 = sha256_hex(bytes.data(), bytes.size());
  c.sets[0].expected.bytes = bytes.size();
  const auto moved = run_case(c, options);
  for (const std::string& artifact : {std::string(), std::string("frozen"), std::string("passes"), label}) {
    const SetResult r = row(moved, artifact);
    EXPECT_EQ(r.verdict, Verdict::kFail) << format_result(r);
    ASSERT_NE(r.comparison.first_failure(), nullptr) << format_result(r);
    EXPECT_EQ(r.comparison.first_failure()->worst_index, "[2, 7]");
  }

  // A damaged program: the hash says so; vouched for, no package matches it any more.
  VariantSpec& v = *std::find_if(c.variants.begin(), c.variants.end(),
                                 [&](const VariantSpec& x) { return x.name == program->name; });
  const fs::path pt2 = c.dir / v.file->file;
  std::string data;
  {
    std::ifstream in(pt2, std::ios::binary);
    data.assign(std::istreambuf_iterator<char>(in), {});
  }
  data[data.size() / 2] ^= 0x10;
  std::ofstream(pt2, std::ios::binary | std::ios::trunc).write(data.data(), data.size());
  SetResult r = row(run_case(c, options), label);
  EXPECT_EQ(r.verdict, Verdict::kError);
  EXPECT_NE(r.error.find(v.file->file + ": SHA-256 mismatch"), std::string::npos) << r.error;
  v.file->sha256 = sha256_hex(data.data(), data.size());
  r = row(run_case(c, options), label);
  EXPECT_EQ(r.verdict, Verdict::kError);
  EXPECT_NE(r.error.find("no AOTInductor package"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("torchconform compile"), std::string::npos) << r.error;
  fs::remove_all(tmp);
}

// An exported program's output structure comes from its own treespec (program_spec.cpp), never from first-wins
// parsing or the manifest: a dict key named twice (torch's pytree keeps the last value, a first-wins reader the
// first, so one value would go uncompared) and a manifest that lists a dataclass's fields in another order than the
// program (the outputs would be compared swapped) are refused.
namespace {
const std::string kLeaf = R"({"type": null, "context": null, "children_spec": []})";

nlohmann::json node(const std::string& type, const std::string& context, int children) {
  std::string kids;
  for (int i = 0; i < children; ++i) kids += (i ? "," : "") + kLeaf;
  return nlohmann::json::parse(R"({"type": ")" + type + R"(", "context": )" + nlohmann::json(context).dump() +
                               R"(, "children_spec": [)" + kids + "]}");
}
}  // namespace

TEST(ProgramSpec, RepeatedDictKeysAreRefused) {
  const VariantSpec v;
  const std::vector<at::Tensor> flat = {torch::zeros({2}), torch::ones({2})};
  const auto ok = program_outputs(node("builtins.dict", R"(["a", "b"])", 2), flat, v, "who").toGenericDict();
  EXPECT_EQ(ok.size(), 2u);  // the control
  try {
    program_outputs(node("builtins.dict", R"(["a", "a"])", 2), flat, v, "who");
    FAIL() << "a repeated key was accepted";
  } catch (const CorpusError& e) {
    EXPECT_NE(std::string(e.what()).find("dict keys 'a' appear twice"), std::string::npos) << e.what();
  }
}

TEST(ProgramSpec, DataclassFieldsComeFromTheProgram) {
  VariantSpec v;
  PytreeType t;
  t.name = "m.Out";
  t.kind = PytreeType::Kind::kDataclass;
  t.fields = {"b", "a"};
  t.none_fields = {"c"};
  v.pytree_types.push_back(t);
  const std::vector<at::Tensor> flat = {torch::zeros({2}), torch::ones({2})};
  const auto spec = node("m.Out", R"([["b", "a"], ["c"]])", 2);
  const auto out = program_outputs(spec, flat, v, "who").toGenericDict();
  EXPECT_TRUE(out.at(c10::IValue("b")).toTensor().equal(flat[0]));  // named by the program's own order
  EXPECT_TRUE(out.at(c10::IValue("a")).toTensor().equal(flat[1]));
  EXPECT_TRUE(out.at(c10::IValue("c")).isNone());
  v.pytree_types[0].fields = {"a", "b"};  // a re-signed manifest that swaps them
  EXPECT_THROW(program_outputs(spec, flat, v, "who"), CorpusError);
  v.pytree_types[0].fields = {"b", "a"};
  EXPECT_THROW(program_outputs(node("m.Out", R"([["b", "b"], ["c"]])", 2), flat, v, "who"), CorpusError);
}
