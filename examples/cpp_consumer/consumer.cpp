// The runner library from a C++ program of your own: open a corpus (hash-checked), run each case in this process on
// the CPU and print one line per result; exit 0 only when every result passes or fails as marked.
#include <torchconform/runner.h>

#include <iostream>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: consumer <corpus-dir>\n";
    return 2;
  }
  try {
    const torchconform::Corpus corpus = torchconform::Corpus::open(argv[1]);
    torchconform::RunOptions options;
    options.threads = corpus.exported_threads;
    torchconform::apply_policy(options);
    std::vector<torchconform::SetResult> all;
    for (const auto* c : corpus.select({})) {
      for (auto& r : torchconform::run_case(*c, options, {}, {})) {
        std::cout << torchconform::format_result(r) << "\n";
        all.push_back(std::move(r));
      }
    }
    const auto summary = torchconform::summarize(all);
    std::cout << torchconform::format_summary(all) << "\n";
    return summary.exit_code();
  } catch (const std::exception& e) {
    std::cerr << "consumer: " << e.what() << "\n";
    return 2;
  }
}
