// recorder.cpp — the event recorder (include/capheap_recorder.h): each event of the seam
// (events.hpp) becomes one line of capheap's trace format, formatted into a stack buffer and
// handed to the user's callback. No lock and no allocation: one atomic increment for `seq`.

#include "capheap_recorder.h"

#include "capi/capi_internal.hpp"
#include "capi/events.hpp"
#include "port/port.h"

#ifndef CAPHEAP_RECORDER
#define CAPHEAP_RECORDER 1
#endif

#if CAPHEAP_RECORDER

namespace capheap {
namespace capi {
namespace {

struct Installed {
  capheap_recorder_cb_t callback;
  void *user;
};

// The callback and its argument change together: readers load one pointer to a slot that is not
// rewritten while installed (two slots, alternated on each install).
Installed g_slots[2] = {};
Installed *g_installed = nullptr;
unsigned g_next_slot = 0;
int g_install_lock = 0;
std::uint64_t g_seq = 0;

// The line is written with raw stores into a buffer sized for the longest line: every field has a
// bounded width (hex up to 16 digits, decimal up to 20), so no bounds checks are needed.

/// Appends a literal (without its NUL).
template <std::size_t N>
__attribute__((always_inline)) inline char *put(char *w, const char (&text)[N]) noexcept {
  __builtin_memcpy(w, text, N - 1);
  return w + N - 1;
}

/// Appends `0x` and lower-case hex without padding.
__attribute__((always_inline)) inline char *put_hex(char *w, std::uint64_t v) noexcept {
  static const char kDigits[] = "0123456789abcdef";
  const int digits = v == 0 ? 1 : (67 - __builtin_clzll(v)) / 4;
  w[0] = '0';
  w[1] = 'x';
  char *end = w + 2 + digits;
  char *d = end;
  do {
    *--d = kDigits[v & 0xFu];
    v >>= 4;
  } while (d != w + 2);
  return end;
}

/// Appends unsigned decimal.
__attribute__((always_inline)) inline char *put_dec(char *w, std::uint64_t v) noexcept {
  char tmp[20];
  char *t = tmp + sizeof tmp;
  do {
    *--t = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  const auto n = static_cast<std::size_t>(tmp + sizeof tmp - t);
  __builtin_memcpy(w, t, n);
  return w + n;
}

// Longest line: "r " + ID (18) + " " + SIZE (20) + " caps=" (6) + 10 + " t=" (3) + 20 + " task="
// (6) + 10 + " site=" (6) + 18 + " seq=" (5) + 20 + " to=" (4) + 18 + "\n" < 200.
static_assert(CAPHEAP_RECORDER_MAX_LINE >= 200, "line buffer too small");

}  // namespace

void recorder_on_event(const AllocEvent &event) noexcept {
  const Installed *inst = __atomic_load_n(&g_installed, __ATOMIC_ACQUIRE);
  if (inst == nullptr) return;
  char buf[CAPHEAP_RECORDER_MAX_LINE];
  char *w = buf;
  const bool moved_from = event.op == EventOp::kRealloc && event.old_ptr != nullptr;
  const std::uintptr_t id = display_address(moved_from ? event.old_ptr : event.ptr);
  switch (event.op) {
    case EventOp::kMalloc:
      w = put_dec(put(put_hex(put(w, "a "), id), " "), event.size);
      break;
    case EventOp::kCalloc:
      if (event.alignment != 0) {
        w = put_hex(put(w, "m "), id);
        w = put_dec(put(put_dec(put(w, " "), event.alignment), " "), event.size);
      } else {
        w = put_dec(put(put_hex(put(w, "z "), id), " 1 "), event.size);
      }
      break;
    case EventOp::kAlignedAlloc:
      w = put_hex(put(w, "m "), id);
      w = put_dec(put(put_dec(put(w, " "), event.alignment), " "), event.size);
      break;
    case EventOp::kRealloc:
      w = put_dec(put(put_hex(put(w, "r "), id), " "), event.size);
      break;
    case EventOp::kFree:
      w = put_hex(put(w, "f "), id);
      break;
  }
  if (event.op != EventOp::kFree) w = put_hex(put(w, " caps="), event.caps);
  w = put_dec(put(w, " t="), capheap_port_time_ns());
  w = put_hex(put(w, " task="), capheap_port_task_owner());
  w = put_hex(put(w, " site="), reinterpret_cast<std::uintptr_t>(event.caller));
  w = put_dec(put(w, " seq="), __atomic_fetch_add(&g_seq, 1, __ATOMIC_RELAXED));
  if (moved_from && event.old_ptr != event.ptr)
    w = put_hex(put(w, " to="), display_address(event.ptr));
  *w++ = '\n';
  inst->callback(buf, static_cast<std::size_t>(w - buf), inst->user);
}

}  // namespace capi
}  // namespace capheap

using namespace capheap::capi;

extern "C" {

esp_err_t capheap_recorder_install(capheap_recorder_cb_t callback, void *user) {
  if (callback == nullptr) return ESP_ERR_INVALID_ARG;
  while (__atomic_exchange_n(&g_install_lock, 1, __ATOMIC_ACQUIRE) != 0) {
  }
  esp_err_t err = ESP_ERR_INVALID_STATE;
  if (__atomic_load_n(&g_installed, __ATOMIC_ACQUIRE) == nullptr) {
    Installed *slot = &g_slots[g_next_slot];
    g_next_slot ^= 1u;
    slot->callback = callback;
    slot->user = user;
    __atomic_store_n(&g_seq, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&g_installed, slot, __ATOMIC_RELEASE);
    set_event_sink(kSinkRecorder, true);
    err = ESP_OK;
  }
  __atomic_store_n(&g_install_lock, 0, __ATOMIC_RELEASE);
  return err;
}

esp_err_t capheap_recorder_uninstall(void) {
  while (__atomic_exchange_n(&g_install_lock, 1, __ATOMIC_ACQUIRE) != 0) {
  }
  esp_err_t err = ESP_ERR_INVALID_STATE;
  if (__atomic_load_n(&g_installed, __ATOMIC_ACQUIRE) != nullptr) {
    set_event_sink(kSinkRecorder, false);
    __atomic_store_n(&g_installed, static_cast<Installed *>(nullptr), __ATOMIC_RELEASE);
    err = ESP_OK;
  }
  __atomic_store_n(&g_install_lock, 0, __ATOMIC_RELEASE);
  return err;
}

bool capheap_recorder_active(void) {
  return __atomic_load_n(&g_installed, __ATOMIC_ACQUIRE) != nullptr;
}

}  // extern "C"

#else  // !CAPHEAP_RECORDER

namespace capheap {
namespace capi {
void recorder_on_event(const AllocEvent &) noexcept {}
}  // namespace capi
}  // namespace capheap

extern "C" {
esp_err_t capheap_recorder_install(capheap_recorder_cb_t, void *) {
  return ESP_ERR_NOT_SUPPORTED;
}
esp_err_t capheap_recorder_uninstall(void) {
  return ESP_ERR_NOT_SUPPORTED;
}
bool capheap_recorder_active(void) {
  return false;
}
}  // extern "C"

#endif  // CAPHEAP_RECORDER
