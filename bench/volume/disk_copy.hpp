// What a durable sequential write of two copies costs when both live on this machine.
//
// keel's durable sequential write puts every byte on two backing files: the primary's through
// its page cache, the secondary's past it (O_DIRECT), and ends with an fdatasync of each. On two
// hosts each copy has its own disk, memory and CPUs; in this benchmark both copies share one
// virtio disk and two vCPUs. This measures that directly, in this process, with no network and
// no protocol: --size bytes of the random source copied, in 1 MiB pieces, into one new file
// through the page cache and made durable, against the same into two new files at once (a
// thread each, the second past the page cache, as keel lays the copies out), alternating, best of
// two rounds each; once with one writer per copy and once with four (keel's I/O threads), each
// writing every fourth piece. two/one is what this way of writing (synchronous 1 MiB writes) gets
// from this machine for two copies against one, with no network or protocol cost.
//
// Thread-safety: none (starts and joins its own threads).
#pragma once

#include "workloads.hpp"

namespace keel::bench {

Result<Ok> disk_copy_pairs(Context& context);

}  // namespace keel::bench
