// torchconform-run: verify a torchconform corpus with LibTorch, no Python involved. The options are the core's one
// table (parse_verify_args), shared with `torchconform verify`.
#include <torchconform/runner.h>

#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  const std::string usage = torchconform::verify_usage("torchconform-run");
  if (std::any_of(args.begin(), args.end(), [](const std::string& a) { return a == "-h" || a == "--help"; })) {
    std::cout << usage;
    return 0;
  }
  if (std::any_of(args.begin(), args.end(), [](const std::string& a) { return a == "--version"; })) {
    std::cout << "torchconform-run " << torchconform::torchconform_version() << " (LibTorch "
              << torchconform::libtorch_version() << ")\n";
    return 0;
  }
  try {
    const auto options = torchconform::parse_verify_args(args);
    const auto outcome = torchconform::verify(
        options, [](const std::string& line) { std::cout << line << std::endl; },
        [](const std::string& line) { std::cerr << line << std::endl; });
    return outcome.exit_code;
  } catch (const torchconform::UsageError& e) {
    std::cerr << "torchconform-run: " << e.what() << "\n" << usage;
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
