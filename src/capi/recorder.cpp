// recorder.cpp — the event recorder (include/capheap_recorder.h): each event of the seam
// (events.hpp) becomes one line of capheap's trace format, formatted into a stack buffer and
// handed to the user's callback. No lock and no allocation: one atomic increment for `seq`.

#include "capheap_recorder.h"

#include "capi/capi_internal.hpp"
#include "capi/events.hpp"
#include "capi/text_out.hpp"
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

/// `0x` + lower-case hex, no padding (trace IDs and fields).
TextOut &hex_field(TextOut &out, std::uintptr_t v) noexcept {
  out.str("0x");
  return out.hex(v);
}

}  // namespace

void recorder_on_event(const AllocEvent &event) noexcept {
  const Installed *inst = __atomic_load_n(&g_installed, __ATOMIC_ACQUIRE);
  if (inst == nullptr) return;
  char buf[CAPHEAP_RECORDER_MAX_LINE];
  TextOut out(buf, sizeof buf);
  const std::uintptr_t id = display_address(
      event.op == EventOp::kRealloc && event.old_ptr != nullptr ? event.old_ptr : event.ptr);
  switch (event.op) {
    case EventOp::kMalloc:
      hex_field(out.str("a "), id).ch(' ').dec(event.size);
      break;
    case EventOp::kCalloc:
      if (event.alignment != 0) {
        hex_field(out.str("m "), id).ch(' ').dec(event.alignment).ch(' ').dec(event.size);
      } else {
        hex_field(out.str("z "), id).str(" 1 ").dec(event.size);
      }
      break;
    case EventOp::kAlignedAlloc:
      hex_field(out.str("m "), id).ch(' ').dec(event.alignment).ch(' ').dec(event.size);
      break;
    case EventOp::kRealloc:
      hex_field(out.str("r "), id).ch(' ').dec(event.size);
      break;
    case EventOp::kFree:
      hex_field(out.str("f "), id);
      break;
  }
  if (event.op != EventOp::kFree) hex_field(out.str(" caps="), event.caps);
  out.str(" t=").dec(capheap_port_time_ns());
  hex_field(out.str(" task="), capheap_port_task_owner());
  hex_field(out.str(" site="), reinterpret_cast<std::uintptr_t>(event.caller));
  out.str(" seq=").dec(__atomic_fetch_add(&g_seq, 1, __ATOMIC_RELAXED));
  if (event.op == EventOp::kRealloc && event.old_ptr != nullptr && event.old_ptr != event.ptr)
    hex_field(out.str(" to="), display_address(event.ptr));
  out.ch('\n');
  inst->callback(out.c_str(), out.size(), inst->user);
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
