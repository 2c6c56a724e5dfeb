/* logs_drain.c: forwarding committed lines elsewhere, on the control loop.
 *
 *   syslog://HOST:PORT        RFC 5424 messages over TCP, octet-counted
 *                             (RFC 6587), as rsyslog's imtcp reads them
 *   syslog+tls://HOST:PORT    the same inside TLS (RFC 5425), the server's
 *                             certificate checked against ?ca=FILE or the
 *                             system's CAs; ?cert=FILE&key=FILE for a
 *                             client certificate
 *   http://... https://...    POSTs of NDJSON batches (one JSON object per
 *                             line, as the API shows lines)
 *
 * Each drain has a bounded in-memory queue (DRAIN_QUEUE_LINES lines or
 * DRAIN_QUEUE_BYTES bytes; when full the oldest line is dropped and
 * counted). Delivery is at least once: an HTTP batch leaves the queue only
 * on a 2xx answer; a syslog message is kept for DRAIN_RESEND_MS after TCP
 * accepted it, and re-sent when the connection fails within that time
 * (so a receiver that dies and comes back may see a line twice). Failures
 * back off from 500 ms, doubling to 30 s. */
#include "compat/httpc.h"
#include "compat/json.h"
#include "compat/tls.h"
#include "core/log.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "logs/logs_internal.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DRAIN_QUEUE_LINES 100000
#define DRAIN_QUEUE_BYTES (32u << 20)
#define DRAIN_BATCH_LINES 1000
#define DRAIN_BATCH_BYTES (1u << 20)
#define DRAIN_RESEND_MS 2000
#define DRAIN_BACKOFF_MIN_MS 500
#define DRAIN_BACKOFF_MAX_MS 30000
#define DRAIN_HTTP_TIMEOUT_MS 10000

enum drain_kind { DRAIN_SYSLOG, DRAIN_HTTP };
enum drain_state { D_IDLE, D_RESOLVING, D_CONNECTING, D_UP, D_WAITING, D_HANDSHAKE };

struct msg {
	char *text; /* framed, ready to send */
	size_t len;
	int64_t sent_ms; /* when TCP took it (resend window) */
};

/* A FIFO of messages. */
struct mqueue {
	struct msg *v;
	size_t head, n, cap;
	size_t bytes;
};

