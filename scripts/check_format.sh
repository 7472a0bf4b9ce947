#!/usr/bin/env bash
# Fails, listing the files, if any C++ file in src/ tests/ fuzz/ bench/ differs from clang-format's
# output (.clang-format at the root). Fix with scripts/format.sh.
# Usage: check_format.sh [source-dir]   (default: the repository holding this script)
set -euo pipefail
cd "${1:-$(dirname "$0")/..}"
command -v clang-format >/dev/null || { echo "format: clang-format not found" >&2; exit 1; }

dirs=()
for dir in src tests fuzz bench; do if [[ -d $dir ]]; then dirs+=("$dir"); fi; done
bad=()
while IFS= read -r -d '' file; do
  clang-format --dry-run -Werror "$file" >/dev/null 2>&1 || bad+=("$file")
done < <(find "${dirs[@]}" -type f \( -name '*.hpp' -o -name '*.cpp' \) -print0 | sort -z)
if ((${#bad[@]})); then
  echo "format: these files need scripts/format.sh:" >&2
  printf '  %s\n' "${bad[@]}" >&2
  exit 1
fi
echo "format: ok ($(clang-format --version | grep -o 'version [0-9.]*'))"
