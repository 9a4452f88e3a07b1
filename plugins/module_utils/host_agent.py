# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host agent: what must happen between Ansible runs.

Every poll (1 s by default) it
- notices saved desired state that appeared, changed or went away (agent_state),
- checks each deployment is still in place (pins, attachment) and otherwise re-applies it with the
  module's own code (xdp_lb_deploy for xdp_proxy; lb_backend and xdp_decap_deploy, whose check is
  their own check-mode run, for the backend side of dsr/ipip): after a reboot, a re-created interface
  or a restarted container. What is intact is left alone, so live flows survive an agent restart;
- runs the due health checks and takes a failing backend out of the Maglev table after `fall`
  failures (and back after `rise` successes) by applying the desired services minus the down
  backends, again with the module's code; never below one backend;
- renders the metrics for the HTTP endpoint and the node_exporter textfile.

No import from ansible: the roles install module_utils on targets without it.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import json
import logging
import os
import signal
import socket
import threading
import time

from ansible_collections.ebpf.networking.plugins.module_utils import agent_state, deploy_lock, health_check, prometheus

LOG = logging.getLogger('ebpf-networking-agent')

CONFIG_DEFAULTS = {
    'state_dir': agent_state.STATE_DIR,
    'run_dir': agent_state.RUN_DIR,
    'poll_interval': 1.0,
    'metrics_interval': 5.0,
    'metrics_address': '127.0.0.1',
    'metrics_port': 9435,
    'textfile': None,
    'drop_monitor': False,
}


# modules trust a status file younger than health_check.agent_view's max_age: rewrite it well before
STATUS_REFRESH = 10


class AgentConfigError(ValueError):
    pass


def load_config(path=None, overrides=None):
    """Defaults, then the JSON file (if any), then overrides (command line)."""
    config = dict(CONFIG_DEFAULTS)
    if path:
        try:
            with open(path) as f:
                loaded = json.load(f)
        except (IOError, OSError) as e:
            raise AgentConfigError('cannot read agent config %s: %s' % (path, e))
        except ValueError as e:
            raise AgentConfigError('agent config %s is not valid JSON: %s' % (path, e))
        if not isinstance(loaded, dict):
            raise AgentConfigError('agent config %s must hold a JSON object' % path)
        unknown = sorted(set(loaded) - set(CONFIG_DEFAULTS))
        if unknown:
            raise AgentConfigError('agent config %s has unknown keys %s (known: %s)'
                                   % (path, ', '.join(unknown), ', '.join(sorted(CONFIG_DEFAULTS))))
        config.update(loaded)
    config.update(dict((k, v) for k, v in (overrides or {}).items() if v is not None))
    for key in ('poll_interval', 'metrics_interval'):
        if not isinstance(config[key], (int, float)) or not 0.05 <= config[key] <= 3600:
            raise AgentConfigError('%s %r must be a number of seconds between 0.05 and 3600' % (key, config[key]))
    port = config['metrics_port']
    if port is not None and not (isinstance(port, int) and 0 <= port <= 65535):
        raise AgentConfigError('metrics_port %r must be 0-65535, or null for no HTTP endpoint'
                               % (config['metrics_port'],))
    return config


# --- drivers: how each kind of deployment is checked, applied and measured --------------------------

