/* router_proxy.c: the request path of a router worker. One client
 * connection carries one request at a time (pipelined requests wait, so
 * answers stay in order); each request is matched to a route, balanced to a
 * ready instance, and streamed both ways through a pooled keep-alive backend
 * connection with backpressure. Upgrades become a raw tunnel.
 *
 * A client accepted on the HTTPS listener talks through a TLS session
 * (c->tls) that owns its socket; a plain client has c->tls NULL and uses
 * c->tcp. The few places that read, write or close a client branch on
 * that pointer, so plain connections keep their syscalls and buffers.
 *
 * Lifetimes: a client owns its current request; a request points at its
 * upstream and the upstream back at the request while attached. A pooled
 * upstream belongs to the worker's idle list. Every struct frees itself in
 * the close callback of its last handle. */
#include "compat/http_stream.h"
#include "compat/tls.h"
#include "core/log.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "router/router_internal.h"
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define OUT_HIGH_WATER (1024 * 1024) /* stop reading the other side above this */
#define REPLAY_MAX (64 * 1024)       /* body bytes kept to retry a request */
#define WRITE_NOW (256 * 1024)       /* output this large is not held for the loop turn's end */
#define WRITE_DIRECT (16 * 1024)     /* body pieces this large are written from the read buffer */
#define RT_MAINTENANCE_RETRY_AFTER "120" /* seconds, in a maintenance 503 */

enum framing { FR_NONE, FR_LENGTH, FR_CHUNKED, FR_CLOSE };

/* A connection's one timeout, moved at every request without touching the
 * loop's timer heap: the uv timer stays armed for the earliest deadline it
 * was given, and when it fires for a deadline that has since moved later
 * it is armed again for the new one. Only a deadline earlier than the armed
 * one restarts the timer. timer.data is the connection; `expired` gets the
 * timer once `due` has passed. */
struct deadline {
	uv_timer_t timer;     /* first: deadline_tick finds the struct from it */
	uint64_t due;         /* loop time in ms; 0: none */
	uint64_t armed;       /* when the uv timer fires; 0: not armed */
	uv_timer_cb expired;
};

struct rt_req;

struct rt_client {
	struct rt_worker *w;
	uv_tcp_t tcp;            /* plain clients only */
	struct tls_stream *tls;  /* HTTPS clients: owns their socket; NULL for plain */
	struct deadline timer;
	int open;
	struct http_stream *parser;
	struct strbuf pending; /* read but not yet parsed (pipelined requests) */
	struct strbuf out;     /* response bytes not yet handed to uv_write */
	struct rt_req *req;
	char ip[INET6_ADDRSTRLEN];
	bool closing, reading, close_after, tunnel, parse_error;
	bool tls_open; /* the handshake finished */
	bool pending_full; /* reading stopped for the size of pending */
	bool dirty;     /* on the worker's list of output to write this turn */
	size_t writing; /* bytes in flight in uv_write */
	struct rt_client *next, *prev;
	struct rt_client *next_dirty;
};

struct rt_upstream {
	struct rt_worker *w;
	struct rt_backend *be;
	uv_tcp_t tcp;
	uv_connect_t creq;
	struct deadline timer;
	int open;
	struct http_stream *parser;
	struct rt_req *req;
	struct strbuf out;
	size_t writing;
	bool connected, closing, reused, got_bytes;
	bool dirty; /* on the worker's list of output to write this turn */
	struct rt_upstream *next_idle;
	struct rt_upstream *next_dirty;
};

struct rt_req {
	struct rt_client *c;
	struct rt_snapshot *snap;
	const struct rt_route *route;
	struct rt_pool *pool;
	struct rt_backend *be;
	struct rt_upstream *up;
	struct rt_counters *ctr;
	struct rt_req *next_free; /* on the worker's list of spare requests */
	char id[64];
	char method[24];
	char *host, *path;      /* in names, once the target is known */
	struct strbuf names;
	struct strbuf head_out; /* the request head for the backend */
	struct strbuf replay;   /* body bytes sent so far, while <= REPLAY_MAX */
	bool replayable;
	bool chunked_out;
	bool is_head, upgrade, keep_alive;
	bool retry_later; /* a local 503 that says when to come back (maintenance) */
	int minor;
	bool req_done;      /* the client sent the whole request */
	bool resp_started;  /* the client got a response head */
	bool resp_done;
	bool counted;       /* inflight counted on the backend */
	bool backend_keep_alive;
	bool finished;
	int attempts;
	bool new_conn; /* a retry: on a new backend connection, never a pooled one */
	int status;
	const char *local_error; /* answered by the router, not an instance */
	char *local_msg;
	char *location; /* a local redirect's target */
	enum framing fr_client;
	int64_t body_in, max_body;
	int64_t bytes_out;
	uint64_t t0_ns;
	char *hash_key;
};

static void client_close(struct rt_client *c);
static void upstream_resume(struct rt_upstream *u);
static void client_timeout(uv_timer_t *t);
static void client_flush(struct rt_client *c);
static void client_resume(struct rt_client *c);
static void upstream_close(struct rt_upstream *u);
static void upstream_flush(struct rt_upstream *u);
static void req_dispatch(struct rt_req *r);
static void req_send_to(struct rt_req *r, struct rt_backend *be);
static void req_finish(struct rt_req *r);
static void client_process(struct rt_client *c);
static void new_request_id(struct rt_worker *w, char out[static 33]);

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ---- deadlines ---- */

static void deadline_tick(uv_timer_t *t)
{
	struct deadline *d = (struct deadline *)t;
	d->armed = 0;
	if (!d->due)
		return;
	uint64_t now = uv_now(t->loop);
	if (now < d->due) {
		uv_timer_start(t, deadline_tick, d->due - now, 0);
		d->armed = d->due;
		return;
	}
	d->due = 0;
	d->expired(t);
}

static void deadline_init(uv_loop_t *loop, struct deadline *d, void *owner, uv_timer_cb expired)
{
	uv_timer_init(loop, &d->timer);
	d->timer.data = owner;
	d->due = d->armed = 0;
	d->expired = expired;
}

/* The timeout now ends ms from the loop's current time. */
static void deadline_set(struct deadline *d, uint64_t ms)
{
	d->due = uv_now(d->timer.loop) + ms;
	if (!d->armed || d->armed > d->due) {
		uv_timer_start(&d->timer, deadline_tick, ms, 0);
		d->armed = d->due;
	}
}

static void deadline_clear(struct deadline *d)
{
	d->due = 0;
}

/* ---- writes ---- */

struct wbuf {
	uv_write_t req;
	void *owner;
	bool to_client;
	size_t len;
	char data[];
};

static void client_write_done(uv_write_t *wr, int status);
static void upstream_write_done(uv_write_t *wr, int status);

/* allow_now: the caller does not need a completion callback (a client
 * connection that is to close after its last write does). */
static int write_out(uv_stream_t *s, struct strbuf *sb, void *owner, bool to_client, size_t *writing,
		     bool allow_now)
{
	if (!sb->len)
		return 0;
	/* Most writes fit the socket buffer at once: write them now, which
	 * saves a copy and the loop's poll round trip. libuv refuses this
	 * (UV_EAGAIN) while earlier writes are queued, so order is kept. */
	if (*writing == 0 && allow_now) {
		uv_buf_t now = uv_buf_init(sb->buf, (unsigned)sb->len);
		int n = uv_try_write(s, &now, 1);
		if (n < 0 && n != UV_EAGAIN)
			return n;
		if (n > 0)
			strbuf_consume(sb, (size_t)n);
		if (!sb->len) {
			if (sb->alloc > 256 * 1024)
				strbuf_release(sb);
			return 0;
		}
	}
	struct wbuf *b = xmalloc(sizeof(*b) + sb->len);
	memcpy(b->data, sb->buf, sb->len);
	b->len = sb->len;
	b->owner = owner;
	b->to_client = to_client;
	b->req.data = b;
	strbuf_reset(sb);
	if (sb->alloc > 256 * 1024)
		strbuf_release(sb);
	uv_buf_t ub = uv_buf_init(b->data, (unsigned)b->len);
	*writing += b->len;
	int r = uv_write(&b->req, s, &ub, 1, to_client ? client_write_done : upstream_write_done);
	if (r < 0) {
		*writing -= b->len;
		free(b);
	}
	return r;
}

/* ---- clients ---- */

static void client_release(struct rt_client *c)
{
	if (--c->open > 0)
		return;
	struct rt_worker *w = c->w;
	atomic_fetch_sub_explicit(&w->n_clients, 1, memory_order_relaxed);
	if (c->prev)
		c->prev->next = c->next;
	else
		w->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	http_stream_free(c->parser);
	strbuf_release(&c->pending);
	strbuf_release(&c->out);
	free(c);
}

static void client_closed(uv_handle_t *h)
{
	client_release(h->data);
}

static void client_tls_closed(void *data)
{
	client_release(data);
}

static void req_free(struct rt_req *r)
{
	if (!r)
		return;
	if (r->counted) {
		atomic_fetch_sub_explicit(&r->be->inflight, 1, memory_order_relaxed);
		r->counted = false;
	}
	if (r->ctr)
		RT_ADD(r->ctr->inflight, -1);
	rt_backend_unref(r->be);
	rt_snapshot_unref(r->snap);
	free(r->local_msg);
	free(r->location);
	free(r->hash_key);
	/* Kept for the next request with its buffers, unless they grew big. */
	struct rt_worker *w = r->c->w;
	if (w->n_free_reqs < RT_SPARE_REQS && r->head_out.alloc <= 4096 && r->replay.alloc <= 4096 &&
	    r->names.alloc <= 4096) {
		r->next_free = w->free_reqs;
		w->free_reqs = r;
		w->n_free_reqs++;
		return;
	}
	strbuf_release(&r->names);
	strbuf_release(&r->head_out);
	strbuf_release(&r->replay);
	free(r);
}

