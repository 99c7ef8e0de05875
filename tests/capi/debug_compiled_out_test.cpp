// debug_compiled_out_test.cpp — heap tracing and the event recorder compiled out
// (CAPHEAP_HEAP_TRACE=0, CAPHEAP_RECORDER=0: src/capi/heap_trace.cpp and src/capi/recorder.cpp are
// compiled into this test with those values, their objects taking the place of the library's).
// Every function reports ESP_ERR_NOT_SUPPORTED (or its documented neutral value) and the event
// sinks are never set, so allocation pays nothing.

#include <gtest/gtest.h>

#include "capheap_host.h"
#include "capheap_recorder.h"
#include "capi/events.hpp"
#include "esp_heap_caps.h"
#include "esp_heap_trace.h"

namespace {

void ignore(const char *, std::size_t, void *) {}

TEST(DebugCompiledOut, EverythingReportsNotSupportedAndNoSinkIsSet) {
  capheap_host_deinit();
  ASSERT_EQ(capheap_host_init("esp32", nullptr), ESP_OK);
  heap_trace_record_t records[4] = {};
  EXPECT_EQ(heap_trace_init_standalone(records, 4), ESP_ERR_NOT_SUPPORTED);
  EXPECT_EQ(heap_trace_init_tohost(), ESP_ERR_NOT_SUPPORTED);
  EXPECT_EQ(heap_trace_start(HEAP_TRACE_LEAKS), ESP_ERR_NOT_SUPPORTED);
  EXPECT_EQ(heap_trace_stop(), ESP_ERR_NOT_SUPPORTED);
  EXPECT_EQ(heap_trace_resume(), ESP_ERR_NOT_SUPPORTED);
  EXPECT_EQ(heap_trace_alloc_pause(), ESP_ERR_NOT_SUPPORTED);
  EXPECT_EQ(heap_trace_get_count(), 0u);
  heap_trace_record_t r{};
  EXPECT_EQ(heap_trace_get(0, &r), ESP_ERR_NOT_SUPPORTED);
  heap_trace_summary_t s{};
  EXPECT_EQ(heap_trace_summary(&s), ESP_ERR_NOT_SUPPORTED);

  EXPECT_EQ(capheap_recorder_install(ignore, nullptr), ESP_ERR_NOT_SUPPORTED);
  alignas(8) unsigned char ring[4 * CAPHEAP_RECORDER_EVENT_SIZE];
  const capheap_recorder_config_t config = {ignore, nullptr, ring, sizeof ring, 0};
  EXPECT_EQ(capheap_recorder_install_config(&config), ESP_ERR_NOT_SUPPORTED);
  EXPECT_FALSE(capheap_recorder_active());
  EXPECT_EQ(capheap_recorder_flush(), 0u);
  EXPECT_EQ(capheap_recorder_drain(10), 0u);
  capheap_recorder_stats_t st;
  EXPECT_EQ(capheap_recorder_get_stats(&st), ESP_ERR_NOT_SUPPORTED);
  EXPECT_EQ(capheap_recorder_uninstall(), ESP_ERR_NOT_SUPPORTED);

  EXPECT_EQ(__atomic_load_n(&capheap::capi::g_event_sinks, __ATOMIC_RELAXED), 0u);
  EXPECT_FALSE(capheap::capi::events_on());
  void *p = heap_caps_malloc(32, MALLOC_CAP_DEFAULT);
  ASSERT_NE(p, nullptr);
  heap_caps_free(p);
  heap_trace_dump();  // prints nothing, does not crash
  EXPECT_EQ(__atomic_load_n(&capheap::capi::g_event_sinks, __ATOMIC_RELAXED), 0u);
  capheap_host_deinit();
}

}  // namespace
