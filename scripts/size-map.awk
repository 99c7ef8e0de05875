# size-map.awk — sums a GNU ld map file's input sections by capheap layer and section kind.
# Used by scripts/size-report.sh. Prints lines `GROUP KIND BYTES` for every non-zero sum, where
#   GROUP  engine (src/core), port (src/port/baremetal), caps, capi, probe (the probe's own
#          objects), lib (C library, libgcc, startup code)
#   KIND   text (code), rodata (constants, incl. .ARM.exidx and small-data constants), data
#          (initialised RAM: also stored in flash), bss (zeroed RAM)
# Only the linked image counts: the "Discarded input sections" part of the map is skipped.
# Portable hex parsing (mawk has no strtonum).
function hex(s,   i, c, v) {
  v = 0
  s = tolower(s)
  sub(/^0x/, "", s)
  for (i = 1; i <= length(s); ++i) {
    c = index("0123456789abcdef", substr(s, i, 1))
    if (c == 0) break
    v = v * 16 + c - 1
  }
  return v
}
function group_of(file) {
  if (file ~ /libcapheap\.a\((heap|decoration)\.cpp\.obj\)/) return "engine"
  if (file ~ /libcapheap\.a\((port_baremetal\.cpp|atomic_libcalls\.c)\.obj\)/) return "port"
  if (file ~ /libcapheap\.a\(registry\.cpp\.obj\)/) return "caps"
  if (file ~ /libcapheap\.a\(/) return "capi"
  if (file ~ /CMakeFiles\/size_/) return "probe"
  return "lib"
}
function kind_of(sec) {
  if (sec ~ /^\.text/ || sec ~ /^\.init$/ || sec ~ /^\.fini$/) return "text"
  if (sec ~ /^\.(s?rodata|ARM\.exidx|ARM\.extab|eh_frame|init_array|fini_array|preinit_array)/) return "rodata"
  if (sec ~ /^\.(s?data|tdata)/) return "data"
  if (sec ~ /^\.(s?bss|tbss)/ || sec == "COMMON") return "bss"
  return ""
}
function add(sec, size, file,   k) {
  k = kind_of(sec)
  if (k == "" || size == 0) return
  sum[group_of(file) SUBSEP k] += size
}
/^Linker script and memory map/ { in_map = 1; next }
!in_map { next }
# " .text.name   0xADDR   0xSIZE file" on one line
/^ [.A-Za-z_][^ ]* +0x[0-9a-f]+ +0x[0-9a-f]+ / {
  add($1, hex($3), $4)
  pending = ""
  next
}
# a long section name alone on its line, address/size/file on the next
/^ [.A-Za-z_][^ ]*$/ { pending = $1; next }
pending != "" && /^ +0x[0-9a-f]+ +0x[0-9a-f]+ / {
  add(pending, hex($2), $3)
  pending = ""
  next
}
{ pending = "" }
END {
  for (key in sum) {
    split(key, parts, SUBSEP)
    print parts[1], parts[2], sum[key]
  }
}