/* A request with every field cleared, from the worker's spares if it has one. */
static struct rt_req *req_new(struct rt_worker *w)
{
	struct rt_req *r = w->free_reqs;
	if (!r) {
		r = xcalloc(1, sizeof(*r));
		strbuf_init(&r->names, 256);
		strbuf_init(&r->head_out, 512);
		strbuf_init(&r->replay, 0);
		return r;
	}
	w->free_reqs = r->next_free;
	w->n_free_reqs--;
	struct strbuf names = r->names, head_out = r->head_out, replay = r->replay;
	memset(r, 0, sizeof(*r));
	r->names = names;
	r->head_out = head_out;
	r->replay = replay;
	strbuf_reset(&r->names);
	strbuf_reset(&r->head_out);
	strbuf_reset(&r->replay);
	return r;
}

void rt_proxy_worker_free(struct rt_worker *w)
{
	while (w->free_reqs) {
		struct rt_req *r = w->free_reqs;
		w->free_reqs = r->next_free;
		strbuf_release(&r->names);
		strbuf_release(&r->head_out);
		strbuf_release(&r->replay);
		free(r);
	}
	w->n_free_reqs = 0;
}

static void client_close(struct rt_client *c)
{
	if (c->closing)
		return;
	c->closing = true;
	struct rt_req *r = c->req;
	if (r) {
		if (r->up) {
			r->up->req = NULL;
			upstream_close(r->up);
			r->up = NULL;
		}
		if (!r->resp_done && r->status == 0)
			r->status = 499; /* the client went away first */
		req_finish(r);
		c->req = NULL;
		req_free(r);
	}
	if (c->tls)
		tls_stream_close(c->tls, client_tls_closed);
	else
		uv_close((uv_handle_t *)&c->tcp, client_closed);
	uv_close((uv_handle_t *)&c->timer.timer, client_closed);
}

/* len bytes of c's output were taken by the socket (or failed). */
static void client_written(struct rt_client *c, size_t len, int status)
{
	c->writing -= len;
	if (c->closing)
		return;
	if (status < 0) {
		client_close(c);
		return;
	}
	if (c->writing == 0 && !c->out.len && c->close_after && !c->req) {
		client_close(c);
		return;
	}
	/* Backpressure released: let the upstream send more. */
	if (c->req && c->req->up && c->writing < OUT_HIGH_WATER / 2)
		upstream_resume(c->req->up);
}

static void client_write_done(uv_write_t *wr, int status)
{
	struct wbuf *b = wr->data;
	struct rt_client *c = b->owner;
	size_t len = b->len;
	free(b);
	client_written(c, len, status);
}

/* ---- TLS clients ---- */

/* One write through a client's TLS session: who and how many bytes. */
struct tls_piece {
	struct rt_client *c;
	size_t len;
};

static void client_tls_written(struct tls_stream *s, int status, void *arg)
{
	struct tls_piece *p = arg;
	struct rt_client *c = p->c;
	size_t len = p->len;
	free(p);
	client_written(c, len, status);
}

/* Encrypts all of c->out and queues it on the socket; c->writing counts
 * the plaintext until the socket took its records. 0 or a libuv error. */
static int client_tls_write(struct rt_client *c)
{
	if (!c->tls_open)
		return 0; /* nothing is answered before the handshake */
	struct tls_piece *p = xmalloc(sizeof(*p));
	p->c = c;
	p->len = c->out.len;
	uv_buf_t b = uv_buf_init(c->out.buf, (unsigned)c->out.len);
	int r = c->writing == 0 ? tls_stream_write_now(c->tls, &b, 1, client_tls_written, p)
				: tls_stream_write(c->tls, &b, 1, client_tls_written, p);
	if (r != 0)
		free(p); /* an error, or all of it went out at once */
	if (r < 0)
		return r;
	if (r == 0)
		c->writing += p->len;
	strbuf_reset(&c->out);
	if (c->out.alloc > 256 * 1024)
		strbuf_release(&c->out);
	return 0;
}

/* Writes c->out now; a client that is to close after its answer closes
 * once all of it is written (here, or in client_write_done). */
static void client_write(struct rt_client *c)
{
	if (c->closing)
		return;
	if (c->out.len && (c->tls ? client_tls_write(c)
				  : write_out((uv_stream_t *)&c->tcp, &c->out, c, true, &c->writing, true)) < 0) {
		client_close(c);
		return;
	}
	if (c->writing == 0 && !c->out.len && c->close_after && !c->req)
		client_close(c);
}

/* Output is written once per loop turn, after every ready socket has been
 * read (rt_proxy_flush, from the worker's check and prepare handles): a peer is woken
 * once for all the requests or answers of a turn instead of once for each,
 * and finds them together. Large output goes at once, which keeps what is
 * buffered per connection small. */
static void client_flush(struct rt_client *c)
{
	if (c->closing || !c->out.len)
		return;
	if (c->out.len >= WRITE_NOW) {
		client_write(c);
		return;
	}
	if (!c->dirty) {
		c->dirty = true;
		c->next_dirty = c->w->dirty_clients;
		c->w->dirty_clients = c;
	}
}

/* Closes c once its answer is written: at once when nothing is left. */
static void client_close_when_written(struct rt_client *c)
{
	c->close_after = true;
	if (c->out.len)
		client_flush(c);
	else if (c->writing == 0)
		client_close(c);
}

/* Answers a request locally: a short text body naming the problem and the
 * request id, added to c->out. The caller flushes it once the request is
 * detached from the client (req_end): a failed write closes the client,
 * which would end c->req under the caller's feet. */
static void local_response(struct rt_client *c, struct rt_req *r, int status, const char *msg,
			   bool close)
{
	/* A head refused while parsing has no request yet, but its error
	 * page still gets an id to quote. */
	char fresh[64];
	if (!r)
		new_request_id(c->w, fresh);
	const char *id = r ? r->id : fresh;
	char body[600];
	int n = snprintf(body, sizeof(body), "%d %s\nrequest id: %s\n", status, msg, id);
	if (n < 0 || (size_t)n >= sizeof(body))
		n = (int)sizeof(body) - 1;
	strbuf_addf(&c->out,
		    "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
		    "X-Request-Id: %s\r\n%sConnection: %s\r\n",
		    status, http_reason(status), n, id,
		    r && r->retry_later ? "Retry-After: " RT_MAINTENANCE_RETRY_AFTER "\r\n" : "",
		    close ? "close" : "keep-alive");
	if (r && r->location)
		strbuf_addf(&c->out, "Location: %s\r\n", r->location);
	strbuf_adds(&c->out, "\r\n");
	if (!r || !r->is_head)
		strbuf_add(&c->out, body, (size_t)n);
	if (r) {
		r->status = status;
		r->resp_started = true;
		r->bytes_out += n;
	}
	if (close)
		c->close_after = true;
}

/* Counts the request and frees it; c is its client, which moves on without it. */
static void req_end(struct rt_client *c, struct rt_req *r)
{
	req_finish(r);
	c->req = NULL;
	req_free(r);
}

static void client_timeout(uv_timer_t *t)
{
	struct rt_client *c = t->data;
	if (c->closing)
		return;
	if (c->tls && !c->tls_open) {
		/* The handshake did not finish within the header timeout. */
		RT_ADD(c->w->tls_handshake_failures, 1);
		client_close(c);
		return;
	}
	if (c->req || http_stream_in_message(c->parser) || c->pending.len) {
		if (!c->req || !c->req->resp_started) {
			/* Slowloris: the head did not arrive in time. */
			c->close_after = true;
			local_response(c, c->req, 408, "request headers not received in time", true);
			if (c->req) {
				struct rt_req *r = c->req;
				if (r->up) {
					r->up->req = NULL;
					upstream_close(r->up);
					r->up = NULL;
				}
				req_end(c, r);
			}
			client_flush(c);
			return;
		}
	}
	client_close(c);
}

/* ---- request head handling ---- */

/* The next comma-separated token of a header value after *p (trimmed of
 * blanks), or NULL at the end; *p moves past it. */
static const char *next_token(const char **p, size_t *len)
{
	const char *s = *p;
	while (*s == ' ' || *s == ',' || *s == '\t')
		s++;
	if (!*s)
		return NULL;
	const char *e = s;
	while (*e && *e != ',')
		e++;
	*p = e;
	while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	*len = (size_t)(e - s);
	return s;
}

/* The transfer codings of a response other than chunked ("gzip" of
 * "gzip, chunked"), comma-separated into out; false when there are none. */
static bool other_codings(const struct http_head *h, struct strbuf *out)
{
	size_t n;
	for (size_t k = 0; k < h->n_headers; k++) {
		if (h->ids[k] != HH_TRANSFER_ENCODING)
			continue;
		const char *v = h->headers[k].value;
		for (const char *t; (t = next_token(&v, &n));) {
			if (n == 7 && !strncasecmp(t, "chunked", 7))
				continue;
			if (out->len)
				strbuf_adds(out, ", ");
			strbuf_add(out, t, n);
		}
	}
	return out->len > 0;
}

/* Whether name is listed in a Connection header value. */
static bool in_connection_list(const char *conn, const char *name)
{
	size_t nl = strlen(name), n;
	for (const char *t; conn && (t = next_token(&conn, &n));)
		if (n == nl && strncasecmp(t, name, nl) == 0)
			return true;
	return false;
}

/* Whether a Connection value names anything besides keep-alive and
 * upgrade (hop-by-hop anyway): only then is each header checked against it.
 * "close" counts: a header may be named Close. */
static bool lists_other_headers(const char *conn)
{
	size_t n;
	for (const char *t; conn && (t = next_token(&conn, &n));)
		if (!(n == 10 && strncasecmp(t, "keep-alive", 10) == 0) &&
		    !(n == 7 && strncasecmp(t, "upgrade", 7) == 0))
			return true;
	return false;
}

