# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bad inputs a new user would try, run through ansible-playbook itself (action plugins + AnsiballZ, as on a
real host), all in one play: each must fail with a message naming the problem, never a MODULE FAILURE or a
traceback, and leave nothing behind under /sys/fs/bpf/ebpf_networking. Names and interfaces carry the
prefix fl so nothing here can touch another test's deployment."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import subprocess
import tempfile

import pytest

PIN_ROOT = '/sys/fs/bpf/ebpf_networking'
NETNS = 'fl-bad'  # a namespace of our own: an input accepted by mistake attaches only to its lo
NO_IF = 'flbad0'  # an interface that does not exist
SVC = {'vip': '10.215.0.1', 'port': 80, 'snat_ip': '10.215.0.3', 'backends': ['10.215.0.2']}  # lo's own address is loopback: never a SNAT address


def svc(**kw):
    s = dict(SVC)
    s.update(kw)
    return s


def lb(**kw):
    """xdp_proxy arguments on the lo of our namespace."""
    args = {'name': 'fl_bad', 'netns': NETNS, 'interface': 'lo', 'services': [SVC]}
    args.update(kw)
    return args


def xfail(branch):
    return pytest.mark.xfail(strict=False, reason='fixed on %s branch' % branch)


# (id, module, args, words the message must contain (any of them, case-insensitive), marks)
CASES = [
    ('xdp_proxy-name-with-space', 'xdp_proxy', lb(name='Bad Name'),
     ['name'], []),
    ('xdp_proxy-vip-unspecified', 'xdp_proxy', lb(services=[svc(vip='0.0.0.0')]),
     ['0.0.0.0'], []),
    ('xdp_proxy-vip-multicast', 'xdp_proxy', lb(services=[svc(vip='224.0.0.1')]),
     ['224.0.0.1'], []),
    ('xdp_proxy-vip-loopback', 'xdp_proxy', lb(services=[svc(vip='127.0.0.1')]),
     ['127.0.0.1'], []),
    ('xdp_proxy-backend-broadcast', 'xdp_proxy', lb(services=[svc(backends=['255.255.255.255'])]),
     ['255.255.255.255'], []),
    ('xdp_proxy-vip-not-an-address', 'xdp_proxy', lb(services=[svc(vip='fl-vip')]),
     ['fl-vip'], []),
    ('xdp_proxy-port-out-of-range', 'xdp_proxy', lb(services=[svc(port=70000)]),
     ['70000'], []),
    ('xdp_proxy-no-backends', 'xdp_proxy', lb(services=[svc(backends=[])]),
     ['backend'], []),
    ('xdp_proxy-present-without-services', 'xdp_proxy', {'name': 'fl_bad', 'netns': NETNS, 'interface': 'lo'},
     ['services'], []),
    ('xdp_proxy-present-without-interface', 'xdp_proxy', {'name': 'fl_bad', 'netns': NETNS, 'services': [SVC]},
     ['interface'], []),
    ('xdp_proxy-missing-interface', 'xdp_proxy', lb(interface=NO_IF), [NO_IF], []),
    ('xdp_proxy-mode-unknown', 'xdp_proxy', lb(mode='turbo'),
     ['mode'], []),
    ('xdp_proxy-snat-range-reversed', 'xdp_proxy', lb(snat_port_range=[30000, 20000]),
     ['snat_port_range', 'port range'], []),
    ('xdp_stats-flows-negative', 'xdp_stats', {'name': 'fl_nothing', 'flows': -1}, ['flows'], []),
    ('sockmap_redirect-name-with-space', 'sockmap_redirect', {'name': 'Bad Name', 'cgroup': '/nonexistent/fl'},
     ['name'], []),
    ('sockmap_redirect-port-zero', 'sockmap_redirect', {'name': 'fl_bad', 'ports': [0]}, ['port'], []),
    ('sockmap_redirect-port-too-big', 'sockmap_redirect', {'name': 'fl_bad', 'ports': [70000]}, ['70000'], []),
    ('sockmap_redirect-cidr-bad', 'sockmap_redirect', {'name': 'fl_bad', 'cidrs': ['10.0.0.0/33']}, ['10.0.0.0/33'], []),
    ('sockmap_redirect-max-sockets-zero', 'sockmap_redirect', {'name': 'fl_bad', 'max_sockets': 0}, ['max_sockets'], []),
    ('sockmap_redirect-cgroup-missing', 'sockmap_redirect', {'name': 'fl_bad', 'cgroup': '/nonexistent/fl'},
     ['/nonexistent/fl'], []),
    ('sockmap_redirect-cgroup-and-container', 'sockmap_redirect',
     {'name': 'fl_bad', 'cgroup': '/nonexistent/fl', 'container': 'fl-none'}, ['cgroup', 'container'], []),
    ('skb_drop_trace-command-missing', 'skb_drop_trace', {'command': ['/nonexistent/fl-cmd'], 'duration': 1},
     ['fl-cmd'], []),
    ('skb_drop_trace-duration-negative', 'skb_drop_trace', {'duration': -1}, ['duration'], []),
    ('skb_drop_trace-protocol-unknown', 'skb_drop_trace', {'protocol': 'igmp', 'duration': 1}, ['protocol'], []),
    ('skb_drop_trace-src-not-an-address', 'skb_drop_trace', {'src': 'fl-host', 'duration': 1}, ['fl-host'], []),
    ('skb_drop_trace-dport-too-big', 'skb_drop_trace', {'dport': 70000, 'duration': 1}, ['70000', 'dport'], []),
    ('skb_drop_trace-reason-unknown', 'skb_drop_trace', {'reasons': ['FL_NO_SUCH_REASON'], 'duration': 1},
     ['FL_NO_SUCH_REASON'], []),
    ('kernel_symbolize-vmlinux-missing', 'kernel_symbolize',
     {'locations': ['0xffffffff81000000'], 'require_lines': True, 'vmlinux': '/nonexistent/fl-vmlinux'}, ['fl-vmlinux'], []),
    ('kernel_symbolize-location-garbage', 'kernel_symbolize', {'locations': ['fl??+zz']}, ['fl??+zz'], []),
    ('bpf_facts-require-unknown', 'bpf_facts', {'require': ['fl_warp_drive'], 'check_bcc': False},
     ['fl_warp_drive'], []),
]


