// TCP keepalives with a probe schedule of our own: the kernel's default waits two hours before
// the first probe, far too long to notice a peer whose host died.
#pragma once

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

namespace keel::io {

// Probes after `idle_s` seconds of silence, then every `interval_s`; the connection fails after
// `probes` unanswered ones. Best effort: an option the socket refuses is left as it was.
inline void enable_tcp_keepalive(int fd, int idle_s, int interval_s, int probes) {
  const int on = 1;
  (void)::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof idle_s);
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval_s, sizeof interval_s);
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);
}

}  // namespace keel::io
