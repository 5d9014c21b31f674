/* The fl_ shim: out-of-line copies of DPDK 22.11's static-inline functions and macros (see shim.h). Each function
 * only forwards to DPDK; the caller's obligations are DPDK's own. */
#include <stddef.h>

#include "shim.h"

uint16_t fl_eth_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **rx_pkts, uint16_t nb_pkts)
{
	return rte_eth_rx_burst(port_id, queue_id, rx_pkts, nb_pkts);
}

uint16_t fl_eth_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **tx_pkts, uint16_t nb_pkts)
{
	return rte_eth_tx_burst(port_id, queue_id, tx_pkts, nb_pkts);
}

struct rte_mbuf *fl_pktmbuf_alloc(struct rte_mempool *mp)
{
	return rte_pktmbuf_alloc(mp);
}

int fl_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned int count)
{
	return rte_pktmbuf_alloc_bulk(mp, mbufs, count);
}

void fl_pktmbuf_free(struct rte_mbuf *m)
{
	rte_pktmbuf_free(m);
}

void fl_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned int count)
{
	rte_pktmbuf_free_bulk(mbufs, count);
}

void *fl_pktmbuf_mtod(const struct rte_mbuf *m)
{
	return rte_pktmbuf_mtod(m, void *);
}

uint16_t fl_pktmbuf_data_len(const struct rte_mbuf *m)
{
	return rte_pktmbuf_data_len(m);
}

uint32_t fl_pktmbuf_pkt_len(const struct rte_mbuf *m)
{
	return rte_pktmbuf_pkt_len(m);
}

uint16_t fl_pktmbuf_port(const struct rte_mbuf *m)
{
	return m->port;
}

uint16_t fl_pktmbuf_nb_segs(const struct rte_mbuf *m)
{
	return m->nb_segs;
}

struct rte_mbuf *fl_pktmbuf_next(const struct rte_mbuf *m)
{
	return m->next;
}

uint64_t fl_pktmbuf_ol_flags(const struct rte_mbuf *m)
{
	return m->ol_flags;
}

char *fl_pktmbuf_append(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_append(m, len);
}

char *fl_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_prepend(m, len);
}

uint16_t fl_pktmbuf_headroom(const struct rte_mbuf *m)
{
	return rte_pktmbuf_headroom(m);
}

uint16_t fl_pktmbuf_tailroom(const struct rte_mbuf *m)
{
	return rte_pktmbuf_tailroom(m);
}

int fl_mbuf_rx_timestamp(const struct rte_mbuf *m, int offset, uint64_t flag, uint64_t *out)
{
	if (offset < 0 || (m->ol_flags & flag) == 0 || flag == 0)
		return 0;
	*out = *RTE_MBUF_DYNFIELD(m, offset, const rte_mbuf_timestamp_t *);
	return 1;
}

void fl_mbuf_offsets(struct fl_mbuf_offsets *out)
{
	out->size = sizeof(struct rte_mbuf);
	out->buf_addr = offsetof(struct rte_mbuf, buf_addr);
	out->data_off = offsetof(struct rte_mbuf, data_off);
	out->nb_segs = offsetof(struct rte_mbuf, nb_segs);
	out->port = offsetof(struct rte_mbuf, port);
	out->ol_flags = offsetof(struct rte_mbuf, ol_flags);
	out->pkt_len = offsetof(struct rte_mbuf, pkt_len);
	out->data_len = offsetof(struct rte_mbuf, data_len);
	out->next = offsetof(struct rte_mbuf, next);
	out->dynfield1 = offsetof(struct rte_mbuf, dynfield1);
}

unsigned int fl_lcore_id(void)
{
	return rte_lcore_id();
}

uint64_t fl_rdtsc(void)
{
	return rte_rdtsc();
}

uint64_t fl_get_tsc_hz(void)
{
	return rte_get_tsc_hz();
}

int fl_errno(void)
{
	return rte_errno;
}
