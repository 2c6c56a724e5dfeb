/* crypto.c: the OpenSSL adapter (see crypto.h). */
#include "compat/crypto.h"
#include "core/util.h"
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
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