struct logs_drain {
	uv_loop_t *loop;
	enum drain_kind kind;
	char *url, *app, *host, *port;
	char *shown; /* url with its credentials masked, for listings */
	int64_t id;
	enum drain_state state;
	struct mqueue q;      /* waiting */
	struct mqueue flight; /* written, not yet confirmed */
	struct mqueue recent; /* syslog: confirmed by TCP within the resend window */
	int64_t backoff_ms;
	uint64_t sent, failed, dropped, resent;
	char last_error[160];
	char hostname[64];
	bool closing;
	int open; /* handles and requests that hold d */
	/* syslog */
	uv_tcp_t *tcp;
	uv_connect_t connect;
	uv_getaddrinfo_t gai;
	uv_timer_t *timer;
	int writes;
	struct tls_ctx *tls_ctx; /* syslog+tls */
	struct tls_stream *tls;  /* owns the connection once it is up */
	/* http */
	struct httpc *http;
	bool posting;
	struct logs_parsed scratch;
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- queues ---- */

static void mq_push(struct mqueue *q, struct msg m)
{
	if (q->n == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 64;
		struct msg *v = xmalloc(cap * sizeof(*v));
		for (size_t k = 0; k < q->n; k++)
			v[k] = q->v[(q->head + k) % q->cap];
		free(q->v);
		q->v = v;
		q->head = 0;
		q->cap = cap;
	}
	q->v[(q->head + q->n) % q->cap] = m;
	q->n++;
	q->bytes += m.len;
}

static struct msg mq_pop(struct mqueue *q)
{
	struct msg m = q->v[q->head];
	q->head = (q->head + 1) % q->cap;
	q->n--;
	q->bytes -= m.len;
	return m;
}

static struct msg *mq_at(struct mqueue *q, size_t k)
{
	return &q->v[(q->head + k) % q->cap];
}

/* Puts every message of from (in order) before those of to. */
static void mq_prepend_all(struct mqueue *to, struct mqueue *from)
{
	struct mqueue merged = {0};
	while (from->n)
		mq_push(&merged, mq_pop(from));
	while (to->n)
		mq_push(&merged, mq_pop(to));
	free(to->v);
	*to = merged;
}

static void mq_release(struct mqueue *q)
{
	while (q->n)
		free(mq_pop(q).text);
	free(q->v);
	memset(q, 0, sizeof(*q));
}

/* ---- formats ---- */

static void sd_escape(struct strbuf *out, const char *s)
{
	for (; *s; s++) {
		if (*s == '"' || *s == '\\' || *s == ']')
			strbuf_addc(out, '\\');
		strbuf_addc(out, *s);
	}
}

/* A header field: printable US-ASCII without spaces, at most max. */
static void header_field(struct strbuf *out, const char *s, size_t max)
{
	size_t n = 0;
	for (; s && *s && n < max; s++, n++)
		strbuf_addc(out, (*s > 32 && *s < 127) ? *s : '_');
	if (n == 0)
		strbuf_addc(out, '-');
}

void logs_drain_syslog_format(struct strbuf *out, const struct logs_rec *r, const char *hostname)
{
	static const int severity[LOGS_NLEVELS] = {6, 7, 7, 6, 4, 3, 2};
	int sev = r->level ? severity[r->level < LOGS_NLEVELS ? r->level : 0] : r->stream == 1 ? 3 : 6;
	char ts[48];
	logs_format_time_ns(r->t_ns, ts, sizeof(ts));
	/* RFC 5424 allows six fraction digits: cut "…123456789Z" to "…123456Z". */
	size_t tl = strlen(ts);
	if (tl > 4) {
		ts[tl - 4] = 'Z';
		ts[tl - 3] = '\0';
	}
	strbuf_addf(out, "<%d>1 %s ", 8 + sev, ts);
	header_field(out, hostname, 255);
	strbuf_addc(out, ' ');
	header_field(out, r->app, 48);
	strbuf_addc(out, ' ');
	header_field(out, r->instance && *r->instance ? r->instance : NULL, 128);
	strbuf_addc(out, ' ');
	header_field(out, logs_stream_name(r->stream), 32);
	strbuf_adds(out, " [paasops@32473 process=\"");
	sd_escape(out, r->process ? r->process : "");
	strbuf_addf(out, "\" release=\"%d\" seq=\"%llu\"] ", (int)r->release, (unsigned long long)r->seq);
	logs_escape_utf8(out, r->text, r->len);
}

/* ---- the drain ---- */

static void drain_release(struct logs_drain *d)
{
	if (--d->open > 0)
		return;
	mq_release(&d->q);
	mq_release(&d->flight);
	mq_release(&d->recent);
	logs_parsed_release(&d->scratch);
	tls_ctx_free(d->tls_ctx);
	free(d->url);
	free(d->shown);
	free(d->app);
	free(d->host);
	free(d->port);
	free(d);
}

static void kick(struct logs_drain *d);

static void timer_fired(uv_timer_t *t)
{
	struct logs_drain *d = t->data;
	if (d->state == D_WAITING)
		d->state = D_IDLE;
	kick(d);
}

static void fail(struct logs_drain *d, const char *what, const char *why)
{
	snprintf(d->last_error, sizeof(d->last_error), "%s: %s", what, why);
	d->failed++;
	d->backoff_ms = d->backoff_ms ? d->backoff_ms * 2 : DRAIN_BACKOFF_MIN_MS;
	if (d->backoff_ms > DRAIN_BACKOFF_MAX_MS)
		d->backoff_ms = DRAIN_BACKOFF_MAX_MS;
	d->state = D_WAITING;
	if (!d->closing)
		uv_timer_start(d->timer, timer_fired, (uint64_t)d->backoff_ms, 0);
}

/* ---- syslog over TCP ---- */

static void tcp_closed(uv_handle_t *h)
{
	struct logs_drain *d = h->data;
	free(h);
	drain_release(d);
}

static void tls_closed(void *data)
{
	drain_release(data);
}

/* The connection, plain or TLS (NULL when there is none). */
static void *conn(const struct logs_drain *d)
{
	return d->tls ? (void *)d->tls : (void *)d->tcp;
}

static void conn_close(struct logs_drain *d)
{
	if (d->tls) {
		tls_stream_close(d->tls, tls_closed);
		d->tls = NULL;
	}
	if (d->tcp) {
		uv_close((uv_handle_t *)d->tcp, tcp_closed);
		d->tcp = NULL;
	}
}

/* The connection failed: what TCP took within the resend window and what
 * was in flight go back to the head of the queue. */
static void tcp_down(struct logs_drain *d, const char *why)
{
	conn_close(d);
	int64_t now = now_ms();
	while (d->recent.n && now - mq_at(&d->recent, 0)->sent_ms > DRAIN_RESEND_MS)
		free(mq_pop(&d->recent).text);
	d->resent += d->recent.n;
	mq_prepend_all(&d->flight, &d->recent);
	mq_prepend_all(&d->q, &d->flight);
	fail(d, "syslog", why);
}

struct drain_write {
	uv_write_t req;
	struct logs_drain *d;
	size_t n;
	void *conn;
};

static void write_finished(struct drain_write *w, int status)
{
	struct logs_drain *d = w->d;
	d->writes--;
	if (status == 0 && w->conn == conn(d)) {
		int64_t now = now_ms();
		for (size_t k = 0; k < w->n && d->flight.n; k++) {
			struct msg m = mq_pop(&d->flight);
			m.sent_ms = now;
			mq_push(&d->recent, m);
			d->sent++;
		}
		while (d->recent.n && now - mq_at(&d->recent, 0)->sent_ms > DRAIN_RESEND_MS)
			free(mq_pop(&d->recent).text);
		d->backoff_ms = 0;
	} else if (w->conn == conn(d) && conn(d)) {
		tcp_down(d, uv_strerror(status));
	}
	free(w);
	drain_release(d);
	if (d->state == D_UP && !d->closing)
		kick(d);
}

static void write_done(uv_write_t *req, int status)
{
	write_finished(req->data, status);
}

static void tls_written(struct tls_stream *s, int status, void *arg)
{
	write_finished(arg, status);
}

static void tcp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	static char sink[4096];
	buf->base = sink;
	buf->len = sizeof(sink);
}

