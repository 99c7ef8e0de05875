// file_text.cpp — see file_text.hpp.
#include "sim/file_text.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace capheap::sim {

bool read_text_file(const std::string &path, std::string &out, std::string &error) {
  // stdio rather than an ifstream: a stream opens a directory and then reads it as an empty file
  // (the read error stays inside the stream buffer), which passed for an empty trace or layout.
  std::FILE *in = std::fopen(path.c_str(), "rb");
  if (in == nullptr) {
    error = path + ": cannot open: " + std::strerror(errno);
    return false;
  }
  struct stat st {};
  if (::fstat(::fileno(in), &st) == 0 && S_ISDIR(st.st_mode)) {
    std::fclose(in);
    error = path + ": cannot open: " + std::strerror(EISDIR);
    return false;
  }
  char chunk[1 << 16];
  std::size_t n = 0;
  while ((n = std::fread(chunk, 1, sizeof chunk, in)) > 0)
    out.append(chunk, n);
  const bool failed = std::ferror(in) != 0;
  const int read_errno = errno;
  std::fclose(in);
  if (failed) {
    error = path + ": read error: " + std::strerror(read_errno);
    return false;
  }
  return true;
}

}  // namespace capheap::sim
