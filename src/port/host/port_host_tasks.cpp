// port_host_tasks.cpp — the host port's task identities, clocks and call-stack capture.
//
// A "task" on the host is a thread. Each thread gets a 32-bit owner word on first use (1, 2, ...,
// never reused, so a dead thread's blocks stay attributable); its name and liveness are kept in a
// fixed table so that queries never allocate.

#include <execinfo.h>
#include <pthread.h>
#include <sched.h>
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
  char name[kNameBytes];
};

TaskSlot g_tasks[kMaxTasks];
std::atomic<std::uint32_t> g_next_owner{1};

struct ThreadOwner {
  std::uint32_t owner = 0;
  ~ThreadOwner() {
    if (owner != 0 && owner < kMaxTasks) g_tasks[owner].alive.store(false);
  }
};

thread_local ThreadOwner t_owner;

void remember_name(std::uint32_t owner) {
  if (owner >= kMaxTasks) return;
  char name[kNameBytes] = {};
  if (pthread_getname_np(pthread_self(), name, sizeof name) != 0 || name[0] == '\0')
    std::snprintf(name, sizeof name, "thread-%u", owner);
  std::memcpy(g_tasks[owner].name, name, sizeof name);
  g_tasks[owner].alive.store(true);
}

}  // namespace

extern "C" {

void capheap_set_task_hooks(const capheap_task_hooks_t *) {}
void capheap_set_clock_hooks(uint32_t (*)(void), uint64_t (*)(void)) {}

uint32_t capheap_port_task_owner(void) {
  if (t_owner.owner == 0) {
    t_owner.owner = g_next_owner.fetch_add(1, std::memory_order_relaxed);
    remember_name(t_owner.owner);
  }
  return t_owner.owner;
}

size_t capheap_port_task_name(uint32_t owner, char *buf, size_t len) {
  char text[kNameBytes + 16];
  if (owner == 0) {
    std::snprintf(text, sizeof text, "Pre-scheduler");
  } else if (owner < kMaxTasks && g_tasks[owner].name[0] != '\0') {
    // The calling thread's name may have changed since it was first seen: refresh it.
    if (owner == t_owner.owner) remember_name(owner);
    std::snprintf(text, sizeof text, "%s", g_tasks[owner].name);
  } else {
    std::snprintf(text, sizeof text, "thread-%u", owner);
  }
  const std::size_t n = std::strlen(text);
  if (len > 0) {
    const std::size_t copy = n < len - 1 ? n : len - 1;
    std::memcpy(buf, text, copy);
    buf[copy] = '\0';
  }
  return n;
}

bool capheap_port_task_alive(uint32_t owner) {
  if (owner == 0) return true;
  if (owner >= kMaxTasks) return owner < g_next_owner.load();
  return g_tasks[owner].alive.load();
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
