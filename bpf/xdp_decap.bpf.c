/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * IPIP decapsulation on a backend of an `forwarding: ipip` service, for kernels without an ipip
 * device (CONFIG_NET_IPIP off, as on our CI machine); Katran's decap_kern.c does the same job.
 *
 * An IPv4 packet of protocol 4 to one of the addresses in decap_dsts (the backend's own, the
 * outer destination the load balancer uses) loses its outer header and goes on to the stack as
 * the client's packet (to the VIP the backend holds on loopback). Everything else passes untouched.
 * Outer fragments and outer headers with options pass too: the stack drops them (no ipip device),
 * the load balancer never sends them.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>

/* identity of the loaded program and where it is attached, written by user space only
 * (plugins/module_utils/xdp_decap_deploy.py packs the same layout) */
struct decap_meta {
	__u8 source_sha256[32];
	__u32 ifindex;
	__u8 mode; /* 1 native, 2 generic */
	__u8 pad[3];
	__u64 netns_ino;
	char ifname[16];
	char netns[96];
};

BPF_HASH(decap_dsts, __be32, __u32, 64); /* outer destinations to decapsulate (network order) */
BPF_PERCPU_ARRAY(decap_count, __u64, 1); /* packets decapsulated */
BPF_ARRAY(decap_meta, struct decap_meta, 1);

int xdp_decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *outer = (void *)(eth + 1);

	if ((void *)(outer + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	if (outer->protocol != IPPROTO_IPIP || outer->ihl != 5 || (outer->frag_off & bpf_htons(0x3fff)))
		return XDP_PASS;
	__be32 daddr = outer->daddr;
	if (!decap_dsts.lookup(&daddr))
		return XDP_PASS;
	struct iphdr *inner = outer + 1;
	if ((void *)(inner + 1) > data_end)
		return XDP_PASS;

	/* the Ethernet header moves forward over the outer IP header */
	struct ethhdr copy = *eth;
	if (bpf_xdp_adjust_head(ctx, (int)sizeof(struct iphdr)))
		return XDP_PASS;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	*eth = copy;
	__u32 zero = 0;
	__u64 *count = decap_count.lookup(&zero);
	if (count)
		*count += 1;
	return XDP_PASS;
}
