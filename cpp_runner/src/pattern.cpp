#include "pattern.h"

#include <bitset>
#include <stdexcept>
#include <vector>

namespace torchconform {
namespace {

using ByteSet = std::bitset<256>;

// Parse tree of a pattern. The pattern is the schema's (compiled in), not corpus text, so a recursive-descent parser
// over it is safe; its nesting is capped anyway.
struct Node {
  enum Kind { kSet, kConcat, kAlt, kRepeat, kBol, kEol } kind = kConcat;
  ByteSet set;
  std::vector<Node> kids;
  int min = 0, max = 0;  // kRepeat; max -1: unbounded
};

class Parser {
 public:
  explicit Parser(const std::string& p) : p_(p) {}

  Node parse() {
    Node n = alternation(0);
    if (i_ != p_.size()) fail("unbalanced ')'");
    return n;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw std::invalid_argument("pattern '" + p_ + "': " + what + " at offset " + std::to_string(i_));
  }
  bool more() const { return i_ < p_.size(); }
  char peek() const { return p_[i_]; }

  Node alternation(int depth) {
    if (depth > 32) fail("nested too deeply");
    Node alt;
    alt.kind = Node::kAlt;
    alt.kids.push_back(concatenation(depth));
    while (more() && peek() == '|') {
      ++i_;
      alt.kids.push_back(concatenation(depth));
    }
    return alt.kids.size() == 1 ? std::move(alt.kids[0]) : alt;
  }

  Node concatenation(int depth) {
    Node cat;
    cat.kind = Node::kConcat;
    while (more() && peek() != '|' && peek() != ')') cat.kids.push_back(repetition(depth));
    return cat;
  }

  // "{m}", "{m,}", "{m,n}" at i_ (which is at '{'); false when the brace is a literal.
  bool counted(int& lo, int& hi) {
    size_t j = i_ + 1;
    auto number = [&](int& out) {
      const size_t start = j;
      long v = 0;
      while (j < p_.size() && p_[j] >= '0' && p_[j] <= '9' && v <= 100000) v = v * 10 + (p_[j++] - '0');
      out = static_cast<int>(v);
      return j > start;
    };
    if (!number(lo)) return false;
    hi = lo;
    if (j < p_.size() && p_[j] == ',') {
      ++j;
      if (!number(hi)) hi = -1;
    }
    if (j >= p_.size() || p_[j] != '}') return false;
    if (lo > 1000 || hi > 1000 || (hi >= 0 && hi < lo)) fail("bad or too large repetition count");
    i_ = j + 1;
    return true;
  }

  Node repetition(int depth) {
    Node n = atom(depth);
    while (more()) {
      int lo = 0, hi = -1;
      const char c = peek();
      if (c == '*') ++i_;
      else if (c == '+') ++i_, lo = 1;
      else if (c == '?') ++i_, hi = 1;
      else if (c == '{' && counted(lo, hi)) {
      } else break;
      if (more() && peek() == '?') ++i_;  // lazy: the same language
      if (n.kind == Node::kBol || n.kind == Node::kEol) fail("quantified anchor");
      Node r;
      r.kind = Node::kRepeat;
      r.min = lo;
      r.max = hi;
      r.kids.push_back(std::move(n));
      n = std::move(r);
    }
    return n;
  }

  static ByteSet range(int lo, int hi) {
    ByteSet s;
    for (int b = lo; b <= hi; ++b) s.set(static_cast<size_t>(b));
    return s;
  }
  static ByteSet word() { return range('a', 'z') | range('A', 'Z') | range('0', '9') | range('_', '_'); }
  static ByteSet space() {
    ByteSet s;
    for (char c : std::string(" \t\n\r\f\v")) s.set(static_cast<unsigned char>(c));
    return s;
  }

