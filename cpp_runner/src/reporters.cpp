// Rendering results: the result line, the summary, and the console, JSON and JUnit reporters.
#include "reporters.h"

#include "results_json.h"

#include <fstream>
#include <cmath>
#include <sstream>

namespace torchconform {
namespace {

std::string fmt(double v) {
  std::ostringstream os;
  os.precision(3);
  os << v;
  return os.str();
}

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    switch (ch) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += ch;
    }
  }
  return out;
}

class Console final : public Reporter {
 public:
  explicit Console(LineSink out) : out_(std::move(out)) {}
  void begin(const Corpus& corpus, const std::vector<const CaseSpec*>& cases, const std::string& label,
             const std::string& skipped) override {
    size_t n_sets = 0, n_variants = 0;
    for (const auto* c : cases) n_sets += c->sets.size(), n_variants += c->variants.size();
    std::ostringstream banner;
    banner << "corpus " << label << ": " << cases.size() << " cases, " << n_sets << " input sets, " << n_variants
           << " variants, exported with torch " << corpus.exported_torch << " / python " << corpus.exported_python
           << (corpus.exported_cpu_capability.empty() ? "" : " (CPU " + corpus.exported_cpu_capability + ")")
           << "; runtime LibTorch " << libtorch_version() << " (CPU " << cpu_capability()
           << "); corpus.json sha256 " << corpus.index_sha256;
    out_(printable(banner.str()));
    std::string rt = "runtimes:";
    for (const auto& r : runtimes()) rt += " " + r.name + (r.available ? " yes;" : " NO (" + r.detail + ");");
    out_(rt.substr(0, rt.size() - 1));
    if (!skipped.empty()) out_(skipped);
  }
  void device(const std::string& policy) override { out_("policy: " + policy); }
  // A multi-line message (TorchScript's errors quote the failing source over several lines) is printed as indented
  // "| " lines below its result line. The text stays escaped: only the escape of a line feed is shown as a break,
  // and what follows it is indented, so nothing from a corpus can print a line that starts like a result.
  void result(const SetResult& r) override {
    const std::string line = format_result(r);
    const std::string lf = "\\x0a";
    size_t start = 0;
    for (size_t at = line.find(lf); at != std::string::npos; at = line.find(lf, start)) {
      const std::string part = line.substr(start, at - start);
      if (!part.empty() && part.find_first_not_of(' ') != std::string::npos) out_(start ? "      | " + part : part);
      start = at + lf.size();
    }
    out_(start ? "      | " + line.substr(start) : line);
    // The localisation under it: what was replayed, then every diverging submodule (innermost first) and the ones
    // that could not be replayed. (Names come from the corpus: escaped.)
    const Localization& l = r.localization;
    if (!l.note.empty()) out_(printable("      | localize: " + l.note));
    size_t shown = 0;
    for (const auto& k : l.checks) {
      if (k.replayed && k.comparison.ok) continue;
      if (++shown > 12) {
        out_("      |   ... (the JSON report has every submodule)");
        break;
      }
      out_(printable("      |   " + k.path + " (" + (k.method.empty() ? "-" : k.method) + ", call " +
                     std::to_string(k.call) + "): " + (k.replayed ? k.comparison.summary() : "not replayed: " +
                                                                                                k.why_not)));
    }
  }
  void end(const std::vector<SetResult>& results) override { out_(format_summary(results)); }

 private:
  LineSink out_;
};

class Json final : public Reporter {
 public:
  Json(std::string path, std::string* document) : path_(std::move(path)), document_(document) {}
  void begin(const Corpus& corpus, const std::vector<const CaseSpec*>&, const std::string&,
             const std::string& skipped) override {
    head_["corpus"] = corpus.root.string();
    head_["corpus_sha256"] = corpus.index_sha256;
    head_["exported_with"] = {{"torch", corpus.exported_torch}, {"python", corpus.exported_python}};
    skipped_ = skipped;
  }
  void device(const std::string& policy) override { policies_ += (policies_.empty() ? "" : "; ") + policy; }
  void end(const std::vector<SetResult>& results) override {
    using nlohmann::json;
    json out = head_;
    out["runtime"] = {{"libtorch", libtorch_version()}, {"cpu_capability", cpu_capability()}, {"policy", policies_},
                      {"skipped", skipped_}};
    json rts = json::object();
    for (const auto& r : runtimes()) rts[r.name] = {{"available", r.available}, {"detail", r.detail}};
    out["runtimes"] = rts;
    const Summary s = summarize(results);
    out["summary"] = {{"passed", s.passed},   {"failed", s.failed},       {"errors", s.errors},
                      {"crashed", s.crashed}, {"timed_out", s.timed_out}, {"xfailed", s.xfailed},
                      {"xpassed", s.xpassed}, {"loosened", s.loosened},   {"verified", s.verified()},
                      {"weak", s.weak},       {"elements", s.elements},   {"exit_code", s.exit_code()}};
    out["results"] = results;
    // ensure_ascii: corpus text (reasons, messages) is kept whole but every non-ASCII character is a \u escape, so a
    // tool that prints a field of this file cannot be handed a raw control or bidirectional character either.
    const std::string text = out.dump(2, ' ', true, json::error_handler_t::replace) + "\n";
    if (document_) *document_ = text;
    if (path_.empty()) return;
    std::ofstream f(path_);
    if (!f) throw std::runtime_error("cannot write JSON report " + path_);
    f << text;
  }

 private:
  std::string path_, policies_, skipped_;
  std::string* document_;
  nlohmann::json head_;
};

