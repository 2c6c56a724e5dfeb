/* http.c: the llhttp adapter (see http.h). */
#include "compat/http.h"
#include "core/util.h"
#include <ctype.h>
#include <errno.h>
#include <llhttp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct http_parser {
	llhttp_t ll;
	llhttp_settings_t settings;
	enum http_kind kind;
	size_t max_header, max_body;
	size_t head_bytes;
	bool complete;
	bool too_big_head, too_big_body;
	bool in_value; /* last header callback was a value */
	struct http_msg msg;
	struct strbuf hname, hvalue;
	http_body_cb body_cb;
	void *body_ctx;
	http_head_cb head_cb;
	void *head_ctx;
	bool aborted;
	size_t streamed, max_body_default;
	const char *error;
};

#define P(ll) ((struct http_parser *)(ll)->data)

static int count_head(struct http_parser *p, size_t n)
{
	p->head_bytes += n;
	if (p->head_bytes > p->max_header) {
		p->too_big_head = true;
		return -1;
	}
	return 0;
}

static void flush_header(struct http_parser *p)
{
	if (!p->hname.len && !p->hvalue.len)
		return;
	struct http_msg *m = &p->msg;
	m->headers = xgrow(m->headers, sizeof(*m->headers), m->n_headers + 1, &m->alloc_headers);
	m->headers[m->n_headers].name = strbuf_detach(&p->hname, NULL);
	m->headers[m->n_headers].value = strbuf_detach(&p->hvalue, NULL);
	m->n_headers++;
}

static int on_url(llhttp_t *ll, const char *at, size_t n)
{
	struct http_parser *p = P(ll);
	if (count_head(p, n))
		return -1;
	strbuf_add(&p->msg.url, at, n);
	return 0;
}

static int on_method(llhttp_t *ll, const char *at, size_t n)
{
	struct http_parser *p = P(ll);
	size_t have = strlen(p->msg.method);
	if (have + n >= sizeof(p->msg.method))
		return -1;
	memcpy(p->msg.method + have, at, n);
	p->msg.method[have + n] = '\0';
	return 0;
}

static int on_header_field(llhttp_t *ll, const char *at, size_t n)
{
	struct http_parser *p = P(ll);
	if (count_head(p, n))
		return -1;
	if (p->in_value) {
		flush_header(p);
		p->in_value = false;
	}
	strbuf_add(&p->hname, at, n);
	return 0;
}

static int on_header_value(llhttp_t *ll, const char *at, size_t n)
{
	struct http_parser *p = P(ll);
	if (count_head(p, n))
		return -1;
	p->in_value = true;
	strbuf_add(&p->hvalue, at, n);
	return 0;
}

static int on_headers_complete(llhttp_t *ll)
{
	struct http_parser *p = P(ll);
	flush_header(p);
	p->in_value = false;
	p->msg.status = ll->status_code;
	p->msg.chunked = (ll->flags & F_CHUNKED) != 0;
	if (p->head_cb && p->head_cb(p->head_ctx, &p->msg) < 0) {
		p->aborted = true;
		return -1;
	}
	if (p->max_body && (ll->flags & F_CONTENT_LENGTH) && ll->content_length > p->max_body) {
		p->too_big_body = true;
		return -1;
	}
	return 0;
}

static int on_body(llhttp_t *ll, const char *at, size_t n)
{
	struct http_parser *p = P(ll);
	if (p->body_cb) {
		p->streamed += n;
		if (p->max_body && p->streamed > p->max_body) {
			p->too_big_body = true;
			return -1;
		}
		if (p->body_cb(p->body_ctx, at, n)) {
			p->aborted = true;
			return -1;
		}
		return 0;
	}
	if (p->max_body && p->msg.body.len + n > p->max_body) {
		p->too_big_body = true;
		return -1;
	}
	strbuf_add(&p->msg.body, at, n);
	return 0;
}

static int on_message_complete(llhttp_t *ll)
{
	struct http_parser *p = P(ll);
	p->msg.keep_alive = llhttp_should_keep_alive(ll) != 0;
	p->complete = true;
	return HPE_PAUSED;
}

struct http_parser *http_parser_new(enum http_kind kind, size_t max_header, size_t max_body)
{
	struct http_parser *p = xcalloc(1, sizeof(*p));
	p->kind = kind;
	p->max_header = max_header;
	p->max_body = p->max_body_default = max_body;
	llhttp_settings_init(&p->settings);
	p->settings.on_url = on_url;
	p->settings.on_method = on_method;
	p->settings.on_header_field = on_header_field;
	p->settings.on_header_value = on_header_value;
	p->settings.on_headers_complete = on_headers_complete;
	p->settings.on_body = on_body;
	p->settings.on_message_complete = on_message_complete;
	strbuf_init(&p->msg.url, 0);
	strbuf_init(&p->msg.body, 0);
	strbuf_init(&p->hname, 0);
	strbuf_init(&p->hvalue, 0);
	llhttp_init(&p->ll, kind == HTTP_KIND_REQUEST ? HTTP_REQUEST : HTTP_RESPONSE, &p->settings);
	p->ll.data = p;
	return p;
}

static void clear_msg(struct http_parser *p)
{
	struct http_msg *m = &p->msg;
	for (size_t i = 0; i < m->n_headers; i++) {
		free(m->headers[i].name);
		free(m->headers[i].value);
	}
	m->n_headers = 0;
	strbuf_reset(&m->url);
	strbuf_reset(&m->body);
	strbuf_reset(&p->hname);
	strbuf_reset(&p->hvalue);
	m->method[0] = '\0';
	m->status = 0;
	m->keep_alive = false;
	m->chunked = false;
	p->head_bytes = 0;
	p->complete = false;
	p->in_value = false;
	p->too_big_head = p->too_big_body = false;
	p->aborted = false;
	p->streamed = 0;
	if (p->head_cb) {
		/* Streaming is chosen per message by the head callback. */
		p->body_cb = NULL;
		p->max_body = p->max_body_default;
	}
	p->error = NULL;
}

