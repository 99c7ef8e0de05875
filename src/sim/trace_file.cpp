// sim/trace_file.cpp — CAPHEAP_TRACE_FILE (see trace_file.hpp).
//
// The recorder stores events in per-thread rings (kTraceFileBytes,
// CAPHEAP_RECORDER_FLUSH_WHEN_FULL so that nothing is lost while a ring is free for the thread); a
// background thread drains it every kDrainPeriodMs, and uninstall drains the rest. The callback
// runs under the recorder's drain lock (one at a time), possibly inside malloc itself when the ring
// is full and the C library is mapped onto capheap: it must not allocate. Lines are appended to a
// static buffer and written with write(2); no stdio.

#include "sim/trace_file.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "capheap_recorder.h"

namespace capheap::sim {
namespace {

// Per-thread rings of 4096 records carved from 10 MiB (the last eighth is the drain's live-address
// table): 36 rings, so 36 threads record at once (threads that end give theirs back).
constexpr unsigned kTraceFileRingLog2 = 12;
constexpr std::size_t kTraceFileBytes = std::size_t(10) << 20;
constexpr long kDrainPeriodMs = 2;

pthread_mutex_t g_mutex = PTHREAD_MUTEX_INITIALIZER;  // start / stop; the thread's state
pthread_cond_t g_cond = PTHREAD_COND_INITIALIZER;
int g_fd = -1;
bool g_stop = false;
bool g_thread_running = false;
pthread_t g_thread;
char g_buf[kTraceFileFlushAt + CAPHEAP_RECORDER_MAX_LINE];
std::size_t g_used = 0;  // owned by whoever holds the recorder's drain lock (or g_mutex when off)
alignas(CAPHEAP_RECORDER_BUFFER_ALIGN) unsigned char g_ring[kTraceFileBytes];
// Write failures (disk full, file size limit, I/O error): the first errno, reported when the file
// is closed. The file then keeps the complete lines written before it and nothing after, so that
// what is there is a prefix of the recording, never a cut line or a gap.
int g_write_errno = 0;
off_t g_written = 0;  // bytes in the file, all of them complete lines
char g_path[512];     // for the message (truncated if longer)

void write_all(const char *p, std::size_t n) {
  if (g_fd < 0 || g_write_errno != 0) return;
  const char *const begin = p;
  while (n > 0) {
    const ssize_t w = ::write(g_fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      g_write_errno = errno;
      // Drop a partly written line (g_buf holds whole lines): the file ends at a line's end.
      std::size_t keep = static_cast<std::size_t>(p - begin);
      while (keep > 0 && begin[keep - 1] != '\n')
        --keep;
      (void)!::ftruncate(g_fd, g_written + static_cast<off_t>(keep));
      return;  // nothing sensible to do inside an allocation: reported by stop_trace_file
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  g_written += static_cast<off_t>(p - begin);
}

void flush_buffer() {
  write_all(g_buf, g_used);
  g_used = 0;
}

void on_line(const char *line, std::size_t len, void *) {
  std::memcpy(g_buf + g_used, line, len);
  g_used += len;
  if (g_used >= kTraceFileFlushAt) flush_buffer();
}

void *drain_thread(void *) {
  pthread_mutex_lock(&g_mutex);
  while (!g_stop) {
    pthread_mutex_unlock(&g_mutex);
    (void)capheap_recorder_flush();
    pthread_mutex_lock(&g_mutex);
    timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += kDrainPeriodMs * 1000000;
    if (until.tv_nsec >= 1000000000) {
      until.tv_nsec -= 1000000000;
      ++until.tv_sec;
    }
    if (!g_stop) pthread_cond_timedwait(&g_cond, &g_mutex, &until);
  }
  pthread_mutex_unlock(&g_mutex);
  return nullptr;
}

void flush_at_exit() {
  stop_trace_file();
}

// fork(): the file is the parent's recording. The child inherits the descriptor (one file offset
// for both) and a copy of the recorder and of g_buf; at its exit stop_trace_file wrote the lines
// buffered before fork a second time, and its own events, into the parent's file. The child closes
// its copy of the descriptor and drops what is buffered instead: it records into nothing (its
// events are discarded when its ring is drained), and its exit writes nothing. No prepare handler:
// taking g_mutex there would order it before the simulator's heap locks (its handler runs after
// this one), while stop_trace_file may allocate (stderr) under g_mutex. The child re-initialises
// g_mutex instead, which the parent's drain thread (absent in the child) may have held.
void after_fork_in_child() {
  g_mutex = PTHREAD_MUTEX_INITIALIZER;
  g_cond = PTHREAD_COND_INITIALIZER;
  if (g_fd >= 0) {
    (void)::close(g_fd);
    g_fd = -1;
  }
  g_used = 0;
  g_write_errno = 0;
  g_thread_running = false;  // (the drain thread is not in the child)
}

}  // namespace

esp_err_t start_trace_file_from_env(const char *chip) {
  const char *path = std::getenv("CAPHEAP_TRACE_FILE");
  if (path == nullptr || *path == '\0') return ESP_OK;
  if (capheap_recorder_active()) return ESP_ERR_INVALID_STATE;
  const int fd = ::open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    std::fprintf(stderr, "capheap: cannot open CAPHEAP_TRACE_FILE '%s': %s\n", path,
                 std::strerror(errno));
    return ESP_ERR_INVALID_ARG;
  }
  pthread_mutex_lock(&g_mutex);
  g_fd = fd;
  g_write_errno = 0;
  g_written = 0;
  std::snprintf(g_path, sizeof g_path, "%s", path);
  const int n = std::snprintf(g_buf, sizeof g_buf,
                              CAPHEAP_RECORDER_HEADER "# workload: capheap recording\n# chip: %s\n",
                              chip != nullptr ? chip : "unknown");
  g_used = n > 0 ? static_cast<std::size_t>(n) : 0;
  pthread_mutex_unlock(&g_mutex);
  static const bool registered = [] {
    return std::atexit(flush_at_exit) == 0 &&
           pthread_atfork(nullptr, nullptr, after_fork_in_child) == 0;
  }();
  (void)registered;
  const capheap_recorder_config_t config = {
      on_line, nullptr, g_ring, sizeof g_ring,
      CAPHEAP_RECORDER_FLUSH_WHEN_FULL | CAPHEAP_RECORDER_RING_EVENTS_LOG2(kTraceFileRingLog2)};
  const esp_err_t err = capheap_recorder_install_config(&config);
  if (err != ESP_OK) {
    stop_trace_file();
    return err;
  }
  pthread_mutex_lock(&g_mutex);
  g_stop = false;
  // Without the thread the ring still drains when full and at the end.
  g_thread_running = pthread_create(&g_thread, nullptr, drain_thread, nullptr) == 0;
  pthread_mutex_unlock(&g_mutex);
  return ESP_OK;
}

void stop_trace_file() {
  pthread_mutex_lock(&g_mutex);
  const bool open = g_fd >= 0;
  const bool running = g_thread_running;
  g_stop = true;
  g_thread_running = false;
  pthread_cond_signal(&g_cond);
  pthread_mutex_unlock(&g_mutex);
  if (!open) return;
  if (running) pthread_join(g_thread, nullptr);
  (void)capheap_recorder_uninstall();  // delivers what is pending
  pthread_mutex_lock(&g_mutex);
  flush_buffer();
  if (::close(g_fd) != 0 && g_write_errno == 0) g_write_errno = errno;
  g_fd = -1;
  if (g_write_errno != 0) {
    std::fprintf(stderr,
                 "capheap: CAPHEAP_TRACE_FILE '%s': write failed: %s; the recording is "
                 "incomplete\n",
                 g_path, std::strerror(g_write_errno));
    g_write_errno = 0;
  }
  pthread_mutex_unlock(&g_mutex);
}

}  // namespace capheap::sim
