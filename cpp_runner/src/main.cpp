// torchconform-run: verify a torchconform corpus with LibTorch, no Python involved.
#include <torchconform/runner.h>

#include <cstdlib>
#include <iostream>
#include <string>

namespace {

constexpr const char* kUsage =
    "usage: torchconform-run <corpus-dir> [--case GLOB]... [--device cpu|cuda|all] [--threads N] [--repeat N]\n"
    "                        [--json FILE] [--junit FILE] [--timeout SECONDS] [--no-isolate] [--quiet]\n"
    "                        [--aoti-cache DIR]\n"
    "Each case runs in its own child process (a crash or a hang is reported as CRASH / TIMEOUT for that case);\n"
    "--no-isolate runs everything in this process (and refuses --timeout, which it could not enforce).\n"
    "--timeout is per case, in seconds (default 600).\n"
    "--aoti-cache: where `torchconform compile` put the AOTInductor packages of the corpus's exported programs\n"
    "(default: $TORCHCONFORM_AOTI_CACHE, else $XDG_CACHE_HOME/torchconform/aoti, else ~/.cache/torchconform/aoti).\n"
    "exit status: 0 all input sets pass (or fail as marked xfail), 1 a mismatch or an unexpected pass,\n"
    "             2 a usage, corpus or load error, a crash or a timeout\n";

using torchconform::UsageError;

int to_int(const std::string& flag, const std::string& v, int min) {
  char* end = nullptr;
  const long n = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end || n < min || n > 1 << 16)
    throw UsageError(flag + " expects an integer >= " + std::to_string(min) + ", got '" + v + "'");
  return static_cast<int>(n);
}

double to_seconds(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  const double s = std::strtod(v.c_str(), &end);
  if (v.empty() || *end || !(s > 0) || s > 1e7) throw UsageError(flag + " expects seconds > 0, got '" + v + "'");
  return s;
}

torchconform::VerifyOptions parse(int argc, char** argv, bool& quiet) {
  torchconform::VerifyOptions o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError(arg + " expects a value");
      return argv[++i];
    };
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      std::exit(0);
    } else if (arg == "--case") o.cases.push_back(value());
    else if (arg == "--device") o.device = value();
    else if (arg == "--threads") o.threads = to_int(arg, value(), 1);
    else if (arg == "--repeat") o.repeat = to_int(arg, value(), 1);
    else if (arg == "--json") o.json = value();
    else if (arg == "--junit") o.junit = value();
    else if (arg == "--timeout") o.timeout = to_seconds(arg, value());
    else if (arg == "--no-isolate") o.isolate = false;
    else if (arg == "--aoti-cache") o.aoti_cache = value();
    else if (arg == "--quiet") quiet = true;
    else if (!arg.empty() && arg[0] == '-') throw UsageError("unknown option " + arg);
    else if (o.corpus.empty()) o.corpus = arg;
    else throw UsageError("more than one corpus directory given ('" + o.corpus + "', '" + arg + "')");
  }
  if (o.corpus.empty()) throw UsageError("no corpus directory given");
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    bool quiet = false;
    const auto options = parse(argc, argv, quiet);
    const auto outcome = torchconform::verify(
        options, [](const std::string& line) { std::cout << line << std::endl; },
        [quiet](const std::string& line) {
          if (!quiet) std::cerr << line << std::endl;
        });
    return outcome.exit_code;
  } catch (const UsageError& e) {
    std::cerr << "torchconform-run: " << e.what() << "\n" << kUsage;
    return 2;
  } catch (const torchconform::CorpusError& e) {
    std::cerr << "torchconform-run: error: " << e.what() << "\n";
    return 2;
  } catch (const c10::Error& e) {
    std::cerr << "torchconform-run: error: " << torchconform::printable(e.what_without_backtrace()) << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "torchconform-run: error: " << torchconform::printable(e.what()) << "\n";
    return 2;
  }
}
