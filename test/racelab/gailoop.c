/*
 * gailoop: call getaddrinfo(NAME, AF_UNSPEC) in a bounded loop and print the
 * latency of every lookup, one line each:
 *
 *     <milliseconds> ok <number of addresses> <address> ...
 *     <milliseconds> fail <gai_strerror text>
 *
 * The race lab builds it twice from this one file: with gcc against glibc and
 * with musl-gcc -static against musl, so both C libraries run their own stub
 * resolver (both send the A and the AAAA query in parallel from one UDP
 * socket, which is what conntrack's insert_failed drops).
 *
 * Usage: gailoop [-n COUNT] [-t SECONDS] [-i MILLISECONDS] [-w MILLISECONDS] [-f] [-u PREFIX [-s]] NAME
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
 *   -u PREFIX   look up a name of its own every time: lookup i asks for the
 *               absolute name "<i>.PREFIX.NAME." (trailing dot: no search
 *               path). No cache on the way (the sidecar's, the node cache's,
 *               CoreDNS's) can have seen it, so every lookup crosses the node
 *               to the server authoritative for NAME. PREFIX must be unique
 *               per run and client: pods have their own PID namespaces, so
 *               the process ID would repeat across them.
 *   -s          with -u: the name of its own is relative, "<i>.PREFIX.NAME"
 *               without the trailing dot (NAME must have none), so the C
 *               library walks the search path first when it has fewer dots
 *               than ndots: what an application's external lookups cost
 *               under Kubernetes' ndots:5 (the fault matrix's fault c).
 *   -w MS       after the last lookup, wait this long before exiting, so the
 *               harness can read a sidecar's counters while the pod still runs
 *
 * The addresses (inet_ntop, in the order getaddrinfo returned them) let the
 * lab check every answer's content, not only that one came: a resolver that
 * dropped the AAAA or rewrote an address still returns "ok".
 *
 * hints.ai_flags is 0 (no AI_ADDRCONFIG): the lab's point is the A+AAAA pair,
 * which both libraries send for AF_UNSPEC regardless of local addresses.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
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
	char addrs[1024] = "", a[INET6_ADDRSTRLEN];
	size_t used = 0;

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
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		const void *src = NULL;
		n++;
		if (ai->ai_family == AF_INET)
			src = &((struct sockaddr_in *)ai->ai_addr)->sin_addr;
		else if (ai->ai_family == AF_INET6)
			src = &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
		if (src == NULL || inet_ntop(ai->ai_family, src, a, sizeof a) == NULL)
			snprintf(a, sizeof a, "?");
		/* Bounded: an address that does not fit is cut, and the lab's
		 * content check fails on it. */
		if (used < sizeof addrs)
			used += snprintf(addrs + used, sizeof addrs - used, " %s", a);
	}
	freeaddrinfo(res);
	fprintf(out, "%.3f ok %d%s\n", t1 - t0, n, addrs);
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

#define USAGE "usage: %s [-n COUNT] [-t SECONDS] [-i MS] [-w MS] [-f] [-u PREFIX [-s]] NAME\n"

int main(int argc, char **argv)
{
	long count = 100, limit_s = 300, interval_ms = 0, linger_ms = 0;
	int fork_each = 0, relative = 0, opt;
	const char *prefix = NULL;
	char name[256];
	double start;

	while ((opt = getopt(argc, argv, "n:t:i:w:fu:s")) != -1) {
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
		case 'w':
			linger_ms = strtol(optarg, NULL, 10);
			break;
		case 'f':
			fork_each = 1;
			break;
		case 'u':
			prefix = optarg;
			break;
		case 's':
			relative = 1;
			break;
		default:
			fprintf(stderr, USAGE, argv[0]);
			return 2;
		}
	}
	if (optind != argc - 1 || count <= 0 || limit_s <= 0 || interval_ms < 0 || linger_ms < 0 ||
	    (prefix != NULL && (prefix[0] == '\0' || strlen(prefix) + strlen(argv[optind]) > 200)) ||
	    (relative && (prefix == NULL || argv[optind][strlen(argv[optind]) - 1] == '.'))) {
		fprintf(stderr, USAGE, argv[0]);
		return 2;
	}

	start = now_ms();
	for (long i = 0; i < count; i++) {
		if (i > 0 && interval_ms > 0)
			sleep_ms(interval_ms);
		if (now_ms() - start > limit_s * 1000.0) {
			fprintf(stderr, "gailoop: time limit %lds reached after %ld lookups\n", limit_s, i);
			return 3;
		}
		if (prefix == NULL) {
			snprintf(name, sizeof name, "%s", argv[optind]);
		} else {
			const char *dot = relative || argv[optind][strlen(argv[optind]) - 1] == '.' ? "" : ".";
			snprintf(name, sizeof name, "%ld.%s.%s%s", i, prefix, argv[optind], dot);
		}
		if (!fork_each) {
			lookup(name, stdout);
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
			lookup(name, stdout);
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
	if (linger_ms > 0)
		sleep_ms(linger_ms);
	return 0;
}
