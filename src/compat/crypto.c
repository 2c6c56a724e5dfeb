/* crypto.c: the OpenSSL adapter (see crypto.h). */
#include "compat/crypto.h"
#include "core/util.h"
#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void crypto_sha256_hex(const void *data, size_t len, char out[CRYPTO_SHA256_HEX])
{
	unsigned char md[32];
	unsigned int n = 0;
	if (!EVP_Digest(data, len, md, &n, EVP_sha256(), NULL))
		abort();
	static const char hex[] = "0123456789abcdef";
	for (unsigned i = 0; i < 32; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[64] = '\0';
}

void crypto_hmac_sha256_hex(const void *key, size_t key_len, const void *data, size_t len,
			    char out[CRYPTO_SHA256_HEX])
{
	unsigned char md[32];
	unsigned int n = 0;
	if (!HMAC(EVP_sha256(), key, (int)key_len, data, len, md, &n))
		abort();
	static const char hex[] = "0123456789abcdef";
	for (unsigned i = 0; i < 32; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[64] = '\0';
}

void crypto_hkdf_sha256(const void *ikm, size_t ikm_len, const char *info, void *out, size_t out_len)
{
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikm_len),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, strlen(info)),
		OSSL_PARAM_construct_end(),
	};
	/* Fails only on a broken OpenSSL install or an absurd out_len. */
	if (!ctx || EVP_KDF_derive(ctx, out, out_len, params) <= 0)
		abort();
	EVP_KDF_CTX_free(ctx);
	EVP_KDF_free(kdf);
}

int crypto_sha256_file(const char *path, char out[CRYPTO_SHA256_HEX])
{
	FILE *f = fopen(path, "rbe");
	if (!f)
		return -errno;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL))
		abort();
	unsigned char buf[65536];
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		EVP_DigestUpdate(ctx, buf, n);
	int bad = ferror(f);
	fclose(f);
	unsigned char md[32];
	unsigned int len = 0;
	EVP_DigestFinal_ex(ctx, md, &len);
	EVP_MD_CTX_free(ctx);
	if (bad)
		return -EIO;
	static const char hex[] = "0123456789abcdef";
	for (unsigned i = 0; i < 32; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[64] = '\0';
	return 0;
}

int crypto_random(void *buf, size_t len)
{
	return RAND_bytes(buf, (int)len) == 1 ? 0 : -EIO;
}

bool crypto_equal(const void *a, const void *b, size_t len)
{
	return CRYPTO_memcmp(a, b, len) == 0;
}

char *crypto_base64url(const void *data, size_t len)
{
	size_t cap = 4 * ((len + 2) / 3) + 1;
	char *out = xmalloc(cap);
	int n = EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	if (n < 0)
		abort();
	for (int i = 0; i < n; i++) {
		if (out[i] == '+')
			out[i] = '-';
		else if (out[i] == '/')
			out[i] = '_';
	}
	while (n > 0 && out[n - 1] == '=')
		n--;
	out[n] = '\0';
	return out;
}

char *crypto_hex(const void *data, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = data;
	char *out = xmalloc(2 * len + 1);
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = hex[p[i] >> 4];
		out[2 * i + 1] = hex[p[i] & 15];
	}
	out[2 * len] = '\0';
	return out;
}

/* ---- sealing secrets ---- */

static int b64val(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/* Decodes unpadded base64url; returns the length or -1. */
static long b64url_decode(const char *in, unsigned char *out, size_t cap)
{
	size_t n = 0;
	unsigned acc = 0;
	int bits = 0;
	for (const char *p = in; *p; p++) {
		int v = b64val((unsigned char)*p);
		if (v < 0)
			return -1;
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (n >= cap)
				return -1;
			out[n++] = (unsigned char)(acc >> bits);
		}
	}
	return (long)n;
}

char *crypto_seal(const unsigned char key[CRYPTO_KEY_BYTES], const char *text)
{
	size_t len = strlen(text);
	unsigned char *buf = xmalloc(12 + len + 16);
	if (crypto_random(buf, 12) < 0)
		abort();
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int n = 0, m = 0;
	if (!ctx || !EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, buf) ||
	    !EVP_EncryptUpdate(ctx, buf + 12, &n, (const unsigned char *)text, (int)len) ||
	    !EVP_EncryptFinal_ex(ctx, buf + 12 + n, &m) ||
	    !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, buf + 12 + n + m))
		abort();
	EVP_CIPHER_CTX_free(ctx);
	char *enc = crypto_base64url(buf, 12 + (size_t)(n + m) + 16);
	free(buf);
	char *out = xasprintf("v1:%s", enc);
	free(enc);
	return out;
}

char *crypto_open(const unsigned char key[CRYPTO_KEY_BYTES], const char *sealed)
{
	if (strncmp(sealed, "v1:", 3) != 0)
		return NULL;
	size_t cap = strlen(sealed);
	unsigned char *buf = xmalloc(cap);
	long len = b64url_decode(sealed + 3, buf, cap);
	if (len < 28) {
		free(buf);
		return NULL;
	}
	size_t clen = (size_t)len - 28;
	char *out = xmalloc(clen + 1);
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int n = 0, m = 0;
	bool ok = ctx && EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, buf) &&
		  EVP_DecryptUpdate(ctx, (unsigned char *)out, &n, buf + 12, (int)clen) &&
		  EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, buf + 12 + clen) &&
		  EVP_DecryptFinal_ex(ctx, (unsigned char *)out + n, &m) > 0;
	EVP_CIPHER_CTX_free(ctx);
	free(buf);
	if (!ok) {
		free(out);
		return NULL;
	}
	out[n + m] = '\0';
	return out;
}
