/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * XDP full-NAT layer-4 load balancer for IPv4 TCP and UDP, compiled by bcc on the target.
 *
 * client:cport -> VIP:vport   becomes  SNAT_IP:lport -> backend:bport
 * backend:bport -> SNAT_IP:lport  becomes  VIP:vport -> client:cport
 *
 * - lb_addrs holds every VIP and SNAT address, lb_addr_cache the same as a direct-mapped array: any
 *   other packet costs one array lookup.
 * - Backend choice is per flow: a hash of the 5-tuple indexes the service's Maglev table, which
 *   user space fills (plugins/module_utils/maglev.py). Two tables per service, flipped with
 *   ring_gen, so a backend change is one atomic map update. Weight 0 (draining) backends are in
 *   no table: existing flows continue, new ones go elsewhere.
 * - lb_conntrack (LRU) holds one entry per connection, keyed by the client's 5-tuple. A reply
 *   (to a SNAT address, port in the SNAT range) finds it through lb_snat_ports, an array with one
 *   slot per SNAT address and port: one entry, so the directions cannot come apart. A reply with no
 *   live flow is dropped (the stack would answer RST to the backend).
 * - Flows end (bpf/lb_flow.h) and their SNAT ports come back (bpf/lb_snat.h).
 * - IPv4 and TCP/UDP checksums are updated incrementally (csum.h), never trusted to offload.
 *   TTL is decremented; TTL <= 1 goes to the stack, which answers time exceeded.
 * - Fragments to a VIP or SNAT address are dropped and counted (non-first fragments carry no
 *   ports, so the stack would get them while the first went to a backend).
 * - ICMP errors quoting a flow's packet are translated to the other side (bpf/lb_icmp.h).
 * - Next-hop MACs come from the kernel FIB (bpf_fib_lookup) when a flow starts, its answer per
 *   backend reused for a second (bpf/lb_nexthop.h); user space passes a backend MAC as a fallback
 *   while the neighbour entry is missing. Replies go back to the MAC
 *   the client's packet came from.
 * - forwarding dsr / ipip services (issue 13): the LB sees only client -> backend packets. dsr
 *   rewrites the destination MAC only (the backend is a neighbour and holds the VIP); ipip puts an
 *   outer IPv4 header in front (bpf/lb_encap.h); a DF packet too big for that gets ICMP "fragmentation
 *   needed" back (bpf/lb_icmp_too_big.h). No SNAT port, no reply path. The backend is the
 *   Maglev pick, so any LB with the same backend set picks the same one without shared state;
 *   lb_conntrack keeps the pick only for stickiness when the backend set changes.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include "xdp_lb.h"
#include "csum.h"
#include "lb_ipv4.h"
#include "lb_encap.h"
#include "lb_icmp_too_big.h"

#ifndef AF_INET
#define AF_INET 2
#endif

BPF_HASH(lb_services, struct lb_service_key, struct lb_service, LB_MAX_SERVICES);
BPF_HASH(lb_addrs, __be32, struct lb_addr, LB_MAX_SERVICES + LB_MAX_SNAT_IPS);
BPF_ARRAY(lb_addr_cache, struct lb_addr_slot, LB_ADDR_CACHE_SLOTS);
BPF_ARRAY(lb_backends, struct lb_backend, LB_MAX_SERVICES * LB_MAX_BACKENDS);
BPF_ARRAY(lb_maglev, __u32, LB_MAX_SERVICES * 2 * LB_RING_SIZE);
/* per CPU: a CPU never reads an entry another CPU is writing (bpf/lb_nexthop.h) */
BPF_PERCPU_ARRAY(lb_nexthops, struct lb_nexthop, LB_MAX_SERVICES * LB_MAX_BACKENDS * LB_MAX_SNAT_IPS);
#ifdef LB_FLOWS_PIN
/* user space passes the pinned flow tables of the running program when their layout is unchanged:
 * a reload keeps live connections */
