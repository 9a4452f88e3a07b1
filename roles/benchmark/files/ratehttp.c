/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * Open-loop HTTP/1.1 latency client: latency at a fixed offered rate, the way to compare paths at equal
 * load (a closed-loop client such as wrk slows down with the server and hides the queueing it causes).
 *
 *   ratehttp -r RATE -c CONNS -d SECONDS [-w WARMUP_S] [-t TIMEOUT_MS] [-l LATE_MS] http://A.B.C.D[:PORT][/PATH]
 *
 * Request i is due at start + i/RATE, whatever happened to the requests before it. It goes out on any
 * idle keep-alive connection of the CONNS; when none is idle it waits, and its latency still counts from
 * the time it was due (coordinated omission corrected), so a stall shows in the percentiles as the
 * queue it builds. A send more than LATE_MS after its due time is a "late send": many of them mean
 * the connections (or this client) were the limit, not only the server. Requests due during the first
 * WARMUP_S seconds are sent but not recorded. Connections the server closes are reopened.
 *
 * Prints one JSON object: offered and achieved rate, p50/p90/p99/p99.9/max latency (ms, from the due
 * time), errors by kind (connect, broken, timeout, status, parse, unsent), late sends, reconnects.
 * Exit status 0 when it measured (errors are in the JSON), 2 on a usage error.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum conn_state { DOWN, CONNECTING, IDLE, BUSY };
enum err_kind { E_CONNECT, E_BROKEN, E_TIMEOUT, E_STATUS, E_PARSE, E_UNSENT, E_KINDS };
static const char *err_names[E_KINDS] = { "connect", "broken", "timeout", "status", "parse", "unsent" };

#define BUF_BYTES 65536

struct conn {
	int fd;
	enum conn_state state;
	uint64_t due_ns;	/* due time of the request in flight */
	uint64_t sent_ns;
	uint64_t retry_ns;	/* DOWN: reconnect not before this */
	int recorded;		/* the request in flight is in the measured window */
	size_t len;
	char buf[BUF_BYTES];
};

static struct sockaddr_in target;
static char request[1024];
static size_t request_len;
static int epfd;
static uint64_t errors[E_KINDS], reconnects, late_sends, sent, completed_ok, max_lag_ns;
static uint64_t *lat_ns;
static size_t lat_n, lat_cap;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void usage(const char *why)
{
	fprintf(stderr, "ratehttp: %s\nusage: ratehttp -r RATE -c CONNS -d SECONDS [-w WARMUP_S] [-t TIMEOUT_MS] "
		"[-l LATE_MS] http://A.B.C.D[:PORT][/PATH]\n", why);
	exit(2);
}

static void record(uint64_t latency)
{
	if (lat_n == lat_cap) {
		lat_cap = lat_cap ? lat_cap * 2 : 65536;
		lat_ns = realloc(lat_ns, lat_cap * sizeof(*lat_ns));
		if (!lat_ns) {
			perror("ratehttp: realloc");
			exit(1);
		}
	}
	lat_ns[lat_n++] = latency;
}

static void conn_close(struct conn *c, uint64_t now, uint64_t retry_after_ns)
{
	if (c->fd >= 0) {
		epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	c->fd = -1;
	c->state = DOWN;
	c->len = 0;
	c->retry_ns = now + retry_after_ns;
}

static void conn_open(struct conn *c)
{
	struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = c };
	int one = 1;

	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		perror("ratehttp: socket");
		exit(1);
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->len = 0;
	if (connect(c->fd, (struct sockaddr *)&target, sizeof(target)) == 0) {
		c->state = IDLE;
		ev.events = EPOLLIN;
	} else if (errno == EINPROGRESS) {
		c->state = CONNECTING;
	} else {
		errors[E_CONNECT]++;
		close(c->fd);
		c->fd = -1;
		c->state = DOWN;
		c->retry_ns = now_ns() + 100000000ull;
		return;
	}
	epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
}

/* a non-blocking connect finished: idle and waiting for responses, or down for 100 ms */
static void on_connect_done(struct conn *c, uint64_t now)
{
	int err = 0;
	socklen_t l = sizeof(err);
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };

	getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
	if (err) {
		errors[E_CONNECT]++;
		conn_close(c, now, 100000000ull);
	} else {
		c->state = IDLE;
		epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
	}
}

