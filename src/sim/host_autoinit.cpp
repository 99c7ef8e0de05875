// host_autoinit.cpp — the strong definition of capheap_host_autoinit, the hook the C API calls on
// the first heap_caps_* use when nothing initialised it (capi/capi_internal.hpp).
//
// It lives in its own translation unit on purpose: the C API declares the hook weak, and a
// definition that sees that declaration would be weak as well. This file includes only the public
// header, so the definition is strong. The capheap_host target links with
// `-u capheap_host_autoinit`, which makes the linker pull this object (and, through
// capheap_host_init, the rest of the simulator) out of the static library even though the C API
// references the hook only weakly (a weak reference alone never pulls an archive member).

#include <cstdio>
#include <cstdlib>

#include "capheap_host.h"

extern "C" void capheap_host_autoinit(void) {
  // There is no way to report an error from malloc: say why and stop.
  const esp_err_t err = capheap_host_init(nullptr, nullptr);
  if (err != ESP_OK) {
    std::fprintf(stderr,
                 "capheap: automatic initialisation of the host simulator failed (error 0x%x); "
                 "check the CAPHEAP_* environment variables or call capheap_host_init first\n",
                 static_cast<unsigned>(err));
    std::abort();
  }
}
