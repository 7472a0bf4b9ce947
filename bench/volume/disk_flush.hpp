// What a flush of two copies costs when both live on this machine's one disk.
//
// keel's flush is durable only when both copies are (an fdatasync on each backing file). On two
// hosts each disk takes one; in this benchmark both copies sit on the same virtio disk, which
// takes their device flushes one after the other. This measures that disk directly, in this
// process: 4 KiB written and fdatasync'd on one file, against the same on two files at once
// (two threads), repeated, as p50/p99 µs. one/two is the best a two-copy flush can reach here
// against a one-copy server such as nbdkit, before any network or protocol cost.
//
// Thread-safety: none (starts and joins its own thread).
#pragma once

#include "workloads.hpp"

namespace keel::bench {

Result<Ok> disk_flush_pairs(Context& context);

}  // namespace keel::bench