static void tcp_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct logs_drain *d = s->data;
	if (n < 0 && d->tcp == (uv_tcp_t *)s && !d->closing)
		tcp_down(d, n == UV_EOF ? "the receiver closed the connection" : uv_strerror((int)n));
}

static void send_some(struct logs_drain *d)
{
	if (!d->q.n || d->writes)
		return;
	size_t n = d->q.n < DRAIN_BATCH_LINES ? d->q.n : DRAIN_BATCH_LINES;
	uv_buf_t *bufs = xmalloc(n * sizeof(*bufs));
	for (size_t k = 0; k < n; k++) {
		struct msg m = mq_pop(&d->q);
		mq_push(&d->flight, m);
		bufs[k] = uv_buf_init(m.text, (unsigned)m.len);
	}
	struct drain_write *w = xcalloc(1, sizeof(*w));
	w->d = d;
	w->n = n;
	w->conn = conn(d);
	w->req.data = w;
	d->writes++;
	d->open++;
	int r = d->tls ? tls_stream_write(d->tls, bufs, (unsigned)n, tls_written, w)
		       : uv_write(&w->req, (uv_stream_t *)d->tcp, bufs, (unsigned)n, write_done);
	free(bufs);
	if (r < 0) {
		d->writes--;
		d->open--;
		free(w);
		tcp_down(d, uv_strerror(r));
	}
}

static void tls_opened(struct tls_stream *s, int status, const char *why, void *data)
{
	struct logs_drain *d = data;
	if (d->closing || s != d->tls)
		return;
	if (status < 0) {
		tcp_down(d, why);
		return;
	}
	d->state = D_UP;
	kick(d);
}

static void tls_data(struct tls_stream *s, ssize_t n, const char *buf, void *data)
{
	struct logs_drain *d = data;
	if (n < 0 && s == d->tls && !d->closing)
		tcp_down(d, n == UV_EOF ? "the receiver closed the connection" : uv_strerror((int)n));
}

static void connected(uv_connect_t *req, int status)
{
	struct logs_drain *d = req->data;
	drain_release(d);
	if (d->closing)
		return;
	if (status < 0) {
		tcp_down(d, uv_strerror(status));
		return;
	}
	if (d->tls_ctx) {
		d->tls = tls_stream_client(d->tls_ctx, d->tcp, d->host, tls_opened, tls_data, d);
		if (!d->tls) {
			tcp_down(d, "TLS: the session could not start");
			return;
		}
		d->tcp = NULL; /* the TLS stream owns it, and its reference on d */
		d->state = D_HANDSHAKE;
		return;
	}
	d->state = D_UP;
	uv_read_start((uv_stream_t *)d->tcp, tcp_alloc, tcp_read);
	kick(d);
}

