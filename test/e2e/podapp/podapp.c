/*
 * podapp: the "application" container of the e2e suite's client images,
 * built twice from this file like the race lab's gailoop: with gcc against
 * glibc and with musl-gcc -static against musl.
 *
 *     podapp [NAME...]
 *
 * At start it resolves every NAME once with getaddrinfo(AF_UNSPEC) and prints
 *
 *     first-lookup NAME ok <addresses> <milliseconds>
 *     first-lookup NAME fail <gai_strerror text> <milliseconds>
 *
 * which is how a test sees whether the very first lookup of a pod succeeded
 * (in sidecar mode: whether the resolver was up before the app started).
 * Then it waits; on SIGTERM it prints "sigterm" and exits 0, so the time of
 * the app's stop is in the container log (kubectl logs --timestamps) and can
 * be compared with the sidecar's.
 */
#define _POSIX_C_SOURCE 200809L
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	for (int i = 1; i < argc; i++) {
		struct addrinfo hints, *res = NULL, *ai;
		int n = 0, rc;
		double t0, t1;
		memset(&hints, 0, sizeof hints);
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		t0 = now_ms();
		rc = getaddrinfo(argv[i], NULL, &hints, &res);
		t1 = now_ms();
		if (rc != 0) {
			printf("first-lookup %s fail %s %.1f\n", argv[i], gai_strerror(rc), t1 - t0);
		} else {
			for (ai = res; ai; ai = ai->ai_next)
				n++;
			freeaddrinfo(res);
			printf("first-lookup %s ok %d %.1f\n", argv[i], n, t1 - t0);
		}
		fflush(stdout);
	}
	printf("ready\n");
	fflush(stdout);
	while (!stop)
		pause();
	printf("sigterm\n");
	fflush(stdout);
	return 0;
}