class XdpProxyDriver(object):
    """xdp_proxy deployments, applied with xdp_lb_deploy (the module's own code)."""

    kind = 'xdp_proxy'

    def __init__(self):
        self._netns_cache = {}

    @staticmethod
    def _deploy():
        from ansible_collections.ebpf.networking.plugins.module_utils import xdp_lb_deploy  # noqa
        return xdp_lb_deploy

    def netns_path(self, params):
        from ansible_collections.ebpf.networking.plugins.module_utils import bpf_loader
        return bpf_loader.resolve_netns(params.get('container'), params.get('netns'), bpf_loader.run_command)[0]

    def check(self, name, params):
        """None when the deployment is in place, else why not (cheap: pins, then the attachment)."""
        from ansible_collections.ebpf.networking.plugins.module_utils import bpf_loader, xdp_deploy
        pins = bpf_loader.PinSet(name)
        maps, meta = xdp_deploy.load_existing(pins)
        if maps is None:
            return 'pins missing (%s)' % meta
        try:
            prog_id = pins.prog_id(xdp_deploy.PROG)
            cached = self._netns_cache.get(name)
            if cached is not None and self._attached_in(cached, meta, prog_id):
                return None
            place = xdp_deploy.attachment(meta, prog_id)
            if place is None:
                return 'program %s not attached to %s in %s' % (prog_id, meta.get('ifname'), meta.get('netns'))
            self._netns_cache[name] = place['netns_path']
            return None
        finally:
            maps.close()

    @staticmethod
    def _attached_in(path, meta, prog_id):
        from ansible_collections.ebpf.networking.plugins.module_utils import bpf_loader
        try:
            if path and (not os.path.exists(path) or os.stat(path).st_ino != meta.get('netns_ino')):
                return False
            with bpf_loader.in_netns(path):
                link = bpf_loader.link_info(meta['ifname'])
            return bool(link) and link['xdp_prog_id'] == prog_id
        except (bpf_loader.LoaderError, OSError):
            return False

    def apply(self, name, params, services):
        deploy = self._deploy()
        wanted = dict(params, name=name, state='present', services=services)
        self._netns_cache.pop(name, None)
        try:
            return deploy.XdpLbDeployment(wanted, warn=LOG.warning).run()  # its run_command: bpf_loader's
        except deploy.DeployError as e:
            raise ApplyError(e.msg)

    def remove(self, name):
        self._netns_cache.pop(name, None)

    def families(self, name, params, health):
        from ansible_collections.ebpf.networking.plugins.module_utils import bpf_loader, xdp_deploy
        pins = bpf_loader.PinSet(name)
        maps, meta = xdp_deploy.load_existing(pins)
        if maps is None:
            return [prometheus.Family(prometheus.PREFIX + 'lb_attached', 'gauge', 'Whether the XDP program of the '
                                      'deployment is attached (1) or not').add({'deployment': name}, 0)]
        try:
            config = maps.read_config()[0]
            attached = self.check(name, {}) is None
            return prometheus.lb_families(name, maps.counters(config), maps.global_counters(),
                                          maps.flow_count(limit=maps.limits.max_flows), maps.limits.max_flows,
                                          health, attached)
        finally:
            maps.close()


class SockmapRedirectDriver(object):
    """sockmap_redirect deployments, applied with sockmap_deploy (the module's own code)."""

    kind = 'sockmap_redirect'

    @staticmethod
    def _deployment(name, params):
        from ansible_collections.ebpf.networking.plugins.module_utils import bpf_loader, sockmap_deploy
        return sockmap_deploy.SockmapDeployment(dict(params, name=name, state='present'),
                                                run_command=bpf_loader.run_command)

    def netns_path(self, params):
        return None

    def check(self, name, params):
        from ansible_collections.ebpf.networking.plugins.module_utils import sockmap_deploy
        d = self._deployment(name, params)
        fds = d.open_maps() if d.pins.exists() else None
        if fds is None:
            return 'pins missing'
        try:
            if not (d.pins.has_prog(sockmap_deploy.SOCKOPS) and d.pins.has_prog(sockmap_deploy.SKMSG)):
                return 'programs missing from the pins'
            cgroup = d.read_state(fds)['cgroup']
            prog_id = d.pins.prog_id(sockmap_deploy.SOCKOPS)
            if prog_id not in d.attached_ids(cgroup):
                return 'sock_ops program %s not attached to %s' % (prog_id, cgroup)
            return None
        finally:
            sockmap_deploy.close_all(fds)

    def apply(self, name, params, services):
        from ansible_collections.ebpf.networking.plugins.module_utils import bpf_loader, sockmap_deploy, sockmap_keys
        try:
            return self._deployment(name, params).apply()
        except (sockmap_deploy.SockmapError, bpf_loader.LoaderError, sockmap_keys.SockmapConfigError) as e:
            raise ApplyError(str(e))

    def remove(self, name):
        pass

    def families(self, name, params, health):
        from ansible_collections.ebpf.networking.plugins.module_utils import sockmap_deploy
        d = self._deployment(name, dict({'max_sockets': 1048576}, **params))
        fds = d.open_maps() if d.pins.exists() else None
        if fds is None:
            return prometheus.sockmap_families(name, {}, 0, attached=False)
        try:
            report = d.report(fds)
        finally:
            sockmap_deploy.close_all(fds)
        return prometheus.sockmap_families(name, report['counters'], report['sockets'],
                                           attached=self.check(name, {}) is None)


