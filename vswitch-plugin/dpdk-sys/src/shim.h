/* Declarations of the fl_ shim: out-of-line wrappers for DPDK 22.11's static-inline functions and macros, so that
 * Rust can call them. Also the constants that are defined through function-like macros (RTE_BIT64), which bindgen
 * cannot evaluate from the macro itself: each is a `static const` here, which bindgen turns into a Rust `const`. */
#ifndef FLOWLOG_DPDK_SHIM_H
#define FLOWLOG_DPDK_SHIM_H

#include <stdint.h>

#include <rte_config.h>
#include <rte_common.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mbuf_dyn.h>
#include <rte_mempool.h>
#include <rte_ring.h>
#include <rte_version.h>

/* Constants bindgen cannot read from their macros. */
static const uint64_t FL_ETH_RX_OFFLOAD_TIMESTAMP = RTE_ETH_RX_OFFLOAD_TIMESTAMP;
static const uint64_t FL_ETH_RSS_IP = RTE_ETH_RSS_IP;
static const uint64_t FL_ETH_RSS_TCP = RTE_ETH_RSS_TCP;
static const uint64_t FL_ETH_RSS_UDP = RTE_ETH_RSS_UDP;
static const uint32_t FL_LCORE_ID_ANY = LCORE_ID_ANY;
static const int FL_SOCKET_ID_ANY = SOCKET_ID_ANY;
static const uint32_t FL_MEMPOOL_NAMESIZE = RTE_MEMPOOL_NAMESIZE;
static const uint32_t FL_RING_NAMESIZE = RTE_RING_NAMESIZE;
static const unsigned int FL_RING_F_SP_ENQ = RING_F_SP_ENQ;
static const unsigned int FL_RING_F_SC_DEQ = RING_F_SC_DEQ;

/* Ethernet device fast path (rte_ethdev.h). */
uint16_t fl_eth_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **rx_pkts, uint16_t nb_pkts);
uint16_t fl_eth_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **tx_pkts, uint16_t nb_pkts);

/* Packet buffers (rte_mbuf.h). */
struct rte_mbuf *fl_pktmbuf_alloc(struct rte_mempool *mp);
int fl_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned int count);
void fl_pktmbuf_free(struct rte_mbuf *m);
void fl_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned int count);
void *fl_pktmbuf_mtod(const struct rte_mbuf *m);
uint16_t fl_pktmbuf_data_len(const struct rte_mbuf *m);
uint32_t fl_pktmbuf_pkt_len(const struct rte_mbuf *m);
uint16_t fl_pktmbuf_port(const struct rte_mbuf *m);
uint16_t fl_pktmbuf_nb_segs(const struct rte_mbuf *m);
struct rte_mbuf *fl_pktmbuf_next(const struct rte_mbuf *m);
uint64_t fl_pktmbuf_ol_flags(const struct rte_mbuf *m);
char *fl_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
char *fl_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
uint16_t fl_pktmbuf_headroom(const struct rte_mbuf *m);
uint16_t fl_pktmbuf_tailroom(const struct rte_mbuf *m);

/* Reads the rx-timestamp dynamic field: returns 1 and stores it in *out when `flag` is set in the mbuf's ol_flags,
 * 0 otherwise. `offset` is the field's offset from rte_mbuf_dynfield_lookup(RTE_MBUF_DYNFIELD_TIMESTAMP_NAME). */
int fl_mbuf_rx_timestamp(const struct rte_mbuf *m, int offset, uint64_t flag, uint64_t *out);

/* Byte offsets of the rte_mbuf fields the Rust side reads directly (checked against bindgen's layout in tests). */
struct fl_mbuf_offsets {
	uint32_t size;
	uint32_t buf_addr;
	uint32_t data_off;
	uint32_t nb_segs;
	uint32_t port;
	uint32_t ol_flags;
	uint32_t pkt_len;
	uint32_t data_len;
	uint32_t next;
	uint32_t dynfield1;
};
void fl_mbuf_offsets(struct fl_mbuf_offsets *out);

/* Lcores, time, errors (rte_lcore.h, rte_cycles.h, rte_errno.h). */
unsigned int fl_lcore_id(void);
uint64_t fl_rdtsc(void);
uint64_t fl_get_tsc_hz(void);
int fl_errno(void);

#endif