/* Hop-by-hop (RFC 9110 7.6.1): the fixed set, and whatever Connection
 * lists, except the message's framing and Host: a Connection naming
 * Content-Length must not leave a body unframed on the next hop (which
 * would read it as another request). */
static bool is_hop(enum http_hdr id, const char *name, const char *conn_extra)
{
	switch (id) {
	case HH_CONNECTION:
	case HH_KEEP_ALIVE:
	case HH_PROXY_CONNECTION:
	case HH_TE:
	case HH_TRAILER:
	case HH_TRANSFER_ENCODING:
	case HH_UPGRADE:
		return true;
	case HH_CONTENT_LENGTH:
	case HH_HOST:
		return false;
	default:
		return conn_extra && in_connection_list(conn_extra, name);
	}
}

/* Header lines are built without printf: it was the costliest part of
 * writing a head. */
static void add_header(struct strbuf *o, const char *name, const char *value)
{
	size_t nl = strlen(name), vl = strlen(value);
	strbuf_grow(o, nl + vl + 4);
	char *p = o->buf + o->len;
	memcpy(p, name, nl);
	p += nl;
	*p++ = ':';
	*p++ = ' ';
	memcpy(p, value, vl);
	p += vl;
	*p++ = '\r';
	*p++ = '\n';
	*p = '\0';
	o->len += nl + vl + 4;
}

/* v in decimal, zero-padded to at least width digits. */
static void add_digits(struct strbuf *o, uint64_t v, int width)
{
	char digits[24], *p = digits + sizeof(digits);
	do {
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v || digits + sizeof(digits) - p < width);
	strbuf_add(o, p, (size_t)(digits + sizeof(digits) - p));
}

static void add_length(struct strbuf *o, int64_t n)
{
	strbuf_adds(o, "Content-Length: ");
	add_digits(o, n < 0 ? 0 : (uint64_t)n, 1);
	strbuf_adds(o, "\r\n");
}

static bool sane_request_id(const char *v)
{
	size_t n = strlen(v);
	if (n == 0 || n > 128)
		return false;
	for (const char *p = v; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.' && *p != ':')
			return false;
	return true;
}

/* 32 lowercase hex digits from two random words, NUL-terminated. */
static void new_request_id(struct rt_worker *w, char out[static 33])
{
	static const char hex[] = "0123456789abcdef";
	uint64_t words[2] = {rt_rand(w), rt_rand(w)};
	char *p = out;
	for (int k = 0; k < 2; k++)
		for (int shift = 60; shift >= 0; shift -= 4)
			*p++ = hex[(words[k] >> shift) & 15];
	*p = '\0';
}

static bool has_bad_chars(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p == '\r' || *p == '\n' || *p == '\0')
			return true;
	return false;
}

/* A Host value (or an absolute-form target's authority) as RFC 9110
 * section 7.2 allows it: uri-host [ ":" port ], the host a reg-name, an
 * IPv4 address or a bracketed IPv6 literal; no user info, path or blanks. */
static bool host_ok(const char *h, size_t len)
{
	size_t k = 0;
	if (len && h[0] == '[') {
		for (k = 1; k < len && h[k] != ']'; k++)
			if (!isxdigit((unsigned char)h[k]) && h[k] != ':' && h[k] != '.')
				return false;
		if (k == len)
			return false;
		k++;
	} else {
		for (; k < len && h[k] != ':'; k++) {
			unsigned char ch = (unsigned char)h[k];
			if (!isalnum(ch) && (!ch || !strchr("-._~%!$&'()*+,;=", ch)))
				return false;
		}
	}
	if (k == len)
		return true;
	if (h[k] != ':')
		return false;
	for (k++; k < len; k++)
		if (!isdigit((unsigned char)h[k]))
			return false;
	return true;
}

/* Extracts the value of cookie `name` from a Cookie header; caller frees. */
static char *cookie_value(const char *cookies, const char *name)
{
	if (!cookies)
		return NULL;
	size_t nl = strlen(name);
	const char *p = cookies;
	while (*p) {
		while (*p == ' ' || *p == ';')
			p++;
		if (strncmp(p, name, nl) == 0 && p[nl] == '=') {
			const char *v = p + nl + 1;
			size_t vl = strcspn(v, ";");
			return xstrndup(v, vl);
		}
		p += strcspn(p, ";");
	}
	return NULL;
}

/* The Connection value to check each header against (see
 * lists_other_headers), every Connection line joined; NULL when there is
 * nothing beyond close/keep-alive/upgrade. Points into h or into tmp. */
static const char *connection_extra(const struct http_head *h, struct strbuf *tmp)
{
	const char *conn = h->first[HH_CONNECTION];
	if (h->count[HH_CONNECTION] > 1) {
		for (size_t k = 0; k < h->n_headers; k++) {
			if (h->ids[k] != HH_CONNECTION)
				continue;
			strbuf_adds(tmp, h->headers[k].value);
			strbuf_addc(tmp, ',');
		}
		conn = tmp->buf;
	}
	return lists_other_headers(conn) ? conn : NULL;
}

/* A route that wants HTTPS answers plain requests with a 308 to the same
 * host and target on the HTTPS listener (its port unless 443): 308 keeps
 * the method and body, where 301 would let a client turn POST into GET. */
static int redirect_to_https(struct rt_client *c, struct rt_req *r, const struct http_head *h)
{
	int port = c->w->r->https_port;
	char p[16] = "";
	if (port > 0 && port != 443)
		snprintf(p, sizeof(p), ":%d", port);
	/* OPTIONS * names no path: the site's root stands for it. */
	r->location = xasprintf("https://%s%s%s", r->host, p, strcmp(r->path, "*") ? r->path : "/");
	r->status = 308;
	r->local_msg = xasprintf("this site is served over HTTPS: %s", r->location);
	return h->content_length > 0 || h->chunked ? -1 : 0;
}

