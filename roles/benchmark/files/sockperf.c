/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * Local socket benchmark for the sockmap comparison: request/response rate and bulk throughput
 * between two local sockets, over TCP on loopback (accelerated by sockmap_redirect when it is on)
 * or a UNIX socket pair (the local ceiling). Bounded by the duration given.
 *
 *   sockperf rr|bulk tcp|unix PORT SECONDS [MSG_BYTES]
 * MSG_BYTES is the request size for rr (default 64) and the size of each write for bulk (default 64 KiB).
 * prints one JSON line: {"mode":..., "transport":..., "ops_per_sec":..., "mbytes_per_sec":...}
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int full_io(int fd, char *buf, size_t len, int writing)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = writing ? write(fd, buf + done, len - done) : read(fd, buf + done, len - done);
		if (n <= 0)
			return -1;
		done += n;
	}
	return 0;
}

static void serve(int fd, int rr, size_t msg)
{
	char *buf = malloc(rr ? msg : (msg > 1 << 16 ? msg : 1 << 16));
	for (;;) {
		if (rr) {
			if (full_io(fd, buf, msg, 0) || full_io(fd, buf, msg, 1))
				break;
		} else if (read(fd, buf, msg > 1 << 16 ? msg : 1 << 16) <= 0) {
			break;
		}
	}
	free(buf);
	close(fd);
	_exit(0);
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: %s rr|bulk tcp|unix PORT SECONDS [MSG_BYTES]\n", argv[0]);
		return 2;
	}
	int rr = strcmp(argv[1], "rr") == 0;
	int tcp = strcmp(argv[2], "tcp") == 0;
	int port = atoi(argv[3]);
	double seconds = atof(argv[4]);
	size_t msg = argc > 5 ? (size_t)atoi(argv[5]) : (rr ? 64 : 1 << 16);
	int client, server;
	pid_t child;

	if (seconds <= 0 || seconds > 120 || msg == 0 || msg > (1 << 20)) {
		fprintf(stderr, "seconds must be 0-120, message 1 byte-1 MiB\n");
		return 2;
	}
	if (tcp) {
		int one = 1, lfd = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(port) };
		addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) || listen(lfd, 1)) {
			perror("bind/listen");
			return 1;
		}
		child = fork();
		if (child == 0) {
			server = accept(lfd, NULL, NULL);
			setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			serve(server, rr, msg);
		}
		close(lfd);
		client = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(client, (struct sockaddr *)&addr, sizeof(addr))) {
			perror("connect");
			return 1;
		}
		setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	} else {
		int pair[2];
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair)) {
			perror("socketpair");
			return 1;
		}
		child = fork();
		if (child == 0) {
			close(pair[0]);
			serve(pair[1], rr, msg);
		}
		close(pair[1]);
		client = pair[0];
	}

	size_t chunk = msg;
	char *buf = calloc(1, chunk);
	unsigned long long ops = 0, bytes = 0;
	double start = now(), end = start + seconds;
	while (now() < end) {
		for (int i = 0; i < 64; i++) {
			if (full_io(client, buf, chunk, 1) || (rr && full_io(client, buf, chunk, 0))) {
				fprintf(stderr, "peer closed\n");
				return 1;
			}
			ops++;
			bytes += chunk;
		}
	}
	double elapsed = now() - start;
	close(client);
	waitpid(child, NULL, 0);
	printf("{\"mode\": \"%s\", \"transport\": \"%s\", \"seconds\": %.3f, \"ops_per_sec\": %.1f, "
	       "\"mbytes_per_sec\": %.1f, \"message_bytes\": %zu}\n",
	       rr ? "rr" : "bulk", tcp ? "tcp" : "unix", elapsed, ops / elapsed, bytes / elapsed / 1e6, chunk);
	return 0;
}
