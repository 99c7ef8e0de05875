// target_memory.hpp — memory the target tests may use besides their static arrays: the "external
// RAM" of the target (CAPHEAP_TARGET_EXT_RAM_START/SIZE from the toolchain file: the mps2 boards'
// PSRAM, a part of the RISC-V virt RAM the linker does not use), or a static array where the build
// names none (host builds of the target tests).
#ifndef CAPHEAP_TESTS_BAREMETAL_TARGET_MEMORY_HPP
#define CAPHEAP_TESTS_BAREMETAL_TARGET_MEMORY_HPP

#include <cstddef>
#include <cstdint>

namespace capheap_target {

/// Start (16-byte aligned) and size of the external RAM; at least 4 MiB + 64 KiB.
unsigned char *ext_ram() noexcept;
std::size_t ext_ram_size() noexcept;

}  // namespace capheap_target

#endif
