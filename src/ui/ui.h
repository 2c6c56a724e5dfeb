/* ui.h: the web dashboard's static files (src/ui/assets/), compiled into
 * the binary. The API serves them under /ui/; they hold no data, and the
 * page reads everything it shows from /v1 with the user's token. */
#ifndef PAASOPS_UI_H
#define PAASOPS_UI_H
#include <stdbool.h>
#include <stddef.h>

/* A strong ETag: a quoted SHA-256 of the bytes in hex. */
#define UI_ETAG_MAX 67

struct ui_asset {
	const char *name;         /* "app.js" */
	const char *content_type; /* with its charset */
	const unsigned char *data;
	size_t len;
};

/* The asset at name, the path under /ui/ ("" is index.html), or NULL.
 * Borrowed, static. */
const struct ui_asset *ui_asset_find(const char *name);
/* Writes the asset's strong ETag, quotes included, into etag. */
void ui_asset_etag(const struct ui_asset *a, char etag[UI_ETAG_MAX]);
/* True when an If-None-Match value (NULL: absent) names etag: "*", or a
 * comma-separated list of entity tags compared weakly (W/ ignored), as
 * RFC 9110 asks of If-None-Match. */
bool ui_etag_matches(const char *if_none_match, const char *etag);

#endif
