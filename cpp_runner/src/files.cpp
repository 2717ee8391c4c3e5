#include "files.h"

#include <torchconform/corpus.h>  // CorpusError

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace torchconform {
namespace fs = std::filesystem;

void check_relative_path(const std::string& rel, const std::string& who) {
  if (rel.empty()) throw CorpusError(who + ": empty file path");
  for (unsigned char ch : rel)
    if (ch < 0x20 || ch == 0x7f)
      throw CorpusError(who + ": file path '" + rel + "' contains a control character");
  const fs::path p(rel);
  if (p.is_absolute()) throw CorpusError(who + ": file path '" + rel + "' must be relative");
  for (const auto& part : p)
    if (part == "..") throw CorpusError(who + ": file path '" + rel + "' leaves the case directory");
}

fs::path resolve_inside(const fs::path& root, const std::string& rel, const std::string& who) {
  check_relative_path(rel, who);
  std::error_code ec;
  const fs::path real = fs::canonical(root / rel, ec);
  if (ec) {
    const bool dangling = fs::is_symlink(fs::symlink_status(root / rel, ec));
    throw CorpusError(who + ": cannot open " + rel + (dangling ? " (a symbolic link to nothing)" : " (missing)"));
  }
  const fs::path inner = real.lexically_relative(root);
  if (inner.empty() || *inner.begin() == "..")
    throw CorpusError(who + ": " + rel + " resolves outside the corpus directory (through a symbolic link); refused");
  return real;
}

std::string read_inside(const fs::path& root, const std::string& rel, std::optional<uint64_t> declared, uint64_t cap,
                        const std::string& who) {
  const fs::path real = resolve_inside(root, rel, who);
  // O_NOFOLLOW: `real` has no links left; one swapped in since is refused. O_NONBLOCK: opening a FIFO must not wait
  // for a writer (the file type is checked right after).
  const int fd = ::open(real.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw CorpusError(who + ": cannot open " + rel + ": " + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw CorpusError(who + ": cannot stat " + rel + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode))
    throw CorpusError(who + ": " + rel + " is not a regular file (a directory, FIFO, socket or device); refused");
  const auto size = static_cast<uint64_t>(st.st_size);
  if (declared && size != *declared)
    throw CorpusError(who + ": " + rel + " has " + std::to_string(size) + " bytes, the manifest declares " +
                      std::to_string(*declared));
  if (!declared && size > cap)
    throw CorpusError(who + ": " + rel + " has " + std::to_string(size) + " bytes, more than the " +
                      std::to_string(cap) + " this reader accepts for it");
  std::string bytes(size, '\0');
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::read(fd, bytes.data() + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw CorpusError(who + ": read error on " + rel + ": " + std::strerror(errno));
    if (n == 0) throw CorpusError(who + ": " + rel + " shrank while it was read");
    done += static_cast<size_t>(n);
  }
  return bytes;
}

}  // namespace torchconform
