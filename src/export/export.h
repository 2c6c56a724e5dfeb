/* export.h: an app's release translated for another platform — Kubernetes
 * manifests and a Dockerfile for the image they run (doc/export.md).
 *
 * The translation is a pure function of the release: its parsed spec, its
 * config vars and the names of its secret ones. Secret values are never an
 * input, so they cannot end up in the output: the manifests reference a
 * Secret whose values the operator fills in. */
#ifndef PAASOPS_EXPORT_H
#define PAASOPS_EXPORT_H
#include <stdbool.h>

struct json;
struct spec;

/* The port every exported container listens on (paasops picks one per
 * instance; in a pod the port is the pod's own). */
#define EXPORT_CONTAINER_PORT 8080
/* Where the release's files are in the image. */
#define EXPORT_WORKDIR "/app"

/* One release to export; everything borrowed for the call. */
struct export_release {
	const char *app;
	int version;
	const struct spec *spec;
	const struct json *config;  /* object NAME -> value of the non-secret vars */
	const struct json *secrets; /* array of the names of the secret vars */
	const char *dir;            /* the release's files: the image's build context */
};

/* Whether ns is a Kubernetes namespace name (a DNS-1123 label: 1-63
 * characters a-z, 0-9 and '-', starting and ending with a letter or digit). */
bool export_namespace_ok(const char *ns);
/* Whether image can name a container image: non-empty, at most 512 bytes,
 * no whitespace or control characters. */
bool export_image_ok(const char *image);

/* The manifests as a Kubernetes List (apiVersion v1): per process type a
 * Deployment (and a HorizontalPodAutoscaler when it autoscales on cpu or
 * memory), a Service per routed process type, one Ingress for all routes,
 * and a Secret with empty values when the release has secret vars. image
 * NULL: "APP:vN"; ns NULL: no namespace. Caller frees. */
struct json *export_kubernetes(const struct export_release *r, const char *image, const char *ns);
/* A Dockerfile that builds the image from the release directory (the build
 * context). Caller frees. */
char *export_dockerfile(const struct export_release *r, const char *image);

#endif
