/* ui.c: finds the dashboard's files by name. Their bytes come from
 * ui_assets.h, which make generates from src/ui/assets/ with `xxd -i`
 * (one static const array per file, named after it: app.js → app_js). */
#include "ui/ui.h"
#include "compat/crypto.h"
#include "core/util.h"
#include <string.h>

#include "ui_assets.h"

/* Every file under src/ui/assets/; the e2e tests check none is missing. */
static const struct ui_asset assets[] = {
	{"index.html", "text/html; charset=utf-8", index_html, sizeof(index_html)},
	{"app.js", "text/javascript; charset=utf-8", app_js, sizeof(app_js)},
	{"style.css", "text/css; charset=utf-8", style_css, sizeof(style_css)},
};

const struct ui_asset *ui_asset_find(const char *name)
{
	if (!*name)
		name = "index.html";
	for (size_t i = 0; i < ARRAY_SIZE(assets); i++)
		if (strcmp(assets[i].name, name) == 0)
			return &assets[i];
	return NULL;
}

void ui_asset_etag(const struct ui_asset *a, char etag[UI_ETAG_MAX])
{
	char hex[CRYPTO_SHA256_HEX];
	crypto_sha256_hex(a->data, a->len, hex);
	etag[0] = '"';
	memcpy(etag + 1, hex, CRYPTO_SHA256_HEX - 1);
	etag[CRYPTO_SHA256_HEX] = '"';
	etag[CRYPTO_SHA256_HEX + 1] = '\0';
}

bool ui_etag_matches(const char *if_none_match, const char *etag)
{
	if (!if_none_match)
		return false;
	size_t elen = strlen(etag);
	const char *p = if_none_match;
	for (;;) {
		p += strspn(p, " \t,");
		if (!*p)
			return false;
		if (*p == '*')
			return true;
		if (strncmp(p, "W/", 2) == 0)
			p += 2;
		/* An entity tag is quoted and holds no quote, so it ends at the next one. */
		const char *end = *p == '"' ? strchr(p + 1, '"') : NULL;
		if (!end)
			return false; /* malformed: match nothing */
		end++;
		if ((size_t)(end - p) == elen && memcmp(p, etag, elen) == 0)
			return true;
		p = end;
	}
}
