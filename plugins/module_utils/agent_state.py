# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The desired state a module applied, saved for the host agent, and the agent's own status.

Saved state: one JSON file per deployment, <state_dir>/<kind>/<name>.json (default state_dir
/etc/ebpf-networking, like firewalld's permanent configuration), holding the module parameters the
module ran with. The agent re-applies them with the module's own code after a reboot or a lost
attachment. Status: what the agent last saw (health of every backend, restores), in
<run_dir>/status/<kind>/<name>.json; it is gone after a reboot, as is what it describes.

Writes are atomic (temporary file in the same directory, fsync, rename), so a reader or a crash
sees either the old file or the new one. No import from ansible: the agent runs without it.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import json
import os
import re
import tempfile
import time

STATE_DIR = os.environ.get('EBPF_NETWORKING_STATE_DIR', '/etc/ebpf-networking')
RUN_DIR = os.environ.get('EBPF_NETWORKING_RUN_DIR', '/run/ebpf-networking')
# lb_backend and xdp_decap: the backend side of dsr/ipip forwarding (VIPs, sysctls, decapsulation)
KINDS = ('xdp_proxy', 'sockmap_redirect', 'lb_backend', 'xdp_decap')
FORMAT_VERSION = 1
NAME_RE = re.compile(r'^[a-z0-9][a-z0-9_-]{0,47}$')
# parameters that describe one run, not the state to keep
TRANSIENT_PARAMS = ('state', 'persistent')


class StateError(ValueError):
    pass


def _check(kind, name):
    if kind not in KINDS:
        raise StateError('unknown deployment kind %r (known: %s)' % (kind, ', '.join(KINDS)))
    if not isinstance(name, str) or not NAME_RE.match(name):
        # the same words as the loader's check, so a bad name reads the same whichever check meets it first
        raise StateError("name %r is invalid: use 1-48 characters of a-z, 0-9, '_' and '-', starting with a letter "
                         "or digit" % (name,))


def state_path(kind, name, state_dir=None):
    _check(kind, name)
    return os.path.join(state_dir or STATE_DIR, kind, name + '.json')


def status_path(kind, name, run_dir=None):
    _check(kind, name)
    return os.path.join(run_dir or RUN_DIR, 'status', kind, name + '.json')


def make_dirs(directory, mode=0o755):
    """Create directory and its parents; another process creating it at the same moment is not an error."""
    try:
        os.makedirs(directory, mode)
    except OSError as e:
        if e.errno != errno.EEXIST or not os.path.isdir(directory):
            raise


def write_atomic(path, text, mode=0o600):
    """Replace path with text so that readers never see a partial file."""
    directory = os.path.dirname(path)
    make_dirs(directory)
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', dir=directory)
    try:
        with os.fdopen(fd, 'w') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except Exception:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def desired_params(params):
    """The parameters worth saving: no per-run switches, no Ansible internals."""
    return dict((k, v) for k, v in params.items() if k not in TRANSIENT_PARAMS and not k.startswith('_ansible'))


def save(kind, name, params, state_dir=None):
    """Save the desired state; returns True when the file changed (so callers can report it)."""
    path = state_path(kind, name, state_dir)
    # through JSON once, so tuples and lists compare as they will be read back
    doc = {'version': FORMAT_VERSION, 'kind': kind, 'name': name,
           'params': json.loads(json.dumps(desired_params(params)))}
    old = read_json(path)
    if old is not None and {k: old.get(k) for k in doc} == doc:
        return False
    doc['saved_at'] = time.time()
    write_atomic(path, json.dumps(doc, indent=1, sort_keys=True) + '\n')
    return True


def remove(kind, name, state_dir=None, run_dir=None):
    """Forget a deployment; returns True when something was removed."""
    removed = False
    for path in (state_path(kind, name, state_dir), status_path(kind, name, run_dir)):
        if os.path.exists(path):
            os.unlink(path)
            removed = True
    return removed


def read_json(path):
    """The parsed file, or None when it is missing or not valid JSON (a torn file cannot exist)."""
    return read_json_and_mtime(path)[0]


def read_json_and_mtime(path):
    """(parsed file or None, its mtime or None). The mtime is the opened file's (fstat): a module
    replacing the file between the read and a stat of the path must not lend the old content the
    new file's mtime, or the agent would take the old content as current."""
    try:
        with open(path) as f:
            mtime = os.fstat(f.fileno()).st_mtime
            return json.load(f), mtime
    except (IOError, OSError, ValueError):
        return None, None


def load_all(state_dir=None):
    """Every saved deployment: (list of docs sorted by kind and name, list of problems with bad files)."""
    root = state_dir or STATE_DIR
    docs, problems = [], []
    for kind in KINDS:
        directory = os.path.join(root, kind)
        if not os.path.isdir(directory):
            continue
        for entry in sorted(os.listdir(directory)):
            if entry.startswith('.') or not entry.endswith('.json'):
                continue
            path = os.path.join(directory, entry)
            doc, mtime = read_json_and_mtime(path)
            name = entry[:-len('.json')]
            if not isinstance(doc, dict) or not isinstance(doc.get('params'), dict):
                problems.append('%s: not a saved state (unreadable JSON or no params); remove it or rerun '
                                'the playbook' % path)
                continue
            if doc.get('version') != FORMAT_VERSION or doc.get('kind') != kind or doc.get('name') != name:
                problems.append('%s: version, kind or name does not match its place; rerun the playbook' % path)
                continue
            doc['path'] = path
            doc['mtime'] = mtime
            docs.append(doc)
    return docs, problems


def signature(state_dir=None):
    """A cheap fingerprint of the saved state (names and mtimes), to notice changes without parsing."""
    root = state_dir or STATE_DIR
    sig = []
    for kind in KINDS:
        directory = os.path.join(root, kind)
        try:
            for entry in sorted(os.listdir(directory)):
                if entry.endswith('.json') and not entry.startswith('.'):
                    st = os.stat(os.path.join(directory, entry))
                    sig.append((kind, entry, st.st_mtime, st.st_size))
        except OSError:
            continue
    return tuple(sig)


def save_status(kind, name, status, run_dir=None):
    return write_atomic(status_path(kind, name, run_dir), json.dumps(status, indent=1, sort_keys=True) + '\n',
                        mode=0o644)


def load_status(kind, name, run_dir=None):
    """The agent's status of a deployment, or None (no agent, or a name no deployment can have)."""
    try:
        return read_json(status_path(kind, name, run_dir))
    except StateError:
        return None


def persist(kind, params, applied, check_mode=False, state_dir=None):
    """What a module does with its saved state after a successful run; returns the change lines.

    applied: the run left the deployment present. persistent: save it (the agent restores it);
    not persistent, or state=absent: forget it, so the agent stops looking after it.
    Raises StateError with the fix when the file cannot be written or removed.
    """
    name = params['name']
    path = state_path(kind, name, state_dir)
    try:
        if applied and params.get('persistent', True):
            if check_mode:
                doc = read_json(path)
                same = isinstance(doc, dict) and doc.get('params') == json.loads(json.dumps(desired_params(params)))
                return [] if same else ['save desired state to %s' % path]
            return ['save desired state to %s' % path] if save(kind, name, params, state_dir) else []
        if not os.path.exists(path):
            return []
        if not check_mode:
            remove(kind, name, state_dir)
        return ['remove saved state %s (the host agent no longer restores it)' % path]
    except (IOError, OSError) as e:
        raise StateError('saving or removing %s, the state kept for the host agent, failed: %s. Fix the cause '
                         '(is /etc writable?) or set persistent: false.' % (path, e))
