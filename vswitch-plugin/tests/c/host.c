/*
 * host.c: a minimal host vSwitch in C for the plugin library's C test (tests/c_abi.rs builds and runs it).
 *
 * It does what a real DPDK vSwitch does before and around the plugin: initialises EAL itself with a net_pcap
 * port playing a capture, configures the port and a mempool, loads libflowlog_vswitch.so with dlopen, resolves
 * the ABI with dlsym (each pointer typed from the checked-in header, so a signature drift fails to compile),
 * creates an instance, registers the ENIs, receives bursts until the capture is exhausted, gives each packet a
 * security-group verdict (REJECT when its source or destination MAC is the "rejected" ENI's MAC, ACCEPT
 * otherwise), hands every burst to the plugin, frees the mbufs itself, releases the worker and destroys the
 * instance. Along the way it checks that bad calls return the documented error statuses.
 *
 * At the end it checks what it can itself: every status, the worker's counters against what it received, and
 * the output file (exists, holds REJECT records, the OK records carry packets). The harness compares the
 * records exactly.
 *
 * usage: host PLUGIN.so CAPTURE.pcap ENIS.txt OUTPUT.jsonl REJECT_MAC
 *   ENIS.txt: one ENI per line: id mac vm-id vswitch-id vpc-id account-id (whitespace-separated)
 * Exit status 0 when every check passed; otherwise 1 with a message on stderr.
 */
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include "flowlog_vswitch.h"

#define BURST 32
#define MAX_ENIS 512
#define EMPTY_POLLS_AT_END 1000

static void fail(const char *format, ...) {
  va_list args;
  va_start(args, format);
  fprintf(stderr, "host: FAILED: ");
  vfprintf(stderr, format, args);
  fprintf(stderr, "\n");
  va_end(args);
  exit(1);
}

/* The plugin's ABI, resolved with dlsym; each pointer has the type of the header's declaration. */
#define ABI(name) __typeof__(&name) name
static struct {
  ABI(flowlog_abi_version);
  ABI(flowlog_instance_create);
  ABI(flowlog_instance_worker);
  ABI(flowlog_eni_add);
  ABI(flowlog_eni_remove);
  ABI(flowlog_worker_process);
  ABI(flowlog_worker_tick);
  ABI(flowlog_worker_read_stats);
  ABI(flowlog_worker_release);
  ABI(flowlog_instance_destroy);
  ABI(flowlog_status_str);
  ABI(flowlog_last_error);
} fl;

static void *resolve(void *lib, const char *name) {
  void *symbol = dlsym(lib, name);
  if (symbol == NULL) fail("dlsym(%s): %s", name, dlerror());
  return symbol;
}

#define RESOLVE(lib, name) (fl.name = (__typeof__(fl.name))resolve(lib, #name))

/* Fails unless `got` is `want`; names the call and gives the library's reason. */
static void expect_status(const char *call, flowlog_status got, flowlog_status want) {
  if (got != want)
    fail("%s returned %d (%s), expected %d (%s); last error: %s", call, (int)got, fl.flowlog_status_str(got),
         (int)want, fl.flowlog_status_str(want), fl.flowlog_last_error());
}

struct eni_text {
  char id[64], mac[32], vm_id[64], vswitch_id[64], vpc_id[64], account_id[64];
};

static size_t read_enis(const char *path, struct eni_text *enis) {
  FILE *file = fopen(path, "r");
  if (file == NULL) fail("opening %s: %s", path, strerror(errno));
  char line[512];
  size_t count = 0;
  while (fgets(line, sizeof line, file) != NULL) {
    if (line[0] == '\n' || line[0] == '#') continue;
    if (count == MAX_ENIS) fail("%s: more than %d ENIs", path, MAX_ENIS);
    struct eni_text *e = &enis[count];
    if (sscanf(line, "%63s %31s %63s %63s %63s %63s", e->id, e->mac, e->vm_id, e->vswitch_id, e->vpc_id,
               e->account_id) != 6)
      fail("%s: bad line: %s", path, line);
    count++;
  }
  fclose(file);
  return count;
}