  // After a backslash. `single` receives the byte when the escape stands for one (for class ranges).
  ByteSet escape(int* single) {
    if (!more()) fail("trailing backslash");
    const char c = p_[i_++];
    auto one = [&](unsigned char b) {
      if (single) *single = b;
      return range(b, b);
    };
    switch (c) {
      case 'd': return range('0', '9');
      case 'D': return ~range('0', '9');
      case 'w': return word();
      case 'W': return ~word();
      case 's': return space();
      case 'S': return ~space();
      case 't': return one('\t');
      case 'n': return one('\n');
      case 'r': return one('\r');
      case 'f': return one('\f');
      case 'v': return one('\v');
      case 'x': {
        auto hex = [&](char h) {
          if (h >= '0' && h <= '9') return h - '0';
          if (h >= 'a' && h <= 'f') return h - 'a' + 10;
          if (h >= 'A' && h <= 'F') return h - 'A' + 10;
          fail("bad \\x escape");
        };
        if (i_ + 2 > p_.size()) fail("bad \\x escape");
        const int v = hex(p_[i_]) * 16 + hex(p_[i_ + 1]);
        i_ += 2;
        return one(static_cast<unsigned char>(v));
      }
      default:
        // Escaped punctuation is literal; an escaped letter or digit we do not know (\b, \1, \p...) is refused
        // rather than guessed.
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
          fail(std::string("unsupported escape \\") + c);
        return one(static_cast<unsigned char>(c));
    }
  }

  ByteSet char_class() {  // after '['
    bool negate = false;
    if (more() && peek() == '^') ++i_, negate = true;
    ByteSet s;
    bool first = true;
    while (true) {
      if (!more()) fail("unterminated character class");
      if (peek() == ']' && !first) {
        ++i_;
        break;
      }
      first = false;
      int lo = -1;
      ByteSet item;
      if (peek() == '\\') {
        ++i_;
        item = escape(&lo);
      } else {
        lo = static_cast<unsigned char>(p_[i_++]);
        item = range(lo, lo);
      }
      if (lo >= 0 && i_ + 1 < p_.size() && peek() == '-' && p_[i_ + 1] != ']') {
        ++i_;
        int hi = -1;
        if (peek() == '\\') {
          ++i_;
          escape(&hi);
          if (hi < 0) fail("class range ends in a class escape");
        } else {
          hi = static_cast<unsigned char>(p_[i_++]);
        }
        if (hi < lo) fail("reversed class range");
        item = range(lo, hi);
      }
      s |= item;
    }
    return negate ? ~s : s;
  }

  Node atom(int depth) {
    Node n;
    n.kind = Node::kSet;
    const char c = p_[i_++];
    switch (c) {
      case '(': {
        if (more() && peek() == '?') {
          if (i_ + 1 < p_.size() && p_[i_ + 1] == ':') i_ += 2;
          else fail("unsupported group (lookaround, named or flagged groups are not implemented)");
        }
        n = alternation(depth + 1);
        if (!more() || peek() != ')') fail("missing ')'");
        ++i_;
        return n;
      }
      case '[': n.set = char_class(); return n;
      case '.': n.set = ~range('\n', '\n'); return n;
      case '^': n.kind = Node::kBol; return n;
      case '$': n.kind = Node::kEol; return n;
      case '\\': n.set = escape(nullptr); return n;
      case '*': case '+': case '?': --i_; fail("nothing to repeat");
      default: n.set = range(static_cast<unsigned char>(c), static_cast<unsigned char>(c)); return n;
    }
  }

  const std::string& p_;
  size_t i_ = 0;
};

struct Inst {
  enum Op { kByte, kSplit, kJmp, kBol, kEol, kMatch } op;
  ByteSet set;
  int x = 0, y = 0;
};

class Compiler {
 public:
  std::vector<Inst> compile(const Node& root) {
    emit(root);
    push({Inst::kMatch, {}, 0, 0});
    return std::move(prog_);
  }

