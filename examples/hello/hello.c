/* hello: a small HTTP app for the paasops demo and tests. It listens on
 * $HOST:$PORT and answers:
 *   GET /           "hello from INSTANCE (pid N)", then ": $GREETING" when set
 *   GET /healthz    "ok" (503 after GET /sick)
 *   GET /sick       makes /healthz fail from now on
 *   GET /crash      exits with status 3
 *   GET /slow?ms=N  answers after N milliseconds
 * It prints one line per request on stdout, and exits cleanly on SIGTERM.
 * It is an app *run by* paasops, deliberately dependency-free. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
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

static void reply(int fd, int status, const char *body)
{
	char head[256];
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
			 status, status == 200 ? "OK" : status == 404 ? "Not Found" : "Service Unavailable",
			 strlen(body));
	if (write(fd, head, (size_t)n) < 0 || write(fd, body, strlen(body)) < 0)
		return;
}

int main(void)
{
	const char *host = getenv("HOST") ? getenv("HOST") : "127.0.0.1";
	int port = getenv("PORT") ? atoi(getenv("PORT")) : 8000;
	const char *inst = getenv("PAASOPS_INSTANCE") ? getenv("PAASOPS_INSTANCE") : "hello";
	struct sigaction sa = {.sa_handler = on_term};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);

	int ls = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
	inet_pton(AF_INET, host, &a.sin_addr);
	if (bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 128) < 0) {
		fprintf(stderr, "hello: cannot listen on %s:%d: %s\n", host, port, strerror(errno));
		return 1;
	}
	printf("hello %s listening on %s:%d\n", inst, host, port);
	int sick = 0;
	while (!stop) {
		int fd = accept(ls, NULL, NULL);
		if (fd < 0)
			continue;
		char buf[4096];
		ssize_t n = read(fd, buf, sizeof(buf) - 1);
		if (n <= 0) {
			close(fd);
			continue;
		}
		buf[n] = '\0';
		char method[16] = "", path[1024] = "";
		sscanf(buf, "%15s %1023s", method, path);
		printf("%s %s\n", method, path);
		if (strcmp(path, "/healthz") == 0) {
			reply(fd, sick ? 503 : 200, sick ? "sick\n" : "ok\n");
		} else if (strcmp(path, "/sick") == 0) {
			sick = 1;
			reply(fd, 200, "now failing health checks\n");
		} else if (strcmp(path, "/crash") == 0) {
			reply(fd, 200, "crashing\n");
			close(fd);
			fprintf(stderr, "hello: crashing on request\n");
			return 3;
		} else if (strncmp(path, "/slow", 5) == 0) {
			const char *ms = strstr(path, "ms=");
			long v = ms ? atol(ms + 3) : 1000;
			struct timespec ts = {v / 1000, (v % 1000) * 1000000L};
			nanosleep(&ts, NULL);
			reply(fd, 200, "slow\n");
		} else {
			char body[256];
			const char *greeting = getenv("GREETING");
			snprintf(body, sizeof(body), "hello from %s (pid %d)%s%s\n", inst, (int)getpid(),
				 greeting && *greeting ? ": " : "", greeting && *greeting ? greeting : "");
			reply(fd, 200, body);
		}
		close(fd);
	}
	printf("hello %s stopping\n", inst);
	return 0;
}
