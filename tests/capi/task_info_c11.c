/* task_info_c11.c — esp_heap_task_info.h is pure C: this file is compiled as strict ISO C11 and
 * C99 (syntax check; not linked) and uses every type and function of the header. */
#include <stdio.h>

#include "esp_heap_task_info.h"

size_t task_info_c_uses_everything(void);
size_t task_info_c_uses_everything(void) {
  heap_task_totals_t totals[2];
  size_t num_totals = 0;
  heap_task_block_t blocks[2];
  heap_task_info_params_t params = {{0}, {0}, NULL, 0, NULL, NULL, 0, NULL, 0};
  heap_all_tasks_stat_t all = {0, NULL, 0, NULL, 0, NULL};
  heap_single_task_stat_t one;
  TaskHandle_t task = NULL;
  size_t n;
  params.totals = totals;
  params.num_totals = &num_totals;
  params.max_totals = 2;
  params.blocks = blocks;
  params.max_blocks = 2;
  n = heap_caps_get_per_task_info(&params);
  if (heap_caps_alloc_all_task_stat_arrays(&all) == ESP_OK) {
    (void)heap_caps_get_all_task_stat(&all);
    heap_caps_free_all_task_stat_arrays(&all);
  }
  if (heap_caps_alloc_single_task_stat_arrays(&one, task) == ESP_OK) {
    (void)heap_caps_get_single_task_stat(&one, task);
    heap_caps_free_single_task_stat_arrays(&one);
  }
  heap_caps_print_all_task_stat(stdout);
  heap_caps_print_all_task_stat_overview(NULL);
  heap_caps_print_single_task_stat(NULL, task);
  heap_caps_print_single_task_stat_overview(stdout, task);
  capheap_task_stats_track_deleted(capheap_task_stats_enabled());
  return n + capheap_task_stats_overflow() + NUM_HEAP_TASK_CAPS + sizeof(task_stat_t) +
         sizeof(heap_stat_t);
}
