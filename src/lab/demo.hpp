// `keel lab demo`: a narrated walk through a real lab ring for people. It builds a lab, starts a
// listener on every host, then: shows the ring forming, kills a host and times the new view,
// restarts it, partitions the hosts in two and heals them (timing the split and the merge),
// sends messages from every host and checks, from every host's listener log, that all hosts
// delivered the same messages in the same order (ring_log.hpp). It always removes the lab: at
// the end, on an error, and through a CleanupGuard if it is interrupted.
//
// Thread-safety: runs on the calling thread (its message traffic uses Traffic's threads).
#pragma once

#include <string>

#include "lab/process.hpp"

namespace keel::lab {

struct DemoOptions {
  int hosts = 5;
  Milliseconds pause{1000};  // before each part, so that a person can read along
  std::string prefix;        // the lab's prefix; empty: generated
};

// Returns the process exit code: 0 when every step and check succeeded.
int run_lab_demo(const DemoOptions& options);

}  // namespace keel::lab
