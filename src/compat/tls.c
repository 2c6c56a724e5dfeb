/* tls.c: OpenSSL sessions over libuv TCP handles (client and server), and
 * the CLI's blocking client sessions over a socket.
 *
 * The SSL object never touches the socket: bytes read from TCP go into
 * rbio, and whatever OpenSSL wants to send (handshake records, encrypted
 * data, alerts) is taken from wbio and written with uv_write. So the loop
 * never blocks and OpenSSL needs no knowledge of libuv. The blocking
 * sessions use the same two memory BIOs with send()/recv(), so a peer that
 * went away is an EPIPE and never a SIGPIPE, and every wait is the
 * caller's. */
#include "compat/tls.h"
#include "core/strbuf.h"
#include "core/util.h"
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <limits.h>
#include <sys/stat.h>
#include <stdatomic.h>
#include <strings.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

/* One certificate and key as loaded: the context that serves them and the
 * DNS names the certificate holds, lowercased ("*.example.com" for a
 * wildcard). */
struct tls_cert {
	SSL_CTX *ssl;
	char **names;
	size_t n_names;
};

/* The pairs a server serves right now, the first the default. Immutable
 * once published; each session in progress holds a reference, so a
 * reload never pulls a certificate from under a handshake. */
struct tls_certs {
	atomic_int refs;
	size_t n;
	struct tls_cert cert[];
};

struct tls_ctx {
	SSL_CTX *ssl; /* client contexts */
	/* Server contexts: the files, read again on reload, and what they
	 * held the last time they could be read. */
	char **cert_files, **key_files;
	size_t n_pairs;
	uv_mutex_t lock; /* guards certs */
	struct tls_certs *certs;
};

struct tls_stream {
	uv_tcp_t *tcp;
	SSL *ssl;
	BIO *rbio; /* network → OpenSSL */
	BIO *wbio; /* OpenSSL → network */
	struct tls_certs *certs; /* server sessions: the pairs they chose from */
	bool open, failed, closing;
	bool eof; /* the peer ended its side; writing still works */
	bool plain_http; /* the handshake failed on a plain HTTP request */
	bool clear_pending; /* tls_stream_write_clear's bytes are on their way */
	tls_open_cb open_cb;
	tls_data_cb data_cb;
	tls_close_cb close_cb;
	void *data;
	char rbuf[16384];  /* ciphertext from TCP */
	char plain[16384]; /* plaintext handed to data_cb */
};

struct tls_write {
	uv_write_t req;
	struct tls_stream *s;
	tls_write_cb cb; /* NULL for records OpenSSL wrote on its own */
	void *arg;
	char bytes[];
};

/* ---- contexts ---- */

/* Why OpenSSL could not use a file, in words, and its error queue emptied.
 * The last error is the most general ("PEM lib"); the cause is further up. */
static const char *file_error_reason(const char *what, char *buf, size_t n)
{
	bool key = strcmp(what, "key") == 0;
	const char *why = NULL;
	unsigned long e;
	while ((e = ERR_get_error()) != 0) {
		if (why)
			continue;
		if (ERR_SYSTEM_ERROR(e)) {
			snprintf(buf, n, "%s", strerror(ERR_GET_REASON(e)));
			why = buf;
		} else if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
			snprintf(buf, n, "no PEM %s in it (no '-----BEGIN %s-----' line)",
				 key ? "private key" : strcmp(what, "certificate") ? "data" : "certificate",
				 key ? "PRIVATE KEY" : strcmp(what, "certificate") ? "..." : "CERTIFICATE");
			why = buf;
		} else if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_BAD_END_LINE) {
			why = "a PEM block in it has no matching '-----END ...-----' line";
		} else if (ERR_GET_LIB(e) == ERR_LIB_OSSL_DECODER && ERR_GET_REASON(e) == ERR_R_UNSUPPORTED) {
			why = key ? "no private key in it that OpenSSL can read" : "not in a form OpenSSL can read";
		} else if (ERR_GET_REASON(e) != ERR_R_PEM_LIB && ERR_reason_error_string(e)) {
			why = ERR_reason_error_string(e);
		}
	}
	return why ? why : "not usable";
}

static char *openssl_error(const char *what, const char *path)
{
	char buf[160];
	return xasprintf("%s %s: %s", what, path, file_error_reason(what, buf, sizeof(buf)));
}

/* 0 when path is a file this process may read, else why not (an errno). */
static int unreadable(const char *path)
{
	struct stat st;
	if (access(path, R_OK) < 0)
		return errno;
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		return EISDIR;
	return 0;
}

