// What a copy across the lab's link costs, with nothing of keel in it: the baseline beside keel's
// resync, which reads its source copy on h1, sends it over TCP across the lab's bridge and writes
// it past h2's page cache (O_DIRECT). This does only that: one thread in the sender's network
// namespace reads `bytes` of `source` in 1 MiB pieces and sends them; one thread in the
// receiver's namespace receives each piece and writes it with O_DIRECT into `target` (a new file,
// its space reserved), then fdatasyncs and answers with one byte. Twice, into the same file, as
// the resync overwrites blocks h2's copy held before; the second pass is the figure.
//
// Both threads join their namespaces with setns(), which changes only the calling thread's.
// Thread-safety: none (starts and joins its own threads).
#pragma once

#include <cstdint>
#include <string>

#include "core/common/result.hpp"

namespace keel::bench {

struct LinkCopy {
  std::string sender_netns;    // a name under /run/netns
  std::string receiver_netns;  // a name under /run/netns
  std::string receiver_address;
  std::string source;
  std::string target;
  std::uint64_t bytes = 0;  // a multiple of 4096
};

struct LinkCopySeconds {
  double new_file = 0;
  double overwrite = 0;
};

Result<LinkCopySeconds> link_copy(const LinkCopy& copy);

}  // namespace keel::bench