class CheckedByModuleDriver(object):
    """Deployments whose module code, run in check mode, says what is missing: lb_backend and xdp_decap (the
    backend side of dsr/ipip forwarding). What a check-mode run would change is why the deployment is not
    in place; applying is the same run for real."""

    kind = None

    def deployment(self, name, params, check_mode):
        raise NotImplementedError

    def netns_path(self, params):
        return None

    def check(self, name, params):
        from ansible_collections.ebpf.networking.plugins.module_utils.deploy_run import DeployError
        try:
            changes = self.deployment(name, params, True).run().get('changes') or []
        except DeployError as e:
            return 'check failed: %s' % e.msg
        if not changes:
            return None
        # the first missing piece says why; the restore's log line lists every change
        return 'not in place (%s%s)' % (changes[0], ' and %d more' % (len(changes) - 1) if len(changes) > 1 else '')

    def apply(self, name, params, services):
        from ansible_collections.ebpf.networking.plugins.module_utils.deploy_run import DeployError
        try:
            return self.deployment(name, params, False).run()
        except DeployError as e:
            raise ApplyError(e.msg)

    def remove(self, name):
        pass


class LbBackendDriver(CheckedByModuleDriver):
    """lb_backend deployments (VIPs on lo, ARP and rp_filter sysctls, ipip device), applied with lb_backend."""

    kind = 'lb_backend'

    def deployment(self, name, params, check_mode):
        from ansible_collections.ebpf.networking.plugins.module_utils import bpf_loader, lb_backend
        return lb_backend.LbBackend(dict(params, name=name, state='present'), run_command=bpf_loader.run_command,
                                    check_mode=check_mode)

    def families(self, name, params, health):
        return prometheus.backend_families(name, self.check(name, params) is None)


class XdpDecapDriver(CheckedByModuleDriver):
    """xdp_decap deployments (IPIP decapsulation in XDP), applied with xdp_decap_deploy."""

    kind = 'xdp_decap'

    def deployment(self, name, params, check_mode):
        from ansible_collections.ebpf.networking.plugins.module_utils import bpf_loader, xdp_decap_deploy
        return xdp_decap_deploy.XdpDecapDeployment(dict(params, name=name, state='present'),
                                                   run_command=bpf_loader.run_command, check_mode=check_mode)

    def families(self, name, params, health):
        from ansible_collections.ebpf.networking.plugins.module_utils import bpf_loader, bpf_syscall, xdp_decap_deploy
        packets = None
        pins = bpf_loader.PinSet(name)
        if pins.exists() and pins.has_prog(xdp_decap_deploy.PROG):
            try:
                pinned = xdp_decap_deploy.Pinned(pins)
            except bpf_syscall.BpfError:
                pinned = None
            if pinned is not None:
                try:
                    packets = pinned.decapsulated()
                finally:
                    pinned.close()
        return prometheus.decap_families(name, self.check(name, params) is None, packets)


class ApplyError(Exception):
    pass


# --- the agent ----------------------------------------------------------------------------------

