#include "archive.h"

#include <torchconform/corpus.h>

#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/unpickler.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <sstream>

namespace torchconform {
namespace {

uint64_t le(std::string_view b, size_t at, int n) {
  uint64_t v = 0;
  for (int k = n - 1; k >= 0; --k) v = v << 8 | static_cast<unsigned char>(b[at + k]);
  return v;
}

bool is_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  for (size_t i = 0; i < s.size();) {
    const unsigned char b = p[i];
    const size_t len = b < 0x80 ? 1 : b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k)
      if ((p[i + k] & 0xc0) != 0x80) return false;
    if (len == 3 && ((b == 0xe0 && p[i + 1] < 0xa0) || (b == 0xed && p[i + 1] >= 0xa0))) return false;  // overlong, surrogate
    if (len == 4 && ((b == 0xf0 && p[i + 1] < 0x90) || (b == 0xf4 && p[i + 1] >= 0x90))) return false;
    i += len;
  }
  return true;
}

}  // namespace

std::vector<ZipRecord> check_zip(std::string_view b, const std::string& what) {
  auto fail = [&](const std::string& why) -> void { throw CorpusError(what + ": not a well-formed zip archive: " + why); };
  const size_t n = b.size();
  if (n < 22) fail("too short");
  // End of central directory: the last 22 bytes unless a comment follows (we accept no comment: none of PyTorch's
  // writers adds one, and a record hidden in a comment is how parsers are made to disagree).
  const size_t eocd = n - 22;
  if (le(b, eocd, 4) != 0x06054b50) fail("no end-of-central-directory record at the end of the file");
  uint64_t entries = le(b, eocd + 10, 2), cd_size = le(b, eocd + 12, 4), cd_offset = le(b, eocd + 16, 4);
  if (le(b, eocd + 4, 2) != 0 || le(b, eocd + 6, 2) != 0 || le(b, eocd + 8, 2) != entries) fail("multi-disk archive");
  size_t cd_end = eocd;
  const bool zip64 = eocd >= 20 && le(b, eocd - 20, 4) == 0x07064b50;  // PyTorch's writer always adds one
  if (entries == 0xffff || cd_size == 0xffffffff || cd_offset == 0xffffffff || zip64) {
    if (!zip64) fail("zip64 fields without a zip64 locator");
    const uint64_t z = le(b, eocd - 20 + 8, 8);
    if (z > eocd - 20 || eocd - 20 - z < 56 || le(b, z, 4) != 0x06064b50) fail("bad zip64 end of central directory");
    entries = le(b, z + 32, 8);
    cd_size = le(b, z + 40, 8);
    cd_offset = le(b, z + 48, 8);
    cd_end = z;
  }
  if (cd_offset > cd_end || cd_size != cd_end - cd_offset) fail("central directory does not end where it should");
  if (entries > cd_size / 46) fail("more entries than the central directory can hold");

  std::vector<ZipRecord> out;
  std::set<std::string> names;
  uint64_t inflated_total = 0;
  size_t at = cd_offset;
  for (uint64_t e = 0; e < entries; ++e) {
    if (at + 46 > cd_end || le(b, at, 4) != 0x02014b50) fail("bad central directory entry");
    const uint64_t flags = le(b, at + 8, 2), method = le(b, at + 10, 2);
    uint64_t comp = le(b, at + 20, 4), size = le(b, at + 24, 4), local = le(b, at + 42, 4);
    const size_t name_len = le(b, at + 28, 2), extra_len = le(b, at + 30, 2), comment_len = le(b, at + 32, 2);
    if (at + 46 + name_len + extra_len + comment_len > cd_end) fail("central directory entry overruns it");
    ZipRecord r;
    r.name = std::string(b.substr(at + 46, name_len));
    // zip64 extra field: the 32-bit fields that are 0xffffffff are given here, in this order.
    for (size_t x = at + 46 + name_len; x + 4 <= at + 46 + name_len + extra_len;) {
      const uint64_t id = le(b, x, 2), len = le(b, x + 2, 2);
      if (x + 4 + len > at + 46 + name_len + extra_len) fail("bad extra field in entry '" + r.name + "'");
      if (id == 1) {
        size_t y = x + 4;
        auto take = [&](uint64_t& field) {
          if (field != 0xffffffff) return;
          if (y + 8 > x + 4 + len) fail("short zip64 extra field in entry '" + r.name + "'");
          field = le(b, y, 8);
          y += 8;
        };
        take(size);
        take(comp);
        take(local);
      }
      x += 4 + len;
    }
    at += 46 + name_len + extra_len + comment_len;
    if (r.name.empty() || printable(r.name) != r.name) fail("record name is empty or not printable UTF-8");
    if (!names.insert(r.name).second) fail("record '" + r.name + "' appears twice (readers would disagree on it)");
    if (flags & 1) fail("record '" + r.name + "' is encrypted");
    if (method != 0 && method != 8) fail("record '" + r.name + "' uses compression method " + std::to_string(method));
    r.stored = method == 0;
    r.size = size;
    if (r.stored && comp != size) fail("stored record '" + r.name + "' has two different sizes");
    if (!r.stored) {
      if (size > kMaxInflatedRecord || (inflated_total += size) > kMaxInflatedTotal)
        throw CorpusError(what + ": record '" + printable(r.name) + "' would inflate to " + std::to_string(size) +
                          " bytes (limit " + std::to_string(kMaxInflatedRecord) + " per record, " +
                          std::to_string(kMaxInflatedTotal) + " in all); refused");
    }
    // The local header must agree with the central directory, and the data must lie before the directory.
    if (local + 30 > cd_offset || le(b, local, 4) != 0x04034b50) fail("bad local header of '" + r.name + "'");
    const size_t lname = le(b, local + 26, 2), lextra = le(b, local + 28, 2);
    if (le(b, local + 8, 2) != method || local + 30 + lname > cd_offset ||
        b.substr(local + 30, lname) != std::string_view(r.name))
      fail("local header of '" + r.name + "' disagrees with the central directory");
    const uint64_t data = local + 30 + lname + lextra;
    if (data > cd_offset || comp > cd_offset - data) fail("data of '" + r.name + "' lies outside the archive");
    r.data_offset = data;
    out.push_back(std::move(r));
  }
  if (at != cd_end) fail("trailing bytes in the central directory");
  return out;
}

