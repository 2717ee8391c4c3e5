// Version conditions of xfail marks ("<2.14", ">=2.13.0,<3"): the one implementation (the compat face applies it
// through the bindings to the PyTorch it judges).
#include <torchconform/corpus.h>

#include <algorithm>
#include <cctype>
#include <sstream>
#include <vector>

namespace torchconform {

bool version_matches(const std::string& version, const std::string& spec) {
  // "2.13.0+cpu" -> {2, 13, 0}; missing components count as 0 ("2.14" == "2.14.0").
  auto numbers = [](const std::string& text) {
    std::vector<long> out;
    size_t i = 0;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
      size_t end = i;
      while (end < text.size() && std::isdigit(static_cast<unsigned char>(text[end]))) ++end;
      out.push_back(std::stol(text.substr(i, end - i)));
      if (end >= text.size() || text[end] != '.') break;
      i = end + 1;
    }
    return out;
  };
  auto cmp = [](std::vector<long> a, std::vector<long> b) {
    a.resize(std::max(a.size(), b.size()));
    b.resize(a.size());
    return a < b ? -1 : a > b ? 1 : 0;
  };
  const auto have = numbers(version);
  std::stringstream clauses(spec);
  for (std::string clause; std::getline(clauses, clause, ',');) {
    clause.erase(std::remove(clause.begin(), clause.end(), ' '), clause.end());
    size_t n = clause.find_first_of("0123456789");
    if (n == 0 || n == std::string::npos) throw CorpusError("torch version condition '" + spec + "': bad clause");
    const std::string op = clause.substr(0, n);
    const int c = cmp(have, numbers(clause.substr(n)));
    const bool ok = op == "==" ? c == 0 : op == "!=" ? c != 0 : op == "<" ? c < 0 : op == "<=" ? c <= 0
                  : op == ">" ? c > 0 : op == ">=" ? c >= 0 : throw CorpusError("torch version condition '" +
                                                                                spec + "': bad operator " + op);
    if (!ok) return false;
  }
  return true;
}

bool Mark::applies_to(const std::string& torch_version, const std::string& device_type) const {
  return (device.empty() || device == device_type) && (torch.empty() || version_matches(torch_version, torch));
}

}  // namespace torchconform
