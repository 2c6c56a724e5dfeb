/* cli_client.c: the CLI's HTTP client. One request per connection
 * (Connection: close) over a unix or TCP socket, or TLS over TCP for
 * https:// (through compat/tls, which waits with our poll()), blocking I/O
 * guarded by poll() so that connecting and every wait for data time out, and
 * the answer parsed by the llhttp adapter. Also parses --server addresses. */
#include "cli/cli_internal.h"
#include "compat/http.h"
#include "compat/json.h"
#include "compat/tls.h"
#include "core/timeutil.h"
#include "core/util.h"
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Addresses                                                                */

static int parse_port(const char *s, size_t len, char **out)
{
	if (len == 0 || len > 5)
		return -EINVAL;
	long v = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return -EINVAL;
	*out = xasprintf("%ld", v);
	return 0;
}

/* "host", "host:port", "[v6]", "[v6]:port"; port_required for the bare
 * HOST:PORT form. a->tls picks the scheme and the default port. */
static int parse_hostport(const char *s, bool port_required, struct cli_addr *a, char **err)
{
	const char *host = s, *host_end, *rest;
	if (*s == '[') {
		host = s + 1;
		host_end = strchr(host, ']');
		if (!host_end || host_end == host) {
			*err = xasprintf("invalid server address '%s': unterminated '[' in host", s);
			return -EINVAL;
		}
		rest = host_end + 1;
	} else {
		host_end = strchr(s, ':');
		if (!host_end)
			host_end = s + strlen(s);
		rest = host_end;
	}
	if (host_end == host) {
		*err = xasprintf("invalid server address '%s': missing host", s);
		return -EINVAL;
	}
	if (*rest == '\0' && !port_required) {
		a->port = xstrdup(a->tls ? "443" : "80");
	} else if (*rest != ':' || parse_port(rest + 1, strlen(rest + 1), &a->port) < 0) {
		*err = xasprintf("invalid server address '%s': expected HOST:PORT with a port "
				 "from 1 to 65535",
				 s);
		return -EINVAL;
	}
	a->host = xstrndup(host, (size_t)(host_end - host));
	a->kind = CLI_ADDR_TCP;
	const char *scheme = a->tls ? "https" : "http";
	a->display = strchr(a->host, ':') ? xasprintf("%s://[%s]:%s", scheme, a->host, a->port)
					  : xasprintf("%s://%s:%s", scheme, a->host, a->port);
	return 0;
}

int cli__addr_parse(const char *s, struct cli_addr *out, char **err)
{
	memset(out, 0, sizeof(*out));
	if (!s || !*s) {
		*err = xstrdup("empty server address");
		return -EINVAL;
	}
	const char *path = NULL;
	if (str_starts_with(s, "unix:")) {
		path = s + 5;
		if (str_starts_with(path, "//"))
			path += 2; /* unix:///run/x.sock */
	} else if (s[0] == '/' || str_starts_with(s, "./")) {
		path = s;
	}
	if (path) {
		if (!*path) {
			*err = xasprintf("invalid server address '%s': missing socket path", s);
			return -EINVAL;
		}
		out->kind = CLI_ADDR_UNIX;
		out->path = xstrdup(path);
		out->display = xasprintf("unix:%s", path);
		return 0;
	}

	if (str_starts_with(s, "http://") || str_starts_with(s, "https://")) {
		out->tls = str_starts_with(s, "https://");
		char *hp = xstrdup(s + (out->tls ? 8 : 7));
		size_t len = strlen(hp);
		if (len && hp[len - 1] == '/')
			hp[--len] = '\0';
		int r = strchr(hp, '/') ? -EINVAL : 0;
		if (r < 0)
			*err = xasprintf("invalid server address '%s': a path is not allowed", s);
		else
			r = parse_hostport(hp, false, out, err);
		free(hp);
		if (r < 0)
			cli__addr_release(out);
		return r;
	}
	if (strstr(s, "://")) {
		*err = xasprintf("invalid server address '%s': use unix:/path/to.sock or "
				 "http(s)://HOST:PORT",
				 s);
		return -EINVAL;
	}
	if (strchr(s, ':')) {
		int r = parse_hostport(s, true, out, err);
		if (r < 0)
			cli__addr_release(out);
		return r;
	}
	*err = xasprintf("invalid server address '%s': use unix:/path/to.sock or http(s)://HOST:PORT",
			 s);
	return -EINVAL;
}