static int on_req_head(void *ctx, struct http_head *h)
{
	struct rt_client *c = ctx;
	struct rt_worker *w = c->w;
	struct rt_req *r = req_new(w);
	c->req = r;
	r->c = c;
	r->t0_ns = now_ns();
	r->replayable = true;
	strlcpy_s(r->method, h->method, sizeof(r->method));
	r->is_head = strcmp(h->method, "HEAD") == 0;
	r->minor = h->minor;
	/* After an upgrade request llhttp reads the rest of the connection as
	 * another protocol: unless a 101 turns it into a tunnel, it ends with
	 * this answer. */
	r->keep_alive = h->keep_alive && !h->upgrade;
	r->snap = w->snap;
	if (r->snap)
		rt_snapshot_ref(r->snap);
	deadline_clear(&c->timer);

	const char *rid = h->first[HH_X_REQUEST_ID];
	if (rid && sane_request_id(rid))
		strlcpy_s(r->id, rid, sizeof(r->id));
	else
		new_request_id(w, r->id);

	/* Framing and target checks; llhttp already refuses CL with TE,
	 * differing repeated CLs, bad chunk sizes and bare CR/LF. */
	for (size_t k = 0; k < h->n_headers; k++) {
		if (has_bad_chars(h->headers[k].value)) {
			r->local_error = "malformed header value";
			break;
		}
	}
	if (!r->local_error && h->major != 1) {
		/* HTTP/2 and later are not spoken in this form; HTTP/0.9 never parses. */
		r->status = 505;
		r->keep_alive = false;
		r->local_msg = xasprintf("HTTP/%d.%d is not supported; use HTTP/1.1", h->major, h->minor);
		return h->content_length > 0 || h->chunked ? -1 : 0;
	}
	const char *url = h->url.buf;
	const char *host = h->first[HH_HOST];
	const char *te = h->first[HH_TRANSFER_ENCODING];
	const char *target_host = NULL; /* from an absolute-form target */
	size_t target_host_len = 0;
	if (r->local_error) {
	} else if (te && h->count[HH_CONTENT_LENGTH]) {
		r->local_error = "both Content-Length and Transfer-Encoding";
	} else if (h->count[HH_HOST] > 1) {
		r->local_error = "more than one Host header";
	} else if (strcmp(h->method, "CONNECT") == 0) {
		r->local_error = "CONNECT is not supported";
	} else if (strchr(url, '#')) {
		r->local_error = "malformed request target (a fragment)";
	} else if (url[0] != '/' && !(url[0] == '*' && url[1] == '\0')) {
		/* absolute-form: http://host/path; its authority is the host */
		const char *p = NULL;
		if (!strncasecmp(url, "http://", 7))
			p = url + 7;
		else if (!strncasecmp(url, "https://", 8))
			p = url + 8;
		if (!p) {
			r->local_error = "malformed request target";
		} else {
			target_host = p;
			target_host_len = strcspn(p, "/?");
			url = p[target_host_len] ? p + target_host_len : "/";
			if (!target_host_len || !host_ok(target_host, target_host_len))
				r->local_error = "malformed host in the request target";
		}
	} else if (host && !host_ok(host, strlen(host))) {
		r->local_error = "malformed Host header";
	}
	if (!r->local_error && !host && !target_host && h->minor >= 1)
		r->local_error = "missing Host header";
	if (r->local_error) {
		/* A request refused as malformed ends its connection. */
		r->status = 400;
		r->keep_alive = false;
		return h->content_length > 0 || h->chunked ? -1 : 0;
	}
	if (te && strcasecmp(te, "chunked") != 0) {
		/* The body is re-chunked on its way: any other coding
		 * ("gzip, chunked") would silently vanish. */
		r->status = 501;
		r->keep_alive = false;
		r->local_msg = xasprintf("Transfer-Encoding '%.100s' is not supported", te);
		return -1;
	}
	const char *absolute = target_host;
	size_t absolute_len = target_host_len;
	/* Host (lowercased, without its port) and path, in one buffer. */
	if (!target_host) {
		target_host = host ? host : "";
		target_host_len = strlen(target_host);
	}
	struct strbuf *nb = &r->names;
	strbuf_add(nb, target_host, target_host_len);
	size_t path_at = nb->len + 1;
	strbuf_addc(nb, '\0');
	if (url[0] == '?')
		strbuf_addc(nb, '/'); /* http://host?q is /?q on host */
	strbuf_adds(nb, url);
	r->host = nb->buf;
	r->path = nb->buf + path_at;
	char *hp = r->host;
	if (hp[0] == '[') {
		char *e = strchr(hp, ']');
		if (e)
			e[1] = '\0';
	} else {
		char *colon = strchr(hp, ':');
		if (colon)
			*colon = '\0';
	}
	for (char *p = hp; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	/* "shop.test." is the fully qualified form of "shop.test". */
	size_t hl = strlen(hp);
	if (hl > 1 && hp[hl - 1] == '.' && hp[0] != '[')
		hp[hl - 1] = '\0';

	/* OPTIONS * asks about the server as a whole: the host's root route answers. */
	r->route = rt_route_match(r->snap, r->host, strcmp(r->path, "*") ? r->path : "/");
	if (!r->route) {
		r->status = 404;
		r->local_msg = xasprintf("no route for host '%s'", r->host);
		return h->content_length > 0 || h->chunked ? -1 : 0;
	}
	r->pool = &r->snap->pools[r->route->pool];
	r->ctr = &r->route->stats->w[w->index];
	RT_ADD(r->ctr->inflight, 1);
	r->max_body = r->route->max_body;
	if (r->route->https_redirect && !c->tls)
		return redirect_to_https(c, r, h);
	if (h->content_length > r->max_body) {
		r->status = 413;
		r->local_msg = xasprintf("request body larger than %lld bytes", (long long)r->max_body);
		return -1;
	}
	if (r->pool->maintenance) {
		r->status = 503;
		r->retry_later = true;
		r->local_msg = xasprintf("app '%s' is down for maintenance", r->pool->app);
		return h->content_length > 0 || h->chunked ? -1 : 0;
	}
	if (r->pool->n_be == 0) {
		r->status = 503;
		r->local_msg = xasprintf("no ready instance for app '%s'", r->pool->app);
		return h->content_length > 0 || h->chunked ? -1 : 0;
	}
	if (r->pool->balance == ROUTER_HASH && r->pool->hash_name) {
		if (r->pool->hash_cookie) {
			/* Clients may split their cookies over several headers. */
			for (size_t k = 0; k < h->n_headers && !r->hash_key; k++)
				if (h->ids[k] == HH_COOKIE)
					r->hash_key = cookie_value(h->headers[k].value, r->pool->hash_name);
		} else {
			const char *v = http_head_get(h, r->pool->hash_name);
			r->hash_key = v ? xstrdup(v) : NULL;
		}
	}

	/* The head the backend gets. */
	struct strbuf tmp;
	strbuf_init(&tmp, 0);
	const char *conn_extra = connection_extra(h, &tmp);
	const char *upgrade = h->first[HH_UPGRADE];
	r->upgrade = h->upgrade && upgrade;
	struct strbuf *o = &r->head_out;
	strbuf_adds(o, h->method);
	strbuf_addc(o, ' ');
	strbuf_adds(o, r->path);
	strbuf_adds(o, " HTTP/1.1\r\n");
	/* An absolute-form target's authority replaces Host (RFC 9112
	 * section 3.2.2): the app sees the host it was routed by. */
	char *authority = absolute ? xstrndup(absolute, absolute_len) : NULL;
	for (size_t k = 0; k < h->n_headers; k++) {
		enum http_hdr id = h->ids[k];
		if (id == HH_X_FORWARDED_PROTO || id == HH_X_FORWARDED_HOST || id == HH_X_REQUEST_ID ||
		    id == HH_X_FORWARDED_FOR || (id == HH_HOST && authority) ||
		    is_hop(id, h->headers[k].name, conn_extra))
			continue;
		/* An HTTP/1.0 client's 100-continue is ignored (RFC 9110
		 * section 10.1.1): it could not take the interim answer. */
		if (r->minor == 0 && !strcasecmp(h->headers[k].name, "Expect"))
			continue;
		add_header(o, h->headers[k].name, h->headers[k].value);
	}
	if (authority)
		host = authority;
	if (!host)
		add_header(o, "Host", r->host);
	else if (authority)
		add_header(o, "Host", authority);
	/* Every X-Forwarded-For line the client sent, as one list, then the client. */
	strbuf_adds(o, "X-Forwarded-For: ");
	if (h->count[HH_X_FORWARDED_FOR]) {
		for (size_t k = 0; k < h->n_headers; k++) {
			if (h->ids[k] != HH_X_FORWARDED_FOR || is_hop(HH_X_FORWARDED_FOR, h->headers[k].name, conn_extra))
				continue;
			strbuf_adds(o, h->headers[k].value);
			strbuf_adds(o, ", ");
		}
	}
	strbuf_adds(o, c->ip);
	strbuf_adds(o, c->tls ? "\r\nX-Forwarded-Proto: https\r\n" : "\r\nX-Forwarded-Proto: http\r\n");
	add_header(o, "X-Forwarded-Host", host ? host : r->host);
	add_header(o, "X-Request-Id", r->id);
	strbuf_release(&tmp);
	free(authority);
	if (r->upgrade) {
		strbuf_adds(o, "Connection: upgrade\r\n");
		add_header(o, "Upgrade", upgrade);
	}
	if (h->chunked) {
		r->chunked_out = true;
		strbuf_adds(o, "Transfer-Encoding: chunked\r\n");
	}
	strbuf_adds(o, "\r\n");
	req_dispatch(r);
	return 0;
}

/* Sends body bytes towards the backend (or keeps them until connected). */
static void body_out(struct rt_req *r, const char *data, size_t len)
{
	struct rt_upstream *u = r->up;
	if (r->replayable) {
		if (r->replay.len + len <= REPLAY_MAX)
			strbuf_add(&r->replay, data, len);
		else
			r->replayable = false;
	}
	if (!u)
		return; /* replay holds it; nothing to send to yet */
	struct strbuf *o = &u->out;
	if (r->chunked_out) {
		if (len)
			strbuf_addf(o, "%zx\r\n", len);
		strbuf_add(o, data, len);
		if (len)
			strbuf_adds(o, "\r\n");
	} else {
		strbuf_add(o, data, len);
	}
}

static int on_req_body(void *ctx, const char *data, size_t len)
{
	struct rt_client *c = ctx;
	struct rt_req *r = c->req;
	if (!r)
		return -1;
	r->body_in += (int64_t)len;
	if (r->ctr)
		RT_ADD(r->ctr->bytes_in, len);
	if (r->status && !r->up)
		return 0; /* answered locally: discard */
	if (r->body_in > r->max_body) {
		r->local_msg = xasprintf("request body larger than %lld bytes", (long long)r->max_body);
		r->status = 413;
		return -1;
	}
	if (!r->replayable && !r->up)
		return 0;
	body_out(r, data, len);
	if (!r->replayable && !r->up)
		return 0;
	return 0;
}

static void on_req_complete(void *ctx)
{
	struct rt_client *c = ctx;
	struct rt_req *r = c->req;
	if (!r)
		return;
	r->req_done = true;
	if (r->chunked_out && r->up && !r->status)
		strbuf_adds(&r->up->out, "0\r\n\r\n");
}

static const struct http_stream_cbs req_cbs = {on_req_head, on_req_body, on_req_complete};

/* ---- upstreams ---- */

static void upstream_closed(uv_handle_t *h)
{
	struct rt_upstream *u = h->data;
	if (--u->open > 0)
		return;
	http_stream_free(u->parser);
	strbuf_release(&u->out);
	rt_backend_unref(u->be);
	free(u);
}

static void idle_remove(struct rt_upstream *u)
{
	struct rt_worker *w = u->w;
	for (struct rt_upstream **p = &w->idle; *p; p = &(*p)->next_idle) {
		if (*p == u) {
			*p = u->next_idle;
			u->next_idle = NULL;
			w->n_idle--;
			return;
		}
	}
}

static void upstream_close(struct rt_upstream *u)
{
	if (u->closing)
		return;
	u->closing = true;
	idle_remove(u);
	uv_close((uv_handle_t *)&u->tcp, upstream_closed);
	uv_close((uv_handle_t *)&u->timer.timer, upstream_closed);
}

static void upstream_write_done(uv_write_t *wr, int status)
{
	struct wbuf *b = wr->data;
	struct rt_upstream *u = b->owner;
	u->writing -= b->len;
	free(b);
	if (u->closing)
		return;
	if (status < 0) {
		/* Reads report the failure (reset/EOF) with the right context. */
		return;
	}
	struct rt_req *r = u->req;
	if (r && r->c && u->writing < OUT_HIGH_WATER / 2)
		client_resume(r->c);
}

static void upstream_write(struct rt_upstream *u)
{
	if (!u->connected || u->closing || !u->out.len)
		return;
	write_out((uv_stream_t *)&u->tcp, &u->out, u, false, &u->writing, true);
}

/* Like client_flush: written at the end of the loop turn, or now when large. */
static void upstream_flush(struct rt_upstream *u)
{
	if (!u->connected || u->closing || !u->out.len)
		return;
	if (u->out.len >= WRITE_NOW) {
		upstream_write(u);
		return;
	}
	if (!u->dirty) {
		u->dirty = true;
		u->next_dirty = u->w->dirty_upstreams;
		u->w->dirty_upstreams = u;
	}
}

void rt_proxy_flush(struct rt_worker *w)
{
	/* Requests first: the backends can start on them while the answers go out. */
	while (w->dirty_upstreams) {
		struct rt_upstream *u = w->dirty_upstreams;
		w->dirty_upstreams = u->next_dirty;
		u->dirty = false;
		upstream_write(u);
	}
	while (w->dirty_clients) {
		struct rt_client *c = w->dirty_clients;
		w->dirty_clients = c->next_dirty;
		c->dirty = false;
		client_write(c);
	}
}

static void upstream_timeout(uv_timer_t *t);
static void upstream_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);
static void alloc_buf(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

/* How a request failed before any byte of a response, for try_retry. */
enum retry_kind {
	RETRY_NO,     /* the instance may have acted on it (it answered, or is slow) */
	RETRY_UNSENT, /* no connection: the instance never saw a byte of it */
	RETRY_LOST,   /* the connection reset or closed before any answer */
	RETRY_STALE,  /* as RETRY_LOST, on a pooled connection the instance had let go */
};

/* The pool of the current routing snapshot serving the same app and
 * process as r's (which is from the snapshot of when r began, and may
 * still list instances stopped since); NULL when it is gone. */
static struct rt_pool *current_pool(struct rt_req *r)
{
	struct rt_snapshot *s = r->c->w->snap;
	if (!s || s == r->snap)
		return r->pool;
	for (size_t k = 0; k < s->n_pools; k++)
		if (!strcmp(s->pools[k].app, r->pool->app) && !strcmp(s->pools[k].process, r->pool->process))
			return &s->pools[k];
	return NULL;
}

/* Retries once, on a new connection, when the request can be replayed and
 * sending it again cannot repeat its effect: any request whose connection
 * failed, else an idempotent or bodyless one. Another instance is
 * preferred; the same one is tried again only when a pooled connection
 * went stale under the request. Returns true when a retry started. */
static bool try_retry(struct rt_req *r, enum retry_kind kind)
{
	if (kind == RETRY_NO || r->attempts >= 2 || r->resp_started || !r->replayable || r->upgrade)
		return false;
	bool idempotent = !strcmp(r->method, "GET") || !strcmp(r->method, "HEAD") ||
			  !strcmp(r->method, "OPTIONS") || !strcmp(r->method, "PUT") ||
			  !strcmp(r->method, "DELETE") || !strcmp(r->method, "TRACE");
	if (kind != RETRY_UNSENT && !idempotent && r->replay.len > 0)
		return false;
	struct rt_pool *pool = current_pool(r);
	struct rt_backend *be = pool ? rt_balance_pick(r->c->w, pool, r->hash_key, r->be) : NULL;
	if (!be && kind == RETRY_STALE && pool) {
		for (size_t k = 0; k < pool->n_be; k++)
			if (pool->be[k] == r->be)
				be = r->be; /* still routed: a new connection to it */
	}
	/* With no instance to try, the first failure is the answer. */
	if (!be)
		return false;
	RT_ADD(r->ctr->retries, 1);
	r->new_conn = true;
	req_send_to(r, be);
	return true;
}

/* The upstream failed before a response head: retry (see try_retry), or
 * answer 502/503/504. */
static void upstream_failed(struct rt_req *r, int status, const char *why, bool backend_fault,
			    enum retry_kind retry)
{
	struct rt_upstream *u = r->up;
	if (u) {
		u->req = NULL;
		upstream_close(u);
		r->up = NULL;
	}
	if (backend_fault)
		rt_backend_result(r->be, true, r->ctr);
	if (try_retry(r, retry))
		return;
	struct rt_client *c = r->c;
	if (r->resp_started) {
		/* Mid-response: the client connection is the only signal left. */
		r->status = r->status ? r->status : status;
		client_close(c);
		return;
	}
	free(r->local_msg);
	r->local_msg = xasprintf("%s (instance %s)", why, r->be ? r->be->instance : "?");
	local_response(c, r, status, r->local_msg, true);
	req_end(c, r);
	client_flush(c);
}

static void upstream_connected(uv_connect_t *cr, int status)
{
	struct rt_upstream *u = cr->data;
	if (u->closing)
		return;
	struct rt_req *r = u->req;
	if (status < 0) {
		if (r) {
			RT_ADD(r->ctr->connect_errors, 1);
			char why[128];
			snprintf(why, sizeof(why), "cannot connect to the instance: %s", uv_strerror(status));
			upstream_failed(r, 502, why, true, RETRY_UNSENT);
		} else {
			upstream_close(u);
		}
		return;
	}
	u->connected = true;
	atomic_fetch_add_explicit(&u->w->new_backend_conns, 1, memory_order_relaxed);
	uv_tcp_nodelay(&u->tcp, 1);
	uv_read_start((uv_stream_t *)&u->tcp, alloc_buf, upstream_read);
	if (r) {
		deadline_set(&u->timer, (uint64_t)u->w->r->cfg.response_timeout_ms);
		upstream_flush(u);
	}
}

static struct rt_upstream *upstream_new(struct rt_worker *w, struct rt_backend *be);

/* Attaches the request to a pooled or new connection to its backend and
 * sends the head and whatever body is already here. */
static void req_attach(struct rt_req *r)
{
	struct rt_worker *w = r->c->w;
	struct rt_upstream *u = NULL;
	for (struct rt_upstream *p = r->new_conn ? NULL : w->idle; p; p = p->next_idle) {
		if (p->be == r->be) {
			u = p;
			break;
		}
	}
	if (u) {
		idle_remove(u);
		u->reused = true;
		u->got_bytes = false;
		atomic_fetch_add_explicit(&w->reused_backend_conns, 1, memory_order_relaxed);
	} else {
		u = upstream_new(w, r->be);
	}
	u->req = r;
	r->up = u;
	strbuf_add(&u->out, r->head_out.buf, r->head_out.len);
	if (r->replay.len) {
		bool was = r->replayable;
		r->replayable = false; /* already stored */
		struct strbuf copy = r->replay;
		strbuf_init(&r->replay, 0);
		body_out(r, copy.buf, copy.len);
		r->replay = copy;
		r->replayable = was;
	}
	if (r->req_done && r->chunked_out)
		strbuf_adds(&u->out, "0\r\n\r\n");
	if (u->connected) {
		deadline_set(&u->timer, (uint64_t)w->r->cfg.response_timeout_ms);
		upstream_flush(u);
	}
}

static void req_dispatch(struct rt_req *r)
{
	struct rt_worker *w = r->c->w;
	struct rt_backend *be = rt_balance_pick(w, r->pool, r->hash_key, NULL);
	if (!be) {
		if (r->counted) {
			atomic_fetch_sub_explicit(&r->be->inflight, 1, memory_order_relaxed);
			r->counted = false;
		}
		free(r->local_msg);
		r->local_msg = xasprintf("no ready instance for app '%s'", r->pool->app);
		r->status = 503;
		return;
	}
	req_send_to(r, be);
}

/* Sends r to be (counted in its in-flight requests from now on). */
static void req_send_to(struct rt_req *r, struct rt_backend *be)
{
	if (r->counted)
		atomic_fetch_sub_explicit(&r->be->inflight, 1, memory_order_relaxed);
	rt_backend_ref(be);
	rt_backend_unref(r->be);
	r->be = be;
	atomic_fetch_add_explicit(&be->inflight, 1, memory_order_relaxed);
	r->counted = true;
	r->attempts++;
	req_attach(r);
}

static struct rt_upstream *upstream_new(struct rt_worker *w, struct rt_backend *be)
{
	struct rt_upstream *u = xcalloc(1, sizeof(*u));
	u->w = w;
	u->be = be;
	rt_backend_ref(be);
	strbuf_init(&u->out, 0);
	uv_tcp_init(&w->loop, &u->tcp);
	deadline_init(&w->loop, &u->timer, u, upstream_timeout);
	u->tcp.data = u;
	u->creq.data = u;
	u->open = 2;
	deadline_set(&u->timer, (uint64_t)w->r->cfg.connect_timeout_ms);
	int rc = uv_tcp_connect(&u->creq, &u->tcp, (const struct sockaddr *)&be->addr, upstream_connected);
	if (rc < 0) {
		/* Reported like a refused connection, from the next loop turn. */
		u->connected = false;
	}
	return u;
}

static void upstream_timeout(uv_timer_t *t)
{
	struct rt_upstream *u = t->data;
	struct rt_req *r = u->req;
	if (!r) {
		upstream_close(u); /* idle too long */
		return;
	}
	if (!u->connected) {
		RT_ADD(r->ctr->connect_errors, 1);
		upstream_failed(r, 503, "timed out connecting to the instance", true, RETRY_UNSENT);
		return;
	}
	/* A slow instance may still be working on it: not retried, but
	 * counted towards ejecting it, as a hung instance would keep
	 * taking requests otherwise. */
	upstream_failed(r, 504, "the instance did not answer in time", true, RETRY_NO);
}

/* Response callbacks. */
static int on_resp_head(void *ctx, struct http_head *h)
{
	struct rt_upstream *u = ctx;
	struct rt_req *r = u->req;
	if (!r)
		return -1;
	struct rt_client *c = r->c;
	deadline_clear(&u->timer);
	int st = h->status;
	bool interim = st >= 100 && st < 200 && st != 101;
	if (st == 101 && !r->upgrade)
		return -1; /* an upgrade nobody asked for */
	if (interim && r->minor == 0)
		return 0; /* never to an HTTP/1.0 client (RFC 9110 section 15.2) */
	if (r->minor == 0 && h->count[HH_TRANSFER_ENCODING] && !r->is_head && st != 204 && st != 304) {
		/* An HTTP/1.0 client takes no transfer coding: a gzip-coded
		 * body could not be told from a plain one. */
		struct strbuf codings;
		strbuf_init(&codings, 0);
		bool coded = other_codings(h, &codings);
		strbuf_release(&codings);
		if (coded)
			return -1;
	}
	struct strbuf tmp;
	strbuf_init(&tmp, 0);
	const char *conn_extra = connection_extra(h, &tmp);
	struct strbuf *o = &c->out;
	if (st == 200 && r->minor >= 1)
		strbuf_adds(o, "HTTP/1.1 200 OK\r\n");
	else
		strbuf_addf(o, "HTTP/1.%d %d %s\r\n", r->minor >= 1 ? 1 : 0, st, http_reason(st));
	for (size_t k = 0; k < h->n_headers; k++) {
		enum http_hdr id = h->ids[k];
		if (id == HH_CONTENT_LENGTH || is_hop(id, h->headers[k].name, conn_extra))
			continue;
		add_header(o, h->headers[k].name, h->headers[k].value);
	}
	strbuf_release(&tmp);
	if (interim) {
		strbuf_adds(o, "\r\n");
		return 0;
	}
	r->resp_started = true;
	r->status = st;
	r->backend_keep_alive = h->keep_alive;
	if (!h->first[HH_X_REQUEST_ID])
		add_header(o, "X-Request-Id", r->id);
	if (st == 101) {
		strbuf_adds(o, "Connection: upgrade\r\n");
		add_header(o, "Upgrade", h->first[HH_UPGRADE] ? h->first[HH_UPGRADE] : "");
		strbuf_adds(o, "\r\n");
		r->fr_client = FR_NONE;
		return 0;
	}
	bool no_body = r->is_head || st == 204 || st == 304;
	if (no_body) {
		r->fr_client = FR_NONE;
		if (h->content_length >= 0 && st != 204)
			add_length(o, h->content_length);
	} else if (h->content_length >= 0) {
		r->fr_client = FR_LENGTH;
		add_length(o, h->content_length);
	} else if (r->minor >= 1) {
		r->fr_client = FR_CHUNKED;
		/* Codings the instance applied (gzip) stay named, before the
		 * chunking the router applies. */
		struct strbuf codings;
		strbuf_init(&codings, 0);
		if (h->count[HH_TRANSFER_ENCODING] && other_codings(h, &codings)) {
			strbuf_adds(o, "Transfer-Encoding: ");
			strbuf_add(o, codings.buf, codings.len);
			strbuf_adds(o, ", chunked\r\n");
		} else {
			strbuf_adds(o, "Transfer-Encoding: chunked\r\n");
		}
		strbuf_release(&codings);
	} else {
		r->fr_client = FR_CLOSE;
		c->close_after = true;
	}
	if (!r->keep_alive || c->close_after || c->w->stopping) {
		c->close_after = true;
		strbuf_adds(o, "Connection: close\r\n");
	} else if (r->minor == 0) {
		strbuf_adds(o, "Connection: keep-alive\r\n");
	}
	strbuf_adds(o, "\r\n");
	/* llhttp expects a body after 204/304 when Content-Length says so. */
	return no_body ? 1 : 0;
}

/* A large piece of body goes to the client from where it was read,
 * behind whatever output is waiting, in one writev, when nothing is in
 * flight: the copy into c->out is saved for what the socket takes.
 * *data and *len are left at the part still to buffer. */
static void write_direct(struct rt_client *c, const char **data, size_t *len)
{
	if (c->writing || c->closing || c->tls)
		return;
	uv_buf_t b[2] = {uv_buf_init(c->out.buf, (unsigned)c->out.len),
			 uv_buf_init((char *)*data, (unsigned)*len)};
	int n = c->out.len ? uv_try_write((uv_stream_t *)&c->tcp, b, 2)
			   : uv_try_write((uv_stream_t *)&c->tcp, b + 1, 1);
	if (n <= 0)
		return; /* EAGAIN: buffered; a failure shows on the next write */
	size_t from_out = (size_t)n < c->out.len ? (size_t)n : c->out.len;
	strbuf_consume(&c->out, from_out);
	*data += (size_t)n - from_out;
	*len -= (size_t)n - from_out;
}

static int on_resp_body(void *ctx, const char *data, size_t len)
{
	struct rt_upstream *u = ctx;
	struct rt_req *r = u->req;
	if (!r)
		return -1;
	struct strbuf *o = &r->c->out;
	r->bytes_out += (int64_t)len;
	if (r->fr_client == FR_CHUNKED) {
		strbuf_addf(o, "%zx\r\n", len);
		strbuf_add(o, data, len);
		strbuf_adds(o, "\r\n");
	} else if (r->fr_client != FR_NONE) {
		if (len >= WRITE_DIRECT)
			write_direct(r->c, &data, &len);
		strbuf_add(o, data, len);
	}
	return 0;
}

static void on_resp_complete(void *ctx)
{
	struct rt_upstream *u = ctx;
	struct rt_req *r = u->req;
	if (!r || !r->resp_started)
		return; /* interim 1xx: the caller continues */
	if (r->fr_client == FR_CHUNKED)
		strbuf_adds(&r->c->out, "0\r\n\r\n"); /* trailers are dropped */
	r->resp_done = true;
}

static const struct http_stream_cbs resp_cbs = {on_resp_head, on_resp_body, on_resp_complete};

/* Every read lands in the worker's one read buffer: the read callbacks
 * parse or copy what they need before they return, and libuv never runs
 * two of them at once, so nothing is allocated per read. */
static void alloc_buf(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct rt_worker *w = h->loop->data;
	buf->base = w->rbuf;
	buf->len = RT_READ_BUF;
}

static void tunnel_pipe(struct rt_client *c, struct rt_upstream *u, bool from_client,
			const char *data, size_t len)
{
	if (from_client) {
		strbuf_add(&u->out, data, len);
		upstream_flush(u);
	} else {
		strbuf_add(&c->out, data, len);
		client_flush(c);
	}
}

/* The response finished: count it, pool or close the upstream, and go on
 * with the next pipelined request. */
static void resp_finished(struct rt_upstream *u, bool reusable)
{
	struct rt_req *r = u->req;
	struct rt_client *c = r->c;
	rt_backend_result(r->be, r->status >= 500, r->ctr);
	u->req = NULL;
	r->up = NULL;
	deadline_clear(&u->timer);
	struct rt_worker *w = u->w;
	if (reusable && r->req_done && !u->closing && w->n_idle < RT_POOL_IDLE_MAX && !w->stopping) {
		u->next_idle = w->idle;
		w->idle = u;
		w->n_idle++;
		deadline_set(&u->timer, (uint64_t)w->r->cfg.idle_timeout_ms);
	} else {
		upstream_close(u);
	}
	bool body_left = !r->req_done;
	req_end(c, r);
	client_flush(c);
	if (c->closing)
		return;
	if (body_left)
		c->close_after = true; /* the rest of the body would desynchronise us */
	if (c->close_after) {
		client_close_when_written(c);
		return;
	}
	http_stream_next(c->parser);
	deadline_set(&c->timer, (uint64_t)w->r->cfg.idle_timeout_ms);
	client_process(c);
}

/* More of the answer is to come: acknowledge what arrived now rather than
 * when the delayed-ACK timer runs out. A backend that holds back the short
 * last segment of an answer until its first is acknowledged (Nagle) would
 * otherwise stall for that timer (40 ms) on answers a little over one
 * segment long. The kernel leaves quick-ack mode again by itself. */
static void upstream_quickack(struct rt_upstream *u)
{
	uv_os_fd_t fd;
	int one = 1;
	if (uv_fileno((const uv_handle_t *)&u->tcp, &fd) == 0)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
}

static void upstream_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct rt_upstream *u = s->data;
	struct rt_req *r = u->req;
	if (u->closing) {
		return;
	}
	if (!r) {
		/* Idle pooled connection: any byte or EOF ends it. */
		if (n != 0)
			upstream_close(u);
		return;
	}
	struct rt_client *c = r->c;
	if (c->tunnel) {
		if (n > 0)
			tunnel_pipe(c, u, false, buf->base, (size_t)n);
		if (n < 0) {
			c->close_after = true;
			u->req = NULL;
			r->up = NULL;
			upstream_close(u);
			req_end(c, r);
			client_close_when_written(c);
		}
		return;
	}
	if (n == 0) {
		return;
	}
	if (!u->parser)
		u->parser = http_stream_new(HTTP_KIND_RESPONSE, 64 * 1024, &resp_cbs, u);
	int rc;
	size_t used = 0;
	const char *data = buf->base;
	size_t left = n > 0 ? (size_t)n : 0;
	if (n < 0) {
		if (!r->resp_started && !u->got_bytes) {
			/* Reset or closed before any response: a stale pooled
			 * connection or a dying instance. */
			upstream_failed(r, 502, n == UV_EOF ? "the instance closed the connection" : "the instance reset the connection", !u->reused,
					u->reused ? RETRY_STALE : RETRY_LOST);
			return;
		}
		rc = http_stream_finish(u->parser);
		if (rc == HTTP_STREAM_PAUSED && r->resp_done) {
			resp_finished(u, false);
			return;
		}
		upstream_failed(r, 502, "the instance closed the connection mid-response", true, RETRY_NO);
		return;
	}
	u->got_bytes = true;
	RT_ADD(r->ctr->bytes_out, left);
	while (left) {
		rc = http_stream_feed(u->parser, data, left, &used);
		if (rc == HTTP_STREAM_PAUSED) {
			data += used;
			left -= used;
			/* A 101 completes its message like a final answer: the
			 * bytes after it belong to the tunnel. */
			if (r->status == 101) {
				c->tunnel = true;
				client_flush(c);
				if (left)
					tunnel_pipe(c, u, false, data, left);
				if (c->pending.len) {
					tunnel_pipe(c, u, true, c->pending.buf, c->pending.len);
					strbuf_reset(&c->pending);
				}
				deadline_clear(&c->timer);
				client_resume(c);
				return;
			}
			if (!r->resp_done) {
				/* An interim 1xx: the final answer follows. */
				http_stream_next(u->parser);
				continue;
			}
			/* Extra bytes after a complete response are a framing
			 * doubt: never reuse that connection. */
			bool reusable = left == 0 && r->backend_keep_alive && r->fr_client != FR_CLOSE;
			http_stream_next(u->parser);
			resp_finished(u, reusable);
			return;
		}
		if (rc == HTTP_STREAM_OK)
			break;
		/* It answered: it has seen the request, which is not sent again. */
		upstream_failed(r, 502, rc == -EMSGSIZE ? "the instance sent response headers over 64 KiB" : "the instance sent a malformed response", true, RETRY_NO);
		return;
	}
	upstream_quickack(u);
	client_flush(c);
	if (c->writing > OUT_HIGH_WATER)
		uv_read_stop(s);
}

