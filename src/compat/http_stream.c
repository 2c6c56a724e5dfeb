/* http_stream.c: the streaming llhttp adapter (see http_stream.h). */
#include "compat/http_stream.h"
#include "core/util.h"
#include <errno.h>
#include <llhttp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct http_stream {
	llhttp_t ll;
	llhttp_settings_t settings;
	enum http_kind kind;
	size_t max_header, head_bytes;
	bool too_big, aborted, bad_length, in_name, started, completed;
	bool url_too_long; /* too_big came while the request target was read */
	bool bad_name;     /* a header without a name */
	bool head_done; /* the head was handed over: trailer fields are only counted */
	/* The head's names and values, NUL-terminated one after the other, and
	 * where each starts: one buffer reused for every message, written as
	 * llhttp hands the bytes over. The head's pointers into it are set
	 * once the head is complete (the buffer may move while it grows). */
	struct strbuf arena;
	size_t *offs;
	size_t n_offs, alloc_offs;
	struct http_head head;
	const struct http_stream_cbs *cbs;
	void *ctx;
	const char *error;
};

#define S(ll) ((struct http_stream *)(ll)->data)

static int count(struct http_stream *s, size_t n)
{
	s->head_bytes += n;
	if (s->head_bytes > s->max_header) {
		s->too_big = true;
		return -1;
	}
	return 0;
}

static void push_offset(struct http_stream *s)
{
	s->offs = xgrow(s->offs, sizeof(*s->offs), s->n_offs + 1, &s->alloc_offs);
	s->offs[s->n_offs++] = s->arena.len;
}

static bool name_is(const char *name, const char *known, size_t len)
{
	return strncasecmp(name, known, len) == 0;
}

enum http_hdr http_hdr_id(const char *name, size_t len)
{
	switch (len) {
	case 2:
		return name_is(name, "te", 2) ? HH_TE : HH_OTHER;
	case 4:
		return name_is(name, "host", 4) ? HH_HOST : HH_OTHER;
	case 6:
		return name_is(name, "cookie", 6) ? HH_COOKIE : HH_OTHER;
	case 7:
		if (name_is(name, "upgrade", 7))
			return HH_UPGRADE;
		return name_is(name, "trailer", 7) ? HH_TRAILER : HH_OTHER;
	case 10:
		if (name_is(name, "connection", 10))
			return HH_CONNECTION;
		return name_is(name, "keep-alive", 10) ? HH_KEEP_ALIVE : HH_OTHER;
	case 12:
		return name_is(name, "x-request-id", 12) ? HH_X_REQUEST_ID : HH_OTHER;
	case 14:
		return name_is(name, "content-length", 14) ? HH_CONTENT_LENGTH : HH_OTHER;
	case 15:
		return name_is(name, "x-forwarded-for", 15) ? HH_X_FORWARDED_FOR : HH_OTHER;
	case 16:
		if (name_is(name, "x-forwarded-host", 16))
			return HH_X_FORWARDED_HOST;
		return name_is(name, "proxy-connection", 16) ? HH_PROXY_CONNECTION : HH_OTHER;
	case 17:
		if (name_is(name, "transfer-encoding", 17))
			return HH_TRANSFER_ENCODING;
		return name_is(name, "x-forwarded-proto", 17) ? HH_X_FORWARDED_PROTO : HH_OTHER;
	default:
		return HH_OTHER;
	}
}

static void point_headers(struct http_stream *s)
{
	struct http_head *h = &s->head;
	size_t n = s->n_offs / 2;
	if (n > h->alloc_headers)
		h->headers = xgrow(h->headers, sizeof(*h->headers), n, &h->alloc_headers);
	if (n > h->alloc_ids)
		h->ids = xgrow(h->ids, sizeof(*h->ids), n, &h->alloc_ids);
	memset(h->first, 0, sizeof(h->first));
	memset(h->count, 0, sizeof(h->count));
	for (size_t k = 0; k < n; k++) {
		char *name = s->arena.buf + s->offs[2 * k];
		char *value = s->arena.buf + s->offs[2 * k + 1];
		h->headers[k].name = name;
		h->headers[k].value = value;
		/* The name ends where its NUL is, just before the value. */
		enum http_hdr id = http_hdr_id(name, s->offs[2 * k + 1] - s->offs[2 * k] - 1);
		h->ids[k] = (unsigned char)id;
		if (!h->count[id]++)
			h->first[id] = value;
	}
	h->first[HH_OTHER] = NULL;
	h->n_headers = n;
}