def collections_path():
    """The ansible_collections tree this file is in (scripts/test.sh runs from such a copy), else the
    user's installed collections."""
    here = os.path.abspath(__file__)
    parts = here.split(os.sep)
    if 'ansible_collections' in parts:
        return os.sep.join(parts[:parts.index('ansible_collections')])
    return os.path.expanduser('~/.ansible/collections')


def case_args(i):
    """The case's arguments, a deployment name of its own (fl_bad<N>) so what it leaves is its own."""
    args = dict(CASES[i][2])
    if args.get('name') == 'fl_bad':
        args['name'] = 'fl_bad%d' % i
    return args


OUR_NAMES = set(case_args(i).get('name') for i in range(len(CASES)) if case_args(i).get('name'))


def deployment(path):
    """The deployment a pin belongs to: its top directory, without the prefix of one being staged."""
    top = os.path.relpath(path, PIN_ROOT).split(os.sep)[0]
    return top[len('_staging_'):] if top.startswith('_staging_') else top


def pins():
    """Pins of the deployments named in CASES (other tests may deploy their own meanwhile)."""
    found = set()
    for root, dirs, files in os.walk(PIN_ROOT):
        found.update(os.path.join(root, n) for n in dirs + files)
    return set(p for p in found if deployment(p) in OUR_NAMES)


def remove_our_pins():
    for name in os.listdir(PIN_ROOT) if os.path.isdir(PIN_ROOT) else []:
        if name.startswith('fl_') or name.startswith('_staging_fl_'):
            subprocess.run(['rm', '-rf', os.path.join(PIN_ROOT, name)], check=False)


