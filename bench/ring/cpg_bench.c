/* cpg_bench: corosync's side of keel's ring benchmark (bench/ring).
 *
 * Joins a CPG group, waits until the group has --members members, then (with --send N) sends N
 * messages of --size bytes as fast as corosync's flow control allows, and records every
 * delivery. Each message carries the sender's node id, a sequence number and its send time
 * (CLOCK_REALTIME: every host of the lab shares the machine's clock, so send-to-delivery latency
 * is measured directly). It stops once it has delivered --expect messages or after --timeout
 * seconds, and prints one JSON line: messages, bytes, seconds from first send to last delivery,
 * latency percentiles. With --rate R it paces its sends at R messages per second.
 *
 * With --watch it only joins and prints one JSON line per membership change of the group, with
 * the time it was delivered (for failover timing), until it is killed.
 */
#include <corosync/cpg.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct header {
  uint32_t node;
  uint32_t pad;
  uint64_t seq;
  int64_t sent_ns;
};

static uint64_t delivered;
static uint64_t delivered_bytes;
static int64_t first_send_ns, last_delivery_ns;
static int64_t* latencies;
static uint64_t latency_capacity;
static int members_now;
static int watch;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void on_deliver(cpg_handle_t handle, const struct cpg_name* group, uint32_t nodeid,
                       uint32_t pid, void* msg, size_t len) {
  (void)handle, (void)group, (void)nodeid, (void)pid;
  if (len < sizeof(struct header)) return;
  struct header h;
  memcpy(&h, msg, sizeof h);
  int64_t now = now_ns();
  if (delivered < latency_capacity) latencies[delivered] = now - h.sent_ns;
  delivered++;
  delivered_bytes += len;
  last_delivery_ns = now;
}

static void on_config(cpg_handle_t handle, const struct cpg_name* group,
                      const struct cpg_address* members, size_t n_members,
                      const struct cpg_address* left, size_t n_left,
                      const struct cpg_address* joined, size_t n_joined) {
  (void)handle, (void)group, (void)left, (void)joined;
  members_now = (int)n_members;
  if (!watch) return;
  printf("{\"tool\":\"corosync\",\"event\":\"confchg\",\"ns\":%" PRId64 ",\"members\":[", now_ns());
  for (size_t i = 0; i < n_members; i++) printf("%s%" PRIu32, i ? "," : "", members[i].nodeid);
  printf("],\"left\":%zu,\"joined\":%zu}\n", n_left, n_joined);
  fflush(stdout);
}

static int compare(const void* a, const void* b) {
  int64_t x = *(const int64_t*)a, y = *(const int64_t*)b;
  return (x > y) - (x < y);
}

static void usage(void) {
  fprintf(stderr,
          "usage: cpg_bench --group NAME --members M [--send N] [--size BYTES] [--rate PER_S]\n"
          "                 [--expect TOTAL] [--timeout SECONDS]\n"
          "       cpg_bench --group NAME --watch\n");
  exit(2);
}

static int dispatch(cpg_handle_t handle, int fd, int timeout_ms) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  if (poll(&p, 1, timeout_ms) > 0) {
    if (cpg_dispatch(handle, CS_DISPATCH_ALL) != CS_OK) return -1;
  }
  return 0;
}

int main(int argc, char** argv) {
  const char* group_name = "keelbench";
  int members = 1, timeout_s = 60;
  uint64_t send = 0, size = 100, expect = 0;
  double rate = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--watch")) {
      watch = 1;
      continue;
    }
    if (i + 1 >= argc) usage();
    if (!strcmp(argv[i], "--group")) group_name = argv[++i];
    else if (!strcmp(argv[i], "--members")) members = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--send")) send = strtoull(argv[++i], 0, 10);
    else if (!strcmp(argv[i], "--size")) size = strtoull(argv[++i], 0, 10);
    else if (!strcmp(argv[i], "--rate")) rate = atof(argv[++i]);
    else if (!strcmp(argv[i], "--expect")) expect = strtoull(argv[++i], 0, 10);
    else if (!strcmp(argv[i], "--timeout")) timeout_s = atoi(argv[++i]);
    else usage();
  }
  if (size < sizeof(struct header)) size = sizeof(struct header);
  latency_capacity = expect ? expect : 1000000;
  latencies = calloc(latency_capacity, sizeof *latencies);

  cpg_handle_t handle;
  cpg_callbacks_t callbacks = {.cpg_deliver_fn = on_deliver, .cpg_confchg_fn = on_config};
  /* corosync may still be starting: retry for up to --timeout seconds. */
  int64_t connect_deadline = now_ns() + (int64_t)timeout_s * 1000000000;
  while (cpg_initialize(&handle, &callbacks) != CS_OK) {
    if (now_ns() > connect_deadline) {
      fprintf(stderr, "cpg_bench: cannot connect to corosync\n");
      return 1;
    }
    usleep(20000);
  }
  struct cpg_name group;
  group.length = (uint32_t)strlen(group_name);
  memcpy(group.value, group_name, group.length);
  if (cpg_join(handle, &group) != CS_OK) {
    fprintf(stderr, "cpg_bench: cannot join group\n");
    return 1;
  }
  uint32_t node = 0;
  cpg_local_get(handle, &node);
  int fd;
  cpg_fd_get(handle, &fd);

  if (watch) {
    for (;;) {
      if (dispatch(handle, fd, 1000) != 0) return 1;
    }
  }
  int64_t deadline = now_ns() + (int64_t)timeout_s * 1000000000;
  while (members_now < members && now_ns() < deadline) dispatch(handle, fd, 100);

  char* buffer = calloc(1, size);
  struct iovec iov = {.iov_base = buffer, .iov_len = size};
  uint64_t sent = 0;
  first_send_ns = now_ns();
  while (now_ns() < deadline && (sent < send || (expect && delivered < expect))) {
    if (sent < send && (rate <= 0 || (double)sent < (double)(now_ns() - first_send_ns) * rate / 1e9)) {
      struct header h = {node, 0, sent, now_ns()};
      memcpy(buffer, &h, sizeof h);
      cs_error_t err = cpg_mcast_joined(handle, CPG_TYPE_AGREED, &iov, 1);
      if (err == CS_OK) {
        sent++;
      } else if (err != CS_ERR_TRY_AGAIN) {
        fprintf(stderr, "cpg_bench: send failed: %d\n", err);
        return 1;
      }
      if (err == CS_ERR_TRY_AGAIN) dispatch(handle, fd, 1);
      else dispatch(handle, fd, 0);
    } else {
      dispatch(handle, fd, rate > 0 ? 1 : 10);
    }
    if (!expect && sent >= send) break;
  }
  uint64_t n = delivered < latency_capacity ? delivered : latency_capacity;
  qsort(latencies, n, sizeof *latencies, compare);
  printf("{\"tool\":\"corosync\",\"node\":%" PRIu32 ",\"sent\":%" PRIu64 ",\"delivered\":%" PRIu64
         ",\"bytes\":%" PRIu64 ",\"first_send_ns\":%" PRId64 ",\"last_delivery_ns\":%" PRId64
         ",\"latencies_ns\":[",
         node, sent, delivered, delivered_bytes, first_send_ns, last_delivery_ns);
  /* Every latency, so that percentiles are taken over all receivers together; capped. */
  uint64_t step = n > 20000 ? n / 20000 : 1;
  for (uint64_t i = 0; i < n; i += step) printf("%s%" PRId64, i ? "," : "", latencies[i]);
  printf("]}\n");
  cpg_finalize(handle);
  return expect && delivered < expect ? 1 : 0;
}