static void resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct logs_drain *d = req->data;
	drain_release(d);
	if (d->closing || status < 0) {
		if (res)
			uv_freeaddrinfo(res);
		if (!d->closing)
			fail(d, "syslog", uv_strerror(status));
		return;
	}
	d->tcp = xcalloc(1, sizeof(*d->tcp));
	uv_tcp_init(d->loop, d->tcp);
	d->tcp->data = d;
	d->open++; /* the handle */
	d->state = D_CONNECTING;
	d->connect.data = d;
	d->open++;
	int r = uv_tcp_connect(&d->connect, d->tcp, res->ai_addr, connected);
	uv_freeaddrinfo(res);
	if (r < 0) {
		d->open--;
		tcp_down(d, uv_strerror(r));
	}
}

static void syslog_kick(struct logs_drain *d)
{
	if (d->state == D_IDLE && d->q.n) {
		struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
		d->state = D_RESOLVING;
		d->gai.data = d;
		d->open++;
		int r = uv_getaddrinfo(d->loop, &d->gai, resolved, d->host, d->port, &hints);
		if (r < 0) {
			d->open--;
			fail(d, "syslog", uv_strerror(r));
		}
	} else if (d->state == D_UP) {
		send_some(d);
	}
}

/* ---- HTTP ---- */

static void posted(void *ctx, int status, const char *err)
{
	struct logs_drain *d = ctx;
	d->posting = false;
	drain_release(d);
	if (d->closing)
		return;
	if (status >= 200 && status < 300) {
		d->sent += d->flight.n;
		while (d->flight.n)
			free(mq_pop(&d->flight).text);
		d->backoff_ms = 0;
		d->state = D_IDLE;
		kick(d);
		return;
	}
	char why[96];
	if (status > 0)
		snprintf(why, sizeof(why), "the receiver answered %d", status);
	mq_prepend_all(&d->q, &d->flight);
	fail(d, "http", status > 0 ? why : err ? err : "no answer");
}

static void http_kick(struct logs_drain *d)
{
	if (d->state != D_IDLE || d->posting || !d->q.n)
		return;
	struct strbuf body;
	strbuf_init(&body, 65536);
	while (d->q.n && d->flight.n < DRAIN_BATCH_LINES && body.len < DRAIN_BATCH_BYTES) {
		struct msg m = mq_pop(&d->q);
		strbuf_add(&body, m.text, m.len);
		mq_push(&d->flight, m);
	}
	static const char *const headers[] = {"Content-Type: application/x-ndjson", NULL};
	d->posting = true;
	d->open++;
	int r = httpc_post(d->http, d->url, headers, body.buf, body.len, DRAIN_HTTP_TIMEOUT_MS, posted, d);
	strbuf_release(&body);
	if (r < 0) {
		d->posting = false;
		d->open--;
		mq_prepend_all(&d->q, &d->flight);
		fail(d, "http", strerror(-r));
	}
}

static void kick(struct logs_drain *d)
{
	if (d->closing)
		return;
	if (d->kind == DRAIN_SYSLOG)
		syslog_kick(d);
	else
		http_kick(d);
}

/* ---- public ---- */

/* The ?ca=FILE&cert=FILE&key=FILE of a syslog+tls URL: a TLS context. */
static int parse_tls_query(struct logs_drain *d, const char *q, char **err)
{
	char *ca = NULL, *cert = NULL, *key = NULL;
	int rc = 0;
	while (q && *q && rc == 0) {
		size_t n = strcspn(q, "&#");
		const char *eq = memchr(q, '=', n);
		char **slot = NULL;
		if (eq && (size_t)(eq - q) == 2 && strncmp(q, "ca", 2) == 0)
			slot = &ca;
		else if (eq && (size_t)(eq - q) == 4 && strncmp(q, "cert", 4) == 0)
			slot = &cert;
		else if (eq && (size_t)(eq - q) == 3 && strncmp(q, "key", 3) == 0)
			slot = &key;
		if (!slot || eq + 1 == q + n) {
			char buf[160];
			snprintf(buf, sizeof(buf), "unknown TLS option '%.*s' (want ca=FILE, cert=FILE or key=FILE)",
				 (int)(n > 60 ? 60 : n), q);
			*err = xstrdup(buf);
			rc = -EINVAL;
			break;
		}
		free(*slot);
		*slot = xstrndup(eq + 1, (size_t)(q + n - eq - 1));
		q += n;
		if (*q != '&')
			break;
		q++;
	}
	if (rc == 0) {
		struct tls_config cfg = {.ca_file = ca, .cert_file = cert, .key_file = key};
		d->tls_ctx = tls_client_ctx_new(&cfg, err);
		if (!d->tls_ctx)
			rc = -EINVAL;
	}
	free(ca);
	free(cert);
	free(key);
	return rc;
}

