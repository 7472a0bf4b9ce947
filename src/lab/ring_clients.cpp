#include "lab/ring_clients.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace keel::lab {

namespace {

using Clock = std::chrono::steady_clock;
constexpr Milliseconds kPollInterval{10};
constexpr Milliseconds kSendTimeout{3000};
constexpr Milliseconds kListenerStopGrace{1000};

std::vector<int> sorted(std::vector<int> hosts) {
  std::sort(hosts.begin(), hosts.end());
  return hosts;
}

bool has_message(const std::vector<TimedEvent>& events, const std::string& text) {
  return std::any_of(events.begin(), events.end(), [&](const TimedEvent& timed) {
    const auto* message = std::get_if<MessageEvent>(&timed.event);
    return message && message->message == text;
  });
}

}  // namespace

Result<Ok> ListenerSet::start(int host) {
  int incarnation = 0;
  for (const auto& listener : listeners_) {
    if (listener.host == host) incarnation = listener.incarnation + 1;
  }
  const HostState& state = lab_.host(host);
  Listener listener;
  listener.host = host;
  listener.incarnation = incarnation;
  listener.path = state.dir + "/listen-" + group_ + "." + std::to_string(incarnation) + ".jsonl";
  ::unlink(listener.path.c_str());
  auto process =
      spawn({lab_.keel_binary(), "ring", "listen", group_, "--json", "--socket", state.socket},
            SpawnOptions{listener.path, -1, true});
  if (!process) return process.error();
  listener.process = process.value();
  listeners_.push_back(std::move(listener));
  return lab_.adopt(process.value());
}

Result<Ok> ListenerSet::start_all(const std::vector<int>& hosts) {
  for (int host : hosts) {
    if (auto started = start(host); !started) return started;
  }
  return Ok{};
}

