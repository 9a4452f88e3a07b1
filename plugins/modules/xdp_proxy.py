#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: xdp_proxy
short_description: XDP layer-4 load balancer (full NAT, direct server return or IPIP) for IPv4 TCP and UDP
version_added: 0.1.0
description:
  - Compiles C(bpf/xdp_proxy.bpf.c) with bcc on the target, pins the program and its maps under
    C(/sys/fs/bpf/ebpf_networking/<name>/) and attaches it with netlink (pyroute2) to an interface
    on the host, in a named network namespace or in a docker container's namespace.
  - Clients connect to a service (VIP, port, protocol). The program picks a backend per flow with
    a Maglev consistent-hashing table, rewrites the packet to C(snat_ip:port -> backend) and back
    (full NAT), updates the IPv4 and TCP/UDP checksums incrementally and sends it out with XDP_TX
    or a redirect. A connection table (LRU) keeps every flow on its backend, also while backends
    are added or removed.
  - Per service, I(forwarding=dsr) (direct server return) or I(forwarding=ipip) instead sends the
    client's packets to the backend unchanged, by MAC rewrite or inside an IPIP header, and the
    backends answer clients directly.
  - A flow ends. TCP flows move through SYN, established and closing (a FIN or RST) and expire after
    an idle time per state (I(timeouts)); UDP flows expire when idle. A closed or expired flow's SNAT
    port is free again for a new flow; a new TCP flow prefers a port whose last TCP flow ended more than
    I(timeouts.tcp_time_wait) ago, so that backends do not reject its SYN from their TIME_WAIT.
  - SNAT ports are unique per SNAT address. A new flow first tries a port derived from a hash of its
    5-tuple (a flow whose entry was evicted gets its own port back), then scans from a random port.
    A flow is refused only when the ports it can check are all held by live flows; C(xdp_stats)
    reports refused flows per service with advice. Several SNAT addresses (I(snat_ip) as a list)
    give more ports.
  - One connection-table entry serves both directions of a flow, so they cannot come apart; a packet
    from a backend to a SNAT address and port without a live flow is dropped (the stack would answer
    with RST), and counted.
  - Changing only I(services) updates the maps in place without reloading the program. Changing the
    program source, a timeout or the Maglev size reloads it, atomically replacing the attached
    program, and keeps the connection table, so live connections continue. Changing I(max_flows),
    I(max_snat_ips), I(snat_port_range), I(max_services) or I(max_backends) changes the table's
    layout; the reload starts with an empty table, and check mode and the C(changes) list say how
    many flows that resets.
  - See C(docs/xdp-load-balancer.md) in the collection for the design, memory per connection, and
    how fragments, TTL and backend removal are handled.
  - The action plugin of this module ships the BPF sources from the collection to the target.
author:
  - ebpf.networking developers (@ebpf-networking)
requirements:
  - Linux with XDP and BPF LRU hash maps (4.18 or later), bpffs mounted at /sys/fs/bpf
  - bcc (python3-bpfcc) and kernel headers on the target, pyroute2
  - docker Python SDK on the target when I(container) is used
extends_documentation_fragment:
  - ebpf.networking.program_cache
attributes:
  check_mode:
    support: full
    description: Reports what would change, from the pins and the interface, without loading anything.
  diff_mode:
    support: full
    description: Shows the services and backends before and after.