void http_parser_free(struct http_parser *p)
{
	if (!p)
		return;
	clear_msg(p);
	free(p->msg.headers);
	strbuf_release(&p->msg.url);
	strbuf_release(&p->msg.body);
	strbuf_release(&p->hname);
	strbuf_release(&p->hvalue);
	free(p);
}

void http_parser_on_head(struct http_parser *p, http_head_cb cb, void *ctx)
{
	p->head_cb = cb;
	p->head_ctx = ctx;
}

void http_parser_max_body(struct http_parser *p, size_t max_body)
{
	p->max_body = max_body;
}

void http_parser_stream_body(struct http_parser *p, http_body_cb cb, void *ctx)
{
	p->body_cb = cb;
	p->body_ctx = ctx;
}

static int map_error(struct http_parser *p, llhttp_errno_t e)
{
	if (p->aborted)
		return -ECANCELED;
	if (p->too_big_head)
		return -EMSGSIZE;
	if (p->too_big_body)
		return -EFBIG;
	p->error = llhttp_get_error_reason(&p->ll);
	if (!p->error)
		p->error = llhttp_errno_name(e);
	return -EPROTO;
}

int http_parser_feed(struct http_parser *p, const char *data, size_t len, size_t *consumed)
{
	*consumed = 0;
	if (p->complete)
		return HTTP_FEED_COMPLETE;
	llhttp_errno_t e = llhttp_execute(&p->ll, data, len);
	if (e == HPE_OK) {
		*consumed = len;
		return HTTP_FEED_MORE;
	}
	if (e == HPE_PAUSED && p->complete) {
		const char *pos = llhttp_get_error_pos(&p->ll);
		*consumed = pos ? (size_t)(pos - data) : len;
		return HTTP_FEED_COMPLETE;
	}
	if (e == HPE_PAUSED_UPGRADE && p->complete) {
		*consumed = len;
		return HTTP_FEED_COMPLETE;
	}
	return map_error(p, e);
}

int http_parser_finish(struct http_parser *p)
{
	if (p->complete)
		return HTTP_FEED_COMPLETE;
	llhttp_errno_t e = llhttp_finish(&p->ll);
	if (p->complete)
		return HTTP_FEED_COMPLETE;
	if (e == HPE_OK)
		return HTTP_FEED_MORE;
	return map_error(p, e);
}

struct http_msg *http_parser_msg(struct http_parser *p)
{
	return &p->msg;
}

const char *http_parser_error(const struct http_parser *p)
{
	return p->error ? p->error : "malformed HTTP message";
}

void http_parser_reset(struct http_parser *p)
{
	clear_msg(p);
	if (llhttp_get_errno(&p->ll) == HPE_PAUSED)
		llhttp_resume(&p->ll);
	else
		llhttp_init(&p->ll, p->kind == HTTP_KIND_REQUEST ? HTTP_REQUEST : HTTP_RESPONSE,
			    &p->settings);
	p->ll.data = p;
}

const char *http_msg_header(const struct http_msg *m, const char *name)
{
	for (size_t i = 0; i < m->n_headers; i++)
		if (strcasecmp(m->headers[i].name, name) == 0)
			return m->headers[i].value;
	return NULL;
}

const char *http_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 102: return "Processing";
	case 103: return "Early Hints";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 203: return "Non-Authoritative Information";
	case 204: return "No Content";
	case 205: return "Reset Content";
	case 206: return "Partial Content";
	case 207: return "Multi-Status";
	case 208: return "Already Reported";
	case 226: return "IM Used";
	case 300: return "Multiple Choices";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 303: return "See Other";
	case 304: return "Not Modified";
	case 305: return "Use Proxy";
	case 307: return "Temporary Redirect";
	case 308: return "Permanent Redirect";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 402: return "Payment Required";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 406: return "Not Acceptable";
	case 407: return "Proxy Authentication Required";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 411: return "Length Required";
	case 412: return "Precondition Failed";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 416: return "Range Not Satisfiable";
	case 417: return "Expectation Failed";
	case 418: return "I'm a teapot";
	case 421: return "Misdirected Request";
	case 422: return "Unprocessable Content";
	case 423: return "Locked";
	case 424: return "Failed Dependency";
	case 425: return "Too Early";
	case 426: return "Upgrade Required";
	case 428: return "Precondition Required";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 451: return "Unavailable For Legal Reasons";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	case 506: return "Variant Also Negotiates";
	case 507: return "Insufficient Storage";
	case 508: return "Loop Detected";
	case 510: return "Not Extended";
	case 511: return "Network Authentication Required";
	default: return ""; /* the reason phrase is optional (RFC 9112 section 4) */
	}
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int http_url_decode(char *s, bool plus_is_space)
{
	char *w = s;
	for (char *r = s; *r; r++) {
		if (*r == '%') {
			int hi = hexval((unsigned char)r[1]);
			int lo = hi >= 0 ? hexval((unsigned char)r[2]) : -1;
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				return -EINVAL; /* %00 would cut the string short */
			*w++ = (char)(hi * 16 + lo);
			r += 2;
		} else if (*r == '+' && plus_is_space) {
			*w++ = ' ';
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
	return 0;
}

char *http_url_encode(const char *s)
{
	struct strbuf sb;
	strbuf_init(&sb, strlen(s) * 3);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~')
			strbuf_addc(&sb, (char)*p);
		else
			strbuf_addf(&sb, "%%%02X", *p);
	}
	return strbuf_detach(&sb, NULL);
}