Result<Ok> ListenerSet::poll_one(Listener& listener) {
  const int fd = ::open(listener.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? Result<Ok>(Ok{}) : Error{"cannot read " + listener.path};
  std::string fresh;
  char buffer[8192];
  for (ssize_t got; (got = ::pread(fd, buffer, sizeof buffer,
                                   static_cast<off_t>(listener.offset + fresh.size()))) > 0;) {
    fresh.append(buffer, static_cast<std::size_t>(got));
  }
  ::close(fd);
  listener.offset += fresh.size();
  listener.partial += fresh;
  const auto now = Clock::now();
  std::size_t start = 0;
  for (auto end = listener.partial.find('\n'); end != std::string::npos;
       end = listener.partial.find('\n', start)) {
    const std::string line = listener.partial.substr(start, end - start);
    start = end + 1;
    if (line.empty() || line.front() != '{') continue;  // not an event (an error message)
    auto event = parse_listen_line(line);
    if (!event) return Error{listener.path + ": " + event.error().message};
    listener.events.push_back(TimedEvent{now, std::move(event.value())});
  }
  listener.partial.erase(0, start);
  learn_initial_view(listener);
  return Ok{};
}

void ListenerSet::learn_initial_view(Listener& listener) {
  if (listener.initial_view || Clock::now() < listener.next_status_query) return;
  bool joined = false;
  for (const auto& timed : listener.events) {
    if (std::holds_alternative<ViewEvent>(timed.event)) return;  // real views from here on
    const auto* group = std::get_if<GroupViewEvent>(&timed.event);
    if (group && group->group == group_ &&
        std::find(group->members.begin(), group->members.end(), listener.host) !=
            group->members.end()) {
      joined = true;
    }
  }
  if (!joined) return;
  listener.next_status_query = Clock::now() + Milliseconds{200};
  auto status = lab_.agent_view(listener.host);
  if (!status || !status.value().operational()) return;
  auto ring = parse_ring_id(status.value().ring);
  if (!ring) return;
  listener.initial_view =
      TimedEvent{Clock::now(), ViewEvent{true, ring.value(), RingId{}, status.value().members}};
}

const TimedEvent* ListenerSet::latest_view(const Listener& listener) {
  for (auto it = listener.events.rbegin(); it != listener.events.rend(); ++it) {
    if (std::holds_alternative<ViewEvent>(it->event)) return &*it;
  }
  return listener.initial_view ? &*listener.initial_view : nullptr;
}

Result<Ok> ListenerSet::poll() {
  for (auto& listener : listeners_) {
    if (auto polled = poll_one(listener); !polled) return polled;
  }
  return Ok{};
}

void ListenerSet::stop_all() {
  std::vector<ProcessId> processes;
  for (const auto& listener : listeners_) processes.push_back(listener.process);
  terminate_all(processes, kListenerStopGrace);
}

Result<bool> ListenerSet::wait_until(const std::function<bool()>& done, Milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    if (auto polled = poll(); !polled) return polled.error();
    if (done()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(kPollInterval);
  }
}

const ListenerSet::Listener* ListenerSet::current(int host) const {
  const Listener* found = nullptr;
  for (const auto& listener : listeners_) {
    if (listener.host == host) found = &listener;
  }
  return found;
}

bool ListenerSet::joined(const std::vector<int>& hosts) const {
  const std::vector<int> wanted = sorted(hosts);
  return std::all_of(hosts.begin(), hosts.end(), [&](int host) {
    const Listener* listener = current(host);
    if (!listener) return false;
    for (auto it = listener->events.rbegin(); it != listener->events.rend(); ++it) {
      const auto* view = std::get_if<GroupViewEvent>(&it->event);
      if (view && view->group == group_) return view->members == wanted;
    }
    return false;
  });
}

std::optional<SteadyTime> ListenerSet::converged(const std::vector<int>& hosts) const {
  const std::vector<int> wanted = sorted(hosts);
  std::optional<RingId> ring;
  SteadyTime latest{};
  for (int host : hosts) {
    const Listener* listener = current(host);
    const TimedEvent* timed = listener ? latest_view(*listener) : nullptr;
    if (!timed) return std::nullopt;
    const auto& view = std::get<ViewEvent>(timed->event);
    if (!view.regular || view.members != wanted) return std::nullopt;
    if (ring && *ring != view.ring) return std::nullopt;
    ring = view.ring;
    latest = std::max(latest, timed->seen);
  }
  return latest;
}

bool ListenerSet::delivered(const std::vector<int>& hosts,
                            const std::vector<std::string>& messages) const {
  return std::all_of(hosts.begin(), hosts.end(), [&](int host) {
    const Listener* listener = current(host);
    return listener && std::all_of(messages.begin(), messages.end(), [&](const auto& text) {
             return has_message(listener->events, text);
           });
  });
}

Result<Milliseconds> ListenerSet::wait_converged(const std::vector<int>& hosts, SteadyTime since,
                                                 Milliseconds timeout) {
  auto waited = wait_until([&] { return converged(hosts).has_value(); }, timeout);
  if (!waited) return waited.error();
  if (!waited.value()) {
    std::string seen;
    for (int host : hosts) {
      const auto view = current_view(host);
      seen += "\n  h" + std::to_string(host) + ": " + (view ? to_string(*view) : "no view");
    }
    return Error{"no common view of " + std::to_string(hosts.size()) + " hosts within " +
                 std::to_string(timeout.count()) + " ms; latest regular views:" + seen};
  }
  const auto at = *converged(hosts);
  return std::chrono::duration_cast<Milliseconds>(std::max(at, since) - since);
}

std::optional<ViewEvent> ListenerSet::current_view(int host) const {
  const Listener* listener = current(host);
  const TimedEvent* timed = listener ? latest_view(*listener) : nullptr;
  if (!timed) return std::nullopt;
  return std::get<ViewEvent>(timed->event);
}

std::vector<TimedEvent> ListenerSet::events_since(int host, SteadyTime since) const {
  std::vector<TimedEvent> events;
  if (const Listener* listener = current(host)) {
    for (const auto& timed : listener->events) {
      if (timed.seen > since) events.push_back(timed);
    }
  }
  return events;
}

std::vector<ListenLog> ListenerSet::all_logs() const {
  std::vector<ListenLog> logs;
  for (const auto& listener : listeners_) {
    ListenLog log{listener.host, listener.incarnation, {}};
    for (const auto& timed : listener.events) log.events.push_back(timed.event);
    logs.push_back(std::move(log));
  }
  return logs;
}

std::vector<ListenLog> ListenerSet::current_logs(const std::vector<int>& hosts) const {
  std::vector<ListenLog> logs;
  for (const auto& log : all_logs()) {
    const Listener* listener = current(log.host);
    const bool wanted = std::find(hosts.begin(), hosts.end(), log.host) != hosts.end();
    if (wanted && listener && listener->incarnation == log.incarnation) logs.push_back(log);
  }
  return logs;
}

std::vector<std::string> ListenerSet::log_paths() const {
  std::vector<std::string> paths;
  for (const auto& listener : listeners_) paths.push_back(listener.path);
  return paths;
}

Traffic::Traffic(const Lab& lab, std::string group, Milliseconds interval)
    : keel_binary_(lab.keel_binary()), group_(std::move(group)), interval_(interval) {
  for (int host = 1; host <= lab.host_count(); ++host) {
    sockets_.push_back(lab.host(host).socket);
  }
}

void Traffic::start(const std::vector<int>& hosts) {
  stopping_ = false;
  for (int host : hosts) threads_.emplace_back([this, host] { run(host); });
}

void Traffic::stop() {
  stopping_ = true;
  for (auto& thread : threads_) thread.join();
  threads_.clear();
}

void Traffic::run(int host) {
  while (!stopping_) {
    send_one(host);
    const auto until = Clock::now() + interval_;
    while (!stopping_ && Clock::now() < until) std::this_thread::sleep_for(Milliseconds{5});
  }
}

std::string Traffic::send_one(int host) {
  KEEL_ASSERT(host >= 1 && host <= static_cast<int>(sockets_.size()));
  std::uint64_t number = 0;
  std::string text;
  {
    std::lock_guard lock(mutex_);
    number = ++next_number_[host];
    text = "h" + std::to_string(host) + "-" + std::to_string(number);
    sent_[text] = SentMessage{host, number, SendOutcome::unknown};
  }
  auto result = run_capture({keel_binary_, "ring", "send", group_, text, "--socket",
                             sockets_[static_cast<std::size_t>(host - 1)]},
                            kSendTimeout);
  const SendOutcome outcome = !result                         ? SendOutcome::unknown
                              : result.value().exit_code == 0 ? SendOutcome::acknowledged
                                                              : SendOutcome::failed;
  std::lock_guard lock(mutex_);
  sent_[text].outcome = outcome;
  return text;
}

SentMessages Traffic::sent() const {
  std::lock_guard lock(mutex_);
  return sent_;
}

std::size_t Traffic::acknowledged() const {
  std::lock_guard lock(mutex_);
  return static_cast<std::size_t>(std::count_if(sent_.begin(), sent_.end(), [](const auto& item) {
    return item.second.outcome == SendOutcome::acknowledged;
  }));
}

}  // namespace keel::lab