/* 1: a whole response is in c->buf (status and whether the server closes returned), 0: not yet, -1: bad */
static int parse_response(struct conn *c, int *status, int *server_closes)
{
	char *end, *line, *next;
	long body = 0;
	size_t head;

	c->buf[c->len] = 0;
	end = strstr(c->buf, "\r\n\r\n");
	if (!end)
		return c->len >= BUF_BYTES - 1 ? -1 : 0;
	head = end - c->buf + 4;
	if (sscanf(c->buf, "HTTP/1.%*d %d", status) != 1)
		return -1;
	*server_closes = strncmp(c->buf, "HTTP/1.0", 8) == 0;
	for (line = strstr(c->buf, "\r\n") + 2; line < end; line = next + 2) {
		next = strstr(line, "\r\n");
		if (!strncasecmp(line, "Content-Length:", 15))
			body = strtol(line + 15, NULL, 10);
		else if (!strncasecmp(line, "Transfer-Encoding:", 18))
			return -1;	/* chunked bodies are not supported: the benchmark's backends send lengths */
		else if (!strncasecmp(line, "Connection:", 11))
			*server_closes = strcasestr(line, "close") != NULL && strcasestr(line, "close") < next;
	}
	if (body < 0 || head + body >= BUF_BYTES)
		return -1;
	if (c->len < head + body)
		return 0;
	if (c->len > head + body)
		return -1;	/* bytes nobody asked for: one request in flight per connection */
	return 1;
}

static void on_readable(struct conn *c, uint64_t now)
{
	int status = 0, server_closes = 0, r;
	ssize_t n = read(c->fd, c->buf + c->len, BUF_BYTES - 1 - c->len);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		if (c->state == BUSY)
			errors[E_BROKEN]++;	/* closed or reset with a request in flight */
		conn_close(c, now, 0);
		reconnects++;
		return;
	}
	if (c->state != BUSY) {
		errors[E_PARSE]++;	/* data nobody asked for */
		conn_close(c, now, 0);
		return;
	}
	c->len += n;
	r = parse_response(c, &status, &server_closes);
	if (r == 0)
		return;
	if (r < 0) {
		errors[E_PARSE]++;
		conn_close(c, now, 0);
		return;
	}
	if (status < 200 || status > 399) {
		errors[E_STATUS]++;
	} else {
		completed_ok++;
		if (c->recorded)
			record(now - c->due_ns);
	}
	c->len = 0;
	c->state = IDLE;
	if (server_closes) {
		conn_close(c, now, 0);
		reconnects++;
	}
}

