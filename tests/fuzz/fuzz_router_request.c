/* fuzz_router_request.c: libFuzzer target for the router's request path
 * (src/router/router_proxy.c), driven end to end over TCP.
 *
 * One real router (one worker thread) is started once, listening on
 * 127.0.0.1 on a port the kernel chooses, with routes to a backend port
 * that is bound but not listening, so that every dispatched request fails
 * fast with 502/503 after a real connect attempt:
 *   - any host, "/"              -> p2c pool, max_body 256 bytes
 *   - "hash.test", "/"           -> hash pool on cookie "sid"
 *   - "*.hdr.test", "/"          -> hash pool on header "X-User"
 *   - "empty.test", "/"          -> pool without instances (503)
 * Each input is written on a fresh connection, the write side is shut down,
 * and the answer is read until the router closes. Checks: the router closes
 * within READ_TIMEOUT_MS (a hang is a bug: no backend can answer, so every
 * request ends in a local answer); a non-empty answer starts with a
 * well-formed 4xx/5xx response head carrying X-Request-Id; access log lines
 * stay on one line. At exit the router is freed, so that LeakSanitizer sees
 * anything it failed to release. */
#include "compat/http_stream.h"
#include "router/router.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define READ_TIMEOUT_MS 5000
#define ANSWER_MAX (256 * 1024) /* answer bytes kept for the checks */
#define BACKEND "web-1"

#define CHECK(cond)                                                                    \
	do {                                                                           \
		if (!(cond)) {                                                         \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                       \
		}                                                                      \
	} while (0)

/* libFuzzer gives a target no context pointer: the router lives here. */
static struct {
	uv_loop_t loop; /* the control loop: runs the access log hand-off */
	struct router *router;
	int port;
	int backend_fd; /* bound, never listening: connects are refused */
	char answer[ANSWER_MAX];
} g;

static void on_access(void *ctx, const char *app, const char *instance, const char *line)
{
	CHECK(!strpbrk(line, "\r\n"));
}

static int bind_closed_port(int *fd_out)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	CHECK(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
	*fd_out = fd;
	return ntohs(a.sin_port);
}

static void publish_routes(int backend_port)
{
	struct router_table *t = router_table_new();
	int any = router_table_pool(t, "app", "web", ROUTER_P2C, NULL);
	router_table_backend(t, any, BACKEND, backend_port);
	router_table_route(t, NULL, "/", any, 256);
	int cookie = router_table_pool(t, "hash", "web", ROUTER_HASH, "cookie:sid");
	router_table_backend(t, cookie, BACKEND, backend_port);
	router_table_route(t, "hash.test", "/", cookie, 0);
	int header = router_table_pool(t, "hdr", "web", ROUTER_HASH, "header:X-User");
	router_table_backend(t, header, BACKEND, backend_port);
	router_table_route(t, "*.hdr.test", "/", header, 0);
	int empty = router_table_pool(t, "empty", "web", ROUTER_ROUND_ROBIN, NULL);
	router_table_route(t, "empty.test", "/", empty, 0);
	router_publish(g.router, t);
}