 private:
  int push(Inst i) {
    if (prog_.size() > 200000) throw std::invalid_argument("pattern too large once repetitions are expanded");
    prog_.push_back(std::move(i));
    return static_cast<int>(prog_.size()) - 1;
  }
  int here() const { return static_cast<int>(prog_.size()); }

  void emit(const Node& n) {
    switch (n.kind) {
      case Node::kSet: push({Inst::kByte, n.set, 0, 0}); break;
      case Node::kBol: push({Inst::kBol, {}, 0, 0}); break;
      case Node::kEol: push({Inst::kEol, {}, 0, 0}); break;
      case Node::kConcat:
        for (const auto& k : n.kids) emit(k);
        break;
      case Node::kAlt: {
        std::vector<int> jumps;
        for (size_t i = 0; i < n.kids.size(); ++i) {
          if (i + 1 < n.kids.size()) {
            const int split = push({Inst::kSplit, {}, 0, 0});
            prog_[split].x = here();
            emit(n.kids[i]);
            jumps.push_back(push({Inst::kJmp, {}, 0, 0}));
            prog_[split].y = here();
          } else {
            emit(n.kids[i]);
          }
        }
        for (int j : jumps) prog_[j].x = here();
        break;
      }
      case Node::kRepeat: {
        const Node& kid = n.kids[0];
        for (int i = 0; i < n.min; ++i) emit(kid);
        if (n.max < 0) {  // L: split body, end; body; jmp L
          const int split = push({Inst::kSplit, {}, 0, 0});
          prog_[split].x = here();
          emit(kid);
          push({Inst::kJmp, {}, split, 0});
          prog_[split].y = here();
        } else {
          std::vector<int> splits;
          for (int i = n.min; i < n.max; ++i) {
            const int split = push({Inst::kSplit, {}, 0, 0});
            prog_[split].x = here();
            splits.push_back(split);
            emit(kid);
          }
          for (int s : splits) prog_[s].y = here();
        }
        break;
      }
    }
  }

  std::vector<Inst> prog_;
};

}  // namespace

struct Pattern::Program {
  std::vector<Inst> code;
};

Pattern::Pattern(const std::string& pattern) : program_(std::make_unique<Program>()) {
  program_->code = Compiler().compile(Parser(pattern).parse());
}
Pattern::~Pattern() = default;
Pattern::Pattern(Pattern&&) noexcept = default;
Pattern& Pattern::operator=(Pattern&&) noexcept = default;

bool Pattern::search(const std::string& text) const {
  const auto& code = program_->code;
  const size_t n = text.size();
  std::vector<size_t> mark(code.size(), SIZE_MAX);  // mark[pc] == pos: pc is already in the list for pos
  std::vector<int> current, next, stack;
  // Adds pc and everything reachable from it without consuming a byte (an explicit stack, no recursion).
  auto add = [&](std::vector<int>& list, int start, size_t pos) {
    stack.push_back(start);
    while (!stack.empty()) {
      const int pc = stack.back();
      stack.pop_back();
      if (mark[pc] == pos) continue;
      mark[pc] = pos;
      const Inst& in = code[pc];
      switch (in.op) {
        case Inst::kJmp: stack.push_back(in.x); break;
        case Inst::kSplit:
          stack.push_back(in.y);
          stack.push_back(in.x);
          break;
        case Inst::kBol:
          if (pos == 0) stack.push_back(pc + 1);
          break;
        case Inst::kEol:
          if (pos == n) stack.push_back(pc + 1);
          break;
        default: list.push_back(pc);
      }
    }
  };
  for (size_t pos = 0;; ++pos) {
    add(current, 0, pos);  // search: a match may start at any position
    for (int pc : current)
      if (code[pc].op == Inst::kMatch) return true;
    if (pos == n) return false;
    next.clear();
    const auto byte = static_cast<unsigned char>(text[pos]);
    for (int pc : current)
      if (code[pc].op == Inst::kByte && code[pc].set.test(byte)) add(next, pc + 1, pos + 1);
    current.swap(next);
  }
}

}  // namespace torchconform
