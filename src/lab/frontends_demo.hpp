// `keel lab demo --frontends`: a site's frontends on this machine, narrated. Four hosts run
// nginx (a page that names the host) and keel agents with a pool of eight floating IPs; a client
// namespace on the same bridge requests every address 50 times a second. Then: a host's link
// goes down and comes back, nginx dies on a host and is restarted, the hosts are partitioned and
// healed, a host is drained and undrained. Between steps a line per quarter second shows who
// holds what and how the client fares; the end is a report per address: requests, failures,
// longest outage. The lab is always removed (at the end, on error, and by a CleanupGuard).
//
// Thread-safety: runs on the calling thread.
#pragma once

#include <string>

#include "lab/process.hpp"

namespace keel::lab {

struct FrontendsDemoOptions {
  Milliseconds pause{1000};  // before each part, so that a person can read along
  std::string prefix;        // empty: generated
};

int run_frontends_demo(const FrontendsDemoOptions& options);

}  // namespace keel::lab