static void upstream_resume(struct rt_upstream *u)
{
	if (u->connected && !u->closing)
		uv_read_start((uv_stream_t *)&u->tcp, alloc_buf, upstream_read);
}

/* ---- finishing a request: metrics and the access log ---- */

static void req_finish(struct rt_req *r)
{
	if (r->finished)
		return;
	r->finished = true;
	struct rt_client *c = r->c;
	struct rt_worker *w = c->w;
	double secs = (double)(now_ns() - r->t0_ns) / 1e9;
	int st = r->status;
	if (r->ctr) {
		struct rt_counters *ct = r->ctr;
		RT_ADD(ct->requests, 1);
		int cls = st >= 100 && st < 600 ? st / 100 : 0;
		RT_ADD(ct->status[cls], 1);
		int b = 0;
		while (b < RT_HIST_BUCKETS && secs > rt_hist_bounds[b])
			b++;
		RT_ADD(ct->hist[b], 1);
		RT_ADD(ct->latency_us, (uint64_t)(secs * 1e6));
		if (r->be && r->resp_started && !r->local_msg && st >= 100) {
			atomic_fetch_add_explicit(&r->be->answered, 1, memory_order_relaxed);
			if (st >= 500)
				atomic_fetch_add_explicit(&r->be->errors_5xx, 1, memory_order_relaxed);
			atomic_fetch_add_explicit(&r->be->hist[b], 1, memory_order_relaxed);
		}
	}
	double sample = w->r->cfg.access_sample;
	if (sample <= 0 || (sample < 1 && (double)(rt_rand(w) >> 11) / 9007199254740992.0 >= sample))
		return;
	/* Built by hand (printf was most of its cost): "app\0instance\0line". */
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	if (now.tv_sec != w->ts_sec) {
		struct tm tm;
		gmtime_r(&now.tv_sec, &tm);
		snprintf(w->ts_prefix, sizeof(w->ts_prefix), "%04d-%02d-%02dT%02d:%02d:%02d.",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
		w->ts_sec = now.tv_sec;
	}
	struct strbuf e;
	strbuf_init(&e, 320);
	strbuf_add(&e, r->pool ? r->pool->app : "", strlen(r->pool ? r->pool->app : "") + 1);
	strbuf_add(&e, r->be ? r->be->instance : "", strlen(r->be ? r->be->instance : "") + 1);
	size_t line_at = e.len;
	strbuf_adds(&e, "time=");
	strbuf_adds(&e, w->ts_prefix);
	add_digits(&e, (uint64_t)(now.tv_nsec / 1000000) % 1000, 3);
	strbuf_adds(&e, "Z request_id=");
	strbuf_adds(&e, r->id);
	strbuf_adds(&e, " client=");
	strbuf_adds(&e, c->ip);
	strbuf_adds(&e, " method=");
	strbuf_adds(&e, r->method);
	strbuf_adds(&e, " host=");
	strbuf_adds(&e, r->host ? r->host : "-");
	strbuf_adds(&e, " path=\"");
	const char *path = r->path ? r->path : "-";
	strbuf_add(&e, path, strnlen(path, 512));
	strbuf_adds(&e, "\" status=");
	add_digits(&e, st < 0 ? 0 : (uint64_t)st, 1);
	strbuf_adds(&e, " bytes=");
	add_digits(&e, r->bytes_out < 0 ? 0 : (uint64_t)r->bytes_out, 1);
	uint64_t us = (uint64_t)(secs * 1e6 + 0.5);
	strbuf_adds(&e, " duration_ms=");
	add_digits(&e, us / 1000, 1);
	strbuf_addc(&e, '.');
	add_digits(&e, us % 1000, 3);
	strbuf_adds(&e, " instance=");
	strbuf_adds(&e, r->be ? r->be->instance : "-");
	if (r->attempts > 1)
		strbuf_adds(&e, " retried=1");
	if (r->local_msg)
		strbuf_adds(&e, " error=local");
	/* The path may hold quotes or control bytes; keep the line one line. */
	for (char *p = e.buf + line_at; *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = '?';
	rt_access_push(w, strbuf_detach(&e, NULL));
}

/* ---- the client read path ---- */

static void client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void client_read_start(struct rt_client *c)
{
	if (c->tls)
		tls_stream_read_start(c->tls);
	else
		uv_read_start((uv_stream_t *)&c->tcp, alloc_buf, client_read);
}

static void client_resume(struct rt_client *c)
{
	if (c->closing || c->reading)
		return;
	c->reading = true;
	client_read_start(c);
	client_process(c);
}

/* A TLS session still hands over the rest of what it decrypted from the
 * read in progress: client_input keeps it pending, a bounded amount. */
static void client_pause(struct rt_client *c)
{
	if (c->reading) {
		c->reading = false;
		if (c->tls)
			tls_stream_read_stop(c->tls);
		else
			uv_read_stop((uv_stream_t *)&c->tcp);
	}
}

/* Bounds what a client may have pending (pipelined requests waiting for
 * earlier answers): reading stops above OUT_HIGH_WATER and starts again
 * below half of it. */
static void client_check_pending(struct rt_client *c)
{
	if (c->pending.len > OUT_HIGH_WATER) {
		client_pause(c);
		c->pending_full = true;
	} else if (c->pending_full && c->pending.len < OUT_HIGH_WATER / 2) {
		c->pending_full = false;
		if (!c->closing && !c->reading && !c->close_after) {
			c->reading = true;
			client_read_start(c);
		}
	}
}

/* Answers a request that the router decided itself (no route, no ready
 * instance, bad request without a body) and moves on. */
static void answer_locally(struct rt_client *c, struct rt_req *r, bool close)
{
	const char *msg = r->local_msg ? r->local_msg : r->local_error ? r->local_error : http_reason(r->status);
	local_response(c, r, r->status, msg, close || !r->keep_alive);
	req_end(c, r);
	client_flush(c);
}

/* Parses data (pending bytes, or a read) as far as the current request
 * allows; returns how much of it was used. */
static size_t client_parse(struct rt_client *c, const char *data, size_t len)
{
	size_t done = 0;
	while (!c->closing && !c->tunnel && done < len && !c->close_after) {
		struct rt_req *r = c->req;
		if (r && r->req_done)
			break; /* waiting for the response: pipelined bytes wait too */
		if (r && r->up && r->up->writing > OUT_HIGH_WATER) {
			client_pause(c);
			break;
		}
		if (!r && !http_stream_in_message(c->parser))
			deadline_set(&c->timer, (uint64_t)c->w->r->cfg.header_timeout_ms);
		size_t used = 0;
		int rc = http_stream_feed(c->parser, data + done, len - done, &used);
		done += used;
		r = c->req;
		if (r && r->up)
			upstream_flush(r->up);
		if (rc == HTTP_STREAM_OK)
			break;
		if (rc == HTTP_STREAM_PAUSED || rc == HTTP_STREAM_UPGRADED) {
			/* An upgrade nobody tunnels leaves the parser unable to go
			 * on: answer (if there is a request) and close, or this
			 * loop would spin on bytes it can never consume. */
			bool dead_upgrade = rc == HTTP_STREAM_UPGRADED && (!r || !r->up);
			if (r && r->status && !r->up && !r->resp_started) {
				answer_locally(c, r, dead_upgrade);
				if (dead_upgrade)
					break;
				http_stream_next(c->parser);
				continue;
			}
			if (!r) {
				if (dead_upgrade) {
					client_pause(c);
					client_close_when_written(c);
					return done;
				}
				http_stream_next(c->parser);
				continue;
			}
			break; /* r->req_done: the response will resume us */
		}
		/* The request cannot be parsed or was refused mid-way: answer and close. */
		if (r && r->up) {
			r->up->req = NULL;
			upstream_close(r->up);
			r->up = NULL;
		}
		if (rc == -ECANCELED && r) {
			answer_locally(c, r, true);
		} else if (!r || !r->resp_started) {
			bool long_url = rc == -EMSGSIZE && http_stream_url_too_long(c->parser);
			int st = long_url ? 414 : rc == -EMSGSIZE ? 431 : 400;
			const char *msg = long_url ? "request target too long"
					  : rc == -EMSGSIZE ? "request headers too large"
							    : http_stream_error(c->parser);
			if (r) {
				r->status = st;
				free(r->local_msg);
				r->local_msg = xstrdup(msg);
				answer_locally(c, r, true);
			} else {
				local_response(c, NULL, st, msg, true);
				client_flush(c);
			}
		} else {
			client_close(c);
			return done;
		}
		client_pause(c);
		client_close_when_written(c);
		return done;
	}
	return done;
}

/* Parses what is pending. A client paused because too much was pending
 * reads again once most of it is parsed: nothing else would resume it. */
static void client_process(struct rt_client *c)
{
	size_t used = client_parse(c, c->pending.buf, c->pending.len);
	strbuf_consume(&c->pending, used);
	client_check_pending(c);
}

/* n bytes read from c (plaintext for a TLS client), or n < 0 at its end. */
static inline void client_input(struct rt_client *c, ssize_t n, const char *data)
{
	if (c->closing) {
		return;
	}
	if (n < 0) {
		struct rt_req *r = c->req;
		/* A reset (or any error) means the client is gone: its request
		 * is abandoned (499) and the instance's connection closed. */
		if (c->tunnel || !r || !r->req_done || n != UV_EOF) {
			client_close(c);
			return;
		}
		/* Half-close after a whole request: answer, then close. */
		c->close_after = true;
		client_pause(c);
		return;
	}
	if (n == 0) {
		return;
	}
	if (c->tunnel) {
		if (c->req && c->req->up)
			tunnel_pipe(c, c->req->up, true, data, (size_t)n);
		return;
	}
	if (c->pending.len) {
		strbuf_add(&c->pending, data, (size_t)n);
		client_process(c);
		return;
	}
	/* Parsed where it was read; only what has to wait is kept. */
	size_t used = client_parse(c, data, (size_t)n);
	if (used < (size_t)n && !c->closing) {
		strbuf_add(&c->pending, data + used, (size_t)n - used);
		client_check_pending(c);
	}
}

static void client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	client_input(s->data, n, buf->base);
}

/* ---- accepting and balancing connections over workers ---- */

/* Connections accepted per wake-up of the listener, so that one busy
 * listener cannot starve the requests of the connections already open. */
#define ACCEPT_BATCH 64
/* Out of file descriptors: how long the listener rests before accepting
 * again (it is level-triggered and would otherwise spin). */
#define ACCEPT_PAUSE_MS 100

/* A client of w with its timer, on w's list; its socket is the caller's
 * to set up. */
static struct rt_client *client_new(struct rt_worker *w)
{
	struct rt_client *c = xcalloc(1, sizeof(*c));
	c->w = w;
	deadline_init(&w->loop, &c->timer, c, client_timeout);
	c->open = 2;
	strbuf_init(&c->pending, 0);
	strbuf_init(&c->out, 0);
	c->next = w->clients;
	if (w->clients)
		w->clients->prev = c;
	w->clients = c;
	return c;
}

/* The client's address for the forwarding headers and the access log,
 * its parser, and the deadline for its first request's head. */
static void client_begin(struct rt_client *c, const struct sockaddr_storage *peer)
{
	strlcpy_s(c->ip, "-", sizeof(c->ip));
	if (peer->ss_family == AF_INET)
		uv_ip4_name((const struct sockaddr_in *)peer, c->ip, sizeof(c->ip));
	else if (peer->ss_family == AF_INET6)
		uv_ip6_name((const struct sockaddr_in6 *)peer, c->ip, sizeof(c->ip));
	c->parser = http_stream_new(HTTP_KIND_REQUEST, (size_t)c->w->r->cfg.max_header_bytes, &req_cbs, c);
	deadline_set(&c->timer, (uint64_t)c->w->r->cfg.header_timeout_ms);
}

/* Starts serving the accepted connection fd on w. */
static void client_adopt(struct rt_worker *w, int fd, const struct sockaddr_storage *peer)
{
	struct rt_client *c = client_new(w);
	uv_tcp_init(&w->loop, &c->tcp);
	c->tcp.data = c;
	if (uv_tcp_open(&c->tcp, fd) < 0) {
		close(fd);
		client_close(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	client_begin(c, peer);
	client_resume(c);
}

/* ---- clients of the HTTPS listener ---- */

static void client_tls_open(struct tls_stream *s, int status, const char *why, void *data)
{
	struct rt_client *c = data;
	if (status < 0) {
		RT_ADD(c->w->tls_handshake_failures, 1);
		if (status == TLS_EPLAINHTTP) {
			/* Told in its own protocol, as nginx and HAProxy do. */
			local_response(c, NULL, 400, "plain HTTP request sent to the HTTPS port; use https://",
				       true);
			tls_stream_write_clear(s, c->out.buf, c->out.len);
			c->out.len = 0;
		}
		client_close(c);
		return;
	}
	c->tls_open = true;
	/* The header timeout armed at adoption covers the handshake and the
	 * first request's head together, as it covers the head alone on the
	 * plain listener. */
}

static void client_tls_data(struct tls_stream *s, ssize_t n, const char *buf, void *data)
{
	client_input(data, n, buf);
}

/* Starts serving fd, accepted on the HTTPS listener, on w: a TLS session
 * owns the socket (in its own heap handle) and hands plaintext to the
 * same request path as a plain client's reads. */
static void client_adopt_tls(struct rt_worker *w, int fd, const struct sockaddr_storage *peer)
{
	uv_tcp_t *tcp = xmalloc(sizeof(*tcp));
	uv_tcp_init(&w->loop, tcp);
	struct rt_client *c = client_new(w);
	if (uv_tcp_open(tcp, fd) < 0)
		close(fd);
	else
		c->tls = tls_stream_server(w->r->cfg.tls, tcp, client_tls_open, client_tls_data, c);
	if (!c->tls) {
		uv_close((uv_handle_t *)tcp, (uv_close_cb)free);
		c->closing = true;
		c->open = 1;
		uv_close((uv_handle_t *)&c->timer.timer, client_closed);
		return;
	}
	uv_tcp_nodelay(tcp, 1);
	c->reading = true; /* the session reads from the start */
	client_begin(c, peer);
}

/* The worker that takes a connection w accepted, its count already raised:
 * w itself unless another worker has at least two connections fewer. The
 * kernel spreads connections over the SO_REUSEPORT listeners by a hash of
 * their addresses, which leaves one worker with noticeably more of a few
 * dozen long-lived connections than another; moving them keeps the workers'
 * loads, and so their latencies, even. */
static struct rt_worker *worker_pick(struct rt_worker *w)
{
	struct router *r = w->r;
	struct rt_worker *best = w;
	int64_t mine = atomic_load_explicit(&w->n_clients, memory_order_relaxed);
	int64_t least = mine;
	for (int k = 0; k < r->n_workers; k++) {
		int64_t n = atomic_load_explicit(&r->workers[k].n_clients, memory_order_relaxed);
		if (n < least) {
			least = n;
			best = &r->workers[k];
		}
	}
	if (least + 1 >= mine)
		best = w;
	atomic_fetch_add_explicit(&best->n_clients, 1, memory_order_relaxed);
	return best;
}

/* Queues fd for worker to; false when it takes no more (it is stopping). */
static bool handoff(struct rt_worker *to, int fd, const struct sockaddr_storage *peer, bool tls)
{
	uv_mutex_lock(&to->alock);
	bool ok = !to->adopt_closed;
	if (ok) {
		if (to->n_handoffs == to->alloc_handoffs) {
			to->alloc_handoffs = to->alloc_handoffs ? 2 * to->alloc_handoffs : 16;
			to->handoffs = xrealloc(to->handoffs, to->alloc_handoffs * sizeof(*to->handoffs));
		}
		to->handoffs[to->n_handoffs].fd = fd;
		to->handoffs[to->n_handoffs].peer = *peer;
		to->handoffs[to->n_handoffs].tls = tls;
		to->n_handoffs++;
		uv_async_send(&to->adopt);
	}
	uv_mutex_unlock(&to->alock);
	return ok;
}

static void listen_resume(uv_timer_t *t)
{
	struct rt_worker *w = t->data;
	if (w->stopping)
		return;
	uv_poll_start(&w->listen_poll, UV_READABLE, rt_proxy_listen_ready);
	if (w->tls_listen_fd >= 0)
		uv_poll_start(&w->tls_listen_poll, UV_READABLE, rt_proxy_listen_ready);
}

void rt_proxy_listen_ready(uv_poll_t *p, int status, int events)
{
	struct rt_worker *w = p->data;
	(void)events;
	if (status < 0 || w->stopping)
		return;
	bool tls = p == &w->tls_listen_poll;
	int lfd = tls ? w->tls_listen_fd : w->listen_fd;
	for (int k = 0; k < ACCEPT_BATCH; k++) {
		struct sockaddr_storage peer;
		socklen_t len = sizeof(peer);
		int fd = accept4(lfd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				int64_t now = rt_now_ms();
				if (now - w->accept_warned_ms >= 10000) {
					w->accept_warned_ms = now;
					log_warn("router: cannot accept a connection: %s; pausing the listener",
						 strerror(errno));
				}
				uv_poll_stop(&w->listen_poll);
				if (w->tls_listen_fd >= 0)
					uv_poll_stop(&w->tls_listen_poll);
				uv_timer_start(&w->listen_pause, listen_resume, ACCEPT_PAUSE_MS, 0);
			}
			return;
		}
		struct rt_worker *to = worker_pick(w);
		if (to != w) {
			if (handoff(to, fd, &peer, tls))
				continue;
			atomic_fetch_sub_explicit(&to->n_clients, 1, memory_order_relaxed);
			atomic_fetch_add_explicit(&w->n_clients, 1, memory_order_relaxed);
		}
		if (tls)
			client_adopt_tls(w, fd, &peer);
		else
			client_adopt(w, fd, &peer);
	}
}

void rt_proxy_adopt_all(uv_async_t *a)
{
	struct rt_worker *w = a->data;
	uv_mutex_lock(&w->alock);
	struct rt_handoff *list = w->handoffs;
	size_t n = w->n_handoffs;
	w->handoffs = NULL;
	w->n_handoffs = w->alloc_handoffs = 0;
	uv_mutex_unlock(&w->alock);
	for (size_t k = 0; k < n; k++) {
		if (w->stopping) {
			close(list[k].fd);
			atomic_fetch_sub_explicit(&w->n_clients, 1, memory_order_relaxed);
			continue;
		}
		atomic_fetch_add_explicit(&w->moved_in, 1, memory_order_relaxed);
		if (list[k].tls)
			client_adopt_tls(w, list[k].fd, &list[k].peer);
		else
			client_adopt(w, list[k].fd, &list[k].peer);
	}
	free(list);
}

void rt_worker_close_all(struct rt_worker *w)
{
	w->dirty_clients = NULL; /* closing: nothing more is written */
	w->dirty_upstreams = NULL;
	while (w->idle)
		upstream_close(w->idle);
	for (struct rt_client *c = w->clients; c; c = c->next)
		client_close(c);
}
