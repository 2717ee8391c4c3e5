// SHA-256 from OpenSSL's libcrypto: the hash chain's primitive, and the largest cost of a verification above the
// LibTorch floor (docs/bench.md); a well-kept implementation instead of a hand-written one.
#include <torchconform/corpus.h>

#include <openssl/evp.h>

#include <stdexcept>

namespace torchconform {

std::string sha256_hex(const void* data, size_t size) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(data, size, digest, &length, EVP_sha256(), nullptr) != 1 || length != 32)
    throw std::runtime_error("OpenSSL EVP_Digest(SHA-256) failed");
  static const char* hex = "0123456789abcdef";
  std::string out(64, '0');
  for (unsigned int i = 0; i < 32; ++i) {
    out[2 * i] = hex[digest[i] >> 4];
    out[2 * i + 1] = hex[digest[i] & 15];
  }
  return out;
}

}  // namespace torchconform