void cli__addr_release(struct cli_addr *a)
{
	free(a->path);
	free(a->host);
	free(a->port);
	free(a->display);
	memset(a, 0, sizeof(*a));
}

/* ------------------------------------------------------------------------ */
/* Exit codes                                                               */

int cli__exit_for_status(int status)
{
	return status >= 200 && status < 300 ? CLI_EXIT_OK : CLI_EXIT_FAILED;
}

/* A daemon that answers garbage is reachable: that is a failed operation,
 * not a connectivity problem. */
int cli__exit_for_transport(int rc)
{
	switch (rc) {
	case 0:
		return CLI_EXIT_OK;
	case -EPROTO:
	case -EMSGSIZE:
	case -EFBIG:
	case -EIO: /* a local file to upload cannot be read */
		return CLI_EXIT_FAILED;
	default:
		return CLI_EXIT_UNREACHABLE;
	}
}

/* ------------------------------------------------------------------------ */
/* Socket I/O                                                               */

/* Waits for events on fd for at most timeout_ms. Returns 0, -ETIMEDOUT, or
 * -EINTR when a signal arrived and the caller asked to stop. */
static int wait_fd(const struct cli_client *c, int fd, short events)
{
	int64_t deadline = time_mono_ms() + c->timeout_ms;
	for (;;) {
		int64_t left = deadline - time_mono_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		if (c->stop && *c->stop)
			return -EINTR;
		/* A signal that came just before poll would not interrupt it:
		 * look at the flag again at least every 250 ms. */
		int slice = c->stop && left > 250 ? 250 : (int)left;
		struct pollfd pfd = {.fd = fd, .events = events};
		int n = poll(&pfd, 1, slice);
		if (n > 0)
			return 0;
		if (n == 0 && slice < left)
			continue;
		if (n == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
		if (c->stop && *c->stop)
			return -EINTR;
	}
}

static int tls_wait(void *arg, int fd, bool for_write)
{
	return wait_fd(arg, fd, for_write ? POLLOUT : POLLIN);
}

static int set_nonblocking(int fd, bool on)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

/* Connects fd to sa with the client's timeout, then makes it blocking. */
static int connect_timeout(const struct cli_client *c, int fd, const struct sockaddr *sa,
			   socklen_t len)
{
	int r = set_nonblocking(fd, true);
	if (r < 0)
		return r;
	if (connect(fd, sa, len) < 0) {
		if (errno != EINPROGRESS && errno != EINTR)
			return -errno;
		r = wait_fd(c, fd, POLLOUT);
		if (r < 0)
			return r;
		int soerr = 0;
		socklen_t sl = sizeof(soerr);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			return -errno;
		if (soerr)
			return -soerr;
	}
	return set_nonblocking(fd, false);
}

static int connect_unix(const struct cli_client *c, int *out)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (strlen(c->addr->path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	strlcpy_s(sun.sun_path, c->addr->path, sizeof(sun.sun_path));
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int r = connect_timeout(c, fd, (struct sockaddr *)&sun, sizeof(sun));
	if (r < 0) {
		close(fd);
		return r;
	}
	*out = fd;
	return 0;
}

/* Tries every address the name resolves to; the last failure is reported. */
static int connect_tcp(const struct cli_client *c, int *out, char **err)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;
	int g = getaddrinfo(c->addr->host, c->addr->port, &hints, &res);
	if (g != 0) {
		*err = xasprintf("cannot reach paasops at %s: %s", c->addr->display,
				 g == EAI_SYSTEM ? strerror(errno) : gai_strerror(g));
		return -EHOSTUNREACH;
	}
	int r = -ECONNREFUSED;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			r = -errno;
			continue;
		}
		r = connect_timeout(c, fd, ai->ai_addr, ai->ai_addrlen);
		if (r == 0) {
			*out = fd;
			break;
		}
		close(fd);
		if (r == -EINTR)
			break;
	}
	freeaddrinfo(res);
	return r;
}

/* A connection to the daemon: a socket, with a TLS session over https. */
struct cli_conn {
	int fd;
	struct tls_conn *tls; /* NULL in clear */
};

