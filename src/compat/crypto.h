/* crypto.h: the one adapter to OpenSSL for hashes, randomness and
 * constant-time comparison. */
#ifndef PAASOPS_CRYPTO_H
#define PAASOPS_CRYPTO_H
#include <stdbool.h>
#include <stddef.h>

#define CRYPTO_SHA256_HEX 65 /* 64 hex digits + NUL */

/* Writes the lowercase hex SHA-256 of data into out. */
void crypto_sha256_hex(const void *data, size_t len, char out[CRYPTO_SHA256_HEX]);
/* Lowercase hex HMAC-SHA256 of data under key. */
void crypto_hmac_sha256_hex(const void *key, size_t key_len, const void *data, size_t len,
			    char out[CRYPTO_SHA256_HEX]);
#define CRYPTO_KEY_BYTES 32

/* HKDF-SHA256 (RFC 5869) without a salt (the RFC's default: 32 zero
 * bytes): derives out_len bytes from the key material ikm for the purpose
 * named by info, so that one secret yields independent keys for unrelated
 * uses. out_len is at most 255 * 32. */
void crypto_hkdf_sha256(const void *ikm, size_t ikm_len, const char *info, void *out, size_t out_len);

/* AES-256-GCM: encrypts text under key into "v1:" + base64url(nonce ||
 * ciphertext || tag); caller frees. */
char *crypto_seal(const unsigned char key[CRYPTO_KEY_BYTES], const char *text);
/* Reverses crypto_seal; NULL when the text was tampered with or is not
 * sealed. Caller frees. */
char *crypto_open(const unsigned char key[CRYPTO_KEY_BYTES], const char *sealed);
/* SHA-256 of a file's contents; 0 or a negative errno. */
int crypto_sha256_file(const char *path, char out[CRYPTO_SHA256_HEX]);
/* Fills buf with cryptographically secure random bytes; 0 or -EIO. */
int crypto_random(void *buf, size_t len);
/* Constant-time equality of two buffers of the same length. */
bool crypto_equal(const void *a, const void *b, size_t len);
/* Encodes len bytes as unpadded base64url into a new string; caller frees. */
char *crypto_base64url(const void *data, size_t len);
/* Encodes len bytes as lowercase hex into a new string; caller frees. */
char *crypto_hex(const void *data, size_t len);

#endif
