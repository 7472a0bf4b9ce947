// What only keel's mirrored volume does, measured on the KeelTarget's lab:
//   resync    stop h2's agent, write `bytes` of random data on h1 (nbdcopy --flush), start h2
//             again and time from its start until h1 reports the link Connected with nothing
//             out of sync (resync_rate 0: unlimited); compared with `dd conv=fsync` copying the
//             same bytes from h1's backing file to a new file on the same disk, and with a plain
//             copy across the lab's link (link_copy.hpp). Also reports the dirty bitmap that
//             write left: out_of_sync_bytes and the 4 KiB pages holding it. With
//             --resync-rounds N all of it runs N times and the summary takes each figure's
//             median: on a shared virtual machine one resync varies by a third from run to run.
//   promote   SIGKILL h1's agent, `keel volume promote data` on h2 retried until it succeeds,
//             then the first successful 4 KiB NBD read on h2's export (qemu-io): ms from the kill,
//             and the successful promote command's own latency.
//   bitmap    keel::volume::DirtyBitmap in this process: a 1 TiB volume's bitmap with 1 GiB
//             dirty, scattered or contiguous: memory, set/clear/scan speed.
//
// Thread-safety: none.
#pragma once

#include <string>

#include "targets.hpp"
#include "workloads.hpp"

namespace keel::bench {

Result<Ok> resync_after_disconnect(KeelTarget& keel, Context& context, const std::string& source,
                                   std::uint64_t bytes);
Result<Ok> time_to_promote(KeelTarget& keel, Context& context);
void bitmap_figures(Context& context);

}  // namespace keel::bench