/* Connects, and over https runs the TLS handshake, which verifies that
 * the certificate chains to a trusted CA and names the host. */
static int conn_open(const struct cli_client *c, struct cli_conn *cn, char **err)
{
	cn->fd = -1;
	cn->tls = NULL;
	int r = c->addr->kind == CLI_ADDR_UNIX ? connect_unix(c, &cn->fd) : connect_tcp(c, &cn->fd, err);
	if (r < 0 || !c->addr->tls)
		return r;
	char *why = NULL;
	r = c->tls ? tls_conn_client(c->tls, cn->fd, c->addr->host, tls_wait, (void *)c, &cn->tls, &why)
		   : -ENOPROTOOPT;
	if (r < 0) {
		close(cn->fd);
		cn->fd = -1;
		if (why)
			*err = xasprintf("cannot reach paasops at %s: %s", c->addr->display, why);
		free(why);
	}
	return r;
}

static void conn_close(struct cli_conn *cn)
{
	tls_conn_free(cn->tls);
	cn->tls = NULL;
	if (cn->fd >= 0)
		close(cn->fd);
	cn->fd = -1;
}

/* Reads what is there (waiting for it): n > 0, 0 at EOF, or a negative
 * errno (-EPROTO with *detail set when a TLS record is broken). */
static ssize_t conn_recv(const struct cli_client *c, struct cli_conn *cn, char *buf, size_t len,
			 char **detail)
{
	if (cn->tls)
		return tls_conn_read(cn->tls, buf, len, tls_wait, (void *)c, detail);
	for (;;) {
		int r = wait_fd(c, cn->fd, POLLIN);
		if (r < 0)
			return r;
		ssize_t n = recv(cn->fd, buf, len, 0);
		if (n >= 0)
			return n;
		if (errno != EINTR && errno != EAGAIN)
			return -errno;
	}
}

