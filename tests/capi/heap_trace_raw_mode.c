/* heap_trace_raw_mode.c — heap_trace_start with any integer as the mode, as a C caller may pass
 * (well-defined in C; heap_trace_test.cpp checks that such a mode is refused). */
#include "esp_heap_trace.h"

esp_err_t heap_trace_start_raw(int mode);

esp_err_t heap_trace_start_raw(int mode) {
  return heap_trace_start((heap_trace_mode_t)mode);
}
