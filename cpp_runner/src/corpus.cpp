// Opening a corpus: corpus.json, each manifest hash-checked against it and parsed (manifest.cpp), case selection,
// and reading a case's files hash-checked against its manifest.
#include <torchconform/corpus.h>

#include "files.h"
#include "manifest.h"
#include "schema.h"

#include <fnmatch.h>

#include <algorithm>
#include <set>

namespace torchconform {
namespace fs = std::filesystem;
using nlohmann::json;

std::string read_verified(const CaseSpec& c, const FileRef& ref) {
  const std::string who = c.name + "/" + ref.file;
  check_relative_path(ref.file, c.name);
  const std::string bytes = read_inside(c.root, c.name + "/" + ref.file, ref.bytes, kMaxUndeclaredBytes, c.name);
  if (bytes.empty()) throw CorpusError(who + ": file is empty");
  const std::string got = sha256_hex(bytes.data(), bytes.size());
  if (got != ref.sha256)
    throw CorpusError(who + ": SHA-256 mismatch (manifest " + ref.sha256 + ", file " + got + ")");
  return bytes;
}

std::string read_case_file(const CaseSpec& c, const std::string& rel) {
  if (!c.error.empty()) throw CorpusError(c.error);
  std::vector<const FileRef*> refs;
  if (c.has_artifact) refs.push_back(&c.artifact);
  for (const auto& v : c.variants) {
    if (v.file) refs.push_back(&*v.file);
    if (v.bundled) refs.push_back(&*v.bundled);
  }
  for (const auto& s : c.sets) {
    refs.push_back(&s.inputs);
    refs.push_back(&s.expected);
    if (s.submodules) refs.push_back(&*s.submodules);
  }
  for (const FileRef* ref : refs)
    if (ref->file == rel) return read_verified(c, *ref);
  throw CorpusError(c.name + ": '" + rel + "' is not a file its manifest declares; refused");
}

Corpus Corpus::open(const fs::path& root) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) throw CorpusError(root.string() + ": not a corpus directory");
  // Every file of the corpus is resolved against this path and must stay inside it (files.h).
  const fs::path real_root = fs::canonical(root, ec);
  if (ec) throw CorpusError(root.string() + ": cannot resolve the corpus directory: " + ec.message());
  const std::string index_who = (root / "corpus.json").string();
  if (!fs::exists(root / "corpus.json", ec) && !fs::is_symlink(root / "corpus.json", ec))
    throw CorpusError(root.string() + ": no corpus.json (not a torchconform corpus, or an empty directory)");
  const std::string index_text = read_inside(real_root, "corpus.json", std::nullopt, kMaxJsonBytes, index_who);
  const json index = parse_json(index_text, index_who);
  require_valid("corpus", index, index_who);
  check_format(index, index_who);
  Corpus corpus;
  corpus.root = root;
  corpus.index_sha256 = sha256_hex(index_text.data(), index_text.size());
  corpus.format_version = index.at("format_version").get<int>();
  corpus.exported_torch = index.at("exported_with").at("torch").get<std::string>();
  corpus.exported_python = index.at("exported_with").at("python").get<std::string>();
  corpus.exported_threads = index.at("exported_with").value("threads", 0);
  corpus.exported_cpu_capability = index.at("exported_with").value("cpu_capability", "");
  std::set<std::string> seen;
  for (const json& entry : index.at("cases")) {  // (the schema checked the shape of every entry)
    const std::string name = entry.at("name").get<std::string>();
    if (!seen.insert(name).second) throw CorpusError(index_who + ": case '" + name + "' listed twice");
    if (name.empty() || name.size() > 128 || name[0] < 'a' || name[0] > 'z' ||
        name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") != std::string::npos)
      throw CorpusError(index_who + ": case name '" + name + "' is not [a-z][a-z0-9_]*");
    const FileRef ref{entry.at("manifest").get<std::string>(), entry.at("sha256").get<std::string>(), std::nullopt};
    const fs::path dir = root / name;
    try {
      // A case directory must be a real directory inside the corpus, not a link to somewhere else.
      if (fs::is_symlink(dir, ec)) throw CorpusError(name + ": case directory is a symbolic link");
      if (!fs::is_directory(dir, ec)) throw CorpusError(name + ": case directory " + dir.string() + " is missing");
      if (ref.file != name + "/manifest.json")
        throw CorpusError(name + ": corpus.json points at manifest '" + ref.file + "', expected " + name +
                          "/manifest.json");
      const std::string text = read_inside(real_root, ref.file, std::nullopt, kMaxJsonBytes, name);
      if (sha256_hex(text.data(), text.size()) != ref.sha256)
        throw CorpusError(name + "/manifest.json: SHA-256 mismatch against corpus.json");
      corpus.cases.push_back(parse_case(dir, parse_json(text, name + "/manifest.json"), name));
      corpus.cases.back().root = real_root;
      corpus.cases.back().manifest_text = text;
    } catch (const std::exception& e) {
      CaseSpec broken;
      broken.name = name;
      broken.dir = dir;
      broken.root = real_root;
      broken.error = dynamic_cast<const CorpusError*>(&e) ? e.what() : name + "/manifest.json: " + e.what();
      corpus.cases.push_back(std::move(broken));
    }
  }
  if (corpus.cases.empty()) throw CorpusError(index_who + ": the corpus lists no cases");
  return corpus;
}

std::vector<const CaseSpec*> Corpus::select(const std::vector<std::string>& globs) const {
  std::vector<const CaseSpec*> out;
  if (globs.empty()) {
    for (const auto& c : cases) out.push_back(&c);
    return out;
  }
  for (const auto& g : globs) {
    bool hit = false;
    for (const auto& c : cases) {
      if (fnmatch(g.c_str(), c.name.c_str(), 0) != 0) continue;
      hit = true;
      if (std::find(out.begin(), out.end(), &c) == out.end()) out.push_back(&c);
    }
    if (!hit) {
      std::string known;
      for (const auto& c : cases) known += (known.empty() ? "" : ", ") + c.name;
      throw CorpusError("--case '" + g + "' matches no case in " + root.string() + " (cases: " + known + ")");
    }
  }
  return out;
}

}  // namespace torchconform