BPF_TABLE_PINNED("lru_hash", struct lb_flow_key, struct lb_flow, lb_conntrack, LB_MAX_FLOWS, LB_FLOWS_PIN "/map_lb_conntrack");
BPF_TABLE_PINNED("array", __u32, struct lb_snat_slot, lb_snat_ports, LB_MAX_SNAT_IPS * LB_SNAT_PORTS, LB_FLOWS_PIN "/map_lb_snat_ports");
#else
BPF_TABLE("lru_hash", struct lb_flow_key, struct lb_flow, lb_conntrack, LB_MAX_FLOWS);
BPF_ARRAY(lb_snat_ports, struct lb_snat_slot, LB_MAX_SNAT_IPS * LB_SNAT_PORTS);
#endif
BPF_PERCPU_ARRAY(lb_svc_stats, struct lb_counters, LB_MAX_SERVICES);
BPF_PERCPU_ARRAY(lb_be_stats, struct lb_counters, LB_MAX_SERVICES * LB_MAX_BACKENDS);
BPF_PERCPU_ARRAY(lb_global, __u64, LB_CNT_MAX);
BPF_ARRAY(lb_meta, struct lb_meta, 1);

static __always_inline void lb_count_global(__u32 counter)
{
	__u64 *value = lb_global.lookup(&counter);
	if (value)
		*value += 1;
}

/* map accessors for the headers below */
static __always_inline struct lb_snat_slot *lb_snat_slot(__u32 idx)
{
	return lb_snat_ports.lookup(&idx);
}

/* one slot per backend slot and SNAT address (a service with several SNAT addresses asks about each) */
static __always_inline struct lb_nexthop *lb_nexthop_slot(__u32 be_index, __u32 snat_index)
{
	if (snat_index >= LB_MAX_SNAT_IPS)
		return 0;
	__u32 idx = be_index * LB_MAX_SNAT_IPS + snat_index;
	return lb_nexthops.lookup(&idx);
}

static __always_inline struct lb_flow *lb_flow_find(struct lb_flow_key *key)
{
	return lb_conntrack.lookup(key);
}

static __always_inline void lb_flow_forget(struct lb_flow_key *key)
{
	lb_conntrack.delete(key);
}

#include "lb_flow.h"
#include "lb_snat.h"
#include "lb_icmp.h"
#include "lb_nexthop.h"

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

static __always_inline void lb_count_flow(__u32 svc_index, __u32 slot, int reply, __u64 bytes, int new_flow)
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

static __always_inline void lb_count_service_drop(__u32 svc_index, int refused)
{
	struct lb_counters *svc = lb_svc_stats.lookup(&svc_index);
	if (svc) {
		svc->drops += 1;
		svc->refused += refused;
	}
}

/* Is the backend in this flow's slot still the one the flow goes to? (UDP flows move otherwise) */
static __always_inline int lb_backend_present(const struct lb_flow *flow)
{
	__u32 be_index = (__u32)flow->svc_index * LB_MAX_BACKENDS + flow->backend_slot;
	struct lb_backend *be = lb_backends.lookup(&be_index);
	return be && be->active && be->ip == flow->backend_ip && be->port == flow->backend_port;
}

/*
 * A first packet for a service: pick the backend, the SNAT port, the next hops; record the flow.
 * Fills *flow. Returns 0, or an XDP verdict to return at once.
 */