options:
  name:
    description:
      - Name of this deployment; its pins live in C(/sys/fs/bpf/ebpf_networking/<name>/).
    type: str
    default: xdp_lb
  state:
    description:
      - C(present) loads, configures and attaches; C(absent) detaches and removes every pin.
    type: str
    choices: [present, absent]
    default: present
  interface:
    description:
      - Interface to attach to, inside the namespace chosen by I(container) or I(netns).
      - Required with I(state=present). With I(state=absent) the interface recorded in the pins is used.
    type: str
  container:
    description:
      - Name of a running docker container whose network namespace holds I(interface).
    type: str
  netns:
    description:
      - Network namespace holding I(interface), a name under C(/var/run/netns) or an absolute path.
    type: str
  mode:
    description:
      - XDP attach mode. C(native) runs in the driver; C(generic) in the stack after skb allocation,
        slower but works on every device. C(auto) tries native, then generic; on veth devices it picks
        generic, see below.
      - In native mode on a veth the peer gets a tiny XDP_PASS program (pinned with the rest), because
        veth only delivers XDP_TX frames when its peer runs XDP.
      - Native mode on veth needs tx checksum offload off on the senders, C(ethtool -K eth0 tx off);
        a veth frame handed to native XDP loses the "checksum not yet computed" mark, so packets sent
        with offload carry only a partial checksum after the rewrite and are dropped by the receiver.
        Generic mode keeps the mark and works either way.
    type: str
    choices: [auto, native, generic]
    default: auto
  force:
    description:
      - Replace an XDP program that is already attached to I(interface) and is not ours.
    type: bool
    default: false
  services:
    description:
      - The services to balance. Required with I(state=present).
    type: list
    elements: dict
    suboptions:
      vip:
        description: Virtual IPv4 address clients connect to (often the interface's own address).
        type: str
        required: true
      port:
        description: Service port.
        type: int
        required: true
      protocol:
        description: Transport protocol.
        type: str
        choices: [tcp, udp]
        default: tcp
      forwarding:
        description:
          - How packets reach the backends. C(nat) (full NAT) rewrites addresses and ports and carries the
            replies back. C(dsr) (direct server return) rewrites the destination MAC only; the backends must be
            neighbours of the load balancer (no gateway on the route to them) and hold the VIP themselves
            (role C(ebpf.networking.xdp_lb_backend)). C(ipip) puts an IPIP header from I(tunnel_source) in front
            and sends the packet to the backend by its route; the backend decapsulates and holds the VIP.
          - With C(dsr) and C(ipip) the backends answer clients directly, ports are not translated (a
            backend C(port) must equal I(port)) and I(snat_ip) does not apply. See docs/xdp-load-balancer.md.
          - C(ipip) packets that exceed the egress MTU by the 20-byte outer header are not sent and are counted
            (C(encap_too_big_dropped)). Those with DF set (every TCP segment from Linux) are answered with ICMP
            "fragmentation needed" carrying the egress MTU less 20 (C(icmp_too_big_sent)), so the client's
            path-MTU discovery adapts; others are dropped. A 20-byte larger MTU towards the backends avoids both.
        type: str
        choices: [nat, dsr, ipip]
        default: nat
      tunnel_source:
        description:
          - With I(forwarding=ipip), required; the outer source address of encapsulated packets, an
            address of the load balancer the backends can route back to.
        type: str
      snat_ip:
        description:
          - Source address, or a list of up to 4 addresses, used towards backends; defaults to the
            interface's first IPv4 address. Only with I(forwarding=nat). Each address gives the service every port of I(snat_port_range).
          - Unspecified, broadcast, multicast, loopback and class E addresses are refused, also for I(vip) and backends.
        type: raw
      health_check:
        description:
          - Check the backends of this service from the load balancer's namespace and take a failing one out
            of the Maglev table (no new flows; established flows continue) until it passes again. Done by the
            host agent (role C(ebpf.networking.host_agent)) between Ansible runs; needs I(persistent=true).
          - A backend goes down after I(fall) failed checks in a row and comes back after I(rise) good ones,
            so it leaves the table within C(interval * fall + timeout) seconds. If every backend of the service
            fails, all are kept and the agent logs it.
          - Checks go to the backend's own address (C(ip:port), or I(port)), also with I(forwarding=dsr) or
            C(ipip). The backend must listen on that address too, not only on the VIP, and a check passes even
            when the backend has lost the VIP (for example after a reboot without M(ebpf.networking.lb_backend)).
        type: dict
        suboptions:
          type:
            description: C(tcp) connects; C(http) sends C(GET path) and expects I(expect_status).
            type: str
            choices: [tcp, http]
            default: tcp
          port:
            description: Port to check; defaults to each backend's port.
            type: int
          path:
            description: Path of the HTTP check.
            type: str
            default: /
          expect_status:
            description: HTTP status that counts as healthy.
            type: int
            default: 200
          interval:
            description: Seconds between checks of a backend.
            type: float
            default: 2
          timeout:
            description: Seconds a check may take; at most I(interval).
            type: float
            default: 1
          rise:
            description: Good checks in a row that bring a down backend back.
            type: int
            default: 2
          fall:
            description: Failed checks in a row that take a backend out.
            type: int
            default: 3
      backends:
        description:
          - Backends as dicts (C(ip), C(port) default the service port, C(weight) 0-1000 default 1) or plain addresses.
          - C(weight) 0 drains a backend; it gets no new flows and its existing flows continue.
          - A removed backend's TCP flows continue until they end or time out; its UDP flows move to
            another backend on their next packet. A backend added later starts with zero counters.
        type: list
        elements: raw
        required: true
  max_services:
    description: Capacity of the service table (compile-time size).
    type: int
    default: 16
  max_backends:
    description: Backends per service (compile-time size).
    type: int
    default: 64
  ring_size:
    description: Maglev table size per service; a prime, more than ten times I(max_backends).
    type: int
    default: 4099
  max_flows:
    description:
      - Connection-table entries, one per connection (both directions). The table is an LRU hash; when
        it is full the least recently used flows are evicted instead of new ones failing. About 120
        bytes of kernel memory each.
    type: int
    default: 65536
  max_snat_ips:
    description:
      - SNAT addresses of all services together (compile-time size of the SNAT port table).
      - The table is allocated whole, 24 bytes per address and port of I(snat_port_range), so each address
        adds about 3.7 bytes per connection at the default sizes; the default 2 keeps map memory at 127 bytes
        per connection (4 would make it 134).
    type: int
    default: 2
  snat_port_range:
    description: First and last source port used towards backends; keep it clear of the host's ephemeral range.
    type: list
    elements: int
    default: [20000, 29999]
  timeouts:
    description:
      - Idle timeouts of flows in seconds (1 to 604800), compiled into the program, and I(tcp_time_wait).
        Changing them reloads the program and keeps live connections.
    type: dict
    suboptions:
      tcp_syn:
        description: A TCP flow the backend has not answered yet.
        type: int
        default: 60
      tcp_established:
        description: An established TCP flow.
        type: int
        default: 21600
      tcp_closing:
        description: A TCP flow after a FIN or RST (its port is free at once when it is closed both ways).
        type: int
        default: 10
      udp:
        description: A UDP flow.
        type: int
        default: 60
      tcp_time_wait:
        description:
          - Not a flow's timeout - how long a SNAT port whose TCP flow ended is passed over, while one of the
            16 other ports a new TCP flow tries has rested longer (or is the port this flow's 5-tuple had, so a
            flow whose entry was evicted keeps its port). The backend that served the ended flow may still
            hold it in TIME_WAIT (60 s on Linux; up to 240 s elsewhere) and reject a new SYN on it, which costs
            the client a retry (8 ms on Linux, a second or more on other systems).
          - When none of the ports tried has rested (more new TCP flows per SNAT address in this time than
            ports), a recent one is taken rather than refusing the flow; C(xdp_stats) counts both cases
            (C(snat_ports_rested), C(snat_ports_not_rested)).
          - 0 to 604800; 0 takes a port again as soon as its flow is closed.
        type: int
        default: 60
  persistent:
    description:
      - Save the applied desired state under C(/etc/ebpf-networking/xdp_proxy/<name>.json) so the host agent
        (role C(ebpf.networking.host_agent)) re-applies it after a reboot, a re-created interface or a restarted
        container, and runs the I(health_check)s. C(false) removes a saved state; I(state=absent) always does.
      - Like firewalld's C(permanent). Without a running agent the file is only kept, nothing reads it.
    type: bool
    default: true
  bpf_sources:
    description:
      - The BPF C sources, filled in by the action plugin from the collection's C(bpf/) directory.
        Set it only to test a modified program.
    type: dict
notes:
  - Run with the target's C(/usr/bin/python3) on Debian, where python3-bpfcc lives.
  - Packets to addresses that are neither a VIP nor a SNAT address pass to the stack after one map
    lookup. Packets to a VIP on a port without a service pass too.
  - IPv4 fragments of TCP or UDP to a VIP or SNAT address are dropped and counted (fragments_dropped),
    so a datagram is never split between a backend and the load balancer's stack. Keep datagrams
    below the path MTU (ICMP, like ping, is not balanced and passes to the stack).
  - ICMP errors quoting a packet of a flow (destination unreachable, fragmentation needed, time
    exceeded) are translated to the other side of the flow, so path-MTU discovery works through it.
  - TTL is decremented; a packet arriving with TTL 1 or less passes to the stack.
seealso:
  - module: ebpf.networking.xdp_stats
  - name: Maglev paper
    description: Consistent hashing used to pick backends.
    link: https://research.google/pubs/pub44824/
'''

EXAMPLES = r'''
- name: Balance HTTP in the lb container across two web servers
  ebpf.networking.xdp_proxy:
    container: lb
    interface: eth0
    services:
      - vip: 172.30.0.10
        port: 80
        backends:
          - {ip: 172.30.0.11}
          - {ip: 172.30.0.12, weight: 2}

- name: Direct server return to backends on the lb container's segment (they hold the VIP on loopback)
  ebpf.networking.xdp_proxy:
    name: xdp_dsr
    container: lb
    interface: eth0
    services:
      - vip: 172.30.0.10
        port: 80
        forwarding: dsr
        backends: [172.30.0.11, 172.30.0.12]
      - vip: 172.30.0.10
        port: 443
        forwarding: ipip
        tunnel_source: 172.30.0.2  # the load balancer's own address, not the VIP
        backends: [10.8.0.11, 10.9.0.12]

- name: Remove it again
  ebpf.networking.xdp_proxy:
    name: xdp_lb
    state: absent
'''

RETURN = r'''
prog_id:
  description: Kernel id of the attached XDP program.
  returned: state=present and not check mode
  type: int
  sample: 212
attach_mode:
  description: The mode the kernel reports for the attachment (native or generic).
  returned: state=present and not check mode
  type: str
  sample: native
interface:
  description: Interface, ifindex and namespace the program is attached to.
  returned: state=present
  type: dict
  sample: {name: eth0, ifindex: 23, netns: "container:lb", peer_ifindex: 24}
pin_path:
  description: The bpffs directory holding this deployment's pins.
  returned: always
  type: str
  sample: /sys/fs/bpf/ebpf_networking/xdp_lb
services:
  description: The services as applied (normalized, backends sorted).
  returned: state=present
  type: list
  elements: dict
changes:
  description: What this run changed (or would change in check mode), one line each.
  returned: always
  type: list
  elements: str
  sample: ["service 172.30.0.10:80/tcp: add backend 172.30.0.13:80 (weight 1)"]
maps:
  description: The pinned maps with id, type, sizes and estimated memory.
  returned: state=present and not check mode
  type: dict
counters:
  description: Per-service and per-backend packet, byte and new-flow counters.
  returned: state=present and not check mode
  type: list
  elements: dict
persistent_state:
  description: File holding the saved desired state the host agent restores, or null when not persistent.
  returned: always
  type: str
  sample: /etc/ebpf-networking/xdp_proxy/xdp_lb.json
flows:
  description: Entries in the connection table (one per connection).
  returned: state=present and not check mode
  type: int
global_counters:
  description: Drop, pass and SNAT port counters of the program (see M(ebpf.networking.xdp_stats)).
  returned: state=present and not check mode
  type: dict
limits:
  description: The compile-time sizes and timeouts of the loaded program.
  returned: state=present and not check mode
  type: dict
  sample: {max_services: 16, max_backends: 64, ring_size: 4099, max_flows: 65536, snat_port_range: [20000, 29999],
           max_snat_ips: 2, timeouts: {tcp_syn: 60, tcp_established: 21600, tcp_closing: 10, udp: 60, tcp_time_wait: 60}}
diff:
  description:
    - Before and after, for --diff. With state=present C(services), C(limits) and C(interface) (name, netns, mode);
      with state=absent C(services) and C(interface) before, nothing after.
  returned: state=present, and state=absent when something was removed
  type: dict
'''

import contextlib
import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ebpf.networking.plugins.module_utils import agent_state, bpf_loader, deploy_lock, health_check
from ansible_collections.ebpf.networking.plugins.module_utils.xdp_lb_deploy import DeployError, XdpLbDeployment

LOCK_TIMEOUT = 120  # seconds: longer than a restore that compiles on a busy host


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type='str', default='xdp_lb'),
            state=dict(type='str', default='present', choices=['present', 'absent']),
            interface=dict(type='str'),
            container=dict(type='str'),
            netns=dict(type='str'),
            mode=dict(type='str', default='auto', choices=['auto', 'native', 'generic']),
            force=dict(type='bool', default=False),
            services=dict(type='list', elements='dict', options=dict(
                vip=dict(type='str', required=True),
                port=dict(type='int', required=True),
                protocol=dict(type='str', default='tcp', choices=['tcp', 'udp']),
                forwarding=dict(type='str', default='nat', choices=['nat', 'dsr', 'ipip']),
                tunnel_source=dict(type='str'),
                snat_ip=dict(type='raw'),
                backends=dict(type='list', elements='raw', required=True),
                health_check=dict(type='dict', options=dict(
                    type=dict(type='str', default='tcp', choices=['tcp', 'http']),
                    port=dict(type='int'),
                    path=dict(type='str', default='/'),
                    expect_status=dict(type='int', default=200),
                    interval=dict(type='float', default=2),
                    timeout=dict(type='float', default=1),
                    rise=dict(type='int', default=2),
                    fall=dict(type='int', default=3),
                )),
            )),
            max_services=dict(type='int', default=16),
            max_backends=dict(type='int', default=64),
            ring_size=dict(type='int', default=4099),
            max_flows=dict(type='int', default=65536),
            snat_port_range=dict(type='list', elements='int', default=[20000, 29999]),
            max_snat_ips=dict(type='int', default=2),
            timeouts=dict(type='dict', options=dict(
                tcp_syn=dict(type='int', default=60),
                tcp_established=dict(type='int', default=21600),
                tcp_closing=dict(type='int', default=10),
                udp=dict(type='int', default=60),
                tcp_time_wait=dict(type='int', default=60),
            )),
            persistent=dict(type='bool', default=True),
            bpf_sources=dict(type='dict'),
        ),
        mutually_exclusive=[('container', 'netns')],
        required_if=[('state', 'present', ('interface', 'services'))],
        supports_check_mode=True,
    )
    invocation = bpf_loader.invocation(module.params)
    if os.geteuid() != 0:
        module.fail_json(msg='xdp_proxy must run as root (become: true): loading BPF needs CAP_BPF and CAP_NET_ADMIN')
    try:
        health_check.validate_services(module.params['services'])
    except health_check.HealthConfigError as e:
        module.fail_json(msg='%s. Nothing was changed.' % e, invocation=invocation)
    run_params = module.params
    if module.params['state'] == 'present' and module.params['persistent']:
        services, left_out = health_check.agent_view(
            module.params, agent_state.load_status('xdp_proxy', module.params['name']), time.time())
        if left_out:
            run_params = dict(module.params, services=services)
            module.warn('the host agent reports %s down (failing health checks): left out of the Maglev table '
                        'until it passes again' % ', '.join(left_out))
    deployment = XdpLbDeployment(run_params, run_command=module.run_command, check_mode=module.check_mode,
                                 warn=module.warn)
    present = module.params['state'] == 'present'
    saved = []
    # the host agent takes the same lock before restoring: the two never change the pins at once
    with locked(module, 'xdp_proxy', invocation):
        if not present:
            # forget first: the agent must not restore what is being removed
            saved = persist(module, 'xdp_proxy', present, invocation)
        try:
            result = deployment.run()
        except DeployError as e:
            module.fail_json(msg=e.msg, invocation=invocation, **e.extra)
        if present:
            saved = persist(module, 'xdp_proxy', present, invocation)
    if saved:
        result['changes'] = result.get('changes', []) + saved
        result['changed'] = True
    result['persistent_state'] = agent_state.state_path('xdp_proxy', module.params['name']) \
        if module.params['persistent'] and module.params['state'] == 'present' else None
    module.exit_json(invocation=invocation, **result)


@contextlib.contextmanager
def locked(module, kind, invocation):
    held = []
    try:
        with deploy_lock.deployment_lock(kind, module.params['name'], 'ansible module %s' % kind,
                                         timeout=LOCK_TIMEOUT):
            held.append(True)
            yield
    except deploy_lock.DeploymentLocked as e:
        module.fail_json(msg='%s: waited %d s for it. Nothing was changed; run again once it is done (the host '
                         'agent restoring it can take a while on a busy host).' % (e, LOCK_TIMEOUT),
                         invocation=invocation)
    except agent_state.StateError as e:
        module.fail_json(msg=str(e), invocation=invocation)
    except (IOError, OSError) as e:
        if held:  # raised by the work done under the lock, not by taking it
            module.fail_json(msg='%s %s: %s' % (kind, module.params['name'], e), invocation=invocation)
        module.fail_json(msg='cannot take the lock of deployment %s: %s' % (module.params['name'], e),
                         invocation=invocation)


def persist(module, kind, present, invocation):
    try:
        return agent_state.persist(kind, module.params, present, module.check_mode)
    except agent_state.StateError as e:
        module.fail_json(msg=str(e), invocation=invocation, changed=present)


if __name__ == '__main__':
    main()
