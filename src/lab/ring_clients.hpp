// The clients the e2e tests, the demo and the benchmarks run against a lab's agents, through the
// keel CLI exactly as a person would:
//   ListenerSet  one `keel ring listen GROUP --json` per host, output to LAB/hI/listen-G.K.jsonl,
//                read back as it grows, each event stamped with the time it was read (so a view
//                change can be timed); a host whose agent restarts gets a new listener (K + 1).
//   Traffic      one thread per host running `keel ring send GROUP hI-N` one after the other,
//                N = 1, 2, ..., recording which sends the agent acknowledged.
// Listener processes are adopted by the lab, so `keel lab down` (or a cleanup guard) ends them.
// The logs themselves hold only what `ring listen` printed; the checks of ring_log.hpp run on them.
//
// Thread-safety: ListenerSet is used from one thread. Traffic's own threads share only its
// record of sent messages, behind a mutex; sent() may be called at any time.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "lab/lab.hpp"
#include "lab/ring_log.hpp"

namespace keel::lab {

using SteadyTime = std::chrono::steady_clock::time_point;

struct TimedEvent {
  SteadyTime seen;
  ListenEvent event;
};

class ListenerSet {
 public:
  ListenerSet(Lab& lab, std::string group) : lab_(lab), group_(std::move(group)) {}
  ListenerSet(const ListenerSet&) = delete;
  ListenerSet& operator=(const ListenerSet&) = delete;
  ~ListenerSet() { stop_all(); }

  // Starts a listener for `host` (a new incarnation if it had one).
  Result<Ok> start(int host);
  Result<Ok> start_all(const std::vector<int>& hosts);
  // Reads everything the listeners wrote since the last call.
  Result<Ok> poll();
  void stop_all();

  // Polls every 10 ms until `done()` holds; false at the deadline. A read error ends the wait.
  Result<bool> wait_until(const std::function<bool()>& done, Milliseconds timeout);

  // Conditions on the current listener of each host in `hosts`:
  // every one has seen the group with exactly `hosts` as members ...
  bool joined(const std::vector<int>& hosts) const;
  // ... every one's latest view is the same regular view of exactly `hosts`; returns when the
  // last of them saw it ...
  std::optional<SteadyTime> converged(const std::vector<int>& hosts) const;
  // ... every one has delivered every message in `messages`.
  bool delivered(const std::vector<int>& hosts, const std::vector<std::string>& messages) const;

  // Waits for converged(hosts); returns the time from `since` until the last of them saw the
  // view. The error says what each host saw last.
  Result<Milliseconds> wait_converged(const std::vector<int>& hosts, SteadyTime since,
                                      Milliseconds timeout);

  // The latest regular view seen by `host`'s current listener.
  std::optional<ViewEvent> current_view(int host) const;
  // The events `host`'s current listener read after `since`.
  std::vector<TimedEvent> events_since(int host, SteadyTime since) const;

  std::vector<ListenLog> all_logs() const;  // every incarnation of every host
  std::vector<ListenLog> current_logs(const std::vector<int>& hosts) const;
  std::vector<std::string> log_paths() const;

 private:
  struct Listener {
    int host = 0;
    int incarnation = 0;
    std::string path;
    ProcessId process;
    std::size_t offset = 0;  // bytes of the file consumed
    std::string partial;     // an unfinished last line
    std::vector<TimedEvent> events;
    // `ring listen` prints views only as they change; until one comes, the view the agent was
    // in when this listener had joined (from `keel status`) stands in for it.
    std::optional<TimedEvent> initial_view;
    SteadyTime next_status_query{};
  };
  Result<Ok> poll_one(Listener& listener);
  void learn_initial_view(Listener& listener);
  // The latest view of a listener: its last view event, else its initial view.
  static const TimedEvent* latest_view(const Listener& listener);
  const Listener* current(int host) const;

  Lab& lab_;
  std::string group_;
  std::vector<Listener> listeners_;  // in start order; the last one of a host is its current
};

class Traffic {
 public:
  // `interval` between the end of one send and the start of the next, per host.
  Traffic(const Lab& lab, std::string group, Milliseconds interval);
  Traffic(const Traffic&) = delete;
  Traffic& operator=(const Traffic&) = delete;
  ~Traffic() { stop(); }

  void start(const std::vector<int>& hosts);
  void stop();  // waits for the threads

  // Sends one numbered message from `host` now and waits for the answer; returns its text.
  std::string send_one(int host);

  SentMessages sent() const;
  std::size_t acknowledged() const;

 private:
  void run(int host);

  std::string keel_binary_;
  std::vector<std::string> sockets_;  // by host index - 1
  std::string group_;
  Milliseconds interval_;
  std::atomic<bool> stopping_{false};
  std::vector<std::thread> threads_;
  mutable std::mutex mutex_;
  std::map<int, std::uint64_t> next_number_;
  SentMessages sent_;
};

}  // namespace keel::lab