std::string_view stored_record(std::string_view bytes, const std::vector<ZipRecord>& records,
                               const std::string& suffix, const std::string& what) {
  const ZipRecord* found = nullptr;
  for (const auto& r : records) {
    if (r.name.size() < suffix.size() || r.name.compare(r.name.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    if (found) throw CorpusError(what + ": more than one record ends in '" + suffix + "'");
    found = &r;
  }
  if (!found) throw CorpusError(what + ": no record ends in '" + suffix + "'");
  if (!found->stored) throw CorpusError(what + ": record '" + found->name + "' is compressed (PyTorch stores it)");
  return bytes.substr(found->data_offset, found->size);  // check_zip proved it lies inside the archive
}

namespace {

// ---- the abstract pickle machine -----------------------------------------------------------------------------
constexpr size_t kMaxNesting = 100;      // containers inside containers (the runner's walks recurse this deep)
constexpr int64_t kMaxStorageBytes = int64_t{1} << 40;
constexpr int64_t kMaxExpandedBytes = int64_t{64} << 20;  // an expanded (stride-0) view may describe this much

struct Obj {
  enum Kind : uint8_t {
    kNone, kBool, kInt, kFloat, kStr, kTuple, kList, kDict,
    kRebuildTensor, kOrderedDict, kComplexType, kDeviceType,  // the only callables a torch.save data file needs
    kDtype, kStorage, kTensor, kHooks, kLeaf,
  } kind;
  int64_t i = 0;           // kBool, kInt; kDtype: the ScalarType; kStorage: index into the storages
  std::string s;           // kStr
  std::vector<int32_t> kids;  // kTuple, kList; kDict: key, value, key, value...
};

const char* kind_name(Obj::Kind k) {
  static const char* names[] = {"None",  "bool",   "int",          "float",   "str",     "tuple",
                                "list",  "dict",   "rebuild_tensor", "OrderedDict", "complex", "device",
                                "dtype", "storage", "tensor",       "hooks",   "value"};
  return names[k];
}

std::optional<c10::ScalarType> storage_dtype(const std::string& name) {
  static const std::map<std::string, c10::ScalarType> m = {
      {"FloatStorage", c10::kFloat},   {"DoubleStorage", c10::kDouble},         {"HalfStorage", c10::kHalf},
      {"BFloat16Storage", c10::kBFloat16}, {"LongStorage", c10::kLong},        {"IntStorage", c10::kInt},
      {"ShortStorage", c10::kShort},   {"CharStorage", c10::kChar},             {"ByteStorage", c10::kByte},
      {"BoolStorage", c10::kBool},     {"ComplexFloatStorage", c10::kComplexFloat},
      {"ComplexDoubleStorage", c10::kComplexDouble}};
  auto it = m.find(name);
  return it == m.end() ? std::nullopt : std::optional<c10::ScalarType>(it->second);
}

class Machine {
 public:
  Machine(std::string_view data, const std::string& what) : d_(data), what_(what) {}

  std::vector<PickledStorage> run() {
    if (u8() != 0x80) fail("does not start with PROTO");
    if (u8() != 2) fail("is not pickle protocol 2 (the one LibTorch reads)");
    for (;;) {
      const unsigned char op = u8();
      switch (op) {
        case '.': return finish();
        case '(': marks_.push_back(stack_.size()); break;
        case ']': push(make(Obj::kList)); break;
        case ')': push(make(Obj::kTuple)); break;
        case '}': push(make(Obj::kDict)); break;
        case 'N': push(make(Obj::kNone)); break;
        case 0x88: case 0x89: push(make(Obj::kBool, op == 0x88)); break;
        case 'K': push(make(Obj::kInt, u8())); break;
        case 'M': push(make(Obj::kInt, static_cast<int64_t>(le(take(2), 0, 2)))); break;
        case 'J': push(make(Obj::kInt, static_cast<int32_t>(le(take(4), 0, 4)))); break;
        case 0x8a: {  // LONG1: little-endian two's complement of n bytes
          const size_t len = u8();
          if (len > 8) fail("integer wider than 64 bits");
          const auto bytes = take(len);
          uint64_t v = len ? le(bytes, 0, static_cast<int>(len)) : 0;
          if (len && len < 8 && (static_cast<unsigned char>(bytes[len - 1]) & 0x80)) v |= ~uint64_t{0} << (8 * len);
          push(make(Obj::kInt, static_cast<int64_t>(v)));
          break;
        }
        case 'G': take(8), push(make(Obj::kFloat)); break;
        case 'X': {
          const auto text = take(le(take(4), 0, 4));
          if (!is_utf8(text)) fail("string is not valid UTF-8 (torch.load refuses it)");
          const int32_t id = make(Obj::kStr);
          objs_[id].s = std::string(text);
          push(id);
          break;
        }
        case 'q': memo_put(u8()); break;
        case 'r': memo_put(le(take(4), 0, 4)); break;
        case 'h': memo_get(u8()); break;
        case 'j': memo_get(le(take(4), 0, 4)); break;
        case 't': push(container(Obj::kTuple, pop_mark())); break;
        case 0x85: case 0x86: case 0x87: {
          std::vector<int32_t> items(static_cast<size_t>(op - 0x84));
          for (size_t k = items.size(); k-- > 0;) items[k] = pop();
          push(container(Obj::kTuple, std::move(items)));
          break;
        }
        case 'l': push(container(Obj::kList, pop_mark())); break;
        case 'a': {
          const int32_t x = pop();
          append(top(), {x});
          break;
        }
        case 'e': {
          auto items = pop_mark();
          append(top(), std::move(items));
          break;
        }
        case 'd': {
          auto items = pop_mark();
          const int32_t dict = make(Obj::kDict);
          set_items(dict, std::move(items));
          push(dict);
          break;
        }
        case 's': {
          const int32_t v = pop(), k = pop();
          set_items(top(), {k, v});
          break;
        }
        case 'u': {
          auto items = pop_mark();
          set_items(top(), std::move(items));
          break;
        }
        case 'c': push(global()); break;
        case 'R': {
          const int32_t args = pop(), fn = pop();
          push(reduce(fn, args));
          break;
        }
        case 'Q': push(persistent(pop())); break;
        default: {
          std::ostringstream os;
          os << "opcode 0x" << std::hex << static_cast<int>(op) << " at byte " << std::dec << i_ - 1
             << " is not one torch.save writes for tensors, containers and scalars";
          fail(os.str());
        }
      }
    }
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    throw CorpusError(what_ + ": unsafe or malformed pickle (data.pkl): " + why);
  }
  unsigned char u8() { return static_cast<unsigned char>(take(1)[0]); }
  std::string_view take(uint64_t k) {
    if (k > d_.size() - i_) fail("ends early (a length runs past the end of the pickle)");
    const auto v = d_.substr(i_, k);
    i_ += k;
    return v;
  }
  int32_t make(Obj::Kind k, int64_t i = 0) {
    objs_.push_back(Obj{k, i, {}, {}});
    return static_cast<int32_t>(objs_.size() - 1);
  }
  int32_t container(Obj::Kind k, std::vector<int32_t> kids) {
    const int32_t id = make(k);
    objs_[id].kids = std::move(kids);
    return id;
  }
  void push(int32_t id) {
    if (stack_.size() >= (1u << 20)) fail("stack deeper than 2^20");
    stack_.push_back(id);
  }
  int32_t pop() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) fail("pops past a MARK or an empty stack");
    const int32_t id = stack_.back();
    stack_.pop_back();
    return id;
  }
  int32_t top() const {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) fail("no object below the operands");
    return stack_.back();
  }
  std::vector<int32_t> pop_mark() {
    if (marks_.empty()) fail("no MARK");
    std::vector<int32_t> items(stack_.begin() + static_cast<std::ptrdiff_t>(marks_.back()), stack_.end());
    stack_.resize(marks_.back());
    marks_.pop_back();
    return items;
  }
  const Obj& at(int32_t id) const { return objs_[static_cast<size_t>(id)]; }
  void expect(int32_t id, Obj::Kind k, const char* role) const {
    if (at(id).kind != k)
      fail(std::string(role) + " must be a " + kind_name(k) + ", got a " + kind_name(at(id).kind));
  }
  void memo_put(uint64_t index) {
    // Python's pickler numbers memo entries 0, 1, 2...: an index past the end would make LibTorch's unpickler grow
    // its memo to that size (2^31 entries from a 20-byte file).
    if (index > memo_.size()) fail("memo index " + std::to_string(index) + " skips past the memo's end");
    if (stack_.empty()) fail("memoizes an empty stack");
    if (index == memo_.size()) memo_.push_back(stack_.back());
    else memo_[index] = stack_.back();
  }
  void memo_get(uint64_t index) {
    if (index >= memo_.size()) fail("memo index " + std::to_string(index) + " was never stored");
    push(memo_[index]);
  }
  void append(int32_t list, std::vector<int32_t> items) {
    expect(list, Obj::kList, "APPEND target");
    auto& kids = objs_[static_cast<size_t>(list)].kids;
    kids.insert(kids.end(), items.begin(), items.end());
  }
  void set_items(int32_t dict, std::vector<int32_t> items) {
    expect(dict, Obj::kDict, "SETITEM target");
    if (items.size() % 2) fail("odd number of dict items");
    for (size_t k = 0; k < items.size(); k += 2) {
      const auto kind = at(items[k]).kind;
      if (kind != Obj::kStr && kind != Obj::kInt && kind != Obj::kBool)
        fail(std::string("dict key of kind ") + kind_name(kind) + " (only str, int and bool keys are compared)");
    }
    auto& kids = objs_[static_cast<size_t>(dict)].kids;
    kids.insert(kids.end(), items.begin(), items.end());
  }
  std::string line() {
    const size_t end = d_.find('\n', i_);
    if (end == std::string_view::npos || end - i_ > 256) fail("GLOBAL name without a newline within 256 bytes");
    std::string s(d_.substr(i_, end - i_));
    i_ = end + 1;
    return s;
  }
  int32_t global() {
    const std::string module = line(), name = line();
    if (module == "torch._utils" && name == "_rebuild_tensor_v2") return make(Obj::kRebuildTensor);
    if (module == "collections" && name == "OrderedDict") return make(Obj::kOrderedDict);
    if (module == "builtins" && name == "complex") return make(Obj::kComplexType);
    if (module == "torch" && name == "device") return make(Obj::kDeviceType);
    if (module == "torch")
      if (auto dtype = storage_dtype(name)) return make(Obj::kDtype, static_cast<int64_t>(*dtype));
    fail("global " + printable(module) + "." + printable(name) +
         " is not allowed in a corpus data file (only plain tensors, containers and scalars; nothing that runs "
         "code)");
  }
  int32_t persistent(int32_t id) {
    const Obj& t = at(id);
    if (t.kind != Obj::kTuple || t.kids.size() != 5) fail("persistent id is not a 5-tuple ('storage', ...)");
    const auto& k = t.kids;
    if (at(k[0]).kind != Obj::kStr || at(k[0]).s != "storage") fail("persistent id is not a storage");
    expect(k[1], Obj::kDtype, "storage type");
    expect(k[2], Obj::kStr, "storage key");
    expect(k[3], Obj::kStr, "storage location");
    expect(k[4], Obj::kInt, "storage size");
    const std::string& key = at(k[2]).s;
    if (key.empty() || key.size() > 64 ||
        key.find_first_not_of("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_") != std::string::npos)
      fail("storage key '" + printable(key) + "' is not [A-Za-z0-9_]{1,64}");
    const auto dtype = static_cast<c10::ScalarType>(at(k[1]).i);
    const int64_t numel = at(k[4]).i;
    if (numel < 0 || numel > kMaxStorageBytes / static_cast<int64_t>(c10::elementSize(dtype)))
      fail("storage '" + key + "' declares " + std::to_string(numel) + " elements");
    auto found = storage_index_.find(key);
    if (found != storage_index_.end()) {  // the same storage again (views sharing it): it must be the same
      const auto& s = storages_[found->second];
      if (s.dtype != dtype || s.numel != numel) fail("storage '" + key + "' is declared twice, differently");
      return make(Obj::kStorage, static_cast<int64_t>(found->second));
    }
    storage_index_[key] = storages_.size();
    storages_.push_back({key, dtype, numel});
    return make(Obj::kStorage, static_cast<int64_t>(storages_.size() - 1));
  }
  int32_t reduce(int32_t fn, int32_t args_id) {
    expect(args_id, Obj::kTuple, "REDUCE arguments");
    const auto& args = at(args_id).kids;
    switch (at(fn).kind) {
      case Obj::kOrderedDict:  // a tensor's (always empty) backward hooks
        if (!args.empty()) fail("OrderedDict() with arguments");
        return make(Obj::kHooks);
      case Obj::kComplexType:
        if (args.size() != 2 || at(args[0]).kind != Obj::kFloat || at(args[1]).kind != Obj::kFloat)
          fail("complex() needs two floats");
        return make(Obj::kLeaf);
      case Obj::kDeviceType:
        if (args.size() != 1 || at(args[0]).kind != Obj::kStr || at(args[0]).s.size() > 32)
          fail("torch.device() needs one short string");
        return make(Obj::kLeaf);
      case Obj::kRebuildTensor: return rebuild_tensor(args);
      default: fail(std::string("REDUCE calls a ") + kind_name(at(fn).kind) + ", not a callable");
    }
  }
  int32_t rebuild_tensor(const std::vector<int32_t>& a) {
    if (a.size() != 6 && a.size() != 7) fail("_rebuild_tensor_v2 with " + std::to_string(a.size()) + " arguments");
    expect(a[0], Obj::kStorage, "tensor storage");
    expect(a[1], Obj::kInt, "tensor storage offset");
    expect(a[2], Obj::kTuple, "tensor size");
    expect(a[3], Obj::kTuple, "tensor stride");
    expect(a[4], Obj::kBool, "tensor requires_grad");
    if (at(a[5]).kind != Obj::kHooks && at(a[5]).kind != Obj::kNone) fail("tensor backward hooks are not empty");
    const PickledStorage& storage = storages_[static_cast<size_t>(at(a[0]).i)];
    const auto& sizes = at(a[2]).kids;
    const auto& strides = at(a[3]).kids;
    if (sizes.size() != strides.size() || sizes.size() > 64) fail("tensor size and stride differ in length");
    const int64_t offset = at(a[1]).i;
    if (offset < 0) fail("negative storage offset");
    // Extent and element count in 128 bits: a hostile size cannot overflow the check that bounds it.
    unsigned __int128 numel = 1, last = static_cast<unsigned __int128>(offset);
    for (size_t d = 0; d < sizes.size(); ++d) {
      expect(sizes[d], Obj::kInt, "tensor size");
      expect(strides[d], Obj::kInt, "tensor stride");
      const int64_t size = at(sizes[d]).i, stride = at(strides[d]).i;
      if (size < 0 || stride < 0) fail("negative size or stride");
      numel *= static_cast<unsigned __int128>(size);
      if (numel > (unsigned __int128)1 << 62) fail("tensor has more than 2^62 elements");
      if (size > 0) last += static_cast<unsigned __int128>(size - 1) * static_cast<unsigned __int128>(stride);
    }
    if (numel > 0 && last >= static_cast<unsigned __int128>(storage.numel))
      fail("tensor reaches element " + std::to_string(static_cast<uint64_t>(last)) + " of storage '" + storage.key +
           "', which holds " + std::to_string(storage.numel));
    const auto item = static_cast<unsigned __int128>(c10::elementSize(storage.dtype));
    if (numel > static_cast<unsigned __int128>(storage.numel) && numel * item > kMaxExpandedBytes)
      fail("an expanded view describes " + std::to_string(static_cast<uint64_t>(numel)) +
           " elements over a storage of " + std::to_string(storage.numel) +
           " (copying it would allocate that much; save it with .contiguous())");
    if (a.size() == 7) {  // math bits: {"conj": True} / {"neg": True}
      expect(a[6], Obj::kDict, "tensor metadata");
      const auto& kv = at(a[6]).kids;
      for (size_t k = 0; k < kv.size(); k += 2)
        if (at(kv[k]).kind != Obj::kStr || (at(kv[k]).s != "conj" && at(kv[k]).s != "neg") ||
            at(kv[k + 1]).kind != Obj::kBool)
          fail("tensor metadata other than conj/neg bits");
    }
    return make(Obj::kTensor);
  }
  std::vector<PickledStorage> finish() {
    if (stack_.size() != 1 || !marks_.empty()) fail("does not end with exactly one value");
    if (i_ != d_.size()) fail("has bytes after STOP");
    // Depth and cycles of what the root reaches (APPEND/SETITEM through the memo can make a list contain itself,
    // which every recursive walk over the value would follow forever). Iterative: the value may be deep.
    std::vector<uint8_t> state(objs_.size(), 0);  // 0 new, 1 on the current path, 2 done
    std::vector<uint32_t> depth(objs_.size(), 0);
    std::vector<std::pair<int32_t, size_t>> path{{stack_[0], 0}};
    state[static_cast<size_t>(stack_[0])] = 1;
    while (!path.empty()) {
      auto& [id, next] = path.back();
      const auto& kids = at(id).kids;
      if (next < kids.size()) {
        const int32_t kid = kids[next++];
        auto& s = state[static_cast<size_t>(kid)];
        if (s == 1) fail("a container contains itself");
        if (s == 0) {
          if (path.size() > kMaxNesting) fail("containers nested deeper than " + std::to_string(kMaxNesting));
          s = 1;
          path.emplace_back(kid, 0);
        }
        continue;
      }
      uint32_t d = 0;
      for (int32_t kid : kids) d = std::max(d, depth[static_cast<size_t>(kid)] + 1);
      if (d > kMaxNesting) fail("containers nested deeper than " + std::to_string(kMaxNesting));
      depth[static_cast<size_t>(id)] = d;
      state[static_cast<size_t>(id)] = 2;
      path.pop_back();
    }
    return storages_;
  }

  std::string_view d_;
  const std::string& what_;
  size_t i_ = 0;
  std::vector<Obj> objs_;
  std::vector<int32_t> stack_, memo_;
  std::vector<size_t> marks_;
  std::vector<PickledStorage> storages_;
  std::map<std::string, size_t> storage_index_;
};

}  // namespace

