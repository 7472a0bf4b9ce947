#include "io/heap_tuning.hpp"

#include <malloc.h>

namespace keel::io {

bool keep_buffers_in_the_heap() {
  // Setting either threshold also stops glibc from adapting them.
  const bool mmap_set = ::mallopt(M_MMAP_THRESHOLD, static_cast<int>(kHeapMmapThresholdBytes)) == 1;
  const bool trim_set = ::mallopt(M_TRIM_THRESHOLD, static_cast<int>(kKeptFreeHeapBytes)) == 1;
  return mmap_set && trim_set;
}

}  // namespace keel::io
