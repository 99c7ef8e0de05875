// host.cpp — the host simulator's C API (capheap_host.h): a chip's heaps inside a host process.
//
// capheap_host_init does what a device does before app code runs:
//   1. resolve the chip and the options (config fields, else CAPHEAP_* environment, else the chip's
//      defaults from its layout file);
//   2. load the layout (sim/layout.hpp) and map the chip's memory (sim/host_map.hpp: at the chip's
//      addresses when free, else elsewhere with reports still showing chip addresses);
//   3. heap_caps_init on the layout translated to host addresses;
//   4. with external RAM, what ESP-IDF's PSRAM driver does at startup (CONFIG_SPIRAM_USE_MALLOC):
//      add it as a heap at the head of the list (heap_caps_add_region_with_caps with the memory
//      type's caps), heap_caps_malloc_extmem_enable(CONFIG_SPIRAM_MALLOC_ALWAYSINTERNAL) and
//      reserve the internal DMA pool (CONFIG_SPIRAM_MALLOC_RESERVE_INTERNAL);
//   5. heap_caps_enable_nonos_stack_heaps: ESP-IDF app code always runs after the scheduler has
//      started, by which time the startup-stack regions are heaps. The simulator therefore hands
//      them out from the start (a device's heap list as seen from app_main).
//
// Steps 4 and 5 run inside the automatic initialisation too: the C API lets the initialising task
// re-enter it.

#include "capheap_host.h"

#include <pthread.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <optional>
#include <string>

#include "capheap.h"
#include "capi/capi_internal.hpp"
#include "esp_heap_caps.h"
#include "esp_heap_caps_init.h"
#include "esp_heap_task_info.h"
#include "sim/host_map.hpp"
#include "sim/layout.hpp"
#include "sim/size_text.hpp"
#include "sim/trace_file.hpp"