std::vector<PickledStorage> check_pickle(std::string_view pickle, const std::string& what) {
  return Machine(pickle, what).run();
}

c10::IValue load_value(const std::string& bytes, const std::string& what) {
  try {
    const auto records = check_zip(bytes, what);
    // PyTorchStreamReader (here and in torch.load) takes the first record's directory as the archive's name.
    if (records.empty()) throw CorpusError(what + ": empty archive");
    const std::string top = records[0].name.substr(0, records[0].name.find('/') + 1);
    std::map<std::string, const ZipRecord*> by_name;
    for (const auto& r : records) {
      if (top.size() < 2 || r.name.rfind(top, 0) != 0)
        throw CorpusError(what + ": archive record '" + printable(r.name) + "' is outside the archive directory");
      by_name[r.name.substr(top.size())] = &r;
    }
    std::istringstream in(bytes);
    caffe2::serialize::PyTorchStreamReader archive(&in);
    // Every record is read (inflated and CRC-checked by the reader), as torch.load lists and checks the archive:
    // an archive Python's loader rejects never passes in C++ (found by tests/python/mutation.py).
    for (const auto& record : archive.getAllRecords()) {
      auto [data, size] = archive.getRecord(record);
      if (record == "data.pkl" || record.rfind("data/", 0) == 0) continue;
      std::string text(static_cast<const char*>(data.get()), size);
      text.erase(std::remove_if(text.begin(), text.end(), [](char ch) { return ch == '\n' || ch == '\r'; }),
                 text.end());  // `version` is "3\n"
      // Python decodes the small metadata records (byteorder, version, serialization_id...) as UTF-8.
      if (printable(text) != text)
        throw CorpusError(what + ": archive record '" + printable(record) + "' is not printable UTF-8");
      // pickle_load ignores `byteorder`; torch.load byte-swaps "big" archives. Refuse what would differ.
      if (record == "byteorder" && text != "little")
        throw CorpusError(what + ": archive byteorder is '" + printable(text) +
                          "'; only little-endian archives are read");
    }
    if (!by_name.count("data.pkl")) throw CorpusError(what + ": archive has no data.pkl");
    auto [pickle, pickle_size] = archive.getRecord("data.pkl");
    const std::string_view pickle_view(static_cast<const char*>(pickle.get()), pickle_size);
    // The storages' records must hold exactly what the pickle declares before a single element is read: LibTorch's
    // unpickler sizes a storage from the pickle and trusts the record to match (a short one was read past its end).
    for (const auto& s : check_pickle(pickle_view, what)) {
      auto it = by_name.find("data/" + s.key);
      const uint64_t want = static_cast<uint64_t>(s.numel) * c10::elementSize(s.dtype);
      if (it == by_name.end()) throw CorpusError(what + ": storage record data/" + s.key + " is missing");
      if (it->second->size != want)
        throw CorpusError(what + ": storage record data/" + s.key + " has " + std::to_string(it->second->size) +
                          " bytes, the pickle declares " + std::to_string(s.numel) + " " + c10::toString(s.dtype) +
                          " elements (" + std::to_string(want) + " bytes)");
    }
    size_t read = 0;
    torch::jit::Unpickler unpickler(
        [&](char* buffer, size_t len) -> size_t {
          len = std::min(len, pickle_size - read);
          std::memcpy(buffer, pickle_view.data() + read, len);
          read += len;
          return len;
        },
        /*type_resolver=*/nullptr, /*obj_loader=*/nullptr,
        [&](const std::string& key) { return std::get<0>(archive.getRecord("data/" + key)); },
        // Always the CPU: a storage "saved on cuda" is not copied anywhere while it is being decoded.
        c10::Device(c10::kCPU));
    unpickler.set_version(archive.version());
    return unpickler.parse_ivalue();
  } catch (const CorpusError&) {
    throw;
  } catch (const c10::Error& e) {
    throw CorpusError(what + ": not a readable torch.save archive: " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw CorpusError(what + ": not a readable torch.save archive: " + e.what());
  }
}

}  // namespace torchconform
