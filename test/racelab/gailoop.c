/*
 * gailoop: call getaddrinfo(NAME, AF_UNSPEC) in a bounded loop and print the
 * latency of every lookup, one line each:
 *
 *     <milliseconds> ok <number of addresses>
 *     <milliseconds> fail <gai_strerror text>
 *
 * The race lab builds it twice from this one file: with gcc against glibc and
 * with musl-gcc -static against musl, so both C libraries run their own stub
 * resolver (both send the A and the AAAA query in parallel from one UDP
 * socket, which is what conntrack's insert_failed drops).
 *
 * Usage: gailoop [-n COUNT] [-t SECONDS] [-i MILLISECONDS] [-f] NAME
 *   -n COUNT    lookups to do (default 100)
 *   -t SECONDS  stop early once this much wall time has passed (default 300),
 *               so a broken network can never make the lab run unbounded
 *   -i MS       pause this long between lookups (default 0), so a bounded
 *               number of lookups can span an event such as a rolling update
 *   -f          do every lookup in a fresh child process. glibc remembers in
 *               the per-thread resolver state that a server "lost" a reply
 *               and switches that thread to single-request mode for later
 *               lookups; a fresh process per lookup measures what short-lived
 *               processes (and the first lookup of every process) see.
 *
 * hints.ai_flags is 0 (no AI_ADDRCONFIG): the lab's point is the A+AAAA pair,
 * which both libraries send for AF_UNSPEC regardless of local addresses.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

/* lookup does one getaddrinfo and writes its result line to out. */
static void lookup(const char *name, FILE *out)
{
	struct addrinfo hints, *res = NULL, *ai;
	int rc, n = 0;
	double t0, t1;

	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM; /* one entry per address, not per socktype */

	t0 = now_ms();
	rc = getaddrinfo(name, NULL, &hints, &res);
	t1 = now_ms();
	if (rc != 0) {
		fprintf(out, "%.3f fail %s\n", t1 - t0, gai_strerror(rc));
		return;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next)
		n++;
	freeaddrinfo(res);
	fprintf(out, "%.3f ok %d\n", t1 - t0, n);
}

int main(int argc, char **argv)
{
	long count = 100, limit_s = 300, interval_ms = 0;
	int fork_each = 0, opt;
	double start;

	while ((opt = getopt(argc, argv, "n:t:i:f")) != -1) {
		switch (opt) {
		case 'n':
			count = strtol(optarg, NULL, 10);
			break;
		case 't':
			limit_s = strtol(optarg, NULL, 10);
			break;
		case 'i':
			interval_ms = strtol(optarg, NULL, 10);
			break;
		case 'f':
			fork_each = 1;
			break;
		default:
			fprintf(stderr, "usage: %s [-n COUNT] [-t SECONDS] [-i MS] [-f] NAME\n", argv[0]);
			return 2;
		}
	}
	if (optind != argc - 1 || count <= 0 || limit_s <= 0 || interval_ms < 0) {
		fprintf(stderr, "usage: %s [-n COUNT] [-t SECONDS] [-i MS] [-f] NAME\n", argv[0]);
		return 2;
	}

	start = now_ms();
	for (long i = 0; i < count; i++) {
		if (i > 0 && interval_ms > 0) {
			struct timespec ts = {interval_ms / 1000, (interval_ms % 1000) * 1000000L};
			nanosleep(&ts, NULL);
		}
		if (now_ms() - start > limit_s * 1000.0) {
			fprintf(stderr, "gailoop: time limit %lds reached after %ld lookups\n", limit_s, i);
			return 3;
		}
		if (!fork_each) {
			lookup(argv[optind], stdout);
			fflush(stdout);
			continue;
		}
		fflush(stdout);
		pid_t pid = fork();
		if (pid < 0) {
			perror("gailoop: fork");
			return 1;
		}
		if (pid == 0) {
			lookup(argv[optind], stdout);
			fflush(stdout);
			_exit(0);
		}
		int status;
		while (waitpid(pid, &status, 0) < 0) {
			if (errno != EINTR) {
				perror("gailoop: waitpid");
				return 1;
			}
		}
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			fprintf(stderr, "gailoop: child failed (status %d)\n", status);
			return 1;
		}
	}
	return 0;
}
