/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Incremental Internet checksum updates (RFC 1624) for header rewrites.
 * Pure functions on the one's complement sum, no helper calls, so they are the same in XDP,
 * TC and user space; plugins/module_utils/checksum.py mirrors them for unit tests.
 */
#ifndef EBPF_NETWORKING_CSUM_H
#define EBPF_NETWORKING_CSUM_H

static __always_inline __u32 lb_csum_add(__u32 csum, __u32 addend)
{
	__u32 res = csum + addend;
	return res + (res < addend); /* end-around carry */
}

static __always_inline __u16 lb_csum_fold(__u32 csum)
{
	csum = (csum & 0xffff) + (csum >> 16);
	csum = (csum & 0xffff) + (csum >> 16);
	return (__u16)~csum;
}

/* check' = ~(~check + ~old + new) for a 32-bit field (an IPv4 address) */
static __always_inline __u16 lb_csum_replace4(__u16 check, __u32 old, __u32 new)
{
	__u32 sum = lb_csum_add((__u16)~check, ~old);
	sum = lb_csum_add(sum, new);
	return lb_csum_fold(sum);
}

/* the same for a 16-bit field (a port) */
static __always_inline __u16 lb_csum_replace2(__u16 check, __u16 old, __u16 new)
{
	__u32 sum = lb_csum_add((__u16)~check, (__u16)~old);
	sum = lb_csum_add(sum, new);
	return lb_csum_fold(sum);
}

/*
 * One-pass form for a header rewrite: sum the changes of every field once (lb_csum_diff*), then
 * apply that sum to each checksum covering those fields (lb_csum_apply). The addresses are in both
 * the IPv4 header and the TCP/UDP pseudo-header: their change is summed once and applied twice, and
 * each checksum folds once instead of once per field. Same result as the lb_csum_replace* chain,
 * modulo the one's complement zero, which verifies the same.
 */
static __always_inline __u32 lb_csum_diff4(__u32 diff, __u32 old, __u32 new)
{
	return lb_csum_add(lb_csum_add(diff, ~old), new);
}

static __always_inline __u32 lb_csum_diff2(__u32 diff, __u16 old, __u16 new)
{
	return lb_csum_add(lb_csum_add(diff, (__u16)~old), new);
}

static __always_inline __u16 lb_csum_apply(__u16 check, __u32 diff)
{
	return lb_csum_fold(lb_csum_add((__u16)~check, diff));
}

#endif
