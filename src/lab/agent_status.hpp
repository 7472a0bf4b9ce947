// What a lab host's agent says about its ring, read through `keel status --json --socket PATH`:
// the lab asks the CLI rather than speaking the control protocol itself, so it depends only on
// the documented command line.
//
// Thread-safety: pure functions; query_agent_view runs a process.
#pragma once

#include <string>
#include <vector>

#include "core/common/result.hpp"
#include "lab/process.hpp"

namespace keel::lab {

struct AgentView {
  std::string state;         // the ring's state: "operational", "gather", "commit", "recovery"
  std::string ring;          // "seq.rep" of the current view's ring
  std::vector<int> members;  // node ids of the current view, sorted (lab host I has id I)

  bool operational() const { return state == "operational"; }
};

Result<AgentView> parse_agent_status(const std::string& json_text);
Result<AgentView> query_agent_view(const std::string& keel_binary, const std::string& socket,
                                   Milliseconds timeout);

// Waits until something accepts connections on the Unix socket `path` (an agent that has finished
// starting); an error at the deadline, or at once if `agent` exits meanwhile.
Result<Ok> wait_for_control_socket(const std::string& path, const ProcessId& agent,
                                   Milliseconds timeout);

// "operational, ring 12.1, members 1 2 3"
std::string describe(const AgentView& view);

}  // namespace keel::lab