class Tracked(object):
    """One saved deployment and what the agent knows about it."""

    def __init__(self, doc):
        self.kind = doc['kind']
        self.name = doc['name']
        self.params = doc['params']
        self.mtime = doc.get('mtime')
        self.health = {}        # {service label: {backend label: BackendHealth}}
        self.all_down = {}
        self.applied = None     # the services last applied (by the module or by us)
        self.last_error = None
        self.last_restore = None
        self.netns_path = None
        self.scheduler = health_check.Scheduler()
        self.status_written = 0

    @property
    def key(self):
        return '%s/%s' % (self.kind, self.name)


class Agent(object):
    def __init__(self, config, drivers=None, clock=time.time, socket_factory_for=None):
        self.config = config
        self.drivers = drivers or {'xdp_proxy': XdpProxyDriver(), 'sockmap_redirect': SockmapRedirectDriver(),
                                   'lb_backend': LbBackendDriver(), 'xdp_decap': XdpDecapDriver()}
        self.clock = clock
        self.tracked = {}
        self.signature = None
        self.started_at = clock()
        self.restores = {}
        self.health_changes = {}
        self.errors = {}
        self.metrics_text = ''
        self.next_metrics = 0
        self.extra_families = []   # callables returning families
        self.text_sources = []     # callables returning exposition lines (the drop monitor renders its own)
        self.socket_factory_for = socket_factory_for or netns_socket_factory
        self.stopping = False

    # -- saved state --
    def sync_state(self):
        sig = agent_state.signature(self.config['state_dir'])
        if sig == self.signature:
            return
        self.signature = sig
        docs, problems = agent_state.load_all(self.config['state_dir'])
        for problem in problems:
            LOG.error('%s', problem)
        seen = set()
        for doc in docs:
            if doc['kind'] not in self.drivers:
                LOG.warning('%s/%s: no driver for %s in this agent; skipped', doc['kind'], doc['name'], doc['kind'])
                continue
            key = '%s/%s' % (doc['kind'], doc['name'])
            seen.add(key)
            old = self.tracked.get(key)
            if old is not None and old.mtime == doc.get('mtime'):
                continue
            t = Tracked(doc)
            if old is not None:
                # the module just applied the full desired state: carry health over, re-apply exclusions
                t.health = old.health
                t.applied = doc['params'].get('services')
                LOG.info('%s: saved state changed, now %s', key, describe(doc['params']))
            else:
                LOG.info('%s: looking after %s', key, describe(doc['params']))
            self.tracked[key] = t
        for key in sorted(set(self.tracked) - seen):
            t = self.tracked.pop(key)
            self.drivers[t.kind].remove(t.name)
            LOG.info('%s: saved state removed; no longer looked after', key)

    # -- one round --
    def tick(self):
        self.sync_state()
        now = self.clock()
        for t in list(self.tracked.values()):
            try:
                if self.ensure(t):
                    self.check_health(t, now)
            except Exception as e:  # pylint: disable=broad-except
                self.note_error(t, 'unexpected error: %s' % e)
                LOG.debug('traceback', exc_info=True)
        if now >= self.next_metrics:
            self.next_metrics = now + self.config['metrics_interval']
            self.refresh_metrics()

    def note_error(self, t, message):
        self.errors[t.key] = self.errors.get(t.key, 0) + 1
        if message != t.last_error:
            LOG.error('%s: %s', t.key, message)   # said once, not every second
        t.last_error = message

    def ensure(self, t):
        """True when the deployment is in place (found so, or restored now)."""
        driver = self.drivers[t.kind]
        try:
            reason = driver.check(t.name, t.params)
        except Exception as e:  # pylint: disable=broad-except
            reason = 'check failed: %s' % e
        if reason is None:
            if t.applied is None:
                t.applied = t.params.get('services')   # found intact: what the module applied
            return True
        services = health_check.effective_services(t.params, t.health)[0] if t.kind == 'xdp_proxy' else None
        started = time.time()
        try:
            with self.locked(t, 'host agent restore') as current:
                if not current:
                    return False
                result = driver.apply(t.name, t.params, services)
        except deploy_lock.DeploymentLocked as e:
            LOG.info('%s: not in place (%s) but %s; checking again next poll', t.key, reason, e)
            return False
        except (ApplyError, agent_state.StateError) as e:
            self.note_error(t, 'restore failed (%s): %s; retrying' % (reason, e))
            return False
        took = time.time() - started
        t.applied = services
        t.last_error = None
        t.last_restore = {'at': self.clock(), 'reason': reason, 'seconds': round(took, 3),
                          'changes': result.get('changes', [])}
        self.restores[t.key] = self.restores.get(t.key, 0) + 1
        LOG.warning('%s: restored in %.2fs because %s: %s', t.key, took, reason,
                    '; '.join(result.get('changes', [])) or 'nothing to change')
        self.write_status(t)
        return True

    @contextlib.contextmanager
    def locked(self, t, purpose):
        """The deployment's lock (shared with module runs), without waiting: a module run holding it is
        changing the deployment, so the agent looks again next poll. Yields False when the saved state
        changed or went away before the lock was ours (the module just replaced or removed it): acting on
        the old one would undo that run."""
        with deploy_lock.deployment_lock(t.kind, t.name, purpose, timeout=0, run_dir=self.config['run_dir']):
            path = agent_state.state_path(t.kind, t.name, self.config['state_dir'])
            try:
                current = os.stat(path).st_mtime == t.mtime
            except OSError:
                current = False
            if not current:
                LOG.info('%s: saved state changed meanwhile; re-reading it first', t.key)
                self.signature = None
            yield current

    def check_health(self, t, now):
        if t.kind != 'xdp_proxy':
            return
        targets = health_check.health_targets(t.params)
        if not targets:
            return
        specs = {}
        where = {}
        for svc, (spec, backends) in targets.items():
            states = t.health.setdefault(svc, {})
            for label in list(states):
                if label not in [b[0] for b in backends]:
                    del states[label]
            for label, ip, port in backends:
                states.setdefault(label, health_check.BackendHealth(now))
                specs[(svc, label)] = spec
                where[(svc, label)] = (ip, port)
        due = t.scheduler.due(specs, now)
        if not due:
            return
        if t.netns_path is None:
            t.netns_path = self.drivers[t.kind].netns_path(t.params) or ''
        results = health_check.run_checks([(k, where[k][0], where[k][1], specs[k]) for k in due],
                                          self.socket_factory_for(t.netns_path or None))
        changed = False
        for key, (ok, error) in results.items():
            svc, label = key
            st = t.health[svc][label]
            if st.record(ok, specs[key], now, error):
                changed = True
                self.health_changes[t.key] = self.health_changes.get(t.key, 0) + 1
                LOG.warning('%s: backend %s of %s is %s%s', t.key, label, svc, st.state.upper(),
                            ' (%s)' % error if error else '')
        services, all_down = health_check.effective_services(t.params, t.health)
        for svc, none_up in all_down.items():
            if none_up and not t.all_down.get(svc):
                LOG.error('%s: every backend of %s fails its health check; keeping them all in the table', t.key, svc)
        t.all_down = all_down
        if services != t.applied:
            try:
                with self.locked(t, 'host agent health change') as current:
                    if not current:
                        return
                    result = self.drivers[t.kind].apply(t.name, t.params, services)
            except deploy_lock.DeploymentLocked as e:
                LOG.info('%s: health change waits: %s', t.key, e)
                return
            except (ApplyError, agent_state.StateError) as e:
                self.note_error(t, 'applying health changes failed: %s' % e)
                return
            t.applied = services
            LOG.info('%s: %s', t.key, '; '.join(result.get('changes', [])) or 'table unchanged')
            changed = True
        if changed or now - t.status_written >= STATUS_REFRESH:
            self.write_status(t)

    def status_of(self, t):
        return {'kind': t.kind, 'name': t.name, 'updated_at': self.clock(), 'last_restore': t.last_restore,
                'last_error': t.last_error,
                'health': dict((svc, dict((be, st.as_dict()) for be, st in states.items()))
                               for svc, states in t.health.items()),
                'all_backends_down': dict((svc, v) for svc, v in t.all_down.items() if v)}

    def write_status(self, t):
        t.status_written = self.clock()
        try:
            agent_state.save_status(t.kind, t.name, self.status_of(t), self.config['run_dir'])
        except (IOError, OSError) as e:
            self.note_error(t, 'cannot write status: %s' % e)

    # -- metrics --
    def refresh_metrics(self):
        fams = []
        for t in sorted(self.tracked.values(), key=lambda x: x.key):
            health = dict((svc, dict((be, st.as_dict()) for be, st in states.items()))
                          for svc, states in t.health.items())
            try:
                fams.extend(self.drivers[t.kind].families(t.name, t.params, health))
            except Exception as e:  # pylint: disable=broad-except
                self.note_error(t, 'reading counters failed: %s' % e)
        for source in self.extra_families:
            try:
                fams.extend(source())
            except Exception as e:  # pylint: disable=broad-except
                LOG.error('metrics source failed: %s', e)
        fams.extend(prometheus.agent_families(self.restores, self.health_changes, self.errors, len(self.tracked),
                                              self.started_at))
        text = prometheus.render(fams)
        for source in self.text_sources:
            try:
                lines = source()
            except Exception as e:  # pylint: disable=broad-except
                LOG.error('metrics source failed: %s', e)
                continue
            text += ''.join(line + '\n' for line in lines)
        self.metrics_text = text
        if self.config.get('textfile'):
            try:
                agent_state.write_atomic(self.config['textfile'], self.metrics_text, mode=0o644)
            except (IOError, OSError) as e:
                LOG.error('cannot write metrics textfile %s: %s', self.config['textfile'], e)

    # -- running --
    def sleep_time(self, spent):
        """Until the next poll, or the next health check when that comes sooner (so a check's interval is
        kept, not rounded up to the poll interval)."""
        wait = self.config['poll_interval'] - spent
        now = self.clock()
        for t in self.tracked.values():
            for due in t.scheduler.next_due.values():
                wait = min(wait, due - now)
        return max(0.01, wait)

    def run(self, once=False):
        server = None
        if not once and self.config.get('metrics_port') is not None:
            server = start_metrics_server(self.config['metrics_address'], self.config['metrics_port'],
                                          lambda: self.metrics_text)
            LOG.info('metrics on http://%s:%d/metrics', self.config['metrics_address'], server.server_address[1])
        try:
            while not self.stopping:
                started = time.time()
                self.tick()
                if once:
                    break
                time.sleep(self.sleep_time(time.time() - started))
        finally:
            if server is not None:
                server.shutdown()
                server.server_close()


