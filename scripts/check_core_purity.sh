#!/usr/bin/env bash
# Fails if code under src/core/ includes a header for I/O, threads, clocks or randomness, or calls
# rand/srand/time/getenv: the protocol cores are pure state machines (see docs/architecture.md).
# Usage: check_core_purity.sh [source-dir]   (default: the repository holding this script)
set -euo pipefail
root="${1:-$(dirname "$0")/..}"
core="$root/src/core"
[[ -d "$core" ]] || { echo "core_purity: no directory $core" >&2; exit 1; }

headers='thread|mutex|shared_mutex|atomic|condition_variable|future|semaphore|latch|barrier'
headers+='|stop_token|chrono|ctime|time\.h|random|fstream|iostream|filesystem|pthread\.h'
headers+='|unistd\.h|fcntl\.h|sys/[^>]*|netinet/[^>]*|arpa/[^>]*|asio[^>]*|boost/asio[^>]*'
include_re="^[[:space:]]*#[[:space:]]*include[[:space:]]*(<($headers)>|\"(boost/)?asio[^\"]*\")"
# A call to the C function, not a member (x.time()) or another namespace's function (a::time()).
call_re='(^|[^[:alnum:]_.>:]|std::|[^[:alnum:]_]::)(rand|srand|time|getenv)[[:space:]]*\('

hits=$(grep -rnE --include='*.hpp' --include='*.cpp' --include='*.h' --include='*.cc' \
         -e "$include_re" -e "$call_re" "$core" |
       grep -vE '^[^:]+:[0-9]+:[[:space:]]*(//|/?\*)' || true)
if [[ -n "$hits" ]]; then
  echo "core_purity: src/core must not do I/O, threads, clocks or randomness:" >&2
  echo "$hits" | sed "s|^$root/*||" >&2
  exit 1
fi
echo "core_purity: ok"