static int parse_url(struct logs_drain *d, const char *url, char **err)
{
	const char *rest;
	bool tls = str_starts_with(url, "syslog+tls://");
	if (tls || str_starts_with(url, "syslog://") || str_starts_with(url, "syslog+tcp://")) {
		d->kind = DRAIN_SYSLOG;
		rest = strstr(url, "://") + 3;
	} else if (str_starts_with(url, "http://") || str_starts_with(url, "https://")) {
		d->kind = DRAIN_HTTP;
		if (strlen(url) < 10 || strpbrk(url, " \t\r\n")) {
			*err = xstrdup("not a valid URL");
			return -EINVAL;
		}
		return 0;
	} else {
		*err = xstrdup("want syslog://HOST:PORT, syslog+tls://HOST:PORT, http://... or https://...");
		return -EINVAL;
	}
	size_t n = strcspn(rest, "/?#");
	char *hp = xstrndup(rest, n);
	char *colon = strrchr(hp, ':');
	int64_t port;
	if (!colon || colon == hp || str_to_i64(colon + 1, &port) < 0 || port < 1 || port > 65535) {
		free(hp);
		*err = xstrdup(tls ? "want syslog+tls://HOST:PORT" : "want syslog://HOST:PORT");
		return -EINVAL;
	}
	*colon = '\0';
	char *host = hp;
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		host[strlen(host) - 1] = '\0';
		host++;
	}
	d->host = xstrdup(host);
	d->port = xstrdup(colon + 1);
	free(hp);
	if (tls)
		return parse_tls_query(d, rest[n] == '?' ? rest + n + 1 : NULL, err);
	if (rest[n] == '?') {
		*err = xstrdup("syslog:// takes no options (ca=, cert= and key= are for syslog+tls://)");
		return -EINVAL;
	}
	return 0;
}

#define DRAIN_MASK "********"

char *logs_drain_url_shown(const char *url)
{
	const char *sep = strstr(url, "://");
	if (!sep)
		return xstrdup(url);
	struct strbuf sb;
	strbuf_init(&sb, strlen(url) + 16);
	const char *auth = sep + 3;
	strbuf_add(&sb, url, (size_t)(auth - url));
	size_t alen = strcspn(auth, "/?#");
	const char *at = NULL;
	for (const char *p = auth; p < auth + alen; p++)
		if (*p == '@')
			at = p; /* the host follows the last '@' */
	if (at) {
		/* user:password: the user stays; a lone user may be a token. */
		const char *colon = memchr(auth, ':', (size_t)(at - auth));
		if (colon && colon > auth)
			strbuf_add(&sb, auth, (size_t)(colon - auth) + 1);
		strbuf_adds(&sb, DRAIN_MASK);
		auth = at;
		alen -= (size_t)(at - (sep + 3));
	}
	const char *p = auth + alen;
	strbuf_add(&sb, auth, alen);
	size_t path = strcspn(p, "?#");
	strbuf_add(&sb, p, path);
	p += path;
	/* syslog+tls:// options name local files of the daemon: not secret. */
	if (*p == '?' && !str_starts_with(url, "syslog")) {
		strbuf_addc(&sb, '?');
		p++;
		while (*p && *p != '#') {
			size_t n = strcspn(p, "&#");
			const char *eq = memchr(p, '=', n);
			size_t key = eq ? (size_t)(eq - p) + 1 : 0;
			strbuf_add(&sb, p, key);
			if (n > key)
				strbuf_adds(&sb, DRAIN_MASK);
			p += n;
			if (*p == '&')
				strbuf_addc(&sb, *p++);
		}
	}
	strbuf_adds(&sb, p);
	return strbuf_detach(&sb, NULL);
}

