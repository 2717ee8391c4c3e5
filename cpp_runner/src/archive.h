// The zip archives every PyTorch serializer writes (torch.save, torch.jit.save, torch.export.save), checked before
// any LibTorch reader sees them, and torch.save payloads decoded only after their pickle was proven harmless.
#pragma once

#include <ATen/core/ivalue.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace torchconform {

// Largest inflated size of one deflated record (TorchScript code and debug records are deflated; torch.save data
// is stored), and of all of them together: a record that inflates to gigabytes is refused before it is inflated.
constexpr uint64_t kMaxInflatedRecord = 64ull << 20;
constexpr uint64_t kMaxInflatedTotal = 512ull << 20;

struct ZipRecord {
  std::string name;
  uint64_t size = 0;  // uncompressed
  bool stored = true;
  uint64_t data_offset = 0;  // where its (compressed, unless stored) bytes start in the archive
};

// Reads the zip's central directory and refuses what a LibTorch reader would trust blindly: records outside the file,
// duplicate or non-printable names, encryption, compression other than deflate, inflated sizes above the limits,
// stored records whose two sizes differ. Throws CorpusError naming `what`.
std::vector<ZipRecord> check_zip(std::string_view bytes, const std::string& what);

// The bytes of the one stored record of a checked archive (check_zip's records) whose name ends in `suffix`, e.g.
// "/models/model.json". Throws CorpusError naming `what` when none or several match, or it is deflated.
std::string_view stored_record(std::string_view bytes, const std::vector<ZipRecord>& records,
                               const std::string& suffix, const std::string& what);

// A storage a torch.save pickle refers to: record data/<key>, `numel` elements of `dtype`.
struct PickledStorage {
  std::string key;
  c10::ScalarType dtype;
  int64_t numel = 0;
};

// Interprets a torch.save pickle (data.pkl) abstractly, without building anything, and refuses: opcodes and globals
// other than those of tensors, containers and scalars (no code can run), memo indices beyond the memo (a 20-byte
// pickle asked for 32 GiB), strings longer than the pickle, invalid UTF-8, self-referencing or deeply nested
// containers, tensors whose size, stride and offset reach outside their storage, expanded views that describe far
// more elements than they store, and math bits other than conj/neg. Returns the storages it refers to.
std::vector<PickledStorage> check_pickle(std::string_view pickle, const std::string& what);

}  // namespace torchconform
