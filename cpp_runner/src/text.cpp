// Corpus text made safe to print (one definition for the CLI, the reports and Python through the bindings).
#include <torchconform/corpus.h>

#include <cstdio>

namespace torchconform {
namespace {

// Code points that are valid UTF-8 but reorder, hide or break what a terminal, a browser or an editor shows: C1
// controls (U+009B is CSI, a terminal escape on its own), bidirectional overrides and isolates (U+202E made
// "PASS" read backwards), zero-width characters, line and paragraph separators, the byte-order mark.
bool invisible(uint32_t cp) {
  return (cp >= 0x80 && cp <= 0x9f) || cp == 0x061c || (cp >= 0x200b && cp <= 0x200f) ||
         (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2060 && cp <= 0x2069) || cp == 0xfeff ||
         (cp >= 0xfff9 && cp <= 0xfffb);
}

}  // namespace

std::string printable(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  char buf[16];
  for (size_t i = 0; i < n;) {
    const unsigned char b = p[i];
    if (b >= 0x20 && b < 0x7f) {
      out += static_cast<char>(b);
      ++i;
      continue;
    }
    // Length of a well-formed UTF-8 sequence starting here (no overlongs, no surrogates), else 0.
    size_t len = 0;
    if (b >= 0xc2 && b <= 0xdf) len = 2;
    else if (b >= 0xe0 && b <= 0xef) len = 3;
    else if (b >= 0xf0 && b <= 0xf4) len = 4;
    bool ok = len > 0 && i + len <= n;
    for (size_t k = 1; ok && k < len; ++k) ok = (p[i + k] & 0xc0) == 0x80;
    if (ok && len == 3) ok = !(b == 0xe0 && p[i + 1] < 0xa0) && !(b == 0xed && p[i + 1] >= 0xa0);
    if (ok && len == 4) ok = !(b == 0xf0 && p[i + 1] < 0x90) && !(b == 0xf4 && p[i + 1] >= 0x90);
    if (!ok) {  // control character, DEL or a byte that is not UTF-8
      std::snprintf(buf, sizeof buf, "\\x%02x", b);
      out += buf;
      ++i;
      continue;
    }
    uint32_t cp = b & (0x7f >> len);
    for (size_t k = 1; k < len; ++k) cp = cp << 6 | (p[i + k] & 0x3f);
    if (invisible(cp)) {
      std::snprintf(buf, sizeof buf, "\\u%04x", cp);
      out += buf;
    } else {
      out.append(text, i, len);
    }
    i += len;
  }
  return out;
}

}  // namespace torchconform