namespace {

using capheap::Caps;
using capheap::Placement;
using capheap::Registry;
using capheap::Status;

struct HostState {
  std::optional<capheap::sim::ChipLayout> chip;
  capheap::sim::HostMap map;
  capheap_poisoning_t poisoning = CAPHEAP_POISONING_NONE;
  std::size_t granule = 4;
  bool task_tracking = false;
};

// Heap-allocated so that nothing is destroyed at process exit while heaps may still be in use.
HostState *g_state = nullptr;

// ---- Options ------------------------------------------------------------------------------------

struct Resolved {
  std::string chip;
  std::optional<std::size_t> psram_size;
  std::optional<std::size_t> static_data_size;
  capheap_poisoning_t poisoning = CAPHEAP_POISONING_NONE;
  bool chip_addresses = true;
  std::size_t granule = 4;
  std::optional<bool> memprot;
  bool task_tracking = false;
};

// The value of an environment variable, or nullptr when unset or empty.
const char *env(const char *name) {
  const char *v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : nullptr;
}

esp_err_t bad_env(const char *name, const char *value, const char *expected) {
  std::fprintf(stderr, "capheap: bad %s value '%s': expected %s\n", name, value, expected);
  return ESP_ERR_INVALID_ARG;
}

constexpr const char *kSizeExpected =
    "a byte count with an optional K or M suffix (e.g. 4M, 512K, 0x8000)";

esp_err_t resolve(const char *chip_or_path, const capheap_host_config_t *cfg, Resolved *r) {
  const capheap_host_config_t def = CAPHEAP_HOST_CONFIG_DEFAULT;
  const capheap_host_config_t &c = cfg != nullptr ? *cfg : def;

  if (chip_or_path != nullptr && *chip_or_path != '\0') {
    r->chip = chip_or_path;
  } else if (const char *e = env("CAPHEAP_CHIP")) {
    r->chip = e;
  } else {
    r->chip = "esp32";
  }

  if (c.psram_size != CAPHEAP_HOST_DEFAULT_SIZE) {
    r->psram_size = c.psram_size;
  } else if (const char *e = env("CAPHEAP_PSRAM")) {
    std::size_t v;
    if (!capheap::sim::parse_byte_size(e, &v)) return bad_env("CAPHEAP_PSRAM", e, kSizeExpected);
    r->psram_size = v;
  }

  if (c.static_data_size != 0 && c.static_data_size != CAPHEAP_HOST_DEFAULT_SIZE) {
    r->static_data_size = c.static_data_size;
  } else if (const char *e = env("CAPHEAP_STATIC_DATA")) {
    std::size_t v;
    if (!capheap::sim::parse_byte_size(e, &v)) {
      return bad_env("CAPHEAP_STATIC_DATA", e, kSizeExpected);
    }
    r->static_data_size = v;
  }

  if (c.poisoning != CAPHEAP_POISONING_NONE) {
    if (c.poisoning != CAPHEAP_POISONING_LIGHT && c.poisoning != CAPHEAP_POISONING_COMPREHENSIVE) {
      std::fprintf(stderr,
                   "capheap: capheap_host_init: poisoning %d is not a capheap_poisoning_t\n",
                   static_cast<int>(c.poisoning));
      return ESP_ERR_INVALID_ARG;
    }
    r->poisoning = c.poisoning;
  } else if (const char *e = env("CAPHEAP_POISONING")) {
    if (std::strcmp(e, "none") == 0) {
      r->poisoning = CAPHEAP_POISONING_NONE;
    } else if (std::strcmp(e, "light") == 0) {
      r->poisoning = CAPHEAP_POISONING_LIGHT;
    } else if (std::strcmp(e, "comprehensive") == 0) {
      r->poisoning = CAPHEAP_POISONING_COMPREHENSIVE;
    } else {
      return bad_env("CAPHEAP_POISONING", e, "none, light or comprehensive");
    }
  }

  if (!c.chip_addresses) {
    r->chip_addresses = false;
  } else if (const char *e = env("CAPHEAP_CHIP_ADDRESSES")) {
    if (std::strcmp(e, "0") == 0) {
      r->chip_addresses = false;
    } else if (std::strcmp(e, "1") == 0) {
      r->chip_addresses = true;
    } else {
      return bad_env("CAPHEAP_CHIP_ADDRESSES", e, "0 or 1");
    }
  }

  if (c.memory_protection == CAPHEAP_MEMPROT_ON || c.memory_protection == CAPHEAP_MEMPROT_OFF) {
    r->memprot = c.memory_protection == CAPHEAP_MEMPROT_ON;
  } else if (c.memory_protection != CAPHEAP_MEMPROT_DEFAULT) {
    std::fprintf(stderr,
                 "capheap: capheap_host_init: memory_protection %d is not a capheap_memprot_t\n",
                 static_cast<int>(c.memory_protection));
    return ESP_ERR_INVALID_ARG;
  } else if (const char *e = env("CAPHEAP_MEMPROT")) {
    if (std::strcmp(e, "0") == 0) {
      r->memprot = false;
    } else if (std::strcmp(e, "1") == 0) {
      r->memprot = true;
    } else {
      return bad_env("CAPHEAP_MEMPROT", e, "0 or 1");
    }
  }

  if (c.granule != 0) {
    if (c.granule != 4 && c.granule != 8 && c.granule != 16) {
      std::fprintf(stderr, "capheap: capheap_host_init: granule %zu is not 4, 8 or 16\n",
                   c.granule);
      return ESP_ERR_INVALID_ARG;
    }
    r->granule = c.granule;
  } else if (const char *e = env("CAPHEAP_GRANULE")) {
    if (std::strcmp(e, "4") == 0) {
      r->granule = 4;
    } else if (std::strcmp(e, "8") == 0) {
      r->granule = 8;
    } else if (std::strcmp(e, "16") == 0) {
      r->granule = 16;
    } else {
      return bad_env("CAPHEAP_GRANULE", e, "4, 8 or 16");
    }
  }

  if (c.task_tracking) {
    r->task_tracking = true;
  } else if (const char *e = env("CAPHEAP_TASK_TRACKING")) {
    if (std::strcmp(e, "1") == 0) {
      r->task_tracking = true;
    } else if (std::strcmp(e, "0") != 0) {
      return bad_env("CAPHEAP_TASK_TRACKING", e, "0 or 1");
    }
  }
  return ESP_OK;
}

// ---- Startup steps
// --------------------------------------------------------------------------------

std::uintptr_t display_mapper(std::uintptr_t host) {
  return g_state != nullptr ? g_state->map.display(host) : host;
}

esp_err_t init(const char *chip_or_path, const capheap_host_config_t *cfg) {
  if (g_state != nullptr || capheap::capi::initialised()) return ESP_ERR_INVALID_STATE;
  Resolved opt;
  if (const esp_err_t err = resolve(chip_or_path, cfg, &opt); err != ESP_OK) return err;

  capheap::sim::LayoutOptions lo;
  lo.psram_size = opt.psram_size;
  lo.static_data_size = opt.static_data_size;
  lo.memprot = opt.memprot;
  capheap::sim::LoadResult loaded = capheap::sim::load_layout(opt.chip, lo);
  if (!loaded.ok()) {
    std::fprintf(stderr, "capheap: %s\n", loaded.error.c_str());
    // Tell an unknown chip or a broken file from an option the chip does not accept.
    const bool options_only =
        (lo.psram_size.has_value() || lo.static_data_size.has_value() || lo.memprot.has_value()) &&
        capheap::sim::load_layout(opt.chip, {}).ok();
    return options_only ? ESP_ERR_INVALID_ARG : ESP_ERR_NOT_FOUND;
  }

  auto *state = new HostState;
  state->chip = std::move(*loaded.layout);
  state->poisoning = opt.poisoning;
  state->granule = opt.granule;
  state->task_tracking = opt.task_tracking;
  const capheap::sim::ChipLayout &chip = *state->chip;
  const capheap_layout_t &cl = chip.c_layout();
  const std::size_t psram = cl.ext_ram_type >= 0 ? chip.psram_size() : 0;

  const std::string err = state->map.map(cl, psram, opt.chip_addresses);
  if (!err.empty()) {
    std::fprintf(stderr, "capheap: %s: cannot map the chip's memory: %s\n", chip.chip().c_str(),
                 err.c_str());
    delete state;
    return ESP_ERR_NO_MEM;
  }

  capheap_heap_config_t heap_cfg{};
  heap_cfg.granule = opt.granule;
  heap_cfg.poisoning = opt.poisoning;
  heap_cfg.task_tracking = opt.task_tracking;
  if (capheap_set_caps_heap_config(&heap_cfg) != ESP_OK) {
    std::fprintf(stderr, "capheap: this build does not support poisoning or task tracking\n");
    delete state;
    return ESP_ERR_INVALID_ARG;
  }
  capheap_set_layout(&state->map.host_layout());
  heap_caps_init();
  // Task tracking on a device means per-task statistics too (esp_heap_task_info.h): keep them.
  if (opt.task_tracking) capheap_task_stats_enable(true);
  g_state = state;
  // A forked child gets its own copy of the chip (the mappings are MAP_SHARED views of memfds,
  // which fork would otherwise share between parent and child). The copy is the chip as it is at
  // fork(): taken before it, under every heap's lock, and mapped in the child (HostMap).
  static const bool atfork_installed = [] {
    pthread_atfork(
        [] {
          if (g_state == nullptr) return;
          capheap::capi::registry().lock_all();
          (void)g_state->map.prepare_fork();
        },
        [] {
          if (g_state == nullptr) return;
          g_state->map.end_fork_in_parent();
          capheap::capi::registry().unlock_all();
        },
        [] {
          if (g_state == nullptr) return;
          if (!g_state->map.detach_after_fork()) {
            static const char msg[] =
                "capheap: warning: the forked child shares the simulated chip\n";
            (void)!write(2, msg, sizeof msg - 1);
          }
          capheap::capi::registry().reset_locks_in_child();
        });
    return true;
  }();
  (void)atfork_installed;
  if (!state->map.at_chip_addresses()) capheap::capi::set_display_mapper(display_mapper);
  // heap_caps_init cannot report a heap table too small for the layout: it leaves heaps out.
  if (capheap::capi::boot_status() != Status::kOk) {
    std::fprintf(stderr,
                 "capheap: %s: the layout yields more heaps than this build holds "
                 "(CAPHEAP_MAX_HEAPS %u)\n",
                 chip.chip().c_str(), Registry::kMaxHeaps);
    capheap_host_deinit();
    return ESP_ERR_NO_MEM;
  }

  Registry &reg = capheap::capi::registry();
  if (psram > 0) {
    const capheap_layout_t &hl = state->map.host_layout();
    const capheap_memory_type_t &type = hl.types[hl.ext_ram_type];
    const std::uintptr_t start = state->map.ext_ram_host();
    Status st = reg.add_region(type.caps, start, start + psram, Placement::kRuntime, type.name);
    esp_err_t e = static_cast<esp_err_t>(st);
    if (e != ESP_OK) {
      std::fprintf(stderr, "capheap: %s: cannot add the external RAM as a heap (error 0x%x)\n",
                   chip.chip().c_str(), static_cast<unsigned>(e));
    } else {
      heap_caps_malloc_extmem_enable(chip.extmem_threshold());
      if (chip.internal_reserve() > 0) {
        e = capheap_reserve_internal_pool(chip.internal_reserve());
        if (e != ESP_OK) {
          std::fprintf(stderr,
                       "capheap: %s: cannot reserve %zu bytes of internal memory for DMA "
                       "(internal_reserve)\n",
                       chip.chip().c_str(), chip.internal_reserve());
        }
      }
    }
    if (e != ESP_OK) {
      capheap_host_deinit();
      return e;
    }
  }
  reg.enable_startup_stack_heaps();
  // CAPHEAP_TRACE_FILE: record the whole run from here (the heaps exist, nothing allocated yet).
  if (const esp_err_t e = capheap::sim::start_trace_file_from_env(chip.chip().c_str());
      e != ESP_OK) {
    capheap_host_deinit();
    return e;
  }
  return ESP_OK;
}

}  // namespace