def describe(params):
    services = params.get('services')
    where = params.get('container') and 'container ' + params['container'] or \
        params.get('netns') and 'netns ' + params['netns'] or 'host'
    if services is not None:
        return '%s on %s in %s, %d service(s)' % (params.get('name'), params.get('interface'), where, len(services))
    if params.get('vips') is not None:
        return '%s: %s backend of %s in %s' % (params.get('name'), params.get('forwarding', 'dsr'),
                                               ', '.join(params['vips']), where)
    return str(params.get('name'))


def netns_socket_factory(netns_path):
    """A factory of TCP sockets made inside netns_path (None: here), for health checks."""
    def make():
        if not netns_path:
            return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        from ansible_collections.ebpf.networking.plugins.module_utils import bpf_loader
        with bpf_loader.in_netns(netns_path):
            return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    return make


def start_metrics_server(address, port, text_source):
    """Serve text_source() on /metrics from a daemon thread; the agent's loop refreshes the text."""
    try:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    except ImportError:  # pragma: no cover
        raise AgentConfigError('python3 is needed for the metrics endpoint')

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.split('?', 1)[0] not in ('/metrics', '/'):
                self.send_error(404, 'only /metrics here')
                return
            body = text_source().encode()
            self.send_response(200)
            self.send_header('Content-Type', prometheus.CONTENT_TYPE)
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    family = socket.AF_INET6 if ':' in address else socket.AF_INET
    server_class = type('MetricsServer', (ThreadingHTTPServer,), {'address_family': family, 'daemon_threads': True})
    server = server_class((address, port), Handler)
    thread = threading.Thread(target=server.serve_forever, name='metrics')
    thread.daemon = True
    thread.start()
    return server


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(prog='ebpf-networking-agent',
                                 description='Restores saved eBPF networking deployments, checks backends, '
                                             'exports metrics.')
    ap.add_argument('--config', help='JSON config file (default: none)')
    ap.add_argument('--state-dir')
    ap.add_argument('--run-dir')
    ap.add_argument('--metrics-port', type=int)
    ap.add_argument('--metrics-address')
    ap.add_argument('--textfile')
    ap.add_argument('--poll-interval', type=float)
    ap.add_argument('--metrics-interval', type=float)
    ap.add_argument('--once', action='store_true', help='restore and check once, then exit')
    ap.add_argument('--pidfile', help='write the process id here (background mode without systemd)')
    ap.add_argument('--log-level', default='INFO')
    args = ap.parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO),
                        format='%(asctime)s %(levelname)s %(message)s')
    try:
        config = load_config(args.config, {'state_dir': args.state_dir, 'run_dir': args.run_dir,
                                           'metrics_port': args.metrics_port,
                                           'metrics_address': args.metrics_address, 'textfile': args.textfile,
                                           'poll_interval': args.poll_interval,
                                           'metrics_interval': args.metrics_interval})
    except AgentConfigError as e:
        LOG.error('%s', e)
        return 2
    agent = Agent(config)
    add_optional_sources(agent)

    def stop(_signum, _frame):
        agent.stopping = True
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.pidfile:
        agent_state.write_atomic(args.pidfile, '%d\n' % os.getpid(), mode=0o644)
    LOG.info('agent started (state %s, poll every %ss)', config['state_dir'], config['poll_interval'])
    try:
        agent.run(once=args.once)
    except (IOError, OSError) as e:
        if e.errno not in (98, 99, 13):   # EADDRINUSE, EADDRNOTAVAIL, EACCES: the metrics listener
            raise
        LOG.error('cannot serve metrics on %s:%s: %s. Pick another metrics_port/metrics_address in %s.',
                  config['metrics_address'], config['metrics_port'], e.strerror, args.config or 'the config')
        return 1
    finally:
        if args.pidfile and os.path.exists(args.pidfile):
            os.unlink(args.pidfile)
    LOG.info('agent stopped; what it restored stays in place')
    return 0


class DropMonitorSource(object):
    """Drop counts by reason, location, namespace and interface from the continuous drop counter
    (drop_monitor, started here and again after a reboot; its code renders the lines)."""

    def __init__(self):
        self.last_error = None

    def __call__(self):
        from ansible_collections.ebpf.networking.plugins.module_utils import bpf_loader, drop_monitor
        try:
            started = drop_monitor.ensure_drop_monitor()
            if started['changed']:
                LOG.warning('drop monitor started (program %s, pins %s)', started['prog_id'], started['pin_dir'])
            lines = drop_monitor.prometheus_lines(drop_monitor.read_drop_counts())
        except (drop_monitor.MonitorError, bpf_loader.LoaderError) as e:
            if str(e) != self.last_error:
                LOG.error('drop monitor: %s', e)
            self.last_error = str(e)
            return []
        self.last_error = None
        return lines


def add_optional_sources(agent):
    """Metric sources the config turns on."""
    if agent.config.get('drop_monitor'):
        agent.text_sources.append(DropMonitorSource())
    return agent


if __name__ == '__main__':
    raise SystemExit(main())
