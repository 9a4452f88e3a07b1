/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * XDP full-NAT layer-4 load balancer for IPv4 TCP and UDP, compiled by bcc on the target.
 *
 * client:cport -> VIP:vport   becomes  SNAT_IP:lport -> backend:bport
 * backend:bport -> SNAT_IP:lport  becomes  VIP:vport -> client:cport
 *
 * - Backend choice is per flow: a hash of the 5-tuple indexes the service's Maglev table, which
 *   user space fills (plugins/module_utils/maglev.py). Two tables per service, flipped with
 *   ring_gen, so a backend change is one atomic map update.
 * - lb_conntrack (LRU) holds both directions of every flow, keyed by the packet's own 5-tuple,
 *   so one lookup serves a packet either way and live flows keep their backend across changes.
 * - The SNAT port (lport) is derived from the flow hash and checked for collisions with
 *   BPF_NOEXIST inserts of the reply key, so clients sharing a source port never collide. A flow
 *   evicted from the LRU gets the same backend and port again while the backend set is unchanged.
 * - IPv4 and TCP/UDP checksums are updated incrementally (csum.h), never trusted to offload.
 * - Next-hop MACs come from the kernel FIB (bpf_fib_lookup); user space passes a backend MAC as
 *   a fallback while the neighbour entry is missing. Replies go back to the MAC the client's
 *   packet came from.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include "xdp_lb.h"
#include "csum.h"

#ifndef AF_INET
#define AF_INET 2
#endif

BPF_HASH(lb_services, struct lb_service_key, struct lb_service, LB_MAX_SERVICES);
BPF_ARRAY(lb_backends, struct lb_backend, LB_MAX_SERVICES * LB_MAX_BACKENDS);
BPF_ARRAY(lb_maglev, __u32, LB_MAX_SERVICES * 2 * LB_RING_SIZE);
BPF_TABLE("lru_hash", struct lb_flow_key, struct lb_nat, lb_conntrack, LB_MAX_FLOWS);
BPF_PERCPU_ARRAY(lb_svc_stats, struct lb_counters, LB_MAX_SERVICES);
BPF_PERCPU_ARRAY(lb_be_stats, struct lb_counters, LB_MAX_SERVICES * LB_MAX_BACKENDS);
BPF_PERCPU_ARRAY(lb_global, __u64, LB_CNT_MAX);
BPF_ARRAY(lb_meta, struct lb_meta, 1);

static __always_inline __u32 lb_rol32(__u32 word, unsigned int shift)
{
	return (word << shift) | (word >> (32 - shift));
}

/* Bob Jenkins' lookup3 final mix over the 5-tuple: cheap and well spread for Maglev. */
static __always_inline __u32 lb_hash_flow(const struct lb_flow_key *key, __u32 seed)
{
	__u32 a = key->saddr + 0xdeadbeef + seed;
	__u32 b = key->daddr + 0xdeadbeef + seed;
	__u32 c = (((__u32)key->sport << 16) | key->dport) + 0xdeadbeef + seed + key->proto;

	c ^= b; c -= lb_rol32(b, 14);
	a ^= c; a -= lb_rol32(c, 11);
	b ^= a; b -= lb_rol32(a, 25);
	c ^= b; c -= lb_rol32(b, 16);
	a ^= c; a -= lb_rol32(c, 4);
	b ^= a; b -= lb_rol32(a, 14);
	c ^= b; c -= lb_rol32(b, 24);
	return c;
}

static __always_inline void lb_count_global(__u32 counter)
{
	__u64 *value = lb_global.lookup(&counter);
	if (value)
		*value += 1;
}

static __always_inline void lb_count_flow(__u32 svc_index, __u32 slot, __u8 reply, __u64 bytes, int new_flow)
{
	struct lb_counters *svc = lb_svc_stats.lookup(&svc_index);
	__u32 be_index = svc_index * LB_MAX_BACKENDS + slot;
	struct lb_counters *be = lb_be_stats.lookup(&be_index);

	if (svc) {
		if (reply) {
			svc->reply_packets += 1;
			svc->reply_bytes += bytes;
		} else {
			svc->packets += 1;
			svc->bytes += bytes;
			svc->new_flows += new_flow;
		}
	}
	if (be && slot < LB_MAX_BACKENDS) {
		if (reply) {
			be->reply_packets += 1;
			be->reply_bytes += bytes;
		} else {
			be->packets += 1;
			be->bytes += bytes;
			be->new_flows += new_flow;
		}
	}
}