static int on_message_begin(llhttp_t *ll)
{
	S(ll)->started = true;
	return 0;
}

static int on_method(llhttp_t *ll, const char *at, size_t n)
{
	struct http_stream *s = S(ll);
	size_t have = strlen(s->head.method);
	if (have + n >= sizeof(s->head.method))
		return -1;
	memcpy(s->head.method + have, at, n);
	s->head.method[have + n] = '\0';
	return 0;
}

static int on_url(llhttp_t *ll, const char *at, size_t n)
{
	struct http_stream *s = S(ll);
	if (count(s, n)) {
		s->url_too_long = true;
		return -1;
	}
	strbuf_add(&s->head.url, at, n);
	return 0;
}

static int on_header_field(llhttp_t *ll, const char *at, size_t n)
{
	struct http_stream *s = S(ll);
	if (count(s, n))
		return -1;
	if (s->head_done || n == 0)
		return 0; /* llhttp reports an empty name as an empty piece */
	if (!s->in_name) {
		s->in_name = true;
		push_offset(s);
	}
	strbuf_add(&s->arena, at, n);
	return 0;
}

static int on_header_field_complete(llhttp_t *ll)
{
	struct http_stream *s = S(ll);
	if (s->head_done)
		return 0;
	if (!s->in_name) {
		/* ": value", which llhttp lets through (RFC 9110 section 5.1) */
		s->bad_name = true;
		return -1;
	}
	s->in_name = false;
	strbuf_addc(&s->arena, '\0');
	push_offset(s);
	return 0;
}

static int on_header_value(llhttp_t *ll, const char *at, size_t n)
{
	struct http_stream *s = S(ll);
	if (count(s, n))
		return -1;
	if (!s->head_done)
		strbuf_add(&s->arena, at, n);
	return 0;
}

static int on_header_value_complete(llhttp_t *ll)
{
	struct http_stream *s = S(ll);
	if (s->head_done)
		return 0;
	/* Whitespace after a value is not part of it (RFC 9112 section 5;
	 * llhttp drops only the whitespace before it). */
	size_t start = s->offs[s->n_offs - 1];
	while (s->arena.len > start &&
	       (s->arena.buf[s->arena.len - 1] == ' ' || s->arena.buf[s->arena.len - 1] == '\t'))
		s->arena.len--;
	strbuf_addc(&s->arena, '\0');
	return 0;
}

static int on_headers_complete(llhttp_t *ll)
{
	struct http_stream *s = S(ll);
	point_headers(s);
	s->head_done = true;
	/* llhttp takes any 64-bit Content-Length; the head holds it signed. */
	if ((ll->flags & F_CONTENT_LENGTH) && ll->content_length > INT64_MAX) {
		s->bad_length = true;
		return -1;
	}
	struct http_head *h = &s->head;
	h->status = ll->status_code;
	h->major = ll->http_major;
	h->minor = ll->http_minor;
	h->chunked = (ll->flags & F_CHUNKED) != 0;
	h->content_length = (ll->flags & F_CONTENT_LENGTH) ? (int64_t)ll->content_length : -1;
	h->keep_alive = llhttp_should_keep_alive(ll) != 0;
	h->upgrade = ll->upgrade != 0;
	int r = s->cbs->on_head(s->ctx, h);
	if (r < 0) {
		s->aborted = true;
		return -1;
	}
	return r;
}

static int on_body(llhttp_t *ll, const char *at, size_t n)
{
	struct http_stream *s = S(ll);
	if (s->cbs->on_body(s->ctx, at, n) < 0) {
		s->aborted = true;
		return -1;
	}
	return 0;
}

static int on_message_complete(llhttp_t *ll)
{
	struct http_stream *s = S(ll);
	s->completed = true;
	s->cbs->on_complete(s->ctx);
	return HPE_PAUSED;
}

