/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Where a packet is and who runs: struct offsets of the RUNNING kernel (user space reads them from
 * /sys/kernel/btf/vmlinux and passes -D flags, plugins/module_utils/kernel_layout.py), because the
 * installed headers may belong to another kernel. The defaults below are 6.18's, for reading only.
 */
#ifndef EBPF_NETWORKING_KERNEL_LAYOUT_H
#define EBPF_NETWORKING_KERNEL_LAYOUT_H

#ifndef SKB_DEV_OFF
#define SKB_DEV_OFF 16
#endif
#ifndef SKB_SK_OFF
#define SKB_SK_OFF 24
#endif
#ifndef SKB_LEN_OFF
#define SKB_LEN_OFF 112
#endif
#ifndef SKB_PROTOCOL_OFF
#define SKB_PROTOCOL_OFF 176
#endif
#ifndef SKB_HEAD_OFF
#define SKB_HEAD_OFF 192
#endif
#ifndef SKB_DATA_OFF
#define SKB_DATA_OFF 200
#endif
#ifndef SKB_NETWORK_HEADER_OFF
#define SKB_NETWORK_HEADER_OFF 180
#endif
#ifndef DEV_IFINDEX_OFF
#define DEV_IFINDEX_OFF 224
#endif
#ifndef DEV_NAME_OFF
#define DEV_NAME_OFF 280
#endif
#ifndef DEV_NET_OFF
#define DEV_NET_OFF 264
#endif
#ifndef NET_INUM_OFF
#define NET_INUM_OFF 176
#endif
#ifndef SK_NET_OFF
#define SK_NET_OFF 48
#endif
#ifndef SK_BOUND_DEV_IF_OFF
#define SK_BOUND_DEV_IF_OFF 20
#endif
#ifndef TASK_STACK_OFF
#define TASK_STACK_OFF 32
#endif
#ifndef TASK_FLAGS_OFF
#define TASK_FLAGS_OFF 44
#endif
#ifndef PROG_AUX_OFF
#define PROG_AUX_OFF 80
#endif
#ifndef PROG_AUX_ID_OFF
#define PROG_AUX_ID_OFF 32
#endif
#ifndef PROG_AUX_NAME_OFF
#define PROG_AUX_NAME_OFF 1016
#endif

/* Where the interface of a record came from. */
#define IF_NONE 0
#define IF_FROM_DEV 1     /* skb->dev */
#define IF_FROM_SOCKET 2  /* no device: the socket's bound device and namespace */

/* Who was running: only CTX_PROCESS makes pid/comm the packet's process. */
#define CTX_UNKNOWN 0
#define CTX_PROCESS 1     /* a task's own work: a system call (send, connect, ...) of a user process */
#define CTX_KTHREAD 2     /* a kernel thread's own work (napi, kworker), not serving a softirq */
#define CTX_INTERRUPT 3   /* serving a softirq (on any stack, in any task) or a hardirq: current is a bystander */

#define PF_KTHREAD_FLAG 0x00200000
#define THREAD_STACK_SPAN 32768 /* THREAD_SIZE is 16 KiB on x86_64 (32 KiB with KASAN) */

struct where {
	__u32 netns;         /* network namespace inode, 0 unknown */
	__u32 ifindex;
	char ifname[16];
	__u8 if_source;      /* IF_* */
	__u8 context;        /* CTX_* */
	__u8 has_socket;     /* the skb belongs to (or was dropped at) a socket */
	__u8 softirq;        /* softirq vector + 1 (NET_RX: 4) when the CPU was serving one, else 0 */
};

static __always_inline __u32 net_inum(void *net)
{
	__u32 inum = 0;
	if (net)
		bpf_probe_read_kernel(&inum, sizeof(inum), (char *)net + NET_INUM_OFF);
	return inum;
}

/* Namespace and interface of a net_device. */
static __always_inline void where_of_dev(void *dev, struct where *w)
{
	void *net = 0;
	bpf_probe_read_kernel(&w->ifindex, sizeof(w->ifindex), (char *)dev + DEV_IFINDEX_OFF);
	bpf_probe_read_kernel(w->ifname, sizeof(w->ifname), (char *)dev + DEV_NAME_OFF);
	bpf_probe_read_kernel(&net, sizeof(net), (char *)dev + DEV_NET_OFF);
	w->netns = net_inum(net);
	w->if_source = IF_FROM_DEV;
}

