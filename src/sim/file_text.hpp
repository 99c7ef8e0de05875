// file_text.hpp — reads a whole input file (a trace, a layout) with an error that names it.
#ifndef CAPHEAP_SIM_FILE_TEXT_HPP
#define CAPHEAP_SIM_FILE_TEXT_HPP

#include <string>

namespace capheap::sim {

/// Appends the bytes of the file at `path` to `out`. Returns false with `error` set to
/// "PATH: cannot open: REASON" (missing, unreadable, or a directory) or "PATH: read error:
/// REASON"; `out` may then hold part of the file.
bool read_text_file(const std::string &path, std::string &out, std::string &error);

}  // namespace capheap::sim

#endif  // CAPHEAP_SIM_FILE_TEXT_HPP