static __always_inline int lb_new_flow(struct xdp_md *ctx, struct ethhdr *eth, const struct lb_flow_key *key,
				       const struct lb_service *svc, __u64 now, int midstream, struct lb_flow *flow)
{
	__u32 svc_index = svc->index;
	__u32 ring_gen = svc->ring_gen;

	if (svc_index >= LB_MAX_SERVICES || ring_gen > 1)
		return XDP_DROP;
	if (svc->backend_count == 0) {
		lb_count_global(LB_CNT_NO_BACKEND);
		lb_count_service_drop(svc_index, 0);
		return XDP_DROP;
	}

	__u32 hash = lb_hash_flow(key, 0);
	__u32 ring_index = (svc_index * 2 + ring_gen) * LB_RING_SIZE + hash % LB_RING_SIZE;
	__u32 *slot_ptr = lb_maglev.lookup(&ring_index);
	if (!slot_ptr || *slot_ptr >= LB_MAX_BACKENDS) {
		lb_count_global(LB_CNT_NO_BACKEND);
		lb_count_service_drop(svc_index, 0);
		return XDP_DROP;
	}
	__u32 slot = *slot_ptr;
	__u32 be_index = svc_index * LB_MAX_BACKENDS + slot;
	struct lb_backend *be = lb_backends.lookup(&be_index);
	if (!be || !be->active) {
		lb_count_global(LB_CNT_NO_BACKEND);
		lb_count_service_drop(svc_index, 0);
		return XDP_DROP;
	}

	__builtin_memset(flow, 0, sizeof(*flow));
	__u8 forwarding = svc->forwarding;
	flow->forwarding = forwarding;
	if (forwarding == LB_FWD_IPIP) {
		flow->snat_ip = svc->snat[0].ip; /* the outer source address */
	} else if (forwarding == LB_FWD_DSR) {
		flow->snat_ip = key->daddr; /* only the FIB lookup's source: the packet keeps its addresses */
	} else if (lb_snat_pick(key, svc, lb_hash_flow(key, 0x9e3779b9), now, midstream, flow) != 0) {
		lb_count_global(LB_CNT_SNAT_EXHAUSTED);
		lb_count_service_drop(svc_index, 1);
		return XDP_DROP;
	}

	struct lb_nexthop nh = {};
	int rc = lb_nexthop_lookup(ctx, be_index, flow->snat_index, flow->snat_ip, be->ip,
				   forwarding == LB_FWD_IPIP ? IPPROTO_IPIP : key->proto, now, &nh);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS && forwarding == LB_FWD_DSR && !nh.direct) {
		/* the route to the backend has a gateway: a MAC rewrite would hand the VIP's packet to a router */
		lb_count_global(LB_CNT_DSR_NOT_NEIGHBOUR);
		lb_count_service_drop(svc_index, 0);
		return XDP_DROP;
	}
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		__builtin_memcpy(flow->backend_lb_mac, nh.smac, ETH_ALEN);
		__builtin_memcpy(flow->backend_mac, nh.dmac, ETH_ALEN);
		flow->backend_ifindex = nh.out_ifindex;
	} else if (be->mac_valid) {
		__builtin_memcpy(flow->backend_lb_mac, eth->h_dest, ETH_ALEN);
		__builtin_memcpy(flow->backend_mac, be->mac, ETH_ALEN);
		flow->backend_ifindex = ctx->ingress_ifindex;
	} else {
		/* the port stays claimed by this key; the next try of this client takes it again */
		lb_count_global(LB_CNT_NO_NEIGH);
		lb_count_service_drop(svc_index, 0);
		return XDP_DROP;
	}
	flow->backend_ip = be->ip;
	flow->backend_port = be->port;
	flow->svc_index = svc_index;
	flow->backend_slot = slot;
	flow->client_ifindex = ctx->ingress_ifindex;
	__builtin_memcpy(flow->client_mac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(flow->client_lb_mac, eth->h_dest, ETH_ALEN);
	flow->last_seen = (__u32)now;
	if (forwarding != LB_FWD_NAT)
		flow->state = LB_ST_REPLIED; /* replies bypass us: time the flow out as established */
	if (lb_conntrack.update((struct lb_flow_key *)key, flow) != 0)
		lb_count_global(LB_CNT_FLOW_INSERT_FAIL);
	return 0;
}

/* Rewrite addresses and ports with incremental checksum updates; decrement the TTL. */
static __always_inline void lb_rewrite(struct iphdr *iph, __be16 *ports, __u16 *l4_check, __be32 saddr, __be32 daddr,
				       __be16 sport, __be16 dport)
{
	/* the address change is summed once for both checksums, each folded once (csum.h) */
	__u32 addr_diff = lb_ipv4_addr_diff(iph, saddr, daddr);
	__u16 check = *l4_check;
	if (iph->protocol == IPPROTO_TCP || check != 0) {
		check = lb_csum_apply(check, lb_csum_diff2(lb_csum_diff2(addr_diff, ports[0], sport), ports[1], dport));
		if (iph->protocol == IPPROTO_UDP && check == 0)
			check = 0xffff; /* 0 means "no checksum" for UDP */
		*l4_check = check;
	}
	ports[0] = sport;
	ports[1] = dport;

	lb_ipv4_forward_diff(iph, saddr, daddr, addr_diff);
}