struct http_stream *http_stream_new(enum http_kind kind, size_t max_header,
				    const struct http_stream_cbs *cbs, void *ctx)
{
	struct http_stream *s = xcalloc(1, sizeof(*s));
	s->kind = kind;
	s->max_header = max_header;
	s->cbs = cbs;
	s->ctx = ctx;
	strbuf_init(&s->arena, 0);
	strbuf_init(&s->head.url, 0);
	llhttp_settings_init(&s->settings);
	s->settings.on_message_begin = on_message_begin;
	s->settings.on_method = on_method;
	s->settings.on_url = on_url;
	s->settings.on_header_field = on_header_field;
	s->settings.on_header_field_complete = on_header_field_complete;
	s->settings.on_header_value = on_header_value;
	s->settings.on_header_value_complete = on_header_value_complete;
	s->settings.on_headers_complete = on_headers_complete;
	s->settings.on_body = on_body;
	s->settings.on_message_complete = on_message_complete;
	llhttp_init(&s->ll, kind == HTTP_KIND_REQUEST ? HTTP_REQUEST : HTTP_RESPONSE, &s->settings);
	s->ll.data = s;
	return s;
}

static void clear_head(struct http_stream *s)
{
	struct http_head *h = &s->head;
	h->n_headers = 0;
	s->n_offs = 0;
	if (s->arena.alloc > 16 * 1024)
		strbuf_release(&s->arena); /* a rare huge head keeps no memory */
	else
		strbuf_reset(&s->arena);
	h->method[0] = '\0';
	strbuf_reset(&h->url);
	s->head_bytes = 0;
	s->in_name = false;
	s->head_done = false;
	s->started = false;
	s->completed = false;
}

void http_stream_free(struct http_stream *s)
{
	if (!s)
		return;
	clear_head(s);
	free(s->head.headers);
	free(s->head.ids);
	free(s->offs);
	strbuf_release(&s->arena);
	strbuf_release(&s->head.url);
	free(s);
}

static int result(struct http_stream *s, llhttp_errno_t e, const char *data, size_t len,
		  size_t *consumed)
{
	if (e == HPE_OK) {
		*consumed = len;
		return HTTP_STREAM_OK;
	}
	const char *pos = llhttp_get_error_pos(&s->ll);
	*consumed = pos && data ? (size_t)(pos - data) : len;
	if (e == HPE_PAUSED && s->completed)
		return HTTP_STREAM_PAUSED;
	if (e == HPE_PAUSED_UPGRADE)
		return HTTP_STREAM_UPGRADED;
	if (s->too_big)
		return -EMSGSIZE;
	if (s->aborted)
		return -ECANCELED;
	if (s->bad_length) {
		s->error = "Content-Length is too large";
		return -EPROTO;
	}
	if (s->bad_name) {
		s->error = "a header without a name";
		return -EPROTO;
	}
	s->error = llhttp_get_error_reason(&s->ll);
	if (!s->error)
		s->error = llhttp_errno_name(e);
	return -EPROTO;
}

int http_stream_feed(struct http_stream *s, const char *data, size_t len, size_t *consumed)
{
	/* A parser that stopped (paused, upgraded, failed) returns the same
	 * error again without reading, and its error position then points into
	 * the buffer of an earlier call: nothing of this one is consumed. */
	llhttp_errno_t stopped = llhttp_get_errno(&s->ll);
	if (stopped != HPE_OK)
		return result(s, stopped, NULL, 0, consumed);
	return result(s, llhttp_execute(&s->ll, data, len), data, len, consumed);
}

int http_stream_finish(struct http_stream *s)
{
	size_t c;
	llhttp_errno_t e = llhttp_finish(&s->ll);
	if (s->completed)
		return HTTP_STREAM_PAUSED;
	return result(s, e, NULL, 0, &c);
}

void http_stream_next(struct http_stream *s)
{
	clear_head(s);
	if (llhttp_get_errno(&s->ll) == HPE_PAUSED)
		llhttp_resume(&s->ll);
}

bool http_stream_url_too_long(const struct http_stream *s)
{
	return s->too_big && s->url_too_long;
}

const char *http_stream_error(const struct http_stream *s)
{
	return s->error ? s->error : "malformed HTTP message";
}

bool http_stream_in_message(const struct http_stream *s)
{
	return s->started && !s->completed;
}

const char *http_head_get(const struct http_head *h, const char *name)
{
	for (size_t k = 0; k < h->n_headers; k++)
		if (strcasecmp(h->headers[k].name, name) == 0)
			return h->headers[k].value;
	return NULL;
}
