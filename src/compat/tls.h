/* tls.h: the one adapter to OpenSSL's TLS. Sessions over a connected
 * libuv TCP handle (client or server), driven through memory BIOs so they
 * never block the loop; and a blocking client session over a connected
 * socket for the CLI, whose every wait goes through a callback so the
 * caller keeps its timeouts.
 *
 * Callbacks: open_cb once when the handshake ends (status 0, or a
 * negative value with a reason); data_cb for each run of plaintext read,
 * and once with n < 0 when the peer closed or the session failed (after
 * UV_EOF, the peer's end of an open session, writing still works); a write
 * callback exactly once per tls_stream_write that returned 0, with
 * UV_ECANCELED when the stream was closed first. After tls_stream_close
 * only write callbacks and close_cb run. */
#ifndef PAASOPS_TLS_H
#define PAASOPS_TLS_H
#include <stdbool.h>
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
/* A server context with the certificate chain in cert_file and its key in
 * key_file (PEM; NULL: in cert_file): TLS 1.2 or later, forward-secret
 * AEAD ciphers only for TLS 1.2, ALPN "http/1.1" (and nothing else). NULL
 * with *err naming the file (caller frees) when a file is missing,
 * unreadable, not PEM, or the key does not match. */
struct tls_ctx *tls_server_ctx_new(const char *cert_file, const char *key_file, char **err);

struct tls_pair {
	const char *cert_file; /* PEM chain */
	const char *key_file;  /* its key (PEM); NULL: in cert_file */
};
/* A server context for several pairs (n >= 1, copied): SNI picks the
 * first pair whose certificate names the requested host exactly, else the
 * first whose wildcard covers it, else the first pair, which is also the
 * answer to a client that sends no name. A certificate's names are its
 * subjectAltName DNS entries, or its common name when it has none.
 * Errors as for tls_server_ctx_new, for the first pair that fails. */
struct tls_ctx *tls_server_ctx_new_pairs(const struct tls_pair *pairs, size_t n, char **err);
/* Reads a server context's files again. Handshakes that start after the
 * call use what was read; sessions already started keep theirs. A pair
 * whose files fail keeps its previous certificate and key: -EINVAL then,
 * with *err naming each such file (caller frees). Any one thread may
 * reload while others start sessions. */
int tls_server_ctx_reload(struct tls_ctx *ctx, char **err);
void tls_ctx_free(struct tls_ctx *ctx);

/* Whether a certificate name (exact, or "*.example.com" standing for one
 * whole label) covers host; both compared without regard to case. */
bool tls_name_match(const char *pattern, const char *host);

/* open_cb's status when a server session's peer spoke plain HTTP instead of
 * TLS (its first bytes were an HTTP request line, as OpenSSL recognises
 * them): it may be told so in clear with tls_stream_write_clear. */
#define TLS_EPLAINHTTP UV_EPROTONOSUPPORT

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
/* Waits for a client's handshake on tcp (accepted, from malloc; owned by
 * the stream as for tls_stream_client). open_cb reports the handshake's
 * end; a peer that never completes it is the caller's to time out. NULL
 * when the session could not be set up: tcp is then the caller's still. */
struct tls_stream *tls_stream_server(struct tls_ctx *ctx, uv_tcp_t *tcp, tls_open_cb open_cb,
				     tls_data_cb data_cb, void *data);
/* Stops and resumes reading from the peer (back-pressure); plaintext
 * already decrypted has been handed to data_cb. 0 or a libuv error. */
int tls_stream_read_stop(struct tls_stream *s);
int tls_stream_read_start(struct tls_stream *s);
/* Encrypted bytes queued on TCP and not yet taken by the kernel. */
size_t tls_stream_write_queue_size(const struct tls_stream *s);
/* Encrypts bufs and writes them; cb runs when TCP took the bytes.
 * 0, or a negative libuv error (cb is then not called). */
int tls_stream_write(struct tls_stream *s, const uv_buf_t *bufs, unsigned n, tls_write_cb cb,
		     void *arg);
/* Like tls_stream_write, but hands the records to the socket at once when
 * nothing is queued before them: 1 when the socket took them all (cb is
 * then not called), else as tls_stream_write. */
int tls_stream_write_now(struct tls_stream *s, const uv_buf_t *bufs, unsigned n, tls_write_cb cb,
			 void *arg);
/* Writes len bytes unencrypted to a peer whose handshake failed with
 * TLS_EPLAINHTTP (an answer in the protocol it spoke); tls_stream_close
 * then lets them go out before it closes the socket. 0, or a libuv error
 * (UV_EINVAL for a stream in any other state). */
int tls_stream_write_clear(struct tls_stream *s, const void *buf, size_t len);
/* Closes the TCP handle and frees the stream; close_cb(data) runs last. */
void tls_stream_close(struct tls_stream *s, tls_close_cb close_cb);

/* ---- blocking client sessions ---- */

struct tls_conn;

/* Waits until fd is readable (for_write false) or writable: 0, or a
 * negative errno (-ETIMEDOUT, -EINTR) that ends the call that waited. */
typedef int (*tls_wait_cb)(void *arg, int fd, bool for_write);

/* Runs the client handshake on fd (connected; made non-blocking here and
 * left open, the caller closes it after tls_conn_free), verifying the
 * certificate chain and that it names host (a DNS name or an IP address).
 * 0 with *out set, or a negative errno: the wait's, -ECONNRESET when the
 * peer closed first, -ECONNABORTED when TLS failed, with *err saying why
 * ("certificate verify failed: ...") (caller frees). */
int tls_conn_client(struct tls_ctx *ctx, int fd, const char *host, tls_wait_cb wait, void *arg,
		    struct tls_conn **out, char **err);
/* Sends all of buf: 0 or a negative errno. */
int tls_conn_write(struct tls_conn *t, const void *buf, size_t len, tls_wait_cb wait, void *arg);
/* Reads up to len bytes of plaintext: how many, 0 at the end of the
 * session (close_notify or the peer closed the socket), or a negative
 * errno (-EPROTO for a broken record, with *err set when err is not NULL). */
ssize_t tls_conn_read(struct tls_conn *t, void *buf, size_t len, tls_wait_cb wait, void *arg,
		      char **err);
/* Ends the session (without closing fd); NULL does nothing. */
void tls_conn_free(struct tls_conn *t);

#endif