static int send_all(const struct cli_client *c, struct cli_conn *cn, const char *buf, size_t len)
{
	if (cn->tls)
		return tls_conn_write(cn->tls, buf, len, tls_wait, (void *)c);
	int fd = cn->fd;
	while (len) {
		int r = wait_fd(c, fd, POLLOUT);
		if (r < 0)
			return r;
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads until the parser has a whole answer. *got_any tells a connection
 * closed before any byte from one closed mid-answer. */
static int read_response(const struct cli_client *c, struct cli_conn *cn, struct http_parser *p,
			 bool *got_any, char **perr)
{
	char buf[65536];
	for (;;) {
		int r;
		ssize_t n = conn_recv(c, cn, buf, sizeof(buf), perr);
		if (n < 0)
			return (int)n;
		if (n == 0) {
			r = http_parser_finish(p);
			if (r == HTTP_FEED_COMPLETE)
				return 0;
			if (r == HTTP_FEED_MORE)
				return *got_any ? -EPROTO : -ECONNRESET;
			*perr = xstrdup(http_parser_error(p));
			return r;
		}
		*got_any = true;
		size_t used;
		r = http_parser_feed(p, buf, (size_t)n, &used);
		if (r == HTTP_FEED_COMPLETE)
			return 0;
		if (r < 0) {
			*perr = xstrdup(r == -EPROTO ? http_parser_error(p)
					: r == -EMSGSIZE ? "response head too large"
							 : "response body too large");
			return -EPROTO;
		}
	}
}

/* ------------------------------------------------------------------------ */
/* Requests                                                                 */

void cli__request_format_head(struct strbuf *out, const struct cli_client *c, const char *method,
			     const char *path, const char *content_type, uint64_t body_len,
			     const char *const *headers)
{
	const struct cli_addr *a = c->addr;
	strbuf_addf(out, "%s %s HTTP/1.1\r\n", method, path);
	if (a->kind == CLI_ADDR_TCP)
		strbuf_addf(out, strchr(a->host, ':') ? "Host: [%s]:%s\r\n" : "Host: %s:%s\r\n",
			    a->host, a->port);
	else
		strbuf_adds(out, "Host: localhost\r\n");
	strbuf_adds(out, "User-Agent: paasops-cli/" PAASOPS_VERSION "\r\n");
	strbuf_adds(out, "Accept: application/json\r\n");
	if (c->token)
		strbuf_addf(out, "Authorization: Bearer %s\r\n", c->token);
	if (content_type)
		strbuf_addf(out, "Content-Type: %s\r\n", content_type);
	for (const char *const *h = headers; h && *h; h++)
		strbuf_addf(out, "%s\r\n", *h);
	strbuf_addf(out, "Content-Length: %llu\r\n", (unsigned long long)body_len);
	strbuf_adds(out, "Connection: close\r\n\r\n");
}

void cli__request_format(struct strbuf *out, const struct cli_client *c, const char *method,
			const char *path, const char *body, size_t body_len)
{
	cli__request_format_head(out, c, method, path, body ? "application/json" : NULL,
				 body ? body_len : 0, NULL);
	if (body)
		strbuf_add(out, body, body_len);
}

/* Turns a failure into the message the user sees. */
static char *describe(const struct cli_client *c, int rc, const char *detail)
{
	const char *where = c->addr->display;
	switch (rc) {
	case -ETIMEDOUT:
		return xasprintf("paasops at %s did not answer within %ds", where,
				 c->timeout_ms / 1000);
	case -EPROTO:
		return xasprintf("bad answer from paasops at %s: %s", where,
				 detail ? detail : "connection closed in the middle of the answer");
	case -ECONNRESET:
		return xasprintf("cannot reach paasops at %s: connection closed without an answer",
				 where);
	case -ECONNABORTED:
		return xasprintf("paasops at %s closed the connection in the middle of its answer "
				 "(it stopped or restarted)",
				 where);
	default:
		return xasprintf("cannot reach paasops at %s: %s", where, strerror(-rc));
	}
}

/* Streams len bytes of fd in chunks; a file that shrinks while being sent
 * is an error, since the Content-Length already promised its size. */
static int send_file(const struct cli_client *c, struct cli_conn *sock, int fd, uint64_t len,
		     char **err)
{
	char buf[65536];
	while (len) {
		ssize_t n = read(fd, buf, len < sizeof(buf) ? (size_t)len : sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			*err = n < 0 ? xasprintf("cannot read the upload: %s", strerror(errno))
				     : xstrdup("the upload changed size while it was sent");
			return -EIO;
		}
		int r = send_all(c, sock, buf, (size_t)n);
		if (r < 0)
			return r;
		len -= (uint64_t)n;
	}
	return 0;
}

/* One exchange: the head (with the body when it is in memory), then the
 * file's bytes when file_fd >= 0, then the answer. */
static int exchange(const struct cli_client *c, const char *head, size_t head_len, int file_fd,
		    uint64_t file_len, struct cli_response *res, char **err)
{
	struct cli_conn cn;
	char *detail = NULL;
	*err = NULL;
	int r = conn_open(c, &cn, err);
	if (r < 0) {
		if (r != -EINTR && !*err)
			*err = describe(c, r, NULL);
		return r;
	}
	int send_rc = send_all(c, &cn, head, head_len);
	if (send_rc == 0 && file_fd >= 0) {
		send_rc = send_file(c, &cn, file_fd, file_len, err);
		if (send_rc == -EIO) {
			conn_close(&cn);
			return send_rc;
		}
	}

	/* A daemon may answer (413, 401) and close before reading the whole
	 * body; its answer explains more than EPIPE would, so read anyway. */
	struct http_parser *p = http_parser_new(HTTP_KIND_RESPONSE, CLI_MAX_RESPONSE_HEAD,
						CLI_MAX_RESPONSE_BODY);
	bool got_any = false;
	if (send_rc == 0 || send_rc == -EPIPE || send_rc == -ECONNRESET)
		r = read_response(c, &cn, p, &got_any, &detail);
	else
		r = send_rc;
	if (r < 0 && !got_any && send_rc < 0)
		r = send_rc;
	conn_close(&cn);

	if (r < 0) {
		if (r != -EINTR)
			*err = describe(c, r, detail);
		free(detail);
		http_parser_free(p);
		return r;
	}
	struct http_msg *m = http_parser_msg(p);
	res->status = m->status;
	strbuf_init(&res->body, m->body.len);
	strbuf_add(&res->body, m->body.buf, m->body.len);
	res->json = res->body.len ? json_parse(res->body.buf, res->body.len, NULL) : NULL;
	http_parser_free(p);
	return 0;
}

struct stream_target {
	struct http_parser *p;
	cli_body_cb cb;
	void *ctx;
	bool streaming; /* a 200 head came: the body goes to cb */
	bool stopped;   /* cb asked to stop */
};

static int stream_target_body(void *ctx, const char *data, size_t len)
{
	struct stream_target *st = ctx;
	int r = st->cb(st->ctx, data, len);
	if (r)
		st->stopped = true;
	return r;
}

/* A 200 answer streams its body; any other is buffered like a request's. */
static int stream_target_head(void *ctx, struct http_msg *m)
{
	struct stream_target *st = ctx;
	if (m->status == 200) {
		st->streaming = true;
		http_parser_stream_body(st->p, stream_target_body, st);
		http_parser_max_body(st->p, 0);
	}
	return 0;
}

int cli__client_stream(const struct cli_client *c, const char *method, const char *path,
		       const char *body, size_t body_len, cli_body_cb cb, void *ctx,
		       struct cli_response *res, char **err)
{
	struct strbuf req;
	strbuf_init(&req, 256 + body_len);
	cli__request_format(&req, c, method, path, body, body_len);
	struct cli_conn cn;
	char *detail = NULL;
	*err = NULL;
	int r = conn_open(c, &cn, err);
	if (r < 0) {
		strbuf_release(&req);
		if (r != -EINTR && !*err)
			*err = describe(c, r, NULL);
		return r;
	}
	r = send_all(c, &cn, req.buf, req.len);
	strbuf_release(&req);
	struct http_parser *p = http_parser_new(HTTP_KIND_RESPONSE, CLI_MAX_RESPONSE_HEAD,
						CLI_MAX_RESPONSE_BODY);
	struct stream_target st = {.p = p, .cb = cb, .ctx = ctx};
	http_parser_on_head(p, stream_target_head, &st);
	/* Lines may be minutes apart: wait without a deadline (Ctrl-C ends). */
	struct cli_client patient = *c;
	patient.timeout_ms = INT32_MAX;
	bool got_any = false;
	if (r == 0)
		r = read_response(&patient, &cn, p, &got_any, &detail);
	conn_close(&cn);
	/* A body that stops short of its end (a chunked one without its last
	 * chunk, a reset) after a 200 head: the daemon went away mid-stream. */
	if (r < 0 && r != -EINTR && st.streaming && !st.stopped)
		r = -ECONNABORTED;
	if (r < 0) {
		if (r != -EINTR)
			*err = describe(c, r, detail);
		free(detail);
		http_parser_free(p);
		return r;
	}
	struct http_msg *m = http_parser_msg(p);
	res->status = m->status;
	strbuf_init(&res->body, m->body.len);
	strbuf_add(&res->body, m->body.buf, m->body.len);
	res->json = res->body.len ? json_parse(res->body.buf, res->body.len, NULL) : NULL;
	http_parser_free(p);
	return 0;
}

int cli__client_request(const struct cli_client *c, const char *method, const char *path,
		       const char *body, size_t body_len, struct cli_response *res, char **err)
{
	struct strbuf req;
	strbuf_init(&req, 256 + body_len);
	cli__request_format(&req, c, method, path, body, body_len);
	int r = exchange(c, req.buf, req.len, -1, 0, res, err);
	strbuf_release(&req);
	return r;
}

int cli__client_request_file(const struct cli_client *c, const char *method, const char *path,
			    const char *file, const char *content_type,
			    const char *const *headers, struct cli_response *res, char **err)
{
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		int e = errno;
		*err = xasprintf("cannot read '%s': %s", file, strerror(e));
		if (fd >= 0)
			close(fd);
		return -EIO;
	}
	struct strbuf head;
	strbuf_init(&head, 512);
	cli__request_format_head(&head, c, method, path, content_type, (uint64_t)st.st_size, headers);
	int r = exchange(c, head.buf, head.len, fd, (uint64_t)st.st_size, res, err);
	strbuf_release(&head);
	close(fd);
	return r;
}

void cli__response_release(struct cli_response *r)
{
	if (r->body.buf)
		strbuf_release(&r->body);
	json_free(r->json);
	r->json = NULL;
	r->status = 0;
}
