/* httpc.c: the libcurl adapter (see httpc.h). libcurl tells us which
 * sockets to watch and when to time out; uv_poll and a uv_timer deliver
 * those events back with curl_multi_socket_action. */
#include "compat/httpc.h"
#include "core/proc.h"
#include "core/util.h"
#include <curl/curl.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct httpc_req;

struct httpc {
	uv_loop_t *loop;
	CURLM *multi;
	uv_timer_t *timer; /* heap: closed asynchronously */
	int running;
	struct httpc_req *reqs; /* in flight */
};

struct httpc_req {
	struct httpc *c;
	struct httpc_req *next, *prev;
	CURL *easy;
	struct curl_slist *headers;
	char *body;
	httpc_done_cb cb;
	void *ctx;
	char errbuf[CURL_ERROR_SIZE];
};

struct httpc_sock {
	uv_poll_t poll;
	curl_socket_t fd;
	struct httpc *c;
};

static void req_free(struct httpc_req *r)
{
	struct httpc *c = r->c;
	if (r->prev)
		r->prev->next = r->next;
	else
		c->reqs = r->next;
	if (r->next)
		r->next->prev = r->prev;
	curl_easy_cleanup(r->easy);
	curl_slist_free_all(r->headers);
	free(r->body);
	free(r);
}

static size_t discard(char *data, size_t size, size_t n, void *ctx)
{
	return size * n;
}

static void global_init(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void check_done(struct httpc *c)
{
	CURLMsg *m;
	int left;
	while ((m = curl_multi_info_read(c->multi, &left))) {
		if (m->msg != CURLMSG_DONE)
			continue;
		struct httpc_req *r = NULL;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		long status = 0;
		curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
		CURLcode rc = m->data.result;
		curl_multi_remove_handle(c->multi, m->easy_handle);
		if (rc == CURLE_OK)
			r->cb(r->ctx, (int)status, NULL);
		else
			r->cb(r->ctx, -1, r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc));
		req_free(r);
	}
}

static void on_poll(uv_poll_t *p, int status, int events)
{
	struct httpc_sock *s = p->data;
	int flags = 0;
	if (status < 0)
		flags = CURL_CSELECT_ERR;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	struct httpc *c = s->c;
	curl_multi_socket_action(c->multi, s->fd, flags, &c->running);
	check_done(c);
}

static void on_timeout(uv_timer_t *t)
{
	struct httpc *c = t->data;
	curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &c->running);
	check_done(c);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct httpc *c = userp;
	struct httpc_sock *s = socketp;
	if (what == CURL_POLL_REMOVE) {
		if (s) {
			uv_poll_stop(&s->poll);
			uv_close((uv_handle_t *)&s->poll, (uv_close_cb)free);
			curl_multi_assign(c->multi, fd, NULL);
		}
		return 0;
	}
	if (!s) {
		s = xcalloc(1, sizeof(*s));
		s->fd = fd;
		s->c = c;
		uv_poll_init_socket(c->loop, &s->poll, fd);
		s->poll.data = s;
		curl_multi_assign(c->multi, fd, s);
	}
	int events = 0;
	if (what & CURL_POLL_IN)
		events |= UV_READABLE;
	if (what & CURL_POLL_OUT)
		events |= UV_WRITABLE;
	uv_poll_start(&s->poll, events, on_poll);
	return 0;
}

static int timer_cb(CURLM *multi, long ms, void *userp)
{
	struct httpc *c = userp;
	if (ms < 0)
		uv_timer_stop(c->timer);
	else
		uv_timer_start(c->timer, on_timeout, (uint64_t)ms, 0);
	return 0;
}

/* Connections are not inherited by the processes the daemon starts. */
static curl_socket_t open_socket(void *ctx, curlsocktype purpose, struct curl_sockaddr *a)
{
	return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

struct httpc *httpc_new(uv_loop_t *loop)
{
	static uv_once_t once = UV_ONCE_INIT;
	uv_once(&once, global_init);
	struct httpc *c = xcalloc(1, sizeof(*c));
	c->loop = loop;
	c->multi = curl_multi_init();
	if (!c->multi)
		abort();
	proc_cloexec_from(3); /* its wake-up socket pair is not */
	c->timer = xcalloc(1, sizeof(*c->timer));
	uv_timer_init(loop, c->timer);
	c->timer->data = c;
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
	return c;
}

void httpc_free(struct httpc *c)
{
	if (!c)
		return;
	while (c->reqs) {
		curl_multi_remove_handle(c->multi, c->reqs->easy);
		req_free(c->reqs);
	}
	curl_multi_cleanup(c->multi);
	uv_close((uv_handle_t *)c->timer, (uv_close_cb)free);
	free(c);
}

int httpc_post(struct httpc *c, const char *url, const char *const *headers, const char *body,
	       size_t len, int64_t timeout_ms, httpc_done_cb cb, void *ctx)
{
	struct httpc_req *r = xcalloc(1, sizeof(*r));
	r->c = c;
	r->cb = cb;
	r->ctx = ctx;
	r->easy = curl_easy_init();
	if (!r->easy) {
		free(r);
		return -ENOMEM;
	}
	r->body = xstrndup(body, len);
	for (const char *const *h = headers; h && *h; h++)
		r->headers = curl_slist_append(r->headers, *h);
	r->headers = curl_slist_append(r->headers, "Expect:");
	curl_easy_setopt(r->easy, CURLOPT_URL, url);
	curl_easy_setopt(r->easy, CURLOPT_POST, 1L);
	curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->body);
	curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers);
	curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(r->easy, CURLOPT_OPENSOCKETFUNCTION, open_socket);
	curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(r->easy, CURLOPT_USERAGENT, "paasops");
	curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
	curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, discard);
	r->next = c->reqs;
	if (c->reqs)
		c->reqs->prev = r;
	c->reqs = r;
	if (curl_multi_add_handle(c->multi, r->easy) != CURLM_OK) {
		req_free(r);
		return -EIO;
	}
	return 0;
}
