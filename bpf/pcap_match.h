/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Loads for a pcap-filter expression translated from classic BPF (plugins/module_utils/pcap_filter.py
 * writes pcap_filter.h with pcap_filter_match()). The packet is a copy of its first PCAP_SNAP bytes
 * from the network header, in a per-CPU slot; a load past what was copied rejects the packet, as a
 * cBPF load past the captured length does. Needs kernel_layout.h.
 */
#ifndef EBPF_NETWORKING_PCAP_MATCH_H
#define EBPF_NETWORKING_PCAP_MATCH_H

#define PCAP_SNAP 256

/* Big-endian load of size 1, 2 or 4 at off; nonzero when outside the copy. */
static __always_inline int pcap_load(const __u8 *pkt, __u32 snap, __u32 off, __u32 size, __u32 *out)
{
	if (off > PCAP_SNAP - 4 || off + size > snap)
		return 1;
	if (size == 1)
		*out = pkt[off];
	else if (size == 2)
		*out = (__u32)pkt[off] << 8 | pkt[off + 1];
	else
		*out = (__u32)pkt[off] << 24 | (__u32)pkt[off + 1] << 16 | (__u32)pkt[off + 2] << 8 | pkt[off + 3];
	return 0;
}

/* Copy the packet from its network header into pkt; returns the copied length, 0 without a header. */
static __always_inline __u32 pcap_copy(void *skb, __u8 *pkt, __u32 *wirelen)
{
	unsigned char *head = 0, *data = 0;
	__u16 nh = 0;
	__u32 len = 0;
	bpf_probe_read_kernel(&head, sizeof(head), (char *)skb + SKB_HEAD_OFF);
	bpf_probe_read_kernel(&data, sizeof(data), (char *)skb + SKB_DATA_OFF);
	bpf_probe_read_kernel(&nh, sizeof(nh), (char *)skb + SKB_NETWORK_HEADER_OFF);
	bpf_probe_read_kernel(&len, sizeof(len), (char *)skb + SKB_LEN_OFF);
	if (!head || !nh || nh == (__u16)~0U)
		return 0;
	/* skb->len counts from data; the network header may lie before data (receive) or after it */
	__s64 from_nh = (__s64)len + (data - head) - nh;
	if (from_nh <= 0)
		return 0;
	*wirelen = (__u32)from_nh;
	__u32 n = from_nh > PCAP_SNAP ? PCAP_SNAP : (__u32)from_nh;
	if (bpf_probe_read_kernel(pkt, n & (2 * PCAP_SNAP - 1), head + nh))
		return 0;
	return n;
}

#endif