class JUnit final : public Reporter {
 public:
  explicit JUnit(std::string path) : path_(std::move(path)) {}
  void end(const std::vector<SetResult>& results) override {
    const Summary s = summarize(results);
    std::ofstream f(path_);
    if (!f) throw std::runtime_error("cannot write JUnit report " + path_);
    f << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      << "<testsuite name=\"torchconform\" tests=\"" << results.size() << "\" failures=\"" << s.failed
      << "\" errors=\"" << s.errors + s.crashed + s.timed_out << "\" skipped=\"" << s.xfailed << "\" time=\""
      << s.seconds << "\">\n";
    for (const auto& r : results) {
      // printable() first: XML 1.0 cannot hold most control characters, even as character references.
      f << "  <testcase classname=\"" << xml_escape(printable(r.case_name)) << "\" name=\""
        << xml_escape(printable((r.artifact.empty() ? "" : r.artifact + "/") + r.set_name + "[" + r.device + "]"))
        << "\" time=\"" << r.seconds << "\">";
      const std::string line = xml_escape(format_result(r));
      switch (r.verdict) {
        case Verdict::kFail:
        case Verdict::kXPass: f << "<failure message=\"" << line << "\"/>"; break;
        case Verdict::kError:
        case Verdict::kCrash:
        case Verdict::kTimeout: f << "<error message=\"" << line << "\"/>"; break;
        case Verdict::kXFail: f << "<skipped message=\"" << line << "\"/>"; break;
        case Verdict::kPass: break;
      }
      f << "</testcase>\n";
    }
    f << "</testsuite>\n";
  }

 private:
  std::string path_;
};

}  // namespace

std::unique_ptr<Reporter> console_reporter(LineSink out) { return std::make_unique<Console>(std::move(out)); }
std::unique_ptr<Reporter> json_reporter(std::string path, std::string* document) {
  return std::make_unique<Json>(std::move(path), document);
}
std::unique_ptr<Reporter> junit_reporter(std::string path) { return std::make_unique<JUnit>(std::move(path)); }

std::string format_result(const SetResult& r) {
  std::ostringstream os;
  const std::string verdict = to_string(r.verdict);
  os << verdict << std::string(verdict.size() < 6 ? 6 - verdict.size() : 1, ' ') << result_id(r) << " ["
     << r.device << "] ";
  if (!r.error.empty()) {
    os << r.error;
  } else {
    os << r.comparison.summary();
    if (r.has_reference) os << "; vs artifact: " << r.vs_artifact.summary();
    if (r.failed_call) os << " (call " << r.failed_call << ")";
    // A tolerance other than the dtype's default is part of what the verdict means: it is on the line.
    const std::string note = r.comparison.tolerance_note();
    if (!note.empty()) os << " [" << note << "]";
    const std::string ref_note = r.has_reference ? r.vs_artifact.tolerance_note() : "";
    if (!ref_note.empty() && ref_note != note) os << " [vs artifact " << ref_note << "]";
    // A golden that checks little is judged from its values here, whatever the manifest says about it.
    const std::string weak = r.comparison.weak_note();
    if (!weak.empty()) os << " [golden checks little: " << weak << "]";
  }
  if (!r.xfail_reason.empty()) os << " [xfail: " << r.xfail_reason << "]";
  if (!r.localization.first_divergence.empty())
    os << " [first diverging submodule: " << r.localization.first_divergence << "]";
  if (r.envelope.present && r.error.empty()) {
    std::ostringstream e;
    e.precision(2);
    if (std::isinf(r.envelope.ratio)) e << "inf"; else e << r.envelope.ratio;
    os << " [noise envelope: " << e.str() << "x" << (r.envelope.within ? "" : ", outside") << "]";
  }
  os << " (" << fmt(r.seconds * 1000) << " ms)";
  // Everything on the line that came from a corpus (names, reasons, messages) is escaped once more as a whole: no
  // byte of it can end the line, move the cursor or reorder what a terminal shows.
  return printable(os.str());
}

Summary summarize(const std::vector<SetResult>& results) {
  Summary s;
  for (const auto& r : results) {
    switch (r.verdict) {
      case Verdict::kPass: ++s.passed; break;
      case Verdict::kFail: ++s.failed; break;
      case Verdict::kError: ++s.errors; break;
      case Verdict::kCrash: ++s.crashed; break;
      case Verdict::kTimeout: ++s.timed_out; break;
      case Verdict::kXFail: ++s.xfailed; break;
      case Verdict::kXPass: ++s.xpassed; break;
    }
    const bool passed = r.verdict == Verdict::kPass || r.verdict == Verdict::kXPass;
    if (passed && loosened(r)) ++s.loosened;
    if (passed && !r.comparison.weak_note().empty()) ++s.weak;
    if (passed || r.verdict == Verdict::kFail) s.elements += r.comparison.total();
    s.seconds += r.seconds;
  }
  return s;
}

std::string format_summary(const std::vector<SetResult>& results) {
  const Summary s = summarize(results);
  std::ostringstream os;
  os << "summary: " << s.passed << " passed";
  if (s.loosened || s.weak) {
    os << " (";
    if (s.loosened) os << s.loosened << " under a LOOSENED tolerance" << (s.weak ? ", " : "");
    if (s.weak) os << s.weak << " on a golden that checks little";
    os << ")";
  }
  os << ", " << s.failed << " failed, " << s.errors << " errors, " << s.crashed << " crashed, " << s.timed_out
     << " timed out, " << s.xfailed << " xfailed, " << s.xpassed << " xpassed (" << results.size()
     << " input-set runs, " << s.elements << " elements compared, " << fmt(s.seconds) << " s)";
  if (s.verified() == 0) os << "; NOTHING WAS VERIFIED: no result compared an output with its golden";
  return os.str();
}

}  // namespace torchconform
