/* tls.h: the one adapter to OpenSSL's TLS: a client session over a
 * connected libuv TCP handle, driven through memory BIOs so it never
 * blocks the loop.
 *
 * Callbacks: open_cb once when the handshake ends (status 0, or a
 * negative value with a reason); data_cb for each run of plaintext read,
 * and once with n < 0 when the peer closed or the session failed; a write
 * callback exactly once per tls_stream_write that returned 0, with
 * UV_ECANCELED when the stream was closed first. After tls_stream_close
 * only write callbacks and close_cb run. */
#ifndef PAASOPS_TLS_H
#define PAASOPS_TLS_H
#include <stddef.h>
#include <sys/types.h>
#include <uv.h>

struct tls_ctx;
struct tls_stream;

struct tls_config {
	const char *ca_file;   /* trust these CAs; NULL: the system's store */
	const char *cert_file; /* client certificate (PEM), or NULL */
	const char *key_file;  /* its private key (PEM); NULL: in cert_file */
};

/* A client context that verifies the peer's certificate and name (TLS
 * 1.2 or later). NULL with *err set (caller frees) when a file is bad. */
struct tls_ctx *tls_client_ctx_new(const struct tls_config *cfg, char **err);
void tls_ctx_free(struct tls_ctx *ctx);

typedef void (*tls_open_cb)(struct tls_stream *s, int status, const char *why, void *data);
typedef void (*tls_data_cb)(struct tls_stream *s, ssize_t n, const char *buf, void *data);
typedef void (*tls_write_cb)(struct tls_stream *s, int status, void *arg);
typedef void (*tls_close_cb)(void *data);

/* Starts the handshake on tcp (connected, from malloc; the stream owns
 * it from now on, closes and frees it). host is checked against the certificate (a DNS name or
 * an IP address) and sent as SNI when it is a name. ctx must outlive the
 * stream. NULL only when the handshake could not even start: tcp is then
 * the caller's still. */
struct tls_stream *tls_stream_client(struct tls_ctx *ctx, uv_tcp_t *tcp, const char *host,
				     tls_open_cb open_cb, tls_data_cb data_cb, void *data);
/* Encrypts bufs and writes them; cb runs when TCP took the bytes.
 * 0, or a negative libuv error (cb is then not called). */
int tls_stream_write(struct tls_stream *s, const uv_buf_t *bufs, unsigned n, tls_write_cb cb,
		     void *arg);
/* Closes the TCP handle and frees the stream; close_cb(data) runs last. */
void tls_stream_close(struct tls_stream *s, tls_close_cb close_cb);

#endif
