# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turns the benchmark role's raw measurements into medians, ratios, target checks, result.json and
chart.svg. Runs on the target with the standard library only."""

import json
import re
import statistics
import sys

UNITS = {'us': 1e-3, 'ms': 1.0, 's': 1e3}
TARGETS = [
    # (name, ratio key, comparison, bound, why it may miss)
    ('XDP LB >= 2x nginx requests/s', 'xdp_over_nginx_rps', '>=', 2.0),
    ('XDP LB p99 <= 0.5x nginx p99', 'xdp_over_nginx_p99', '<=', 0.5),
    ('XDP LB >= 0.9x direct requests/s', 'xdp_over_direct_rps', '>=', 0.9),
    ('sockmap >= 1.3x plain TCP request/response', 'sockmap_over_plain_rr', '>=', 1.3),
    ('drop tracing costs < 5% throughput', 'traced_over_untraced_rps', '>=', 0.95),
]


def wrk(text):
    rps = re.search(r'Requests/sec:\s+([\d.]+)', text)
    lat = dict((p, float(v) * UNITS[u]) for p, v, u in re.findall(r'^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$', text, re.M))
    errors = bool(re.search(r'Socket errors|Non-2xx', text))
    return {'rps': float(rps.group(1)) if rps else 0.0, 'p50_ms': lat.get('50'), 'p99_ms': lat.get('99'), 'errors': errors}


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a, b):
    return round(a / b, 3) if a and b else None


def svg_chart(groups, path):
    """Horizontal bars, one panel per group: {title: [(label, value, unit)]}."""
    rows = sum(len(v) + 2 for v in groups.values())
    width, bar_h = 760, 22
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="13">'
           % (width, rows * bar_h + 20), '<rect width="100%" height="100%" fill="white"/>']
    y = 10
    colours = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2']
    for title, bars in groups.items():
        out.append('<text x="10" y="%d" font-weight="bold">%s</text>' % (y + 15, title))
        y += bar_h + 4
        top = max(v for _l, v, _u in bars) or 1
        for i, (label, value, unit) in enumerate(bars):
            w = int(420 * value / top)
            out.append('<text x="10" y="%d">%s</text>' % (y + 15, label))
            colour = colours[i % len(colours)]
            out.append('<rect x="200" y="%d" width="%d" height="%d" fill="%s"/>' % (y + 3, w, bar_h - 6, colour))
            out.append('<text x="%d" y="%d">%s %s</text>' % (205 + w, y + 15, '{:,.0f}'.format(value), unit))
            y += bar_h
        y += bar_h - 4
    out.append('</svg>')
    with open(path, 'w') as f:
        f.write('\n'.join(out))


def main():
    raw = json.load(open(sys.argv[1]))
    outdir = sys.argv[2]
    http = {}
    for target, text in raw['http']:
        http.setdefault(target, []).append(wrk(text))
    summary = {'http': {}}
    for target, runs in http.items():
        summary['http'][target] = {'rps': median(r['rps'] for r in runs), 'p50_ms': median(r['p50_ms'] for r in runs),
                                   'p99_ms': median(r['p99_ms'] for r in runs), 'runs': len(runs),
                                   'errors': any(r['errors'] for r in runs)}
    local = {}
    for label, lines in (('plain', raw['plain']), ('sockmap', raw['sockmap'])):
        for line in lines:
            r = json.loads(line)
            name = '%s %s' % (r['mode'], 'unix' if r['transport'] == 'unix' else ('tcp+sockmap' if label == 'sockmap' else 'tcp'))
            local.setdefault(name, []).append(r)
    summary['local'] = dict((k, {'ops_per_sec': median(r['ops_per_sec'] for r in v),
                                 'mbytes_per_sec': median(r['mbytes_per_sec'] for r in v), 'runs': len(v)})
                            for k, v in local.items())
    trace = [(wrk(t['untraced'])['rps'], wrk(t['traced'])['rps'], t['drops_seen']) for t in raw['trace']]
    summary['trace'] = {'untraced_rps': median(t[0] for t in trace), 'traced_rps': median(t[1] for t in trace),
                        'drops_seen_while_traced': median(t[2] for t in trace)}
    h, lo, tr = summary['http'], summary['local'], summary['trace']
    ratios = {
        'xdp_over_nginx_rps': ratio(h['xdp']['rps'], h['nginx']['rps']),
        'xdp_over_nginx_p99': ratio(h['xdp']['p99_ms'], h['nginx']['p99_ms']),
        'xdp_over_direct_rps': ratio(h['xdp']['rps'], h['direct']['rps']),
        'nginx_over_direct_rps': ratio(h['nginx']['rps'], h['direct']['rps']),
        'sockmap_over_plain_rr': ratio(lo['rr tcp+sockmap']['ops_per_sec'], lo['rr tcp']['ops_per_sec']),
        'sockmap_over_unix_rr': ratio(lo['rr tcp+sockmap']['ops_per_sec'], lo['rr unix']['ops_per_sec']),
        'sockmap_over_plain_bulk': ratio(lo['bulk tcp+sockmap']['mbytes_per_sec'], lo['bulk tcp']['mbytes_per_sec']),
        'sockmap_over_unix_bulk': ratio(lo['bulk tcp+sockmap']['mbytes_per_sec'], lo['bulk unix']['mbytes_per_sec']),
        'traced_over_untraced_rps': ratio(tr['traced_rps'], tr['untraced_rps']),
    }
    checks = []
    for name, key, op, bound in TARGETS:
        value = ratios.get(key)
        ok = value is not None and (value >= bound if op == '>=' else value <= bound)
        checks.append({'target': name, 'ratio': value, 'bound': '%s %s' % (op, bound), 'met': ok})
    result = {'profile': raw['profile'], 'settings': raw['settings'], 'kernel': raw['kernel'], 'cpus': raw['cpus'],
              'xdp_mode': raw['xdp_mode'], 'summary': summary, 'ratios': ratios, 'targets': checks,
              'sockmap_counters': raw['sockmap_counters'], 'xdp_memory': raw['xdp_memory'],
              'xdp_limits': raw['xdp_limits']}
    with open(outdir + '/result.json', 'w') as f:
        json.dump(result, f, indent=2, sort_keys=True)
    svg_chart({
        'HTTP requests/s (wrk, %d connections)' % raw['settings']['wrk_connections']:
            [(t, h[t]['rps'], 'req/s') for t in ('direct', 'nginx', 'xdp')],
        'Local request/response, %d-byte messages' % raw['settings']['message_bytes']:
            [(k, lo[k]['ops_per_sec'], 'ops/s') for k in ('rr tcp', 'rr tcp+sockmap', 'rr unix')],
        'Local bulk transfer': [(k, lo[k]['mbytes_per_sec'], 'MB/s') for k in ('bulk tcp', 'bulk tcp+sockmap', 'bulk unix')],
        'HTTP direct with and without skb_drop_trace': [('untraced', tr['untraced_rps'], 'req/s'),
                                                        ('traced', tr['traced_rps'], 'req/s')],
    }, outdir + '/chart.svg')

    print('profile %s, kernel %s, %s CPUs, XDP %s' % (raw['profile'], raw['kernel'], raw['cpus'], raw['xdp_mode']))
    for t in ('direct', 'nginx', 'xdp'):
        flag = '  ERRORS' if h[t]['errors'] else ''
        print('HTTP %-7s %9.0f req/s  p50 %6.2f ms  p99 %7.2f ms%s'
              % (t, h[t]['rps'], h[t]['p50_ms'] or 0, h[t]['p99_ms'] or 0, flag))
    for k in sorted(lo):
        print('local %-17s %10.0f ops/s %9.1f MB/s' % (k, lo[k]['ops_per_sec'], lo[k]['mbytes_per_sec']))
    print('drop trace: untraced %.0f req/s, traced %.0f req/s' % (tr['untraced_rps'], tr['traced_rps']))
    for key, value in ratios.items():
        print('ratio %-26s %s' % (key, value))
    for c in checks:
        print('%-4s %s: %s (%s)' % ('MET' if c['met'] else 'MISS', c['target'], c['ratio'], c['bound']))
    print('XDP map memory: %s' % raw['xdp_memory'])
    print('written: %s/result.json %s/chart.svg' % (outdir, outdir))
    # targets are reported, not enforced; a measurement that did not happen is a failure
    broken = [t for t in h if not h[t]['rps'] or h[t]['errors']] + [k for k in lo if not lo[k]['ops_per_sec']]
    if broken or not tr['traced_rps']:
        print('FAILED measurements: %s' % (broken or ['drop trace']))
        sys.exit(1)


if __name__ == '__main__':
    main()
