#!/bin/sh
# callgrind_replay.sh — instructions per allocator call on traces, per operation kind.
# Kept for existing command lines; the work is done by callgrind_replay.py (same options:
#   bench/callgrind_replay.sh [-b BUILD_DIR] [-j JOBS] [--json FILE] [-- REPLAY_OPTIONS... --] TRACE...
# see `bench/callgrind_replay.py --help`).
exec python3 "$(dirname "$0")/callgrind_replay.py" "$@"
