// Reporters: a verification produces typed results; each reporter only renders them (in the style of
// google/benchmark's console_reporter / json_reporter). Internal: verify() drives them.
#pragma once

#include <torchconform/runner.h>

#include <memory>
#include <string>
#include <vector>

namespace torchconform {

class Reporter {
 public:
  virtual ~Reporter() = default;
  // Before any case runs: the corpus, the selected cases, how the corpus was named, devices skipped ("" if none).
  virtual void begin(const Corpus& corpus, const std::vector<const CaseSpec*>& cases, const std::string& corpus_label,
                     const std::string& skipped) {}
  virtual void device(const std::string& policy) {}  // a device's run starts, under this policy
  virtual void result(const SetResult& r) {}         // as soon as it is known
  virtual void end(const std::vector<SetResult>& results) {}
};

std::unique_ptr<Reporter> console_reporter(LineSink out);  // the lines torchconform-run prints
// report.json (docs/report-schema.json), written to `path` unless it is empty, and kept in `document`.
std::unique_ptr<Reporter> json_reporter(std::string path, std::string* document);
std::unique_ptr<Reporter> junit_reporter(std::string path);  // JUnit XML

}  // namespace torchconform