static __always_inline void lb_count_service_drop(__u32 svc_index)
{
	struct lb_counters *svc = lb_svc_stats.lookup(&svc_index);
	if (svc)
		svc->drops += 1;
}

/* Is this existing reply entry the one an earlier incarnation of this same flow made? */
static __always_inline int lb_reply_is_flow(const struct lb_nat *old, const struct lb_flow_key *key)
{
	return old->saddr == key->daddr && old->daddr == key->saddr &&
	       old->sport == key->dport && old->dport == key->sport;
}

/*
 * A first packet for a service: pick the backend, allocate the SNAT port, record both directions.
 * Fills *fwd with the rewrite for this packet. Returns 0, or an XDP verdict to return at once.
 */
static __always_inline int lb_new_flow(struct xdp_md *ctx, struct ethhdr *eth, const struct lb_flow_key *key,
				       const struct lb_service *svc, struct lb_nat *fwd)
{
	__u32 svc_index = svc->index;
	__u32 ring_gen = svc->ring_gen;

	if (svc_index >= LB_MAX_SERVICES || ring_gen > 1)
		return XDP_DROP;
	if (svc->backend_count == 0) {
		lb_count_global(LB_CNT_NO_BACKEND);
		lb_count_service_drop(svc_index);
		return XDP_DROP;
	}

	__u32 hash = lb_hash_flow(key, 0);
	__u32 ring_index = (svc_index * 2 + ring_gen) * LB_RING_SIZE + hash % LB_RING_SIZE;
	__u32 *slot_ptr = lb_maglev.lookup(&ring_index);
	if (!slot_ptr || *slot_ptr >= LB_MAX_BACKENDS) {
		lb_count_global(LB_CNT_NO_BACKEND);
		lb_count_service_drop(svc_index);
		return XDP_DROP;
	}
	__u32 slot = *slot_ptr;
	__u32 be_index = svc_index * LB_MAX_BACKENDS + slot;
	struct lb_backend *be = lb_backends.lookup(&be_index);
	if (!be || !be->active) {
		lb_count_global(LB_CNT_NO_BACKEND);
		lb_count_service_drop(svc_index);
		return XDP_DROP;
	}

	__builtin_memset(fwd, 0, sizeof(*fwd));
	struct bpf_fib_lookup fib = {};
	fib.family = AF_INET;
	fib.l4_protocol = key->proto;
	fib.ipv4_src = svc->snat_ip;
	fib.ipv4_dst = be->ip;
	fib.ifindex = ctx->ingress_ifindex;
	int rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		__builtin_memcpy(fwd->smac, fib.smac, ETH_ALEN);
		__builtin_memcpy(fwd->dmac, fib.dmac, ETH_ALEN);
		fwd->ifindex = fib.ifindex;
	} else if (be->mac_valid) {
		__builtin_memcpy(fwd->smac, eth->h_dest, ETH_ALEN);
		__builtin_memcpy(fwd->dmac, be->mac, ETH_ALEN);
		fwd->ifindex = ctx->ingress_ifindex;
	} else {
		lb_count_global(LB_CNT_NO_NEIGH);
		lb_count_service_drop(svc_index);
		return XDP_DROP;
	}

	struct lb_flow_key reply_key = {};
	reply_key.saddr = be->ip;
	reply_key.daddr = svc->snat_ip;
	reply_key.sport = be->port;
	reply_key.proto = key->proto;

	struct lb_nat reply = {};
	reply.saddr = key->daddr;
	reply.daddr = key->saddr;
	reply.sport = key->dport;
	reply.dport = key->sport;
	__builtin_memcpy(reply.smac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(reply.dmac, eth->h_source, ETH_ALEN);
	reply.ifindex = ctx->ingress_ifindex;
	reply.svc_index = svc_index;
	reply.backend_slot = slot;
	reply.reply = 1;

	__u32 range = LB_SNAT_PORT_MAX - LB_SNAT_PORT_MIN + 1;
	__u32 start = lb_hash_flow(key, 0x9e3779b9);
	int allocated = 0;
#pragma unroll
	for (int i = 0; i < LB_SNAT_TRIES; i++) {
		reply_key.dport = bpf_htons((__u16)(LB_SNAT_PORT_MIN + (start + i * 7919) % range));
		struct lb_nat *old = lb_conntrack.lookup(&reply_key);
		if (old) {
			if (lb_reply_is_flow(old, key)) {
				allocated = 1;
				break;
			}
			continue;
		}
		if (lb_conntrack.insert(&reply_key, &reply) == 0) {
			allocated = 1;
			break;
		}
	}
	if (!allocated) {
		lb_count_global(LB_CNT_SNAT_EXHAUSTED);
		lb_count_service_drop(svc_index);
		return XDP_DROP;
	}

	fwd->saddr = svc->snat_ip;
	fwd->daddr = be->ip;
	fwd->sport = reply_key.dport;
	fwd->dport = be->port;
	fwd->svc_index = svc_index;
	fwd->backend_slot = slot;
	if (lb_conntrack.update((struct lb_flow_key *)key, fwd) != 0)
		lb_count_global(LB_CNT_FLOW_INSERT_FAIL);
	return 0;
}