static __always_inline int lb_send(struct xdp_md *ctx, struct ethhdr *eth, const __u8 *smac, const __u8 *dmac,
				   __u32 ifindex)
{
	__builtin_memcpy(eth->h_source, smac, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, dmac, ETH_ALEN);
	if (ifindex == 0 || ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect(ifindex, 0);
}

/* An ipip flow's packet: outer header from the tunnel source to the backend, then to its next hop.
 * Too big for the tunnel: a DF packet gets ICMP "fragmentation needed" back, others are dropped. */
static __always_inline int lb_forward_ipip(struct xdp_md *ctx, const struct lb_flow *f)
{
	__u32 mtu = 0;
	int room = lb_encap_make_room(ctx, f->backend_ifindex ? f->backend_ifindex : ctx->ingress_ifindex, &mtu);
	if (room == -1) {
		__u32 ingress_mtu = 0;
		if (bpf_check_mtu(ctx, 0, &ingress_mtu, 0, 0) != BPF_MTU_CHK_RET_SUCCESS) {
			/* longer than the interface it came in on: a GRO/GSO aggregate (generic mode), whose
			 * segments may each fit; an outer header in front cannot be segmented again */
			lb_count_global(LB_CNT_ENCAP_AGGREGATE);
			return XDP_DROP;
		}
		lb_count_global(LB_CNT_ENCAP_TOO_BIG);
		if (mtu > sizeof(struct iphdr) && lb_icmp_too_big(ctx, mtu - sizeof(struct iphdr)) == 0) {
			lb_count_global(LB_CNT_ICMP_TOO_BIG);
			return XDP_TX;
		}
	}
	if (room)
		return XDP_DROP;
	struct ethhdr *eth = lb_encap_ipip_header(ctx, f->snat_ip, f->backend_ip);
	if (!eth)
		return XDP_DROP;
	return lb_send(ctx, eth, f->backend_lb_mac, f->backend_mac, f->backend_ifindex);
}

/* An ICMP error to one of our addresses: if it quotes a packet of a flow, pass it to the other side
 * of that flow, translated (path-MTU discovery and port unreachable work through the LB). Anything
 * else ICMP goes to the stack. */
static __always_inline int lb_handle_icmp(struct xdp_md *ctx, struct ethhdr *eth, struct iphdr *iph, void *data_end,
					  __u32 addr_flags, __u32 snat_index)
{
	struct lb_icmp_error err = {};

	if ((iph->frag_off & bpf_htons(0x3fff)) || iph->ttl <= 1 || lb_icmp_parse(iph, data_end, &err))
		return XDP_PASS;
	struct iphdr *inner = err.inner;
	__u16 quoted_sport = bpf_ntohs(err.inner_ports[0]);
	if ((addr_flags & LB_ADDR_SNAT) && inner->saddr == iph->daddr && quoted_sport >= LB_SNAT_PORT_MIN &&
	    quoted_sport <= LB_SNAT_PORT_MAX) {
		/* quotes SNAT:lport -> backend:bport, a packet we sent on a client's behalf */
		__u32 idx = snat_index * LB_SNAT_PORTS + (quoted_sport - LB_SNAT_PORT_MIN);
		struct lb_snat_slot *slot = lb_snat_ports.lookup(&idx);
		if (!slot || slot->key.proto != inner->protocol)
			return XDP_PASS;
		struct lb_flow_key fkey = slot->key;
		struct lb_flow *flow = lb_conntrack.lookup(&fkey);
		if (!flow || flow->backend_ip != inner->daddr || flow->backend_port != err.inner_ports[1] ||
		    flow->snat_port != err.inner_ports[0])
			return XDP_PASS;
		struct lb_flow f = *flow;
		/* the client sees an error about its own packet client:cport -> VIP:vport, from the VIP */
		lb_icmp_rewrite(iph, &err, fkey.daddr, fkey.saddr, fkey.saddr, fkey.daddr, fkey.sport, fkey.dport);
		lb_count_global(LB_CNT_ICMP_TRANSLATED);
		return lb_send(ctx, eth, f.client_lb_mac, f.client_mac, f.client_ifindex);
	}
	if ((addr_flags & LB_ADDR_VIP) && inner->saddr == iph->daddr) {
		/* quotes VIP:vport -> client:cport, a reply we sent on a backend's behalf */
		struct lb_flow_key key = {};
		key.saddr = inner->daddr;
		key.daddr = inner->saddr;
		key.sport = err.inner_ports[1];
		key.dport = err.inner_ports[0];
		key.proto = inner->protocol;
		struct lb_flow *flow = lb_conntrack.lookup(&key);
		if (!flow || flow->forwarding != LB_FWD_NAT)
			return XDP_PASS;
		struct lb_flow f = *flow;
		/* the backend sees an error about its packet backend:bport -> SNAT:lport, from the SNAT address */
		lb_icmp_rewrite(iph, &err, f.snat_ip, f.backend_ip, f.backend_ip, f.snat_ip, f.backend_port, f.snat_port);
		lb_count_global(LB_CNT_ICMP_TRANSLATED);
		return lb_send(ctx, eth, f.backend_lb_mac, f.backend_mac, f.backend_ifindex);
	}
	return XDP_PASS;
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

	/* the one (array) lookup every other packet pays */
	__be32 daddr = iph->daddr;
	__u32 cache_index = lb_addr_cache_index(daddr);
	__u64 *cached = (__u64 *)lb_addr_cache.lookup(&cache_index);
	if (!cached)
		return XDP_PASS;
	union lb_addr_word seen;
	seen.word = *cached;
	__u32 addr_flags, snat_index;
	if (seen.slot.flags & LB_ADDR_SHARED) {
		struct lb_addr *addr = lb_addrs.lookup(&daddr);
		if (!addr)
			return XDP_PASS;
		addr_flags = addr->flags;
		snat_index = addr->snat_index;
	} else if (seen.slot.ip == daddr && seen.slot.flags) {
		addr_flags = seen.slot.flags;
		snat_index = seen.slot.snat_index;
	} else {
		return XDP_PASS;
	}

	if (iph->protocol == IPPROTO_ICMP)
		return lb_handle_icmp(ctx, eth, iph, data_end, addr_flags, snat_index);
	if (iph->protocol != IPPROTO_TCP && iph->protocol != IPPROTO_UDP)
		return XDP_PASS;
	if (iph->frag_off & bpf_htons(0x3fff)) {
		lb_count_global(LB_CNT_FRAGMENT);
		return XDP_DROP;
	}

	void *l4 = (void *)iph + iph->ihl * 4;
	__be16 *ports = l4;
	__u16 *l4_check;
	struct tcphdr *th = 0;
	if (iph->protocol == IPPROTO_TCP) {
		th = l4;
		if ((void *)(th + 1) > data_end)
			return XDP_PASS;
		l4_check = &th->check;
	} else {
		struct udphdr *uh = l4;
		if ((void *)(uh + 1) > data_end)
			return XDP_PASS;
		l4_check = &uh->check;
	}
	if (iph->ttl <= 1) {
		lb_count_global(LB_CNT_TTL_EXPIRED);
		return XDP_PASS;
	}
	__u64 now = lb_now();
	__u16 dport_host = bpf_ntohs(ports[1]);

	if ((addr_flags & LB_ADDR_SNAT) && dport_host >= LB_SNAT_PORT_MIN && dport_host <= LB_SNAT_PORT_MAX) {
		/* backend -> SNAT address: a reply */
		__u32 idx = snat_index * LB_SNAT_PORTS + (dport_host - LB_SNAT_PORT_MIN);
		struct lb_snat_slot *slot = lb_snat_ports.lookup(&idx);
		if (!slot || slot->key.proto != iph->protocol) {
			lb_count_global(LB_CNT_ORPHAN_REPLY);
			return XDP_DROP;
		}
		struct lb_flow_key fkey = slot->key;
		struct lb_flow *flow = lb_conntrack.lookup(&fkey);
		if (!flow || flow->backend_ip != iph->saddr || flow->backend_port != ports[0] ||
		    flow->snat_ip != daddr || flow->snat_port != ports[1]) {
			lb_count_global(LB_CNT_ORPHAN_REPLY);
			return XDP_DROP;
		}
		if (lb_flow_touch(flow, th ? lb_tcp_state_bits(th, 1) : 0, now))
			slot->free_at = lb_flow_free_at(flow, fkey.proto, now);
		struct lb_flow f = *flow; /* the LRU entry may be evicted under us */
		lb_count_flow(f.svc_index, f.backend_slot, 1, data_end - data, 0);
		lb_rewrite(iph, ports, l4_check, fkey.daddr, fkey.saddr, fkey.dport, fkey.sport);
		return lb_send(ctx, eth, f.client_lb_mac, f.client_mac, f.client_ifindex);
	}
	if (!(addr_flags & LB_ADDR_VIP))
		return XDP_PASS;

	struct lb_flow_key key = {};
	key.saddr = iph->saddr;
	key.daddr = daddr;
	key.sport = ports[0];
	key.dport = ports[1];
	key.proto = iph->protocol;

	struct lb_flow f;
	int new_flow = 0;
	struct lb_flow *flow = lb_conntrack.lookup(&key);
	if (flow) {
		/* A SYN on a closed or expired flow opens a new connection: pick the backend again from
		 * the live table, so a reused client port never lands on a removed backend. A UDP flow
		 * whose backend was removed moves on its next packet. */
		if (th) {
			if (th->syn && !th->ack && lb_flow_dead(flow, key.proto, now))
				flow = 0;
		} else if (!lb_backend_present(flow)) {
			lb_count_global(LB_CNT_UDP_REPICK);
			flow = 0;
		}
	}
	if (flow && flow->forwarding != LB_FWD_NAT) {
		lb_flow_touch(flow, th ? lb_tcp_state_bits(th, 0) : 0, now); /* no SNAT port to keep in step */
		f = *flow;
	} else if (flow) {
		if (lb_flow_touch(flow, th ? lb_tcp_state_bits(th, 0) : 0, now)) {
			/* at most once a second: keep the port's slot in step, and check the port is still
			 * ours (if another flow holds it, this one is lost: its packets must not join that flow) */
			__u32 idx = (__u32)flow->snat_index * LB_SNAT_PORTS + (bpf_ntohs(flow->snat_port) - LB_SNAT_PORT_MIN);
			struct lb_snat_slot *slot = lb_snat_ports.lookup(&idx);
			if (!slot || !lb_key_equal(&slot->key, &key)) {
				lb_count_global(LB_CNT_FLOW_LOST);
				lb_conntrack.delete(&key);
				return XDP_DROP;
			}
			slot->free_at = lb_flow_free_at(flow, key.proto, now);
		}
		f = *flow;
	} else {
		struct lb_service_key svc_key = {};
		svc_key.vip = key.daddr;
		svc_key.port = key.dport;
		svc_key.proto = key.proto;
		struct lb_service *svc = lb_services.lookup(&svc_key);
		if (!svc) {
			lb_count_global(LB_CNT_PASSED);
			return XDP_PASS; /* our address, not a service: the stack gets it untouched */
		}
		int verdict = lb_new_flow(ctx, eth, &key, svc, now, th && !th->syn, &f);
		if (verdict)
			return verdict;
		if (th && (th->fin || th->rst)) {
			/* a first packet that already closes: record it so the port is free again */
			struct lb_flow *stored = lb_conntrack.lookup(&key);
			if (stored)
				stored->state |= lb_tcp_state_bits(th, 0);
		}
		new_flow = 1;
	}

	lb_count_flow(f.svc_index, f.backend_slot, 0, data_end - data, new_flow);
	if (f.forwarding == LB_FWD_DSR)
		return lb_send(ctx, eth, f.backend_lb_mac, f.backend_mac, f.backend_ifindex);
	if (f.forwarding == LB_FWD_IPIP)
		return lb_forward_ipip(ctx, &f);
	lb_rewrite(iph, ports, l4_check, f.snat_ip, f.backend_ip, f.snat_port, f.backend_port);
	return lb_send(ctx, eth, f.backend_lb_mac, f.backend_mac, f.backend_ifindex);
}

/* Attached to the host-side peer of a container's veth in native mode: veth delivers XDP_TX
 * frames only when its peer runs XDP (NAPI), so this passes everything on. */
int xdp_peer_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}