extern "C" {

esp_err_t capheap_host_init(const char *chip_or_path, const capheap_host_config_t *cfg) {
  try {
    return init(chip_or_path, cfg);
  } catch (const std::bad_alloc &) {
    std::fprintf(stderr, "capheap: out of host memory while initialising the simulator\n");
    return ESP_ERR_NO_MEM;
  }
}

void capheap_host_deinit(void) {
  if (g_state == nullptr) return;
  capheap_task_stats_enable(false);
  capheap::sim::stop_trace_file();  // CAPHEAP_TRACE_FILE: complete the recording
  capheap::capi::reset();           // forgets every heap before their memory goes away
  delete g_state;                   // unmaps everything
  g_state = nullptr;
}

const char *capheap_host_chip(void) {
  return g_state != nullptr ? g_state->chip->chip().c_str() : nullptr;
}

bool capheap_host_uses_chip_addresses(void) {
  return g_state != nullptr && g_state->map.at_chip_addresses();
}

uintptr_t capheap_host_to_chip(const void *host_ptr) {
  return g_state != nullptr ? g_state->map.to_chip(reinterpret_cast<std::uintptr_t>(host_ptr)) : 0;
}

void *capheap_host_from_chip(uintptr_t chip_address) {
  return g_state != nullptr ? reinterpret_cast<void *>(g_state->map.to_host(chip_address))
                            : nullptr;
}

}  // extern "C"