const char *logs_drain_url(const struct logs_drain *d)
{
	return d->url;
}

const char *logs_drain_app(const struct logs_drain *d)
{
	return d->app;
}

struct logs_drain *logs_drain_new(uv_loop_t *loop, const char *url, const char *app, int64_t id,
				  char **err)
{
	struct logs_drain *d = xcalloc(1, sizeof(*d));
	d->open = 1;
	logs_parsed_init(&d->scratch);
	if (parse_url(d, url, err) < 0) {
		drain_release(d);
		return NULL;
	}
	d->url = xstrdup(url);
	d->shown = logs_drain_url_shown(url);
	d->app = app ? xstrdup(app) : NULL;
	d->id = id;
	d->loop = loop;
	if (gethostname(d->hostname, sizeof(d->hostname) - 1) < 0)
		strlcpy_s(d->hostname, "paasops", sizeof(d->hostname));
	if (!loop)
		return d; /* checked only */
	d->timer = xcalloc(1, sizeof(*d->timer));
	uv_timer_init(loop, d->timer);
	d->timer->data = d;
	d->open++;
	if (d->kind == DRAIN_HTTP)
		d->http = httpc_new(loop);
	return d;
}

static void timer_closed(uv_handle_t *h)
{
	struct logs_drain *d = h->data;
	free(h);
	drain_release(d);
}

void logs_drain_free(struct logs_drain *d)
{
	if (!d)
		return;
	d->closing = true;
	if (d->loop) {
		uv_close((uv_handle_t *)d->timer, timer_closed);
		conn_close(d);
		if (d->state == D_RESOLVING)
			uv_cancel((uv_req_t *)&d->gai);
		if (d->http) {
			/* Cancels the POST in flight without calling back. */
			httpc_free(d->http);
			d->http = NULL;
			if (d->posting) {
				d->posting = false;
				d->open--;
			}
		}
	}
	drain_release(d);
}

bool logs_drain_wants(const struct logs_drain *d, const char *app)
{
	return !d->app || (app && strcmp(d->app, app) == 0);
}

void logs_drain_push(struct logs_drain *d, const struct logs_rec *r)
{
	if (d->closing)
		return;
	struct strbuf sb;
	strbuf_init(&sb, r->len + 256);
	if (d->kind == DRAIN_SYSLOG) {
		struct strbuf m;
		strbuf_init(&m, r->len + 200);
		logs_drain_syslog_format(&m, r, d->hostname);
		strbuf_addf(&sb, "%zu ", m.len);
		strbuf_add(&sb, m.buf, m.len);
		strbuf_release(&m);
	} else {
		struct json *o = logs_rec_json(r, &d->scratch);
		char *s = json_print(o, false);
		strbuf_adds(&sb, s);
		strbuf_addc(&sb, '\n');
		free(s);
		json_free(o);
	}
	while (d->q.n && (d->q.n >= DRAIN_QUEUE_LINES || d->q.bytes + sb.len > DRAIN_QUEUE_BYTES)) {
		free(mq_pop(&d->q).text);
		d->dropped++;
	}
	size_t len;
	char *text = strbuf_detach(&sb, &len);
	mq_push(&d->q, (struct msg){text, len, 0});
	kick(d);
}

int64_t logs_drain_id(const struct logs_drain *d)
{
	return d->id;
}

struct json *logs_drain_json(const struct logs_drain *d)
{
	static const char *const states[] = {"idle", "connecting", "connecting", "up", "retrying",
					     "connecting"};
	struct json *o = json_object();
	json_set_int(o, "id", d->id);
	json_set_str(o, "app", d->app);
	json_set_str(o, "url", d->shown);
	json_set_str(o, "kind", d->kind == DRAIN_SYSLOG ? "syslog" : "http");
	json_set_str(o, "state", d->state == D_IDLE && d->kind == DRAIN_HTTP && d->posting ? "up" : states[d->state]);
	json_set_int(o, "sent", (int64_t)d->sent);
	json_set_int(o, "failed", (int64_t)d->failed);
	json_set_int(o, "dropped", (int64_t)d->dropped);
	json_set_int(o, "resent", (int64_t)d->resent);
	json_set_int(o, "queued", (int64_t)(d->q.n + d->flight.n));
	json_set_str(o, "last_error", d->last_error[0] ? d->last_error : NULL);
	return o;
}