static int send_request(struct conn *c, uint64_t due, int recorded, uint64_t now)
{
	ssize_t n = write(c->fd, request, request_len);

	if (n != (ssize_t)request_len) {
		errors[E_BROKEN]++;
		conn_close(c, now, 0);
		return -1;
	}
	c->state = BUSY;
	c->due_ns = due;
	c->sent_ns = now;
	c->recorded = recorded;
	sent++;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static double pct_ms(double p)
{
	size_t i;

	if (!lat_n)
		return -1;
	i = (size_t)(p * lat_n + 0.999999999);	/* nearest rank */
	if (i < 1)
		i = 1;
	if (i > lat_n)
		i = lat_n;
	return lat_ns[i - 1] / 1e6;
}

static void parse_url(const char *url, char *host, size_t host_len, const char **path)
{
	const char *p, *slash;
	char hostport[64];
	unsigned long port = 80;
	char *colon;

	if (strncmp(url, "http://", 7))
		usage("the URL must start with http://");
	p = url + 7;
	slash = strchr(p, '/');
	*path = slash ? slash : "/";
	if ((size_t)((slash ? slash : p + strlen(p)) - p) >= sizeof(hostport))
		usage("the URL's host:port is too long");
	snprintf(hostport, sizeof(hostport), "%.*s", (int)((slash ? slash : p + strlen(p)) - p), p);
	colon = strchr(hostport, ':');
	if (colon) {
		char *end;
		*colon = 0;
		port = strtoul(colon + 1, &end, 10);
		if (*end || port == 0 || port > 65535)
			usage("the URL's port must be 1-65535");
	}
	memset(&target, 0, sizeof(target));
	target.sin_family = AF_INET;
	target.sin_port = htons(port);
	if (inet_pton(AF_INET, hostport, &target.sin_addr) != 1)
		usage("the URL's host must be an IPv4 address (no name resolution, so none is timed)");
	snprintf(host, host_len, "%s", hostport);
}

static double number_arg(const char *s, const char *what, double min)
{
	char *end;
	double v = strtod(s, &end);
	char msg[128];

	if (*end || end == s || v < min || v != v) {
		snprintf(msg, sizeof(msg), "%s must be a number >= %g, not '%s'", what, min, s);
		usage(msg);
	}
	return v;
}

int main(int argc, char **argv)
{
	double rate = 0, seconds = 0, warmup = 0, timeout_ms = 2000, late_ms = 1;
	long conns = 0;
	int opt;
	char host[64];
	const char *path;
	struct conn *cs;
	uint64_t start, end, warm_end, period_ns, next_idx = 0, total_due, drain_end, now;
	struct epoll_event evs[256];

	while ((opt = getopt(argc, argv, "r:c:d:w:t:l:")) != -1) {
		switch (opt) {
		case 'r': rate = number_arg(optarg, "-r RATE (requests/s)", 1); break;
		case 'c': conns = (long)number_arg(optarg, "-c CONNS", 1); break;
		case 'd': seconds = number_arg(optarg, "-d SECONDS", 0.1); break;
		case 'w': warmup = number_arg(optarg, "-w WARMUP_S", 0); break;
		case 't': timeout_ms = number_arg(optarg, "-t TIMEOUT_MS", 1); break;
		case 'l': late_ms = number_arg(optarg, "-l LATE_MS", 0); break;
		default: usage("unknown option");
		}
	}
	if (optind != argc - 1)
		usage("give exactly one URL");
	if (!rate || !conns || !seconds)
		usage("-r, -c and -d are required");
	if (conns > 10000)
		usage("-c CONNS must be at most 10000");
	if (warmup >= seconds)
		usage("-w WARMUP_S must be shorter than -d SECONDS");
	parse_url(argv[optind], host, sizeof(host), &path);
	request_len = snprintf(request, sizeof(request), "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: ratehttp\r\n\r\n",
			       path, host);
	if (request_len >= sizeof(request))
		usage("the URL's path is too long");
	signal(SIGPIPE, SIG_IGN);

	epfd = epoll_create1(EPOLL_CLOEXEC);
	cs = calloc(conns, sizeof(*cs));
	if (epfd < 0 || !cs) {
		perror("ratehttp");
		return 1;
	}
	for (long i = 0; i < conns; i++) {
		cs[i].fd = -1;
		conn_open(&cs[i]);
	}
	/* give the connections up to a second to open before the first request is due */
	start = now_ns();
	while (now_ns() - start < 1000000000ull) {
		int idle = 0, n = epoll_wait(epfd, evs, 256, 10);
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (c->state == CONNECTING)
				on_connect_done(c, now_ns());
		}
		for (long i = 0; i < conns; i++)
			idle += cs[i].state == IDLE;
		if (idle == conns)
			break;
		if (errors[E_CONNECT] >= (uint64_t)conns)
			break;
	}

	period_ns = (uint64_t)(1e9 / rate);
	if (!period_ns)
		period_ns = 1;
	start = now_ns();
	warm_end = start + (uint64_t)(warmup * 1e9);
	end = start + (uint64_t)(seconds * 1e9);
	total_due = (uint64_t)(seconds * rate);
	drain_end = end + (uint64_t)(timeout_ms * 1e6);

	for (;;) {
		uint64_t next_due, wait_ns;
		struct timespec ts;
		int n;

		now = now_ns();
		/* send everything due, oldest first, on idle connections */
		while (next_idx < total_due && (next_due = start + next_idx * period_ns) <= now && now < drain_end) {
			struct conn *idle = NULL;
			for (long i = 0; i < conns && !idle; i++)
				if (cs[i].state == IDLE)
					idle = &cs[i];
			if (!idle)
				break;
			if (send_request(idle, next_due, next_due >= warm_end, now) != 0)
				continue;	/* that connection closed; the request goes out on another, counted there */
			if (now - next_due > (uint64_t)(late_ms * 1e6))
				late_sends++;
			if (now - next_due > max_lag_ns)
				max_lag_ns = now - next_due;
			next_idx++;
		}
		/* reopen closed connections, time out stuck requests */
		for (long i = 0; i < conns; i++) {
			struct conn *c = &cs[i];
			if (c->state == DOWN && now >= c->retry_ns && now < drain_end)
				conn_open(c);
			else if (c->state == BUSY && now - c->sent_ns > (uint64_t)(timeout_ms * 1e6)) {
				errors[E_TIMEOUT]++;
				conn_close(c, now, 0);
			}
		}
		if (now >= drain_end)
			break;
		if (next_idx >= total_due) {
			int busy = 0;
			for (long i = 0; i < conns; i++)
				busy += cs[i].state == BUSY;
			if (!busy)
				break;
		}
		/* sleep until the next request is due (or 10 ms, for the timeouts), unless one is waiting */
		wait_ns = 10000000ull;
		if (next_idx < total_due) {
			next_due = start + next_idx * period_ns;
			wait_ns = next_due > now ? next_due - now : 0;
			if (wait_ns > 10000000ull)
				wait_ns = 10000000ull;
			if (!wait_ns) {	/* due but no idle connection: wait for one */
				wait_ns = 10000000ull;
			}
		}
		ts.tv_sec = wait_ns / 1000000000ull;
		ts.tv_nsec = wait_ns % 1000000000ull;
		n = epoll_pwait2(epfd, evs, 256, &ts, NULL);
		if (n < 0) {
			if (errno != EINTR) {
				perror("epoll_pwait2 (needs Linux 5.11 or later)");
				exit(1);
			}
			n = 0;
		}
		now = now_ns();
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (c->state == CONNECTING)
				on_connect_done(c, now);
			else if (c->fd >= 0) {
				on_readable(c, now);
			}
		}
	}
	for (long i = 0; i < conns; i++)
		if (cs[i].state == BUSY)
			errors[E_TIMEOUT]++;
	errors[E_UNSENT] = total_due - next_idx;

	{
		double measured_s = seconds - warmup, mean = 0;
		uint64_t errs = 0;
		qsort(lat_ns, lat_n, sizeof(*lat_ns), cmp_u64);
		for (size_t i = 0; i < lat_n; i++)
			mean += lat_ns[i] / 1e6;
		mean = lat_n ? mean / lat_n : -1;
		for (int k = 0; k < E_KINDS; k++)
			errs += errors[k];
		printf("{\"url\": \"%s\", \"offered_rps\": %.1f, \"achieved_rps\": %.1f, \"connections\": %ld, "
		       "\"duration_s\": %.3f, \"warmup_s\": %.3f, \"due\": %llu, \"sent\": %llu, \"ok\": %llu, "
		       "\"recorded\": %zu, \"p50_ms\": %.3f, \"p90_ms\": %.3f, \"p99_ms\": %.3f, \"p999_ms\": %.3f, "
		       "\"max_ms\": %.3f, \"mean_ms\": %.3f, \"errors\": %llu, \"error_kinds\": {",
		       argv[optind], rate, lat_n / measured_s, conns, seconds, warmup,
		       (unsigned long long)total_due, (unsigned long long)sent, (unsigned long long)completed_ok,
		       lat_n, pct_ms(0.5), pct_ms(0.9), pct_ms(0.99), pct_ms(0.999), pct_ms(1.0), mean,
		       (unsigned long long)errs);
		for (int k = 0; k < E_KINDS; k++)
			printf("%s\"%s\": %llu", k ? ", " : "", err_names[k], (unsigned long long)errors[k]);
		printf("}, \"late_sends\": %llu, \"late_ms\": %.3f, \"max_send_lag_ms\": %.3f, \"reconnects\": %llu}\n",
		       (unsigned long long)late_sends, late_ms, max_lag_ns / 1e6, (unsigned long long)reconnects);
	}
	return 0;
}