static int readable(const char *what, const char *path, char **err)
{
	int e = unreadable(path);
	if (!e)
		return 0;
	*err = xasprintf("%s %s: %s", what, path, strerror(e));
	return -1;
}

struct tls_ctx *tls_client_ctx_new(const struct tls_config *cfg, char **err)
{
	SSL_CTX *c = SSL_CTX_new(TLS_client_method());
	if (!c) {
		*err = openssl_error("TLS", "context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
	SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
	const char *key = cfg->key_file ? cfg->key_file : cfg->cert_file;
	if (cfg->ca_file) {
		if (readable("CA file", cfg->ca_file, err) < 0)
			goto fail;
		if (SSL_CTX_load_verify_locations(c, cfg->ca_file, NULL) != 1) {
			*err = openssl_error("CA file", cfg->ca_file);
			goto fail;
		}
	} else if (SSL_CTX_set_default_verify_paths(c) != 1) {
		*err = openssl_error("CA store", "of the system");
		goto fail;
	}
	if (cfg->key_file && !cfg->cert_file) {
		*err = xstrdup("a client key needs a client certificate (cert=)");
		goto fail;
	}
	if (cfg->cert_file) {
		if (readable("certificate", cfg->cert_file, err) < 0 || readable("key", key, err) < 0)
			goto fail;
		if (SSL_CTX_use_certificate_chain_file(c, cfg->cert_file) != 1) {
			*err = openssl_error("certificate", cfg->cert_file);
			goto fail;
		}
		if (SSL_CTX_use_PrivateKey_file(c, key, SSL_FILETYPE_PEM) != 1 ||
		    SSL_CTX_check_private_key(c) != 1) {
			*err = openssl_error("key", key);
			goto fail;
		}
	}
	struct tls_ctx *ctx = xcalloc(1, sizeof(*ctx));
	ctx->ssl = c;
	return ctx;
fail:
	SSL_CTX_free(c);
	return NULL;
}

/* Messages for the server's files name them in quotes: they end up as the
 * one line a failed start prints. */
static char *server_file_error(const char *what, const char *path)
{
	char buf[160];
	return xasprintf("cannot use TLS %s '%s': %s", what, path,
			 file_error_reason(what, buf, sizeof(buf)));
}

bool tls_name_match(const char *pattern, const char *host)
{
	if (pattern[0] == '*' && pattern[1] == '.' && pattern[2]) {
		/* A wildcard stands for exactly one whole label (RFC 6125 6.4.3). */
		const char *dot = strchr(host, '.');
		return dot && dot != host && strcasecmp(dot + 1, pattern + 2) == 0;
	}
	return strcasecmp(pattern, host) == 0;
}

static void cert_add_name(struct tls_cert *tc, const char *name, size_t len)
{
	if (len == 0 || len > 253 || memchr(name, '\0', len))
		return; /* an embedded NUL is an attack, not a name */
	char *n = xstrndup(name, len);
	for (char *p = n; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	if (len > 1 && n[len - 1] == '.')
		n[len - 1] = '\0';
	tc->names = xrealloc(tc->names, (tc->n_names + 1) * sizeof(*tc->names));
	tc->names[tc->n_names++] = n;
}

/* The DNS names of the context's certificate: its subjectAltName entries,
 * or its common name when it has none. */
static void cert_read_names(struct tls_cert *tc)
{
	X509 *x = SSL_CTX_get0_certificate(tc->ssl);
	if (!x)
		return;
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		if (g->type == GEN_DNS)
			cert_add_name(tc, (const char *)ASN1_STRING_get0_data(g->d.dNSName),
				      (size_t)ASN1_STRING_length(g->d.dNSName));
	}
	GENERAL_NAMES_free(gens);
	if (tc->n_names)
		return;
	X509_NAME *subject = X509_get_subject_name(x);
	int at = subject ? X509_NAME_get_index_by_NID(subject, NID_commonName, -1) : -1;
	if (at >= 0) {
		ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, at));
		cert_add_name(tc, (const char *)ASN1_STRING_get0_data(cn), (size_t)ASN1_STRING_length(cn));
	}
	ERR_clear_error();
}

