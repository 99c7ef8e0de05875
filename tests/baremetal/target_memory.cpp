// target_memory.cpp — see target_memory.hpp.
#include "target_memory.hpp"

namespace capheap_target {

#if defined(CAPHEAP_TARGET_EXT_RAM_START) && defined(CAPHEAP_TARGET_EXT_RAM_SIZE)
unsigned char *ext_ram() noexcept {
  return reinterpret_cast<unsigned char *>(std::uintptr_t(CAPHEAP_TARGET_EXT_RAM_START));
}
std::size_t ext_ram_size() noexcept {
  return std::size_t(CAPHEAP_TARGET_EXT_RAM_SIZE);
}
#else
namespace {
alignas(16) unsigned char g_ext[(4u << 20) + (64u << 10)];
}
unsigned char *ext_ram() noexcept {
  return g_ext;
}
std::size_t ext_ram_size() noexcept {
  return sizeof g_ext;
}
#endif

}  // namespace capheap_target
