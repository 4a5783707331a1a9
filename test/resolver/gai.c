/* gai: resolve names with the C library's getaddrinfo (AF_UNSPEC, so
 * glibc sends A and AAAA, on one socket in parallel unless told
 * otherwise) and print each address with the time the lookup took. */
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <sys/socket.h>

int main(int argc, char **argv) {
	int rc = 0;
	for (int i = 1; i < argc; i++) {
		struct addrinfo hints, *res, *p;
		struct timespec a, b;
		memset(&hints, 0, sizeof hints);
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		clock_gettime(CLOCK_MONOTONIC, &a);
		int err = getaddrinfo(argv[i], NULL, &hints, &res);
		clock_gettime(CLOCK_MONOTONIC, &b);
		double ms = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
		if (err) {
			printf("%s error %s %.3fms\n", argv[i], gai_strerror(err), ms);
			rc = 1;
			continue;
		}
		printf("%s", argv[i]);
		for (p = res; p; p = p->ai_next) {
			char buf[INET6_ADDRSTRLEN];
			void *addr = p->ai_family == AF_INET
				? (void *)&((struct sockaddr_in *)p->ai_addr)->sin_addr
				: (void *)&((struct sockaddr_in6 *)p->ai_addr)->sin6_addr;
			inet_ntop(p->ai_family, addr, buf, sizeof buf);
			printf(" %s", buf);
		}
		printf(" %.3fms\n", ms);
		freeaddrinfo(res);
	}
	return rc;
}
