// A regular-expression matcher for the schema's `pattern` keyword that cannot blow the stack or take exponential
// time on hostile text: patterns are compiled to a Thompson NFA and run as a Pike VM (one pass over the text, a
// bounded set of threads, no recursion over the text). libstdc++'s std::regex recurses once per character and
// crashed the runner on a ~26,000-character string (issue: hostile corpus).
//
// The dialect is the common subset of ECMAScript and Python `re` that JSON Schema patterns use: literals, `.`,
// escapes (\d \D \w \W \s \S \t \n \r \f \v \xHH and escaped punctuation), classes `[a-z_]` `[^/]`, groups `( )` and
// `(?: )`, alternation `|`, quantifiers `* + ? {m} {m,} {m,n}` (greedy or lazy: the VM reports only whether a match
// exists), anchors `^ $`. No backreferences and no lookaround: a pattern using them is refused when compiled.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace torchconform {

class Pattern {
 public:
  // Throws std::invalid_argument naming the pattern and the unsupported construct.
  explicit Pattern(const std::string& pattern);
  ~Pattern();
  Pattern(Pattern&&) noexcept;
  Pattern& operator=(Pattern&&) noexcept;

  // JSON Schema semantics (like Python's re.search / ECMAScript RegExp.test): the pattern matches anywhere in the
  // text unless anchored. Bytes are matched one at a time (a multi-byte UTF-8 character is several "characters").
  bool search(const std::string& text) const;

 private:
  struct Program;
  std::unique_ptr<Program> program_;
};

}  // namespace torchconform