static void certs_unref(struct tls_certs *cs)
{
	if (!cs || atomic_fetch_sub_explicit(&cs->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (size_t k = 0; k < cs->n; k++) {
		SSL_CTX_free(cs->cert[k].ssl);
		for (size_t j = 0; j < cs->cert[k].n_names; j++)
			free(cs->cert[k].names[j]);
		free(cs->cert[k].names);
	}
	free(cs);
}

/* The pairs to serve a new session with; release with certs_unref(). */
static struct tls_certs *certs_acquire(struct tls_ctx *ctx)
{
	uv_mutex_lock(&ctx->lock);
	struct tls_certs *cs = ctx->certs;
	atomic_fetch_add_explicit(&cs->refs, 1, memory_order_relaxed);
	uv_mutex_unlock(&ctx->lock);
	return cs;
}

/* SNI: the first pair with the requested name exactly, else the first
 * whose wildcard covers it, else the default (the first pair). */
static int servername_cb(SSL *ssl, int *alert, void *arg)
{
	struct tls_certs *cs = SSL_get_app_data(ssl);
	const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	if (!cs || cs->n < 2 || !sni)
		return SSL_TLSEXT_ERR_OK;
	char host[256];
	size_t len = strlen(sni);
	if (len == 0 || len >= sizeof(host))
		return SSL_TLSEXT_ERR_OK;
	memcpy(host, sni, len + 1);
	if (host[len - 1] == '.')
		host[len - 1] = '\0';
	for (int wild = 0; wild < 2; wild++) {
		for (size_t k = 0; k < cs->n; k++) {
			const struct tls_cert *tc = &cs->cert[k];
			for (size_t j = 0; j < tc->n_names; j++) {
				if ((tc->names[j][0] == '*') != wild || !tls_name_match(tc->names[j], host))
					continue;
				if (k > 0)
					SSL_set_SSL_CTX(ssl, tc->ssl);
				return SSL_TLSEXT_ERR_OK;
			}
		}
	}
	return SSL_TLSEXT_ERR_OK;
}

/* ALPN: HTTP/1.1 is all there is; a client that offers only other
 * protocols gets no ALPN answer rather than a failed handshake. */
static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		   const unsigned char *in, unsigned int inlen, void *arg)
{
	static const unsigned char ours[] = "\x08http/1.1";
	unsigned char *sel = NULL;
	unsigned char sel_len = 0;
	if (SSL_select_next_proto(&sel, &sel_len, ours, sizeof(ours) - 1, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK;
	*out = sel;
	*outlen = sel_len;
	return SSL_TLSEXT_ERR_OK;
}

/* Forward-secret AEAD suites only for TLS 1.2 (TLS 1.3 has nothing else). */
#define SERVER_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"

/* A context serving one certificate chain and key; NULL with *err naming
 * the file (caller frees). */
static SSL_CTX *server_ssl_new(const char *cert_file, const char *key_file, char **err)
{
	const char *key = key_file ? key_file : cert_file;
	int e;
	if ((e = unreadable(cert_file)) != 0) {
		*err = xasprintf("cannot read TLS certificate '%s': %s", cert_file, strerror(e));
		return NULL;
	}
	if ((e = unreadable(key)) != 0) {
		*err = xasprintf("cannot read TLS key '%s': %s", key, strerror(e));
		return NULL;
	}
	SSL_CTX *c = SSL_CTX_new(TLS_server_method());
	if (!c) {
		*err = openssl_error("TLS", "context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
	SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
	/* Renegotiation is a way to make the server work hard for free. */
	SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_cipher_list(c, SERVER_CIPHERS);
	SSL_CTX_set_tlsext_servername_callback(c, servername_cb);
	SSL_CTX_set_alpn_select_cb(c, alpn_cb, NULL);
	ERR_clear_error();
	if (SSL_CTX_use_certificate_chain_file(c, cert_file) != 1) {
		*err = server_file_error("certificate", cert_file);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(c, key, SSL_FILETYPE_PEM) != 1) {
		/* OpenSSL calls a key that is not the certificate's a "values
		 * mismatch" here; say it plainly. */
		unsigned long e = ERR_peek_last_error();
		if (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH ||
		    ERR_GET_REASON(e) == X509_R_KEY_TYPE_MISMATCH) {
			ERR_clear_error();
			*err = xasprintf("TLS key '%s' does not match the certificate '%s'", key,
					 cert_file);
		} else {
			*err = server_file_error("key", key);
		}
		goto fail;
	}
	if (SSL_CTX_check_private_key(c) != 1) {
		ERR_clear_error();
		*err = xasprintf("TLS key '%s' does not match the certificate '%s'", key, cert_file);
		goto fail;
	}
	return c;
fail:
	SSL_CTX_free(c);
	return NULL;
}

/* Loads every pair of ctx's files into a new set. A pair that fails keeps
 * what it had in prev (when there is a prev) and its message is added to
 * *errs. NULL only without prev, on the first failure. */
static struct tls_certs *certs_load(struct tls_ctx *ctx, const struct tls_certs *prev,
				    struct strbuf *errs)
{
	struct tls_certs *cs = xcalloc(1, sizeof(*cs) + ctx->n_pairs * sizeof(cs->cert[0]));
	atomic_init(&cs->refs, 1);
	for (size_t k = 0; k < ctx->n_pairs; k++) {
		char *err = NULL;
		struct tls_cert *tc = &cs->cert[k];
		tc->ssl = server_ssl_new(ctx->cert_files[k], ctx->key_files[k], &err);
		if (tc->ssl) {
			cert_read_names(tc);
			cs->n++;
			continue;
		}
		strbuf_addf(errs, "%s%s", errs->len ? "; " : "", err);
		free(err);
		if (!prev) {
			certs_unref(cs);
			return NULL;
		}
		const struct tls_cert *old = &prev->cert[k];
		SSL_CTX_up_ref(old->ssl);
		tc->ssl = old->ssl;
		for (size_t j = 0; j < old->n_names; j++)
			cert_add_name(tc, old->names[j], strlen(old->names[j]));
		cs->n++;
	}
	return cs;
}

struct tls_ctx *tls_server_ctx_new_pairs(const struct tls_pair *pairs, size_t n, char **err)
{
	assert(n > 0);
	struct tls_ctx *ctx = xcalloc(1, sizeof(*ctx));
	ctx->cert_files = xcalloc(n, sizeof(char *));
	ctx->key_files = xcalloc(n, sizeof(char *));
	ctx->n_pairs = n;
	for (size_t k = 0; k < n; k++) {
		ctx->cert_files[k] = xstrdup(pairs[k].cert_file);
		ctx->key_files[k] = pairs[k].key_file ? xstrdup(pairs[k].key_file) : NULL;
	}
	uv_mutex_init(&ctx->lock);
	struct strbuf errs;
	strbuf_init(&errs, 0);
	ctx->certs = certs_load(ctx, NULL, &errs);
	if (!ctx->certs) {
		*err = strbuf_detach(&errs, NULL);
		tls_ctx_free(ctx);
		return NULL;
	}
	strbuf_release(&errs);
	return ctx;
}

struct tls_ctx *tls_server_ctx_new(const char *cert_file, const char *key_file, char **err)
{
	struct tls_pair p = {cert_file, key_file};
	return tls_server_ctx_new_pairs(&p, 1, err);
}

int tls_server_ctx_reload(struct tls_ctx *ctx, char **err)
{
	if (!ctx->n_pairs)
		return -EINVAL;
	struct tls_certs *old = certs_acquire(ctx);
	struct strbuf errs;
	strbuf_init(&errs, 0);
	struct tls_certs *cs = certs_load(ctx, old, &errs);
	uv_mutex_lock(&ctx->lock);
	ctx->certs = cs;
	uv_mutex_unlock(&ctx->lock);
	certs_unref(old); /* ours */
	certs_unref(old); /* the context's */
	if (!errs.len) {
		strbuf_release(&errs);
		return 0;
	}
	*err = strbuf_detach(&errs, NULL);
	return -EINVAL;
}

void tls_ctx_free(struct tls_ctx *ctx)
{
	if (!ctx)
		return;
	SSL_CTX_free(ctx->ssl);
	if (ctx->n_pairs) {
		certs_unref(ctx->certs);
		for (size_t k = 0; k < ctx->n_pairs; k++) {
			free(ctx->cert_files[k]);
			free(ctx->key_files[k]);
		}
		free(ctx->cert_files);
		free(ctx->key_files);
		uv_mutex_destroy(&ctx->lock);
	}
	free(ctx);
}

/* ---- streams ---- */

static void fail(struct tls_stream *s, int status, const char *why);

static void written(uv_write_t *req, int status)
{
	struct tls_write *w = req->data;
	struct tls_stream *s = w->s;
	if (w->cb)
		w->cb(s, status, w->arg);
	else if (status < 0)
		fail(s, status, uv_strerror(status));
	free(w);
}

/* Hands the socket as much of what OpenSSL produced as it takes without
 * waiting, straight from the BIO's memory: true when it took it all. Only
 * while nothing else is queued, which keeps the order. */
static bool write_at_once(struct tls_stream *s)
{
	char *p;
	long n = BIO_get_mem_data(s->wbio, &p);
	if (n <= 0 || uv_stream_get_write_queue_size((uv_stream_t *)s->tcp) > 0)
		return n == 0;
	uv_buf_t b = uv_buf_init(p, (unsigned)n);
	int w = uv_try_write((uv_stream_t *)s->tcp, &b, 1);
	if (w == n) {
		(void)BIO_reset(s->wbio);
		return true;
	}
	/* The socket took only part: drop that part, queue the rest. */
	char skip[4096];
	for (int left = w > 0 ? w : 0; left > 0;) {
		int k = BIO_read(s->wbio, skip, left < (int)sizeof(skip) ? left : (int)sizeof(skip));
		if (k <= 0)
			break;
		left -= k;
	}
	return false;
}

/* Writes out what OpenSSL has produced; cb (may be NULL) runs when TCP
 * took it. */
static int flush(struct tls_stream *s, tls_write_cb cb, void *arg)
{
	size_t n = BIO_ctrl_pending(s->wbio);
	if (n == 0 && !cb)
		return 0;
	struct tls_write *w = xmalloc(sizeof(*w) + n);
	w->s = s;
	w->cb = cb;
	w->arg = arg;
	w->req.data = w;
	if (n && BIO_read(s->wbio, w->bytes, (int)n) != (int)n) {
		free(w);
		return UV_EIO;
	}
	uv_buf_t b = uv_buf_init(w->bytes, (unsigned)n);
	int r = uv_write(&w->req, (uv_stream_t *)s->tcp, &b, 1, written);
	if (r < 0)
		free(w);
	return r;
}

static void fail(struct tls_stream *s, int status, const char *why)
{
	if (s->failed || s->closing)
		return;
	s->failed = true;
	uv_read_stop((uv_stream_t *)s->tcp);
	if (!s->open)
		s->open_cb(s, status, why, s->data);
	else
		s->data_cb(s, status, NULL, s->data);
}

/* Why the handshake or a record failed, in words. */
static void reason(SSL *ssl, char *out, size_t n)
{
	long v = SSL_get_verify_result(ssl);
	unsigned long e = ERR_peek_last_error();
	if (v != X509_V_OK)
		snprintf(out, n, "certificate verify failed: %s", X509_verify_cert_error_string(v));
	else if (e)
		snprintf(out, n, "TLS: %s", ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "error");
	else
		snprintf(out, n, "TLS: the session failed");
	ERR_clear_error();
}

/* Advances the handshake; false when the stream failed. */
static bool handshake(struct tls_stream *s)
{
	ERR_clear_error();
	int r = SSL_do_handshake(s->ssl);
	int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(s->ssl, r);
	char why[256];
	if (e != SSL_ERROR_NONE && e != SSL_ERROR_WANT_READ) {
		unsigned long first = ERR_peek_error();
		s->plain_http = ERR_GET_LIB(first) == ERR_LIB_SSL &&
				(ERR_GET_REASON(first) == SSL_R_HTTP_REQUEST ||
				 ERR_GET_REASON(first) == SSL_R_HTTPS_PROXY_REQUEST);
		reason(s->ssl, why, sizeof(why));
	}
	/* Also sends the alert that tells the peer why we give up. */
	int fr = flush(s, NULL, NULL);
	if (e != SSL_ERROR_NONE && e != SSL_ERROR_WANT_READ) {
		fail(s, s->plain_http ? TLS_EPLAINHTTP : UV_EPROTO, why);
		return false;
	}
	if (fr < 0) {
		fail(s, fr, uv_strerror(fr));
		return false;
	}
	if (e == SSL_ERROR_NONE) {
		s->open = true;
		s->open_cb(s, 0, NULL, s->data);
	}
	return true;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct tls_stream *s = h->data;
	*buf = uv_buf_init(s->rbuf, sizeof(s->rbuf));
}

/* The peer ended its side of an open session (close_notify, or its
 * socket half closed): no more reading, but an answer may still go out,
 * as it would on a plain connection half closed after a request. */
static void peer_done(struct tls_stream *s)
{
	s->eof = true;
	uv_read_stop((uv_stream_t *)s->tcp);
	s->data_cb(s, UV_EOF, NULL, s->data);
}

static void read_cb(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf)
{
	struct tls_stream *s = stream->data;
	if (s->closing || s->failed || s->eof)
		return;
	if (n == UV_EOF && s->open) {
		peer_done(s);
		return;
	}
	if (n < 0) {
		fail(s, (int)n, n == UV_EOF ? "the peer closed the connection" : uv_strerror((int)n));
		return;
	}
	if (n == 0)
		return;
	if (BIO_write(s->rbio, buf->base, (int)n) != (int)n) {
		fail(s, UV_ENOMEM, "TLS: out of memory");
		return;
	}
	if (!s->open && (!handshake(s) || !s->open))
		return;
	while (!s->closing && !s->failed && !s->eof) {
		ERR_clear_error();
		int r = SSL_read(s->ssl, s->plain, (int)sizeof(s->plain));
		if (r > 0) {
			s->data_cb(s, r, s->plain, s->data);
			continue;
		}
		int e = SSL_get_error(s->ssl, r);
		if (e == SSL_ERROR_WANT_READ)
			break;
		if (e == SSL_ERROR_ZERO_RETURN) {
			peer_done(s);
		} else {
			char why[256];
			reason(s->ssl, why, sizeof(why));
			fail(s, UV_EPROTO, why);
		}
		return;
	}
	/* Reading may make OpenSSL answer (key updates, tickets). */
	if (!s->closing && !s->failed && !s->eof) {
		int r = flush(s, NULL, NULL);
		if (r < 0)
			fail(s, r, uv_strerror(r));
	}
}

/* Wraps ssl (which owns both BIOs) and starts reading tcp; NULL when
 * reading cannot start, with ssl freed and tcp left to the caller. */
static struct tls_stream *stream_new(SSL *ssl, BIO *rbio, BIO *wbio, uv_tcp_t *tcp,
				     tls_open_cb open_cb, tls_data_cb data_cb, void *data)
{
	struct tls_stream *s = xcalloc(1, sizeof(*s));
	s->tcp = tcp;
	s->ssl = ssl;
	s->rbio = rbio;
	s->wbio = wbio;
	s->open_cb = open_cb;
	s->data_cb = data_cb;
	s->data = data;
	void *was = tcp->data;
	tcp->data = s;
	int r = uv_read_start((uv_stream_t *)tcp, alloc_cb, read_cb);
	if (r < 0) {
		tcp->data = was; /* the caller's again, as it was */
		SSL_free(ssl);
		free(s);
		return NULL;
	}
	return s;
}

/* A session over two memory BIOs (the caller moves the bytes), in client
 * mode checking host (an IP address, or a name also sent as SNI) when host
 * is set, else in server mode. NULL when OpenSSL refuses (no memory, a
 * host it cannot take); the error queue is cleared. */
static SSL *ssl_new_mem(SSL_CTX *ctx, const char *host, BIO **rbio, BIO **wbio)
{
	SSL *ssl = SSL_new(ctx);
	*rbio = BIO_new(BIO_s_mem());
	*wbio = BIO_new(BIO_s_mem());
	if (!ssl || !*rbio || !*wbio) {
		SSL_free(ssl);
		BIO_free(*rbio);
		BIO_free(*wbio);
		ERR_clear_error();
		return NULL;
	}
	SSL_set_bio(ssl, *rbio, *wbio);
	if (!host) {
		SSL_set_accept_state(ssl);
		return ssl;
	}
	SSL_set_connect_state(ssl);
	unsigned char addr[16];
	bool ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
	int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host)
		    : SSL_set_tlsext_host_name(ssl, host) == 1 && SSL_set1_host(ssl, host) == 1;
	if (!ok) {
		SSL_free(ssl);
		ERR_clear_error();
		return NULL;
	}
	return ssl;
}

struct tls_stream *tls_stream_client(struct tls_ctx *ctx, uv_tcp_t *tcp, const char *host,
				     tls_open_cb open_cb, tls_data_cb data_cb, void *data)
{
	BIO *rbio, *wbio;
	SSL *ssl = ssl_new_mem(ctx->ssl, host, &rbio, &wbio);
	if (!ssl)
		return NULL;
	struct tls_stream *s = stream_new(ssl, rbio, wbio, tcp, open_cb, data_cb, data);
	if (!s)
		return NULL;
	handshake(s); /* sends the ClientHello; a failure reaches open_cb */
	return s;
}

struct tls_stream *tls_stream_server(struct tls_ctx *ctx, uv_tcp_t *tcp, tls_open_cb open_cb,
				     tls_data_cb data_cb, void *data)
{
	BIO *rbio, *wbio;
	struct tls_certs *cs = certs_acquire(ctx);
	SSL *ssl = ssl_new_mem(cs->cert[0].ssl, NULL, &rbio, &wbio);
	if (!ssl) {
		certs_unref(cs);
		return NULL;
	}
	/* For servername_cb, which picks among these pairs. */
	SSL_set_app_data(ssl, cs);
	/* The ClientHello starts the handshake from read_cb. */
	struct tls_stream *s = stream_new(ssl, rbio, wbio, tcp, open_cb, data_cb, data);
	if (!s) {
		certs_unref(cs);
		return NULL;
	}
	s->certs = cs;
	return s;
}

int tls_stream_read_stop(struct tls_stream *s)
{
	if (s->failed || s->closing)
		return UV_ENOTCONN;
	if (s->eof)
		return 0;
	return uv_read_stop((uv_stream_t *)s->tcp);
}

int tls_stream_read_start(struct tls_stream *s)
{
	if (s->failed || s->closing)
		return UV_ENOTCONN;
	if (s->eof)
		return UV_EOF;
	return uv_read_start((uv_stream_t *)s->tcp, alloc_cb, read_cb);
}

size_t tls_stream_write_queue_size(const struct tls_stream *s)
{
	return uv_stream_get_write_queue_size((const uv_stream_t *)s->tcp);
}

/* Encrypts bufs into the write BIO. */
static int encrypt(struct tls_stream *s, const uv_buf_t *bufs, unsigned n)
{
	if (!s->open || s->failed || s->closing)
		return UV_ENOTCONN;
	for (unsigned k = 0; k < n; k++) {
		if (bufs[k].len == 0)
			continue;
		ERR_clear_error();
		if (SSL_write(s->ssl, bufs[k].base, (int)bufs[k].len) <= 0) {
			ERR_clear_error();
			return UV_EPROTO;
		}
	}
	return 0;
}

int tls_stream_write(struct tls_stream *s, const uv_buf_t *bufs, unsigned n, tls_write_cb cb,
		     void *arg)
{
	int r = encrypt(s, bufs, n);
	return r < 0 ? r : flush(s, cb, arg);
}

int tls_stream_write_now(struct tls_stream *s, const uv_buf_t *bufs, unsigned n, tls_write_cb cb,
			 void *arg)
{
	int r = encrypt(s, bufs, n);
	if (r < 0)
		return r;
	if (write_at_once(s))
		return 1;
	return flush(s, cb, arg);
}

static void tcp_closed(uv_handle_t *h);

static void clear_written(uv_write_t *req, int status)
{
	struct tls_write *w = req->data;
	struct tls_stream *s = w->s;
	(void)status; /* the socket closes either way */
	s->clear_pending = false;
	if (s->closing)
		uv_close((uv_handle_t *)s->tcp, tcp_closed);
	free(w);
}

int tls_stream_write_clear(struct tls_stream *s, const void *buf, size_t len)
{
	if (!s->plain_http || !s->failed || s->closing || s->clear_pending)
		return UV_EINVAL;
	struct tls_write *w = xmalloc(sizeof(*w) + len);
	w->s = s;
	w->cb = NULL;
	w->arg = NULL;
	w->req.data = w;
	memcpy(w->bytes, buf, len);
	uv_buf_t b = uv_buf_init(w->bytes, (unsigned)len);
	int r = uv_write(&w->req, (uv_stream_t *)s->tcp, &b, 1, clear_written);
	if (r < 0) {
		free(w);
		return r;
	}
	s->clear_pending = true;
	return 0;
}

static void tcp_closed(uv_handle_t *h)
{
	struct tls_stream *s = h->data;
	SSL_free(s->ssl);
	certs_unref(s->certs);
	free(s->tcp);
	if (s->close_cb)
		s->close_cb(s->data);
	free(s);
}

void tls_stream_close(struct tls_stream *s, tls_close_cb close_cb)
{
	if (s->closing)
		return;
	s->closing = true;
	s->close_cb = close_cb;
	if (s->open && !s->failed) {
		/* A best-effort close_notify; the socket closes right after. */
		ERR_clear_error();
		SSL_shutdown(s->ssl);
		ERR_clear_error();
		flush(s, NULL, NULL);
	}
	if (s->clear_pending)
		return; /* clear_written closes the socket once they are out */
	uv_close((uv_handle_t *)s->tcp, tcp_closed);
}

/* ---- blocking client sessions ---- */

struct tls_conn {
	int fd;
	SSL *ssl;
	BIO *rbio, *wbio; /* owned by ssl */
};

/* Sends what OpenSSL has produced. */
static int conn_flush(struct tls_conn *t, tls_wait_cb wait, void *arg)
{
	char buf[16384];
	while (BIO_ctrl_pending(t->wbio) > 0) {
		int n = BIO_read(t->wbio, buf, (int)sizeof(buf));
		if (n <= 0)
			return -EIO;
		const char *p = buf;
		size_t left = (size_t)n;
		while (left) {
			ssize_t w = send(t->fd, p, left, MSG_NOSIGNAL);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
				int r = wait(arg, t->fd, true);
				if (r < 0)
					return r;
				continue;
			}
			if (w < 0)
				return -errno;
			p += w;
			left -= (size_t)w;
		}
	}
	return 0;
}

/* Feeds the next bytes from the peer to OpenSSL: 1, 0 at EOF, or a
 * negative errno. */
static int conn_fill(struct tls_conn *t, tls_wait_cb wait, void *arg)
{
	char buf[16384];
	for (;;) {
		ssize_t n = recv(t->fd, buf, sizeof(buf), 0);
		if (n > 0)
			return BIO_write(t->rbio, buf, (int)n) == (int)n ? 1 : -ENOMEM;
		if (n == 0)
			return 0;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		int r = wait(arg, t->fd, false);
		if (r < 0)
			return r;
	}
}

void tls_conn_free(struct tls_conn *t)
{
	if (!t)
		return;
	SSL_free(t->ssl);
	free(t);
}

int tls_conn_client(struct tls_ctx *ctx, int fd, const char *host, tls_wait_cb wait, void *arg,
		    struct tls_conn **out, char **err)
{
	*out = NULL;
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	BIO *rbio, *wbio;
	SSL *ssl = ssl_new_mem(ctx->ssl, host, &rbio, &wbio);
	if (!ssl) {
		*err = xasprintf("cannot start a TLS session with '%s' (an invalid server name?)", host);
		return -ECONNABORTED;
	}
	struct tls_conn *t = xcalloc(1, sizeof(*t));
	t->fd = fd;
	t->ssl = ssl;
	t->rbio = rbio;
	t->wbio = wbio;
	for (;;) {
		ERR_clear_error();
		int r = SSL_do_handshake(ssl);
		int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl, r);
		char why[256] = "";
		if (e != SSL_ERROR_NONE && e != SSL_ERROR_WANT_READ)
			reason(ssl, why, sizeof(why));
		/* Also sends the alert that tells the server why we give up. */
		int fr = conn_flush(t, wait, arg);
		if (e != SSL_ERROR_NONE && e != SSL_ERROR_WANT_READ) {
			*err = xstrdup(why);
			r = -ECONNABORTED;
		} else if (fr < 0) {
			r = fr;
		} else if (e == SSL_ERROR_NONE) {
			*out = t;
			return 0;
		} else {
			r = conn_fill(t, wait, arg);
			if (r > 0)
				continue;
			if (r == 0)
				r = -ECONNRESET;
		}
		tls_conn_free(t);
		return r;
	}
}

int tls_conn_write(struct tls_conn *t, const void *buf, size_t len, tls_wait_cb wait, void *arg)
{
	const char *p = buf;
	while (len) {
		int n = len > INT_MAX ? INT_MAX : (int)len;
		ERR_clear_error();
		/* Memory BIOs take everything: no partial writes, no retries. */
		int r = SSL_write(t->ssl, p, n);
		if (r <= 0) {
			ERR_clear_error();
			return -EPROTO;
		}
		int fr = conn_flush(t, wait, arg);
		if (fr < 0)
			return fr;
		p += r;
		len -= (size_t)r;
	}
	return 0;
}

ssize_t tls_conn_read(struct tls_conn *t, void *buf, size_t len, tls_wait_cb wait, void *arg,
		      char **err)
{
	int n = len > INT_MAX ? INT_MAX : (int)len;
	for (;;) {
		ERR_clear_error();
		int r = SSL_read(t->ssl, buf, n);
		if (r > 0)
			return r;
		int e = SSL_get_error(t->ssl, r);
		if (e == SSL_ERROR_ZERO_RETURN)
			return 0;
		if (e != SSL_ERROR_WANT_READ) {
			char why[256];
			reason(t->ssl, why, sizeof(why));
			if (err)
				*err = xstrdup(why);
			return -EPROTO;
		}
		/* Reading may make OpenSSL answer (key updates). */
		int fr = conn_flush(t, wait, arg);
		if (fr < 0)
			return fr;
		/* A socket closed without close_notify ends the session too: the
		 * HTTP framing above tells a whole answer from a cut one. */
		fr = conn_fill(t, wait, arg);
		if (fr <= 0)
			return fr;
	}
}