static void stop_router(void)
{
	router_free(g.router);
	uv_run(&g.loop, UV_RUN_DEFAULT);
	CHECK(uv_loop_close(&g.loop) == 0);
	close(g.backend_fd);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	CHECK(uv_loop_init(&g.loop) == 0);
	int backend_port = bind_closed_port(&g.backend_fd);
	struct router_config cfg;
	router_config_defaults(&cfg);
	cfg.loop = &g.loop;
	cfg.listen = "127.0.0.1:0";
	cfg.workers = 1;
	cfg.max_header_bytes = 2048; /* within reach of the fuzzer: 431 */
	cfg.access_cb = on_access;
	char *err = NULL;
	g.router = router_start(&cfg, &err);
	if (!g.router) {
		fprintf(stderr, "fuzz_router_request: %s\n", err);
		exit(1);
	}
	g.port = router_port(g.router);
	CHECK(g.port > 0);
	publish_routes(backend_port);
	/* Wait (bounded) until the worker has taken the table in: an unknown
	 * instance counts as drained once every worker saw the newest table. */
	for (int i = 0; i < 5000 && !router_drained(g.router, "none"); i++)
		usleep(1000);
	CHECK(router_drained(g.router, "none"));
	atexit(stop_router);
	return 0;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sends data, shuts the write side and reads until EOF; returns the answer
 * length, or -1 when the router reset the connection (it may close with
 * unread input). Aborts when the router does not close in time. */
static ssize_t exchange(const uint8_t *data, size_t size)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0);
	struct timeval tv = {.tv_sec = 0, .tv_usec = 200 * 1000};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g.port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	CHECK(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	int64_t deadline = now_ms() + READ_TIMEOUT_MS;
	size_t off = 0;
	bool reset = false;
	while (off < size && !reset) {
		ssize_t n = send(fd, data + off, size - off, MSG_NOSIGNAL);
		if (n > 0)
			off += (size_t)n;
		else if (n < 0 && (errno == EAGAIN || errno == EINTR) && now_ms() < deadline)
			continue;
		else
			reset = true; /* the router closed early (EPIPE/ECONNRESET) */
	}
	shutdown(fd, SHUT_WR);
	size_t got = 0;
	for (;;) {
		char tmp[16384];
		ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
		if (n > 0) {
			size_t keep = got + (size_t)n <= ANSWER_MAX ? (size_t)n : ANSWER_MAX - got;
			memcpy(g.answer + got, tmp, keep);
			got += keep;
			continue;
		}
		if (n == 0)
			break;
		if (errno == ECONNRESET) {
			reset = true;
			break;
		}
		if ((errno == EAGAIN || errno == EINTR) && now_ms() < deadline)
			continue;
		fprintf(stderr, "router did not close the connection within %d ms "
				"(%zu of %zu bytes sent, %zu answer bytes)\n",
			READ_TIMEOUT_MS, off, size, got);
		abort();
	}
	close(fd);
	return reset && !got ? -1 : (ssize_t)got;
}

/* ---- checking the first response of the answer ---- */

struct first {
	bool head;
	int status;
	bool request_id, length;
};

static int first_head(void *ctx, struct http_head *h)
{
	struct first *f = ctx;
	if (f->head)
		return -1;
	f->head = true;
	f->status = h->status;
	f->request_id = http_head_get(h, "X-Request-Id") != NULL;
	f->length = h->content_length >= 0;
	return -1; /* the head is all we check */
}

static int first_body(void *ctx, const char *data, size_t len)
{
	return 0;
}

static void first_complete(void *ctx)
{
}

static const struct http_stream_cbs first_cbs = {first_head, first_body, first_complete};

static void check_answer(const char *buf, size_t len)
{
	struct first f = {0};
	struct http_stream *s = http_stream_new(HTTP_KIND_RESPONSE, 64 * 1024, &first_cbs, &f);
	size_t used;
	int rc = http_stream_feed(s, buf, len, &used);
	if (rc == HTTP_STREAM_OK && !f.head)
		rc = http_stream_finish(s);
	http_stream_free(s);
	if (!f.head || f.status < 400 || f.status > 599 || !f.request_id || !f.length) {
		fprintf(stderr, "unexpected answer (rc %d, status %d):\n%.*s\n", rc, f.status,
			(int)(len > 2048 ? 2048 : len), buf);
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Each input starts from healthy: ejection state would otherwise make
	 * a crash depend on the inputs run before it. */
	router_backend_healthy(g.router, BACKEND);
	ssize_t got = exchange(data, size);
	if (got > 0)
		check_answer(g.answer, (size_t)got);
	uv_run(&g.loop, UV_RUN_NOWAIT); /* access log lines */
	return 0;
}