int xdp_lb(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	struct iphdr *iph = (void *)(eth + 1);
	if ((void *)(iph + 1) > data_end || iph->ihl < 5)
		return XDP_PASS;
	if (iph->protocol != IPPROTO_TCP && iph->protocol != IPPROTO_UDP)
		return XDP_PASS;

	void *l4 = (void *)iph + iph->ihl * 4;
	__be16 *ports = l4;
	__u16 *l4_check;
	int tcp_syn = 0;
	if (iph->protocol == IPPROTO_TCP) {
		struct tcphdr *th = l4;
		if ((void *)(th + 1) > data_end)
			return XDP_PASS;
		l4_check = &th->check;
		tcp_syn = th->syn && !th->ack;
	} else {
		struct udphdr *uh = l4;
		if ((void *)(uh + 1) > data_end)
			return XDP_PASS;
		l4_check = &uh->check;
	}

	struct lb_flow_key key = {};
	key.saddr = iph->saddr;
	key.daddr = iph->daddr;
	key.sport = ports[0];
	key.dport = ports[1];
	key.proto = iph->protocol;

	/* work on a copy: the LRU entry may be evicted under us, and a copy keeps the verifier simple */
	struct lb_nat nat;
	int new_flow = 0;
	struct lb_nat *known = lb_conntrack.lookup(&key);
	/* A SYN opens a new connection even when an old one left an entry with the same 5-tuple (the
	 * LRU has no timeouts): pick the backend again from the live table, as Katran does, so a reused
	 * client port never lands on a removed backend. Retransmitted SYNs hash to the same backend. */
	if (known && !(tcp_syn && !known->reply)) {
		nat = *known;
	} else {
		struct lb_service_key svc_key = {};
		svc_key.vip = key.daddr;
		svc_key.port = key.dport;
		svc_key.proto = key.proto;
		struct lb_service *svc = lb_services.lookup(&svc_key);
		if (!svc)
			return XDP_PASS; /* not a service of ours: the stack gets it untouched */
		if (iph->frag_off & bpf_htons(0x3fff)) {
			/* fragments carry no ports past the first; let the stack reassemble */
			lb_count_global(LB_CNT_FRAGMENT);
			return XDP_PASS;
		}
		int verdict = lb_new_flow(ctx, eth, &key, svc, &nat);
		if (verdict)
			return verdict;
		new_flow = 1;
	}

	lb_count_flow(nat.svc_index, nat.backend_slot, nat.reply, data_end - data, new_flow);

	/* rewrite L4 first: its pseudo-header sum needs the old addresses */
	__u16 check = *l4_check;
	if (iph->protocol == IPPROTO_TCP || check != 0) {
		check = lb_csum_replace4(check, iph->saddr, nat.saddr);
		check = lb_csum_replace4(check, iph->daddr, nat.daddr);
		check = lb_csum_replace2(check, ports[0], nat.sport);
		check = lb_csum_replace2(check, ports[1], nat.dport);
		if (iph->protocol == IPPROTO_UDP && check == 0)
			check = 0xffff; /* 0 means "no checksum" for UDP */
		*l4_check = check;
	}
	ports[0] = nat.sport;
	ports[1] = nat.dport;

	__u16 ip_check = iph->check;
	ip_check = lb_csum_replace4(ip_check, iph->saddr, nat.saddr);
	ip_check = lb_csum_replace4(ip_check, iph->daddr, nat.daddr);
	iph->check = ip_check;
	iph->saddr = nat.saddr;
	iph->daddr = nat.daddr;

	__builtin_memcpy(eth->h_source, nat.smac, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, nat.dmac, ETH_ALEN);

	if (nat.ifindex == 0 || nat.ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect(nat.ifindex, 0);
}

/* Attached to the host-side peer of a container's veth in native mode: veth delivers XDP_TX
 * frames only when its peer runs XDP (NAPI), so this passes everything on. */
int xdp_peer_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}