/* Device of the skb, else the socket's namespace and bound device (local output before routing). */
static __always_inline void where_of_skb(void *skb, void *sk, struct where *w)
{
	void *dev = 0, *net = 0;
	bpf_probe_read_kernel(&dev, sizeof(dev), (char *)skb + SKB_DEV_OFF);
	if (!sk)
		bpf_probe_read_kernel(&sk, sizeof(sk), (char *)skb + SKB_SK_OFF);
	w->has_socket = sk != 0;
	if (dev) {
		where_of_dev(dev, w);
	} else if (sk) {
		bpf_probe_read_kernel(&net, sizeof(net), (char *)sk + SK_NET_OFF);
		bpf_probe_read_kernel(&w->ifindex, sizeof(w->ifindex), (char *)sk + SK_BOUND_DEV_IF_OFF);
		w->netns = net_inum(net);
		w->if_source = IF_FROM_SOCKET;
	}
}

/*
 * Per-CPU state of running_context(), in a per-CPU map slot of the program's own.
 *
 * Whether the CPU is serving a softirq is kept by raw tracepoints on irq:softirq_entry/softirq_exit
 * (softirq_entered/softirq_left). The kernel's own answer, preempt_count's SOFTIRQ_OFFSET, is out of
 * reach: on x86_64 it is a per-CPU variable (pcpu_hot before 6.15, __preempt_count since) that a bcc
 * program cannot address (no __ksym/bpf_this_cpu_ptr; kallsyms lacks data symbols without
 * KALLSYMS_ALL), and PREEMPT_RT counts softirqs per task. The tracepoints exist on every architecture
 * since 2.6.3x, and cost two small programs per softirq vector run. The stack alone is not enough: a
 * softirq run as an interrupt returns to user space (irq_exit on x86_64) uses the interrupted task's
 * stack, so a drop there looked like that task's system call.
 * The task is kept with the vector so that, under PREEMPT_RT (softirqs run in preemptible tasks), a
 * preempted softirq is not lent to the next task on the CPU.
 */
struct running_state {
	__u64 sp_slot;        /* an address passed through memory: the verifier tracks ctx as a pointer */
	__u64 softirq_task;   /* current when the softirq was entered */
	__u32 softirq;        /* vector + 1 while serving it, 0 outside */
	__u32 pad;
};

static __always_inline void softirq_entered(struct running_state *rs, __u64 vec)
{
	if (rs) {
		rs->softirq_task = bpf_get_current_task();
		rs->softirq = (__u32)vec + 1;
	}
}

static __always_inline void softirq_left(struct running_state *rs)
{
	if (rs)
		rs->softirq = 0;
}

/*
 * Fills w->context and w->softirq: process, kernel thread or interrupt. A softirq (where receive and
 * forward drops happen) is known from the state above. Outside one, a hardirq runs on the per-CPU irq
 * stack, so an address on the current kernel stack lies outside current's task stack. The BPF frame
 * itself may be on a per-CPU private stack (6.13+), so the caller passes the raw tracepoint's ctx: the
 * args array the kernel built on its own stack.
 */
static __always_inline void running_context(struct running_state *rs, void *on_kernel_stack, struct where *w)
{
	void *task = (void *)bpf_get_current_task();
	__u64 stack = 0;
	__u32 flags = 0;
	w->softirq = 0;
	if (rs->softirq && rs->softirq_task == (__u64)task) {
		w->softirq = (__u8)rs->softirq;
		w->context = CTX_INTERRUPT;
		return;
	}
	volatile __u64 *slot = &rs->sp_slot;
	*slot = (__u64)on_kernel_stack;
	__u64 sp = *slot;
	if (bpf_probe_read_kernel(&stack, sizeof(stack), (char *)task + TASK_STACK_OFF) || !stack) {
		w->context = CTX_UNKNOWN;
		return;
	}
	bpf_probe_read_kernel(&flags, sizeof(flags), (char *)task + TASK_FLAGS_OFF);
	if (sp - stack >= THREAD_STACK_SPAN)
		w->context = CTX_INTERRUPT;
	else
		w->context = (flags & PF_KTHREAD_FLAG) ? CTX_KTHREAD : CTX_PROCESS;
}

#endif
