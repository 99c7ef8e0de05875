// port_host_tasks.cpp — the host port's task identities, clocks and call-stack capture.
//
// A "task" on the host is a thread. Each thread gets a 32-bit owner word on first use (1, 2, ...,
// never reused, so a dead thread's blocks stay attributable); its name and liveness are kept in a
// fixed table so that queries never allocate.
//
// Thread safety: a slot's name is written by its own thread (on first use, when it asks for its
// own name, and when it ends) and read by any thread, so it is stored as two atomic 64-bit words
// (a reader racing a rename may see a mix of the two names, never a torn word). Owners beyond the
// table (more than kMaxTasks - 1 threads in the process's life) are named "thread-<owner>" and
// count as alive.

#include <execinfo.h>
#include <pthread.h>
#include <sched.h>
#include <sys/prctl.h>
#include <time.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "capheap.h"
#include "port/port.h"

namespace {

constexpr std::size_t kMaxTasks = 4096;
constexpr std::size_t kNameBytes = 16;  // Linux thread names are at most 15 characters

struct TaskSlot {
  std::atomic<bool> alive{false};
  std::atomic<std::uint64_t> name[kNameBytes / 8] = {};
};

TaskSlot g_tasks[kMaxTasks];
std::atomic<std::uint32_t> g_next_owner{1};

void store_name(std::uint32_t owner, const char (&text)[kNameBytes]) {
  for (std::size_t w = 0; w < kNameBytes / 8; ++w) {
    std::uint64_t word;
    std::memcpy(&word, text + 8 * w, 8);
    g_tasks[owner].name[w].store(word, std::memory_order_relaxed);
  }
}

// False if the slot has no name yet.
bool load_name(std::uint32_t owner, char (&text)[kNameBytes]) {
  for (std::size_t w = 0; w < kNameBytes / 8; ++w) {
    const std::uint64_t word = g_tasks[owner].name[w].load(std::memory_order_relaxed);
    std::memcpy(text + 8 * w, &word, 8);
  }
  text[kNameBytes - 1] = '\0';
  return text[0] != '\0';
}

// Records the calling thread's current name (prctl: no allocation, no /proc access).
void remember_name(std::uint32_t owner) {
  if (owner >= kMaxTasks) return;
  char name[kNameBytes] = {};
  if (prctl(PR_GET_NAME, name, 0, 0, 0) != 0 || name[0] == '\0')
    std::snprintf(name, sizeof name, "thread-%u", owner);
  name[kNameBytes - 1] = '\0';
  store_name(owner, name);
}

struct ThreadOwner {
  std::uint32_t owner = 0;
  ~ThreadOwner() {
    if (owner == 0 || owner >= kMaxTasks) return;
    remember_name(owner);  // the name it ended with
    g_tasks[owner].alive.store(false, std::memory_order_release);
  }
};

thread_local ThreadOwner t_owner;

}  // namespace

extern "C" {

void capheap_set_task_hooks(const capheap_task_hooks_t *) {}
void capheap_set_clock_hooks(uint32_t (*)(void), uint64_t (*)(void)) {}

uint32_t capheap_port_task_owner(void) {
  if (t_owner.owner == 0) {
    const std::uint32_t owner = g_next_owner.fetch_add(1, std::memory_order_relaxed);
    remember_name(owner);
    if (owner < kMaxTasks) g_tasks[owner].alive.store(true, std::memory_order_release);
    t_owner.owner = owner;
  }
  return t_owner.owner;
}

size_t capheap_port_task_name(uint32_t owner, char *buf, size_t len) {
  char text[kNameBytes + 16];
  char stored[kNameBytes];
  if (owner == 0) {
    std::snprintf(text, sizeof text, "Pre-scheduler");
  } else if (owner < kMaxTasks && owner == t_owner.owner) {
    // The calling thread's name may have changed since it was first seen: refresh it.
    remember_name(owner);
    load_name(owner, stored);
    std::snprintf(text, sizeof text, "%s", stored);
  } else if (owner < kMaxTasks && load_name(owner, stored)) {
    std::snprintf(text, sizeof text, "%s", stored);
  } else {
    std::snprintf(text, sizeof text, "thread-%u", owner);
  }
  const std::size_t n = std::strlen(text);
  if (len > 0 && buf != nullptr) {
    const std::size_t copy = n < len - 1 ? n : len - 1;
    std::memcpy(buf, text, copy);
    buf[copy] = '\0';
  }
  return n;
}

bool capheap_port_task_alive(uint32_t owner) {
  if (owner == 0) return true;
  if (owner >= kMaxTasks) return owner < g_next_owner.load(std::memory_order_relaxed);
  return g_tasks[owner].alive.load(std::memory_order_acquire);
}

uint64_t capheap_port_time_ns(void) {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

uint32_t capheap_port_cycle_count(void) {
  // A 240 MHz "CCOUNT": what an ESP32 would count, so trace dumps look like the device's.
  return static_cast<uint32_t>(capheap_port_time_ns() * 240u / 1000u);
}

uint32_t capheap_port_cpu_id(void) {
  const int cpu = sched_getcpu();
  return cpu < 0 ? 0u : static_cast<uint32_t>(cpu);
}

size_t capheap_port_backtrace(void **frames, size_t depth, size_t skip) {
  if (depth == 0) return 0;
  void *buf[64];
  const std::size_t want = depth + skip + 1 < 64 ? depth + skip + 1 : 64;
  const int got = backtrace(buf, static_cast<int>(want));
  std::size_t n = 0;
  for (int i = static_cast<int>(skip) + 1; i < got && n < depth; ++i)
    frames[n++] = buf[i];
  return n;
}

}  // extern "C"
