// torchconform-run: verify a torchconform corpus with LibTorch, no Python involved.
#include <torchconform/runner.h>

#include <torch/cuda.h>

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

namespace {

constexpr const char* kUsage =
    "usage: torchconform-run <corpus-dir> [--case GLOB]... [--device cpu|cuda|all] [--threads N] [--repeat N]\n"
    "                        [--json FILE] [--junit FILE] [--quiet]\n"
    "exit status: 0 all input sets pass, 1 a mismatch, 2 a usage, corpus or load error\n";

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Args {
  std::string corpus;
  std::vector<std::string> cases;
  std::string device = "cpu";
  int threads = 0;
  int repeat = 2;
  std::string json, junit;
  bool quiet = false;
};

int to_int(const std::string& flag, const std::string& v, int min) {
  char* end = nullptr;
  const long n = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end || n < min || n > 1 << 16)
    throw UsageError(flag + " expects an integer >= " + std::to_string(min) + ", got '" + v + "'");
  return static_cast<int>(n);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError(arg + " expects a value");
      return argv[++i];
    };
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      std::exit(0);
    } else if (arg == "--case") a.cases.push_back(value());
    else if (arg == "--device") a.device = value();
    else if (arg == "--threads") a.threads = to_int(arg, value(), 1);
    else if (arg == "--repeat") a.repeat = to_int(arg, value(), 1);
    else if (arg == "--json") a.json = value();
    else if (arg == "--junit") a.junit = value();
    else if (arg == "--quiet") a.quiet = true;
    else if (!arg.empty() && arg[0] == '-') throw UsageError("unknown option " + arg);
    else if (a.corpus.empty()) a.corpus = arg;
    else throw UsageError("more than one corpus directory given ('" + a.corpus + "', '" + arg + "')");
  }
  if (a.corpus.empty()) throw UsageError("no corpus directory given");
  if (a.device != "cpu" && a.device != "cuda" && a.device != "all")
    throw UsageError("--device must be cpu, cuda or all, got '" + a.device + "'");
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace torchconform;
  Args args;
  try {
    args = parse(argc, argv);
  } catch (const UsageError& e) {
    std::cerr << "torchconform-run: " << e.what() << "\n" << kUsage;
    return 2;
  }
  try {
    const Corpus corpus = Corpus::open(args.corpus);
    const auto cases = corpus.select(args.cases);

    std::vector<c10::Device> devices;
    const bool cuda = torch::cuda::is_available();
    if (args.device == "cuda" && !cuda) {
      std::cerr << "torchconform-run: --device cuda: CUDA is not available to this LibTorch (" << libtorch_version()
                << (torch::cuda::device_count() ? "" : ", no CUDA device") << ")\n";
      return 2;
    }
    if (args.device != "cuda") devices.emplace_back(c10::kCPU);
    if (args.device != "cpu" && cuda) devices.emplace_back(c10::kCUDA);

    size_t n_sets = 0;
    for (const auto* c : cases) n_sets += c->sets.size();
    std::cout << "corpus " << args.corpus << ": " << cases.size() << " cases, " << n_sets
              << " input sets, exported with torch " << corpus.exported_torch << " / python "
              << corpus.exported_python << "; runtime LibTorch " << libtorch_version() << "\n";
    if (args.device == "all" && !cuda) std::cout << "skipped device cuda: CUDA is not available to this LibTorch\n";

    std::vector<SetResult> all;
    for (const auto& device : devices) {
      RunOptions options;
      options.device = device;
      options.threads = args.threads;
      options.repeat = args.repeat;
      apply_policy(options);
      std::cout << "policy: " << describe_policy(options) << "\n";
      for (size_t i = 0; i < cases.size(); ++i) {
        if (!args.quiet)
          std::cerr << "[" << i + 1 << "/" << cases.size() << "] " << cases[i]->name << " on " << device.str()
                    << "\n";
        for (auto& r : run_case(*cases[i], options)) {
          std::cout << format_result(r) << "\n";
          all.push_back(std::move(r));
        }
      }
      if (!args.json.empty()) write_json_report(args.json, corpus, options, all);
    }
    if (!args.junit.empty()) write_junit_report(args.junit, all);
    const Summary s = summarize(all);
    std::cout << "summary: " << s.passed << " passed, " << s.failed << " failed, " << s.errors << " errors ("
              << all.size() << " input-set runs, " << s.seconds << " s)\n";
    return s.exit_code();
  } catch (const CorpusError& e) {
    std::cerr << "torchconform-run: error: " << e.what() << "\n";
    return 2;
  } catch (const c10::Error& e) {
    std::cerr << "torchconform-run: error: " << e.what_without_backtrace() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "torchconform-run: error: " << e.what() << "\n";
    return 2;
  }
}
