// Reading files of a corpus that nobody here wrote: only regular files, only inside the corpus directory, only as
// many bytes as declared. (A manifest that is a FIFO hung the run; one that was /dev/zero exhausted memory; a
// symbolic link to /etc/passwd was read and its SHA-256 printed.)
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace torchconform {

// Largest JSON file (corpus.json, a manifest) the reader accepts.
constexpr uint64_t kMaxJsonBytes = 16ull << 20;
// Largest file the reader accepts when the manifest declares no size (corpora written before `bytes` was recorded
// for every file).
constexpr uint64_t kMaxUndeclaredBytes = 4ull << 30;

// Refuses a corpus-relative path that is empty, absolute, has a ".." component, or holds a NUL or another control
// character (the name a user sees must be the name that is opened). Throws CorpusError naming `who`.
void check_relative_path(const std::string& rel, const std::string& who);

// `rel` (relative to `root`, which must be canonical) resolved through any symbolic links; throws CorpusError when it
// is missing or resolves outside `root`. The message never names what lies outside.
std::filesystem::path resolve_inside(const std::filesystem::path& root, const std::string& rel,
                                     const std::string& who);

// The bytes of the regular file `rel` inside `root`. With `declared`, the file must have exactly that size; without,
// at most `cap` bytes. Opened without following a final symbolic link and without blocking (a FIFO is refused, not
// waited on). Throws CorpusError naming `who` and `rel`.
std::string read_inside(const std::filesystem::path& root, const std::string& rel, std::optional<uint64_t> declared,
                        uint64_t cap, const std::string& who);

}  // namespace torchconform