@pytest.fixture(scope='module')
def results(require_root):
    subprocess.run(['ip', 'netns', 'del', NETNS], stderr=subprocess.DEVNULL, check=False)
    # pins an interrupted earlier run left would be in `before` and hide what this run leaves
    remove_our_pins()
    subprocess.check_call(['ip', 'netns', 'add', NETNS])
    try:
        subprocess.check_call(['ip', '-n', NETNS, 'link', 'set', 'lo', 'up'])
        run = run_play()
        yield run
        remove_accepted(run)
    finally:
        subprocess.run(['ip', 'netns', 'del', NETNS], check=False)
        remove_our_pins()


def run_play():
    tasks = []
    for i, case in enumerate(CASES):
        case_id, module = case[0], case[1]
        tasks.append({'name': case_id, 'ebpf.networking.%s' % module: case_args(i), 'register': 'r%d' % i,
                      'ignore_errors': True})
    workdir = tempfile.mkdtemp(prefix='fl-bad-inputs-')
    out = os.path.join(workdir, 'results.json')
    collect = '{{ {%s} | to_json }}' % ', '.join("'r%d': r%d" % (i, i) for i in range(len(CASES)))
    tasks.append({'name': 'Save the results', 'ansible.builtin.copy': {'content': collect, 'dest': out, 'mode': '0600'}})
    play = [{'name': 'Bad inputs', 'hosts': 'localhost', 'connection': 'local', 'gather_facts': False,
             'vars': {'ansible_python_interpreter': '/usr/bin/python3'}, 'tasks': tasks}]
    playbook = os.path.join(workdir, 'bad_inputs.yml')
    with open(playbook, 'w') as f:
        json.dump(play, f)  # JSON is YAML
    before = pins()
    assert before == set(), 'pins of ours before the run: %s' % sorted(before)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(), ANSIBLE_NOCOLOR='1')
    proc = subprocess.run(['ansible-playbook', '-i', 'localhost,', playbook], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=600, check=False)
    assert os.path.exists(out), 'ansible-playbook did not finish the play:\n' + proc.stdout[-4000:]
    with open(out) as f:
        data = json.load(f)
    return {'by_id': dict((CASES[i][0], data['r%d' % i]) for i in range(len(CASES))),
            'left': sorted(pins() - before), 'workdir': workdir, 'env': env}


def remove_accepted(run):
    """Undo what inputs accepted by mistake deployed (XDP in our namespace, sock_ops on a cgroup)."""
    tasks = [{'name': 'remove', 'ebpf.networking.%s' % CASES[i][1]: {'name': case_args(i)['name'], 'state': 'absent'},
              'ignore_errors': True}
             for i in range(len(CASES)) if CASES[i][1] in ('xdp_proxy', 'sockmap_redirect') and case_args(i).get('name')]
    playbook = os.path.join(run['workdir'], 'remove.yml')
    with open(playbook, 'w') as f:
        json.dump([{'hosts': 'localhost', 'connection': 'local', 'gather_facts': False,
                    'vars': {'ansible_python_interpreter': '/usr/bin/python3'}, 'tasks': tasks}], f)
    subprocess.run(['ansible-playbook', '-i', 'localhost,', playbook], env=run['env'], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=600, check=False)


@pytest.mark.parametrize('case_id, module, args, words',
                         [pytest.param(c[0], c[1], c[2], c[3], marks=c[4], id=c[0]) for c in CASES])
def test_bad_input_fails_clearly(results, case_id, module, args, words):
    r = results['by_id'][case_id]
    msg = r.get('msg', '')
    assert r.get('failed'), '%s %s was accepted: %s' % (module, args, json.dumps(r)[:1000])
    assert 'MODULE FAILURE' not in msg and 'Traceback' not in json.dumps(r), json.dumps(r)[:3000]
    assert any(w.lower() in msg.lower() for w in words), 'message does not name %s: %s' % (words, msg)


@pytest.mark.parametrize('index', range(len(CASES)), ids=[c[0] for c in CASES])
def test_failed_input_leaves_no_pins(results, index):
    name = case_args(index).get('name')
    if not results['by_id'][CASES[index][0]].get('failed') or not name:
        pytest.skip('accepted (its own test fails) or names no deployment')
    left = [p for p in results['left'] if deployment(p) == name]
    assert left == []
