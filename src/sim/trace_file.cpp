// sim/trace_file.cpp — CAPHEAP_TRACE_FILE (see trace_file.hpp).
//
// The recorder's callback runs inside heap_caps_* calls, possibly inside malloc itself when the C
// library is mapped onto capheap: it must not allocate. Lines are appended to a static buffer under
// a mutex and written with write(2); no stdio.

#include "sim/trace_file.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "capheap_recorder.h"

namespace capheap::sim {
namespace {

pthread_mutex_t g_mutex = PTHREAD_MUTEX_INITIALIZER;
int g_fd = -1;
char g_buf[kTraceFileFlushAt + CAPHEAP_RECORDER_MAX_LINE];
std::size_t g_used = 0;

void write_all(const char *p, std::size_t n) {
  while (n > 0 && g_fd >= 0) {
    const ssize_t w = ::write(g_fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return;  // the recording is lost; nothing sensible to do inside an allocation
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

void flush_locked() {
  write_all(g_buf, g_used);
  g_used = 0;
}

void on_line(const char *line, std::size_t len, void *) {
  pthread_mutex_lock(&g_mutex);
  if (g_fd >= 0) {
    std::memcpy(g_buf + g_used, line, len);
    g_used += len;
    if (g_used >= kTraceFileFlushAt) flush_locked();
  }
  pthread_mutex_unlock(&g_mutex);
}

void flush_at_exit() {
  stop_trace_file();
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
  g_used = 0;
  const int n = std::snprintf(g_buf, sizeof g_buf,
                              CAPHEAP_RECORDER_HEADER "# workload: capheap recording\n# chip: %s\n",
                              chip != nullptr ? chip : "unknown");
  g_used = n > 0 ? static_cast<std::size_t>(n) : 0;
  pthread_mutex_unlock(&g_mutex);
  static const bool registered = [] { return std::atexit(flush_at_exit) == 0; }();
  (void)registered;
  const esp_err_t err = capheap_recorder_install(on_line, nullptr);
  if (err != ESP_OK) stop_trace_file();
  return err;
}

void stop_trace_file() {
  pthread_mutex_lock(&g_mutex);
  const bool open = g_fd >= 0;
  pthread_mutex_unlock(&g_mutex);
  if (!open) return;
  (void)capheap_recorder_uninstall();
  pthread_mutex_lock(&g_mutex);
  flush_locked();
  ::close(g_fd);
  g_fd = -1;
  pthread_mutex_unlock(&g_mutex);
}

}  // namespace capheap::sim
