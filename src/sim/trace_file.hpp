// sim/trace_file.hpp — CAPHEAP_TRACE_FILE: the host simulator records a whole program run into a
// trace file through the event recorder (include/capheap_recorder.h, docs/debugging.md).
#ifndef CAPHEAP_SIM_TRACE_FILE_HPP
#define CAPHEAP_SIM_TRACE_FILE_HPP

#include <cstddef>

#include "esp_err.h"

namespace capheap::sim {

/// Bytes of lines buffered before the file is written.
inline constexpr std::size_t kTraceFileFlushAt = 60 * 1024;

/// If $CAPHEAP_TRACE_FILE is set and not empty: creates (truncates) that file, writes the header
/// (`# heap-trace v1`, `# workload: capheap recording`, `# chip: CHIP`), installs the recorder on a
/// static 10 MiB pool of per-thread rings (4096 records each, up to 36 threads at once) with
/// CAPHEAP_RECORDER_FLUSH_WHEN_FULL (no event of a thread with a ring is lost) and starts
/// a thread that drains it every 2 ms; lines are buffered and written when kTraceFileFlushAt bytes
/// are pending, at exit and on stop_trace_file(). A child of fork() closes its copy of the file
/// and drops the buffered lines: it writes nothing (fork handlers, registered with the first
/// start). Returns ESP_OK (also when the variable is unset);
/// ESP_ERR_INVALID_ARG after printing "capheap: cannot open CAPHEAP_TRACE_FILE 'PATH': REASON" to
/// stderr; ESP_ERR_INVALID_STATE if a recorder is already installed.
esp_err_t start_trace_file_from_env(const char *chip);

/// Stops the thread, uninstalls the file's recorder (which delivers every pending event), writes
/// what is buffered and closes the file (no-op if none). If a write failed (disk full, file size
/// limit, I/O error), the file holds the complete lines written before the failure and nothing
/// after it, and "capheap: CAPHEAP_TRACE_FILE 'PATH': write failed: REASON; the recording is
/// incomplete" is printed to stderr.
void stop_trace_file();

}  // namespace capheap::sim

#endif  // CAPHEAP_SIM_TRACE_FILE_HPP