static int parse_mac(const char *text, uint8_t mac[6]) {
  unsigned int b[6];
  if (sscanf(text, "%x:%x:%x:%x:%x:%x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) != 6) return -1;
  for (int i = 0; i < 6; i++) {
    if (b[i] > 0xff) return -1;
    mac[i] = (uint8_t)b[i];
  }
  return 0;
}

/* The security group of this host: deny every frame from or to the rejected MAC. */
static uint8_t verdict(const struct rte_mbuf *m, const uint8_t rejected[6]) {
  const uint8_t *frame = rte_pktmbuf_mtod(m, const uint8_t *);
  if (rte_pktmbuf_data_len(m) >= 12 && (memcmp(frame, rejected, 6) == 0 || memcmp(frame + 6, rejected, 6) == 0))
    return FLOWLOG_REJECT;
  return FLOWLOG_ACCEPT;
}

static void setup_port(uint16_t port, struct rte_mempool *pool) {
  struct rte_eth_dev_info info;
  if (rte_eth_dev_info_get(port, &info) != 0) fail("rte_eth_dev_info_get");
  uint16_t tx_queues = info.max_tx_queues > 0 ? 1 : 0;
  struct rte_eth_conf conf;
  memset(&conf, 0, sizeof conf);
  int ret = rte_eth_dev_configure(port, 1, tx_queues, &conf);
  if (ret != 0) fail("rte_eth_dev_configure: %s", strerror(-ret));
  ret = rte_eth_rx_queue_setup(port, 0, 1024, rte_eth_dev_socket_id(port), NULL, pool);
  if (ret != 0) fail("rte_eth_rx_queue_setup: %s", strerror(-ret));
  for (uint16_t q = 0; q < tx_queues; q++) {
    ret = rte_eth_tx_queue_setup(port, q, 1024, rte_eth_dev_socket_id(port), NULL);
    if (ret != 0) fail("rte_eth_tx_queue_setup: %s", strerror(-ret));
  }
  ret = rte_eth_dev_start(port);
  if (ret != 0) fail("rte_eth_dev_start: %s", strerror(-ret));
}

/* Checks the calls a careless host could make: each must return its error status, none may crash. */
static void check_bad_calls(flowlog_instance *inst, const struct eni_text *first) {
  flowlog_worker *w = (flowlog_worker *)&w; /* must come back NULL on failure */
  expect_status("flowlog_instance_worker(out of range)", fl.flowlog_instance_worker(inst, 1, &w),
                FLOWLOG_STATUS_BAD_ARGUMENT);
  if (w != NULL) fail("flowlog_instance_worker left *out set after a failure");
  expect_status("flowlog_instance_worker(NULL instance)", fl.flowlog_instance_worker(NULL, 0, &w),
                FLOWLOG_STATUS_NULL_POINTER);
  expect_status("flowlog_eni_remove(unknown)", fl.flowlog_eni_remove(inst, "eni-none"), FLOWLOG_STATUS_UNKNOWN_ENI);
  expect_status("flowlog_eni_remove(NULL id)", fl.flowlog_eni_remove(inst, NULL), FLOWLOG_STATUS_NULL_POINTER);
  expect_status("flowlog_eni_add(NULL)", fl.flowlog_eni_add(inst, NULL), FLOWLOG_STATUS_NULL_POINTER);
  flowlog_eni twin = {"eni-twin", first->mac, "i-twin", "vsw-twin", "vpc-twin", "1"};
  expect_status("flowlog_eni_add(duplicate MAC)", fl.flowlog_eni_add(inst, &twin), FLOWLOG_STATUS_DUPLICATE_MAC);
  flowlog_eni bad_mac = {"eni-bad", "02:00:zz:00:00:01", "i-bad", "vsw-bad", "vpc-bad", "1"};
  expect_status("flowlog_eni_add(bad MAC)", fl.flowlog_eni_add(inst, &bad_mac), FLOWLOG_STATUS_BAD_ARGUMENT);
  flowlog_eni no_vm = {"eni-novm", "02:00:00:ff:ff:01", NULL, "vsw", "vpc", "1"};
  expect_status("flowlog_eni_add(NULL field)", fl.flowlog_eni_add(inst, &no_vm), FLOWLOG_STATUS_NULL_POINTER);
  if (strstr(fl.flowlog_last_error(), "vm_id") == NULL)
    fail("flowlog_last_error does not name the NULL field: %s", fl.flowlog_last_error());
  expect_status("flowlog_worker_process(NULL worker)", fl.flowlog_worker_process(NULL, NULL, NULL, NULL, 0),
                FLOWLOG_STATUS_NULL_POINTER);
  expect_status("flowlog_worker_release(NULL)", fl.flowlog_worker_release(NULL), FLOWLOG_STATUS_NULL_POINTER);
  expect_status("flowlog_instance_destroy(NULL)", fl.flowlog_instance_destroy(NULL), FLOWLOG_STATUS_NULL_POINTER);
  flowlog_instance *other = (flowlog_instance *)&other;
  expect_status("flowlog_instance_create(bad TOML)", fl.flowlog_instance_create("[dataplane]\nworkers = \"x\"", &other),
                FLOWLOG_STATUS_BAD_CONFIG);
  if (other != NULL) fail("flowlog_instance_create left *out set after a failure");
  if (strstr(fl.flowlog_last_error(), "workers") == NULL)
    fail("flowlog_last_error does not explain the bad configuration: %s", fl.flowlog_last_error());
  expect_status("flowlog_instance_create([eal])", fl.flowlog_instance_create("[eal]\nargs = []\n", &other),
                FLOWLOG_STATUS_BAD_CONFIG);
  if (strcmp(fl.flowlog_status_str(12345), "unknown status") != 0) fail("flowlog_status_str(12345)");
}

/* Reads the records the plugin wrote: counts them, the REJECT ones, and sums the packets of the OK ones. */
static void check_output(const char *path) {
  FILE *file = fopen(path, "r");
  if (file == NULL) fail("the plugin wrote no output: opening %s: %s", path, strerror(errno));
  static char line[4096];
  uint64_t records = 0, rejects = 0, nodata = 0, ok_packets = 0;
  while (fgets(line, sizeof line, file) != NULL) {
    records++;
    if (strstr(line, "\"action\":\"REJECT\"") != NULL) rejects++;
    if (strstr(line, "\"log-status\":\"NODATA\"") != NULL) nodata++;
    if (strstr(line, "\"log-status\":\"OK\"") != NULL) {
      const char *p = strstr(line, "\"packets\":");
      if (p == NULL) fail("OK record without packets: %s", line);
      ok_packets += strtoull(p + strlen("\"packets\":"), NULL, 10);
    }
  }
  fclose(file);
  printf("host: output %s: %" PRIu64 " records, %" PRIu64 " REJECT, %" PRIu64 " NODATA, %" PRIu64
         " packets in OK records\n",
         path, records, rejects, nodata, ok_packets);
  if (records == 0) fail("%s holds no records", path);
  if (rejects == 0) fail("%s holds no REJECT record", path);
  if (ok_packets == 0) fail("the OK records of %s carry no packets", path);
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: %s PLUGIN.so CAPTURE.pcap ENIS.txt OUTPUT.jsonl REJECT_MAC\n", argv[0]);
    return 2;
  }
  const char *plugin = argv[1], *capture = argv[2], *enis_path = argv[3], *output = argv[4];
  uint8_t rejected[6];
  if (parse_mac(argv[5], rejected) != 0) fail("bad MAC %s", argv[5]);

  /* The host owns EAL: one lcore that may float over both CPUs (tests run in parallel), no hugepages. */
  char vdev[4096];
  snprintf(vdev, sizeof vdev, "--vdev=net_pcap0,rx_pcap=%s", capture);
  char *eal_args[] = {argv[0],         "--lcores=0@(0-1)", "--no-huge",      "-m",
                      "256",           "--no-pci",         "--no-shconf",    "--no-telemetry",
                      "--log-level=lib.eal:warning",       vdev};
  int eal_argc = (int)(sizeof eal_args / sizeof eal_args[0]);
  if (rte_eal_init(eal_argc, eal_args) < 0) fail("rte_eal_init: %s", rte_strerror(rte_errno));
  uint16_t port;
  if (rte_eth_dev_get_port_by_name("net_pcap0", &port) != 0) fail("no port net_pcap0");
  struct rte_mempool *pool =
      rte_pktmbuf_pool_create("host_rx", 4095, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, (int)rte_socket_id());
  if (pool == NULL) fail("rte_pktmbuf_pool_create: %s", rte_strerror(rte_errno));
  setup_port(port, pool);

  /* Load the plugin the way a vSwitch does. */
  void *lib = dlopen(plugin, RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL) fail("dlopen(%s): %s", plugin, dlerror());
  RESOLVE(lib, flowlog_abi_version);
  RESOLVE(lib, flowlog_instance_create);
  RESOLVE(lib, flowlog_instance_worker);
  RESOLVE(lib, flowlog_eni_add);
  RESOLVE(lib, flowlog_eni_remove);
  RESOLVE(lib, flowlog_worker_process);
  RESOLVE(lib, flowlog_worker_tick);
  RESOLVE(lib, flowlog_worker_read_stats);
  RESOLVE(lib, flowlog_worker_release);
  RESOLVE(lib, flowlog_instance_destroy);
  RESOLVE(lib, flowlog_status_str);
  RESOLVE(lib, flowlog_last_error);
  if (fl.flowlog_abi_version() != FLOWLOG_ABI_VERSION)
    fail("plugin ABI %u, header ABI %u", fl.flowlog_abi_version(), FLOWLOG_ABI_VERSION);

  char config[4096];
  snprintf(config, sizeof config,
           "[dataplane]\ninterval-secs = 60\nworkers = 1\nclock = \"rx-timestamp\"\n"
           /* Played at full speed, the capture passes a window every few ms: a spare table per window, so an
              exporter starved of CPU by other tests never makes the worker summarise a window as SKIPDATA. */
           "spare-tables = 16\n\n[export]\njsonl = \"%s\"\n",
           output);
  flowlog_instance *inst = NULL;
  expect_status("flowlog_instance_create", fl.flowlog_instance_create(config, &inst), FLOWLOG_STATUS_OK);

  static struct eni_text enis[MAX_ENIS];
  size_t eni_count = read_enis(enis_path, enis);
  if (eni_count == 0) fail("%s lists no ENI", enis_path);
  for (size_t i = 0; i < eni_count; i++) {
    flowlog_eni eni = {enis[i].id, enis[i].mac, enis[i].vm_id, enis[i].vswitch_id, enis[i].vpc_id, enis[i].account_id};
    expect_status("flowlog_eni_add", fl.flowlog_eni_add(inst, &eni), FLOWLOG_STATUS_OK);
  }
  /* Register and remove a temporary ENI: it must leave no trace in the records. */
  flowlog_eni temp = {"eni-temporary", "02:00:00:ff:ff:fe", "i-temp", "vsw-temp", "vpc-temp", "1"};
  expect_status("flowlog_eni_add(temporary)", fl.flowlog_eni_add(inst, &temp), FLOWLOG_STATUS_OK);
  expect_status("flowlog_eni_remove(temporary)", fl.flowlog_eni_remove(inst, "eni-temporary"), FLOWLOG_STATUS_OK);
  check_bad_calls(inst, &enis[0]);

  flowlog_worker *worker = NULL;
  expect_status("flowlog_instance_worker", fl.flowlog_instance_worker(inst, 0, &worker), FLOWLOG_STATUS_OK);
  flowlog_worker *again = NULL;
  expect_status("flowlog_instance_worker(taken twice)", fl.flowlog_instance_worker(inst, 0, &again),
                FLOWLOG_STATUS_ALREADY_TAKEN);
  expect_status("flowlog_instance_destroy(worker active)", fl.flowlog_instance_destroy(inst),
                FLOWLOG_STATUS_WORKERS_ACTIVE);

  struct rte_mbuf *mbufs[BURST];
  uint16_t ports[BURST];
  uint8_t verdicts[BURST];
  uint64_t received = 0, rejected_packets = 0, received_bytes = 0;
  int empty_polls = 0, checked_bad_burst = 0;
  while (empty_polls < EMPTY_POLLS_AT_END) {
    uint16_t n = rte_eth_rx_burst(port, 0, mbufs, BURST);
    if (n == 0) {
      empty_polls++;
      expect_status("flowlog_worker_tick", fl.flowlog_worker_tick(worker), FLOWLOG_STATUS_OK);
      continue;
    }
    empty_polls = 0;
    for (uint16_t i = 0; i < n; i++) {
      ports[i] = port;
      verdicts[i] = verdict(mbufs[i], rejected);
      rejected_packets += verdicts[i] == FLOWLOG_REJECT;
      received_bytes += rte_pktmbuf_pkt_len(mbufs[i]);
    }
    if (!checked_bad_burst && n > 1) {
      /* A burst with one bad verdict or port is refused whole: nothing of it is counted. */
      uint8_t saved = verdicts[n - 1];
      verdicts[n - 1] = 7;
      expect_status("flowlog_worker_process(bad verdict)",
                    fl.flowlog_worker_process(worker, mbufs, ports, verdicts, n), FLOWLOG_STATUS_BAD_ARGUMENT);
      verdicts[n - 1] = saved;
      ports[0] = FLOWLOG_MAX_PORTS;
      expect_status("flowlog_worker_process(bad port)", fl.flowlog_worker_process(worker, mbufs, ports, verdicts, n),
                    FLOWLOG_STATUS_BAD_ARGUMENT);
      ports[0] = port;
      expect_status("flowlog_worker_process(NULL verdicts)",
                    fl.flowlog_worker_process(worker, mbufs, ports, NULL, n), FLOWLOG_STATUS_NULL_POINTER);
      checked_bad_burst = 1;
    }
    expect_status("flowlog_worker_process", fl.flowlog_worker_process(worker, mbufs, ports, verdicts, n),
                  FLOWLOG_STATUS_OK);
    received += n;
    /* The host keeps ownership of its mbufs: the plugin only read them. */
    for (uint16_t i = 0; i < n; i++) rte_pktmbuf_free(mbufs[i]);
  }
  if (received == 0) fail("the port received no packet from %s", capture);
  if (!checked_bad_burst) fail("no burst of two packets or more to check bad arguments with");

  flowlog_worker_stats stats;
  expect_status("flowlog_worker_read_stats", fl.flowlog_worker_read_stats(worker, &stats), FLOWLOG_STATUS_OK);
  printf("host: received %" PRIu64 " packets (%" PRIu64 " REJECT by the security group); plugin: %" PRIu64
         " packets, %" PRIu64 " bursts, %" PRIu64 " attributed, %" PRIu64 " malformed, %" PRIu64
         " without RX timestamp\n",
         received, rejected_packets, stats.packets, stats.bursts, stats.attributed, stats.malformed,
         stats.no_rx_timestamp);
  if (stats.packets != received) fail("plugin counted %" PRIu64 " packets, host gave %" PRIu64, stats.packets, received);
  if (stats.bytes != received_bytes) fail("plugin counted %" PRIu64 " bytes, host gave %" PRIu64, stats.bytes, received_bytes);
  if (stats.port_packets[port] != received) fail("plugin counted %" PRIu64 " packets on port %u", stats.port_packets[port], port);
  if (stats.no_rx_timestamp != 0) fail("%" PRIu64 " packets came without an RX timestamp", stats.no_rx_timestamp);
  if (rejected_packets == 0) fail("no packet of %s has the rejected MAC %s", capture, argv[5]);

  expect_status("flowlog_worker_release", fl.flowlog_worker_release(worker), FLOWLOG_STATUS_OK);
  expect_status("flowlog_instance_destroy", fl.flowlog_instance_destroy(inst), FLOWLOG_STATUS_OK);

  rte_eth_dev_stop(port);
  rte_eth_dev_close(port);
  rte_mempool_free(pool);
  check_output(output);
  /* The library stays loaded: its threads are gone, but a Rust library is not meant to be unloaded. */
  rte_eal_cleanup();
  printf("host: all checks passed\n");
  return 0;
}
