// layout_builtin.hpp — the bundled chip layouts, compiled into the simulator (generated from
// layouts/*.json by cmake/EmbedLayouts.cmake), so they are found without files at run time.
#ifndef CAPHEAP_SIM_LAYOUT_BUILTIN_HPP
#define CAPHEAP_SIM_LAYOUT_BUILTIN_HPP

#include <cstddef>

namespace capheap::sim {

struct BuiltinLayout {
  const char *name;  ///< chip name (the file's stem)
  const char *json;  ///< the file's text
};

extern const BuiltinLayout kBuiltinLayouts[];
extern const std::size_t kBuiltinLayoutCount;

}  // namespace capheap::sim

#endif  // CAPHEAP_SIM_LAYOUT_BUILTIN_HPP
