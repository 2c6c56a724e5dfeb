/* daemon.c: struct daemon owns the loop and every module; this file is the
 * start-up and shutdown order:
 *   lock the data dir → open the store → stop leftovers of a crashed run →
 *   load desired state and start instances → listen for the API → run.
 *   SIGTERM/SIGINT: stop the API, stop instances gracefully, exit 0.
 *   SIGHUP: read the TLS certificates and keys again (router and API). */
#include "daemon.h"
#include "alerts/alerts.h"
#include "api/api.h"
#include "auth/audit.h"
#include "autoscale/autoscale.h"
#include "compat/json.h"
#include "compat/tls.h"
#include "core/log.h"
#include "core/proc.h"
#include "core/paths.h"
#include "core/runas.h"
#include "core/timeutil.h"
#include "core/util.h"
#include "deploy/deploy.h"
#include "deploy/deploy_webhook.h"
#include "logs/logs.h"
#include "metrics/metrics.h"
#include "router/router.h"
#include "spec/spec.h"
#include "store/store.h"
#include "supervisor/supervisor.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

struct daemon {
	uv_loop_t loop;
	char *data_dir;
	char *api_addr;
	char *api_tls_cert, *api_tls_key; /* PEM files; the key may be in the cert's */
	struct tls_ctx *api_tls;          /* loaded before anything starts */
	int port_min, port_max;
	struct runas run_as; /* valid when has_run_as */
	bool has_run_as;
	int lock_fd;
	char *http_addr; /* NULL: router off */
	char *https_addr; /* the router's HTTPS listener, or NULL */
	char *tls_certs[64], *tls_keys[64]; /* its pairs, in order */
	size_t n_tls_certs, n_tls_keys;
	struct tls_ctx *router_tls; /* loaded before anything starts */
	int router_workers;
	double access_sample;
	int64_t timeouts[4]; /* connect, header, response, idle; 0 = default */
	struct webhook_target hooks[16]; /* global deploy webhooks */
	int releases_kept;
	int64_t build_timeout_ms;
	size_t n_hooks;
	char *hook_secret;
	bool hook_slack;
	struct store *store;
	struct supervisor *sv;
	struct router *router;
	struct deploy *deploy;
	struct metrics_config mcfg;
	bool metrics_public;
	struct metrics *metrics;
	struct logs_config lcfg;
	struct logs *logs;
	struct alerts_config acfg;
	struct alerts *alerts;
	struct autoscale_config ascfg;
	struct autoscale *autoscale;
	uv_timer_t publish; /* coalesces routing changes into one publish */
	struct api *api;
	struct audit *audit; /* the audit log's verifier */
	uv_signal_t sigterm, sigint, sighup;
	bool stopping;
};

static const char usage[] =
	"usage: paasops serve [--data DIR] [--api HOST:PORT] [--http HOST:PORT|off] [--ports MIN-MAX]\n"
	"                     [--run-as USER[:GROUP]] [--router-workers N] [--access-log-sample F]\n"
	"                     [--log-level LEVEL]\n"
	"\n"
	"  --data DIR        state, socket and lock (default /var/lib/paasops for root,\n"
	"                    else $XDG_DATA_HOME/paasops or ~/.local/share/paasops)\n"
	"  --api HOST:PORT   also serve the API on TCP; every call needs a bearer token;\n"
	"                    the web dashboard is at http(s)://HOST:PORT/ui/\n"
	"  --api-tls-cert FILE, --api-tls-key FILE  serve the TCP API only over TLS with this\n"
	"                    certificate chain and key (PEM; the key may be in the cert file)\n"
	"  --http HOST:PORT  the router's listener (default 127.0.0.1:8080; 0.0.0.0:80 in\n"
	"                    production); 'off' runs no router\n"
	"  --https HOST:PORT  also terminate HTTPS there (0.0.0.0:443 in production)\n"
	"  --tls-cert FILE --tls-key FILE  a certificate chain and its key for --https (PEM);\n"
	"                    repeat the pair for more sites: SNI picks by name, the first\n"
	"                    is the default. SIGHUP reads every certificate again\n"
	"  --router-workers N  router threads (default: one per core)\n"
	"  --access-log-sample F  fraction of requests in the access log (default 1)\n"
	"  --connect-timeout D, --header-timeout D, --response-timeout D, --idle-timeout D\n"
	"                    router timeouts (defaults 5s, 10s, 30s, 60s)\n"
	"  --releases-kept N  release artifacts kept on disk (default 10)\n"
	"  --build-timeout D  limit for build and release phases (default 10m)\n"
	"  --webhook URL     POST deploy events there (repeatable); --webhook-secret-file F\n"
	"                    signs them (X-Paasops-Signature); --webhook-format json|slack\n"
	"  --ports MIN-MAX   ports handed to instances (default 20000-29999)\n"
	"  --run-as USER[:GROUP]  run app code (instances, health check commands, builds,\n"
	"                    release phases, paasops run) as this unprivileged user, with its\n"
	"                    group and no supplementary groups; the daemon must run as root.\n"
	"                    Without it app code runs as the daemon's own user (doc/daemon.md)\n"
	"  --log-level L     debug, info, warn or error (default info)\n"
	"  --metrics-interval D  metrics sampling period (default 1s)\n"
	"  --metrics-retention L  metrics history tiers (default 1h,10s:1d,5m:30d)\n"
	"  --metrics-memory SIZE  memory budget of the metrics history (default 256M)\n"
	"  --metrics-public  serve GET /metrics on TCP without a token (trusted networks only)\n"
	"  --price-cpu-hour AMOUNT, --price-memory-gb-hour AMOUNT, --price-currency CUR\n"
	"                    prices for the cost in usage reports (doc/usage.md)\n"
	"  --log-retention D  keep log lines this long (default 7d)\n"
	"  --log-max-size SIZE, --log-app-max-size SIZE  log storage in all and per app\n"
	"                    (defaults 1G and 256M); --log-min-free PCT (default 5)\n"
	"  --log-rate N, --log-burst N  lines/s per instance and burst (10000, 20000)\n"
	"  --log-drain URL   forward every app's lines: syslog[+tls]://HOST:PORT or http(s)://...\n"
	"  --log-flush D, --log-index-memory SIZE, --log-chunk-size SIZE  log tuning (doc/logs.md)\n"
	"  --alert-rules FILE  alert rules and tuning of the built-in ones (doc/alerts.md)\n"
	"  --alertmanager URL, --alert-webhook URL, --alert-slack URL  notifiers (repeatable);\n"
	"                    --alert-secret-file F signs webhook deliveries\n"
	"  --alert-interval D, --alert-keep-firing-for D, --alert-repeat-interval D\n"
	"                    evaluation period, flap damping, reminders (1s, 30s, 4h)\n"
	"  --alert-external-url URL  this daemon's address in notifications\n"
	"  --autoscale-interval D  how often autoscaled process types are evaluated (default 1s)\n"
	"  --autoscale-stable-window D  what the autoscaler averages over (default 60s; a tenth\n"
	"                    of it is the panic window)\n"
	"  --autoscale-scale-down-delay D  how long a lower count must be wanted before\n"
	"                    scaling down (default 5m)\n";

static void daemon_tls_release(struct daemon *d)
{
	tls_ctx_free(d->router_tls);
	d->router_tls = NULL;
	free(d->https_addr);
	d->https_addr = NULL;
	for (size_t k = 0; k < d->n_tls_certs; k++)
		free(d->tls_certs[k]);
	for (size_t k = 0; k < d->n_tls_keys; k++)
		free(d->tls_keys[k]);
	d->n_tls_certs = d->n_tls_keys = 0;
}

static int parse_args(struct daemon *d, int argc, char **argv)
{
	static const struct option opts[] = {
		{"data", required_argument, NULL, 'd'},  {"api", required_argument, NULL, 'a'},
		{"ports", required_argument, NULL, 'p'}, {"log-level", required_argument, NULL, 'l'},
		{"run-as", required_argument, NULL, 1040},
		{"http", required_argument, NULL, 'H'},  {"router-workers", required_argument, NULL, 'w'},
		{"access-log-sample", required_argument, NULL, 's'},
		{"connect-timeout", required_argument, NULL, 1000},
		{"header-timeout", required_argument, NULL, 1001},
		{"response-timeout", required_argument, NULL, 1002},
		{"idle-timeout", required_argument, NULL, 1003},
		{"api-tls-cert", required_argument, NULL, 1030},
		{"api-tls-key", required_argument, NULL, 1031},
		{"https", required_argument, NULL, 1032},
		{"tls-cert", required_argument, NULL, 1033},
		{"tls-key", required_argument, NULL, 1034},
		{"releases-kept", required_argument, NULL, 1020},
		{"build-timeout", required_argument, NULL, 1021},
		{"webhook", required_argument, NULL, 1010},
		{"webhook-secret-file", required_argument, NULL, 1011},
		{"webhook-format", required_argument, NULL, 1012},
		{"metrics-public", no_argument, NULL, 1100},
		{"metrics-interval", required_argument, NULL, 1101},
		{"metrics-retention", required_argument, NULL, 1102},
		{"metrics-memory", required_argument, NULL, 1103},
		{"price-cpu-hour", required_argument, NULL, 1104},
		{"price-memory-gb-hour", required_argument, NULL, 1105},
		{"price-currency", required_argument, NULL, 1106},
		{"log-retention", required_argument, NULL, 1200},
		{"log-max-size", required_argument, NULL, 1201},
		{"log-app-max-size", required_argument, NULL, 1202},
		{"log-min-free", required_argument, NULL, 1203},
		{"log-rate", required_argument, NULL, 1204},
		{"log-burst", required_argument, NULL, 1205},
		{"log-drain", required_argument, NULL, 1206},
		{"log-flush", required_argument, NULL, 1207},
		{"log-index-memory", required_argument, NULL, 1208},
		{"log-chunk-size", required_argument, NULL, 1209},
		{"alert-rules", required_argument, NULL, 1300},
		{"alertmanager", required_argument, NULL, 1301},
		{"alert-webhook", required_argument, NULL, 1302},
		{"alert-slack", required_argument, NULL, 1303},
		{"alert-secret-file", required_argument, NULL, 1304},
		{"alert-interval", required_argument, NULL, 1305},
		{"alert-keep-firing-for", required_argument, NULL, 1306},
		{"alert-repeat-interval", required_argument, NULL, 1307},
		{"alert-external-url", required_argument, NULL, 1308},
		{"autoscale-interval", required_argument, NULL, 1400},
		{"autoscale-scale-down-delay", required_argument, NULL, 1401},
		{"autoscale-stable-window", required_argument, NULL, 1402},
		{"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0},
	};
	static const char *const levels[] = {"debug", "info", "warn", "error"};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			free(d->data_dir);
			d->data_dir = xstrdup(optarg);
			break;
		case 'a':
			free(d->api_addr);
			d->api_addr = xstrdup(optarg);
			break;
		case 1030:
			free(d->api_tls_cert);
			d->api_tls_cert = xstrdup(optarg);
			break;
		case 1031:
			free(d->api_tls_key);
			d->api_tls_key = xstrdup(optarg);
			break;
		case 1032:
			free(d->https_addr);
			d->https_addr = xstrdup(optarg);
			break;
		case 1033:
		case 1034: {
			char **list = c == 1033 ? d->tls_certs : d->tls_keys;
			size_t *n = c == 1033 ? &d->n_tls_certs : &d->n_tls_keys;
			if (*n == ARRAY_SIZE(d->tls_certs)) {
				fprintf(stderr, "paasops serve: at most %zu --tls-cert/--tls-key pairs\n",
					ARRAY_SIZE(d->tls_certs));
				return -EINVAL;
			}
			/* Pairs in order: each key right after its certificate. */
			if (c == 1033 && d->n_tls_certs > d->n_tls_keys) {
				fprintf(stderr, "paasops serve: --tls-cert '%s' needs a --tls-key after it\n",
					d->tls_certs[d->n_tls_certs - 1]);
				return -EINVAL;
			}
			if (c == 1034 && d->n_tls_keys == d->n_tls_certs) {
				fprintf(stderr, "paasops serve: --tls-key '%s' needs a --tls-cert before it\n", optarg);
				return -EINVAL;
			}
			list[(*n)++] = xstrdup(optarg);
			break;
		}
		case 'p': {
			int a, b;
			char extra;
			if (sscanf(optarg, "%d-%d%c", &a, &b, &extra) != 2 || a < 1024 || b > 65535 || a > b) {
				fprintf(stderr, "paasops serve: invalid --ports '%s' (want MIN-MAX within 1024-65535)\n", optarg);
				return -EINVAL;
			}
			d->port_min = a;
			d->port_max = b;
			break;
		}
		case 1040: {
			char *err = NULL;
			if (d->has_run_as)
				runas_release(&d->run_as);
			d->has_run_as = false;
			if (runas_parse(optarg, &d->run_as, &err) < 0) {
				fprintf(stderr, "paasops serve: %s\n", err);
				free(err);
				return -EINVAL;
			}
			d->has_run_as = true;
			break;
		}
		case 'l': {
			size_t k;
			for (k = 0; k < ARRAY_SIZE(levels) && strcmp(levels[k], optarg); k++)
				;
			if (k == ARRAY_SIZE(levels)) {
				fprintf(stderr, "paasops serve: invalid --log-level '%s'\n", optarg);
				return -EINVAL;
			}
			log_set_level((enum log_level)k);
			break;
		}
		case 'H':
			free(d->http_addr);
			d->http_addr = strcmp(optarg, "off") == 0 ? NULL : xstrdup(optarg);
			break;
		case 'w': {
			int64_t n;
			if (str_to_i64(optarg, &n) < 0 || n < 1 || n > 64) {
				fprintf(stderr, "paasops serve: invalid --router-workers '%s' (want 1-64)\n", optarg);
				return -EINVAL;
			}
			d->router_workers = (int)n;
			break;
		}
		case 's': {
			char *end;
			double f = strtod(optarg, &end);
			if (*end || end == optarg || f < 0 || f > 1) {
				fprintf(stderr, "paasops serve: invalid --access-log-sample '%s' (want 0 to 1)\n", optarg);
				return -EINVAL;
			}
			d->access_sample = f;
			break;
		}
		case 1000:
		case 1001:
		case 1002:
		case 1003: {
			int64_t ms;
			if (duration_parse(optarg, &ms) < 0 || ms <= 0) {
				fprintf(stderr, "paasops serve: invalid duration '%s' (like 500ms, 10s, 1m)\n", optarg);
				return -EINVAL;
			}
			d->timeouts[c - 1000] = ms;
			break;
		}
		case 1100:
			d->metrics_public = true;
			break;
		case 1101:
		case 1102:
		case 1103:
		case 1104:
		case 1105:
		case 1106: {
			static const char *const mflags[] = {"metrics-interval", "metrics-retention",
							     "metrics-memory", "price-cpu-hour",
							     "price-memory-gb-hour", "price-currency"};
			char *err = NULL;
			if (metrics_config_parse(&d->mcfg, mflags[c - 1101], optarg, &err) < 0) {
				fprintf(stderr, "paasops serve: %s\n", err);
				free(err);
				return -EINVAL;
			}
			break;
		}
		case 1200:
		case 1201:
		case 1202:
		case 1203:
		case 1204:
		case 1205:
		case 1206:
		case 1207:
		case 1208:
		case 1209: {
			static const char *const lflags[] = {
				"log-retention", "log-max-size", "log-app-max-size", "log-min-free", "log-rate",
				"log-burst", "log-drain", "log-flush", "log-index-memory", "log-chunk-size"};
			char *err = NULL;
			if (logs_config_parse(&d->lcfg, lflags[c - 1200], optarg, &err) < 0) {
				fprintf(stderr, "paasops serve: %s\n", err);
				free(err);
				return -EINVAL;
			}
			break;
		}
		case 1300: case 1301: case 1302: case 1303: case 1304:
		case 1305: case 1306: case 1307: case 1308: {
			static const char *const aflags[] = {
				"alert-rules", "alertmanager", "alert-webhook", "alert-slack",
				"alert-secret-file", "alert-interval", "alert-keep-firing-for",
				"alert-repeat-interval", "alert-external-url"};
			char *err = NULL;
			if (alerts_config_parse(&d->acfg, aflags[c - 1300], optarg, &err) < 0) {
				fprintf(stderr, "paasops serve: %s\n", err);
				free(err);
				return -EINVAL;
			}
			break;
		}
		case 1400:
		case 1401:
		case 1402: {
			static const char *const sflags[] = {"autoscale-interval",
							     "autoscale-scale-down-delay",
							     "autoscale-stable-window"};
			char *err = NULL;
			if (autoscale_config_parse(&d->ascfg, sflags[c - 1400], optarg, &err) < 0) {
				fprintf(stderr, "paasops serve: %s\n", err);
				free(err);
				return -EINVAL;
			}
			break;
		}
		case 1020: {
			int64_t n;
			if (str_to_i64(optarg, &n) < 0 || n < 1 || n > 1000) {
				fprintf(stderr, "paasops serve: invalid --releases-kept '%s' (want 1-1000)\n", optarg);
				return -EINVAL;
			}
			d->releases_kept = (int)n;
			break;
		}
		case 1021:
			if (duration_parse(optarg, &d->build_timeout_ms) < 0 || d->build_timeout_ms <= 0) {
				fprintf(stderr, "paasops serve: invalid --build-timeout '%s' (like 10m)\n", optarg);
				return -EINVAL;
			}
			break;
		case 1010:
			if (d->n_hooks == ARRAY_SIZE(d->hooks) ||
			    !(str_starts_with(optarg, "http://") || str_starts_with(optarg, "https://"))) {
				fprintf(stderr, "paasops serve: invalid --webhook '%s' (an http:// or https:// URL; at most 16)\n", optarg);
				return -EINVAL;
			}
			d->hooks[d->n_hooks++].url = optarg;
			break;
		case 1011: {
			FILE *f = fopen(optarg, "re");
			char buf[4096];
			size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
			if (f)
				fclose(f);
			if (!f || n == 0) {
				fprintf(stderr, "paasops serve: cannot read --webhook-secret-file '%s'\n", optarg);
				return -EINVAL;
			}
			buf[n] = '\0';
			buf[strcspn(buf, "\r\n")] = '\0';
			free(d->hook_secret);
			d->hook_secret = xstrdup(buf);
			break;
		}
		case 1012:
			if (strcmp(optarg, "json") && strcmp(optarg, "slack")) {
				fprintf(stderr, "paasops serve: invalid --webhook-format '%s' (json or slack)\n", optarg);
				return -EINVAL;
			}
			d->hook_slack = !strcmp(optarg, "slack");
			break;
		case 'h':
			fputs(usage, stdout);
			return 1;
		default:
			fputs(usage, stderr);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "paasops serve: unexpected argument '%s'\n%s", argv[optind], usage);
		return -EINVAL;
	}
	if (d->has_run_as && geteuid() != 0) {
		fprintf(stderr, "paasops serve: --run-as needs the daemon to run as root (it runs as uid %u): "
				"only root can start processes as another user\n", (unsigned)geteuid());
		return -EINVAL;
	}
	if (d->api_tls_key && !d->api_tls_cert) {
		fprintf(stderr, "paasops serve: --api-tls-key needs --api-tls-cert\n");
		return -EINVAL;
	}
	if (d->n_tls_certs != d->n_tls_keys) {
		bool cert = d->n_tls_certs > d->n_tls_keys;
		size_t k = cert ? d->n_tls_keys : d->n_tls_certs;
		if (cert)
			fprintf(stderr, "paasops serve: --tls-cert '%s' needs a --tls-key after it\n",
				d->tls_certs[k]);
		else
			fprintf(stderr, "paasops serve: --tls-key '%s' needs a --tls-cert before it\n",
				d->tls_keys[k]);
		return -EINVAL;
	}
	if (d->https_addr && !d->n_tls_certs) {
		fprintf(stderr, "paasops serve: --https needs a certificate: --tls-cert FILE --tls-key FILE\n");
		return -EINVAL;
	}
	if (d->n_tls_certs && !d->https_addr) {
		fprintf(stderr, "paasops serve: --tls-cert needs --https HOST:PORT\n");
		return -EINVAL;
	}
	if (d->https_addr && !d->http_addr) {
		fprintf(stderr, "paasops serve: --https needs the router (--http is off)\n");
		return -EINVAL;
	}
	if (d->api_tls_cert && !d->api_addr) {
		fprintf(stderr, "paasops serve: --api-tls-cert needs --api HOST:PORT (the unix socket "
				"does not use TLS)\n");
		return -EINVAL;
	}
	return 0;
}

/* Takes the data dir's lock so that a second daemon refuses to start. */
static int lock_data_dir(struct daemon *d)
{
	char *path = xasprintf("%s/paasops.lock", d->data_dir);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		fprintf(stderr, "paasops serve: cannot open '%s': %s\n", path, strerror(errno));
		free(path);
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		char buf[32] = {0};
		ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
		buf[n > 0 ? n : 0] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		fprintf(stderr, "paasops serve: another paasops (pid %s) is already using data dir '%s'\n",
			*buf ? buf : "?", d->data_dir);
		close(fd);
		free(path);
		return -1;
	}
	char pid[32];
	int n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n)
		log_warn("cannot record pid in '%s'", path);
	free(path);
	d->lock_fd = fd;
	return 0;
}

/* ---- the data dir with --run-as ---- */

/* App code running as the run-as user must reach its release directory
 * by name (DATA/releases/APP/vN): every directory above the data dir must
 * let it search, and DATA and DATA/releases let it search but not list
 * (0711). Everything else directly in DATA loses group and other access,
 * so that state.db, logs.db, secret.key, the socket and the rest stay the
 * daemon's alone. 0, or -1 after saying why. */
static int data_dir_for_run_as(struct daemon *d)
{
	char *bad = NULL;
	int r = runas_reach(&d->run_as, d->data_dir, 0, &bad);
	if (r < 0) {
		if (r == -EACCES)
			fprintf(stderr, "paasops serve: --run-as %s: user '%s' cannot search '%s' (mode not "
					"o+x), so instances could not reach their code under '%s'; make it "
					"searchable (chmod o+x) or choose a --data dir it can reach\n",
				d->run_as.user, d->run_as.user, bad, d->data_dir);
		else
			fprintf(stderr, "paasops serve: cannot look at '%s': %s\n", bad, strerror(-r));
		free(bad);
		return -1;
	}
	char *rel = xasprintf("%s/releases", d->data_dir);
	if (mkdir(rel, 0711) < 0 && errno != EEXIST) {
		fprintf(stderr, "paasops serve: cannot create '%s': %s\n", rel, strerror(errno));
		free(rel);
		return -1;
	}
	free(rel);
	DIR *dir = opendir(d->data_dir);
	struct dirent *e;
	while (dir && (e = readdir(dir))) {
		if (!strcmp(e->d_name, "..") || !strcmp(e->d_name, "lost+found"))
			continue;
		struct stat st;
		if (fstatat(dirfd(dir), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || S_ISLNK(st.st_mode))
			continue;
		bool searchable = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "releases");
		mode_t mode = searchable ? 0711 : st.st_mode & 07700;
		if ((st.st_mode & 07777) != mode && fchmodat(dirfd(dir), e->d_name, mode, 0) < 0) {
			fprintf(stderr, "paasops serve: cannot chmod '%s/%s': %s\n", d->data_dir, e->d_name,
				strerror(errno));
			closedir(dir);
			return -1;
		}
	}
	if (dir)
		closedir(dir);
	return 0;
}

/* ---- a data dir restored from a backup ---- */

/* `paasops restore` leaves the backup's BACKUP.json in the data dir. Its
 * releases' code was unpacked under the data dir it was taken from: when
 * that was elsewhere, the records are moved to this one. The file is then
 * removed, so that this happens once. */
static int adopt_restored(struct daemon *d)
{
	char *path = xasprintf("%s/BACKUP.json", d->data_dir);
	FILE *f = fopen(path, "re");
	if (!f) {
		free(path);
		return 0;
	}
	char buf[65536];
	size_t n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	struct json *m = json_parse(buf, n, NULL);
	const char *from = json_get_str(m, "data_dir");
	/* The processes it records are the backed-up daemon's, maybe still
	 * running on this machine: never this daemon's to stop. */
	int rc = store_procs_clear(d->store);
	if (rc < 0)
		fprintf(stderr, "paasops serve: cannot adopt the restored data dir: %s\n",
			store_errmsg(d->store));
	if (rc == 0 && from && strcmp(from, d->data_dir) != 0) {
		char *err = NULL;
		rc = store_relocate(d->store, from, d->data_dir, &err);
		if (rc < 0) {
			fprintf(stderr, "paasops serve: cannot adopt the restored data dir: %s\n", err);
			free(err);
		} else {
			log_info("restored data dir: releases moved from %s to %s", from, d->data_dir);
		}
	}
	if (rc == 0) {
		log_info("started on a data dir restored from the backup of %s",
			 json_get_str(m, "created_at") ? json_get_str(m, "created_at") : "?");
		unlink(path);
	}
	json_free(m);
	free(path);
	return rc;
}

/* ---- the router's view of the supervisor ---- */

struct pool_ctx {
	struct router_table *t;
	struct supervisor *sv;
};

static void add_pool(void *ctx, const char *app, const struct spec_process *sp,
		     const char *const *instances, const int *ports, size_t n)
{
	struct pool_ctx *pc = ctx;
	struct router_table *t = pc->t;
	if (sp->n_routes == 0)
		return;
	enum router_balance b = sp->balance == SPEC_BALANCE_ROUND_ROBIN ? ROUTER_ROUND_ROBIN
				: sp->balance == SPEC_BALANCE_HASH       ? ROUTER_HASH
									 : ROUTER_P2C;
	int pool = router_table_pool(t, app, sp->name, b, sp->hash_on);
	if (supervisor_app_maintenance(pc->sv, app))
		router_table_maintenance(t, pool);
	for (size_t k = 0; k < n; k++)
		router_table_backend(t, pool, instances[k], ports[k]);
	for (size_t k = 0; k < sp->n_routes; k++) {
		const struct spec_route *rt = &sp->routes[k];
		int idx = router_table_route(t, rt->host, rt->path, pool, rt->max_body);
		if (rt->https_redirect)
			router_table_route_https_redirect(t, idx);
	}
}

static void publish_now(uv_timer_t *t)
{
	struct daemon *d = t->data;
	if (!d->router)
		return;
	struct router_table *table = router_table_new();
	struct pool_ctx pc = {table, d->sv};
	supervisor_each_pool(d->sv, add_pool, &pc);
	router_publish(d->router, table);
}

static void on_changed(void *ctx)
{
	struct daemon *d = ctx;
	/* Publish on the next loop turn: a burst of changes makes one snapshot,
	 * yet a stopping instance leaves the routing table before its drain
	 * is polled. */
	if (d->router && !uv_is_active((uv_handle_t *)&d->publish))
		uv_timer_start(&d->publish, publish_now, 0, 0);
}

static bool on_drained(void *ctx, const char *instance)
{
	struct daemon *d = ctx;
	if (uv_is_active((uv_handle_t *)&d->publish))
		return false; /* not yet out of the table */
	return !d->router || router_drained(d->router, instance);
}

static void on_check_passed(void *ctx, const char *instance)
{
	struct daemon *d = ctx;
	if (d->router)
		router_backend_healthy(d->router, instance);
}

static void on_access(void *ctx, const char *app, const char *instance, const char *line)
{
	struct daemon *d = ctx;
	if (app && *app)
		supervisor_log_line(d->sv, app, instance, SUPERVISOR_STREAM_ROUTER, line);
}

static void on_log_line(void *ctx, int64_t time_ms, const char *app, const char *process,
			const char *instance, int release, int stream, const char *text, size_t len)
{
	struct daemon *d = ctx;
	logs_ingest(d->logs, app, process, instance, release, stream, text, len);
}

static void on_event(void *ctx, const struct store_event *ev)
{
	struct daemon *d = ctx;
	alerts_on_event(d->alerts, ev);
}

static void on_deploy_result(void *ctx, const char *app, int version, const char *result,
			     const char *reason)
{
	struct daemon *d = ctx;
	alerts_on_deploy(d->alerts, app, version, result, reason);
}

static bool on_log_busy(void *ctx, const char *app, const char *instance)
{
	struct daemon *d = ctx;
	return logs_busy(d->logs, app, instance);
}

static const struct supervisor_hooks hooks = {on_changed, on_drained, on_check_passed, on_log_line,
					      on_event, on_log_busy};

static void all_stopped(void *ctx)
{
	struct daemon *d = ctx;
	log_info("all instances stopped; exiting");
	uv_close((uv_handle_t *)&d->sigterm, NULL);
	uv_close((uv_handle_t *)&d->sigint, NULL);
	uv_close((uv_handle_t *)&d->sighup, NULL);
	uv_close((uv_handle_t *)&d->publish, NULL);
	metrics_stop(d->metrics); /* before the router goes */
	router_free(d->router);
	d->router = NULL;
	logs_stop(d->logs); /* after the instances: their last lines are stored */
}

static void on_signal(uv_signal_t *s, int signum)
{
	struct daemon *d = s->data;
	if (d->stopping) {
		log_warn("second signal: already stopping instances");
		return;
	}
	d->stopping = true;
	log_info("received %s; stopping", strsignal(signum));
	alerts_stop(d->alerts); /* stopping instances is not a reason to resolve alerts */
	autoscale_stop(d->autoscale); /* stopping instances is not a reason to scale */
	api_stop(d->api);
	d->api = NULL;
	audit_stop(d->audit); /* a verify running would hold the loop open */
	deploy_stop(d->deploy); /* a build would hold the loop, and the data dir, open */
	supervisor_shutdown(d->sv, all_stopped, d);
}

/* SIGHUP: every certificate and key is read again from its file. New
 * handshakes use them, connections already open keep theirs, and a file
 * that fails leaves its pair as it was. */
static void on_sighup(uv_signal_t *s, int signum)
{
	struct daemon *d = s->data;
	struct {
		struct tls_ctx *ctx;
		const char *what;
	} all[] = {{d->router_tls, "router"}, {d->api_tls, "api"}};
	int reloaded = 0;
	for (size_t k = 0; k < ARRAY_SIZE(all); k++) {
		if (!all[k].ctx)
			continue;
		char *err = NULL;
		if (tls_server_ctx_reload(all[k].ctx, &err) < 0) {
			log_error("%s: keeping the previous TLS certificate: %s", all[k].what, err);
			free(err);
		} else {
			log_info("%s: TLS certificates reloaded", all[k].what);
		}
		reloaded++;
	}
	if (!reloaded)
		log_info("received SIGHUP: no TLS certificates to reload");
}

static void walk_close(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

int daemon_main(int argc, char **argv)
{
	struct daemon d = {.port_min = 20000, .port_max = 29999, .lock_fd = -1, .access_sample = 1.0};
	d.http_addr = xstrdup("127.0.0.1:8080");
	metrics_config_defaults(&d.mcfg);
	alerts_config_defaults(&d.acfg);
	logs_config_defaults(&d.lcfg);
	autoscale_config_defaults(&d.ascfg);
	int rc = 1;
	int r = parse_args(&d, argc, argv);
	if (r != 0) {
		free(d.data_dir);
		free(d.api_addr);
		free(d.api_tls_cert);
		free(d.api_tls_key);
		free(d.http_addr);
		free(d.hook_secret);
		daemon_tls_release(&d);
		alerts_config_release(&d.acfg);
		if (d.has_run_as)
			runas_release(&d.run_as);
		return r > 0 ? 0 : 2;
	}
	proc_cloexec_from(3); /* what we were started with is not for the instances */
	if (!d.data_dir)
		d.data_dir = paths_default_data_dir();
	if (!d.data_dir) {
		fprintf(stderr, "paasops serve: no home directory for the default data dir; use --data DIR\n");
		return 2;
	}
	if (d.data_dir[0] != '/') {
		char cwd[4096];
		if (getcwd(cwd, sizeof(cwd))) {
			char *abs = xasprintf("%s/%s", cwd, d.data_dir);
			free(d.data_dir);
			d.data_dir = abs;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	char *err = NULL;
	/* Before anything starts: a bad certificate stops the daemon with
	 * nothing to undo. */
	if (d.api_tls_cert) {
		d.api_tls = tls_server_ctx_new(d.api_tls_cert, d.api_tls_key, &err);
		if (!d.api_tls) {
			fprintf(stderr, "paasops serve: %s\n", err);
			free(err);
			goto out;
		}
	}
	if (d.https_addr) {
		struct tls_pair pairs[ARRAY_SIZE(d.tls_certs)];
		for (size_t k = 0; k < d.n_tls_certs; k++)
			pairs[k] = (struct tls_pair){d.tls_certs[k], d.tls_keys[k]};
		d.router_tls = tls_server_ctx_new_pairs(pairs, d.n_tls_certs, &err);
		if (!d.router_tls) {
			fprintf(stderr, "paasops serve: %s\n", err);
			free(err);
			goto out;
		}
	}
	/* Every instance costs a few descriptors (pipes, health checks, pooled
	 * connections): take all the kernel allows this user. */
	struct rlimit nofile;
	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
		nofile.rlim_cur = nofile.rlim_max;
		setrlimit(RLIMIT_NOFILE, &nofile);
	}
	if ((r = paths_mkdir_p(d.data_dir, 0700)) < 0) {
		fprintf(stderr, "paasops serve: cannot create data dir '%s': %s\n", d.data_dir, strerror(-r));
		goto out;
	}
	/* Print, hand to instances and bind the socket under one canonical
	 * name: "/srv/./x/../paasops" is "/srv/paasops". */
	char *canon = realpath(d.data_dir, NULL);
	if (canon) {
		free(d.data_dir);
		d.data_dir = canon;
	}
	if (d.has_run_as && data_dir_for_run_as(&d) < 0) {
		rc = 2;
		goto out;
	}
	if (lock_data_dir(&d) < 0)
		goto out;

	char *db = xasprintf("%s/state.db", d.data_dir);
	d.store = store_open(db, &err);
	free(db);
	if (!d.store) {
		fprintf(stderr, "paasops serve: %s\n", err);
		free(err);
		goto out;
	}
	if (adopt_restored(&d) < 0)
		goto out;
	/* Before the API: keyed chaining must be in place for the first entry. */
	d.audit = audit_new(&d.loop, d.store, &err);
	if (!d.audit) {
		fprintf(stderr, "paasops serve: %s\n", err);
		free(err);
		goto out;
	}
	uv_loop_init(&d.loop);
	uv_timer_init(&d.loop, &d.publish);
	d.publish.data = &d;
	if (d.http_addr) {
		struct router_config rc;
		router_config_defaults(&rc);
		rc.loop = &d.loop;
		rc.listen = d.http_addr;
		rc.https_listen = d.https_addr;
		rc.tls = d.router_tls;
		rc.workers = d.router_workers;
		rc.access_sample = d.access_sample;
		rc.access_cb = on_access;
		if (d.timeouts[0])
			rc.connect_timeout_ms = d.timeouts[0];
		if (d.timeouts[1])
			rc.header_timeout_ms = d.timeouts[1];
		if (d.timeouts[2])
			rc.response_timeout_ms = d.timeouts[2];
		if (d.timeouts[3])
			rc.idle_timeout_ms = d.timeouts[3];
		rc.access_ctx = &d;
		d.router = router_start(&rc, &err);
		if (!d.router) {
			fprintf(stderr, "paasops serve: %s\n", err);
			free(err);
			uv_close((uv_handle_t *)&d.publish, NULL);
			uv_run(&d.loop, UV_RUN_DEFAULT);
			uv_loop_close(&d.loop);
			goto out;
		}
	}
	d.lcfg.loop = &d.loop;
	d.lcfg.data_dir = d.data_dir;
	d.logs = logs_new(&d.lcfg, &err);
	if (!d.logs) {
		fprintf(stderr, "paasops serve: %s\n", err);
		free(err);
		router_free(d.router);
		d.router = NULL;
		uv_walk(&d.loop, walk_close, NULL);
		uv_run(&d.loop, UV_RUN_DEFAULT);
		uv_loop_close(&d.loop);
		goto out;
	}
	struct supervisor_config sc = {
		.hooks = &hooks, .hooks_ctx = &d,
		.loop = &d.loop, .store = d.store, .data_dir = d.data_dir,
		.port_min = d.port_min, .port_max = d.port_max,
		.run_as = d.has_run_as ? &d.run_as : NULL,
	};
	d.sv = supervisor_new(&sc);
	supervisor_cleanup_leftovers(d.sv);
	for (size_t k = 0; k < d.n_hooks; k++) {
		d.hooks[k].secret = d.hook_secret;
		d.hooks[k].slack = d.hook_slack;
	}
	struct deploy_config dc = {
		.loop = &d.loop, .store = d.store, .sv = d.sv, .router = d.router, .data_dir = d.data_dir,
		.webhooks = d.hooks, .n_webhooks = d.n_hooks,
		.keep_releases = d.releases_kept, .build_timeout_ms = d.build_timeout_ms,
		.on_result = on_deploy_result, .result_ctx = &d,
	};
	d.deploy = deploy_new(&dc);
	deploy_recover(d.deploy);
	if (supervisor_load(d.sv, &err) < 0) {
		fprintf(stderr, "paasops serve: %s\n", err);
		free(err);
		goto out_loop;
	}
	d.mcfg.loop = &d.loop;
	d.mcfg.sv = d.sv;
	d.mcfg.router = d.router;
	d.mcfg.data_dir = d.data_dir;
	d.mcfg.version = PAASOPS_VERSION;
	d.metrics = metrics_new(&d.mcfg, &err);
	if (!d.metrics) {
		fprintf(stderr, "paasops serve: %s\n", err);
		free(err);
		supervisor_shutdown(d.sv, NULL, NULL);
		goto out_loop;
	}
	logs_attach_metrics(d.logs, metrics_registry_of(d.metrics));
	metrics_start(d.metrics);
	d.acfg.loop = &d.loop;
	d.acfg.metrics = d.metrics;
	d.acfg.sv = d.sv;
	d.acfg.data_dir = d.data_dir;
	d.alerts = alerts_new(&d.acfg, &err);
	if (!d.alerts) {
		fprintf(stderr, "paasops serve: %s\n", err);
		free(err);
		metrics_stop(d.metrics);
		supervisor_shutdown(d.sv, NULL, NULL);
		goto out_loop;
	}
	alerts_start(d.alerts);
	d.ascfg.loop = &d.loop;
	d.ascfg.sv = d.sv;
	d.ascfg.router = d.router;
	d.ascfg.metrics = d.metrics;
	d.ascfg.store = d.store;
	d.ascfg.metrics_interval_ms = d.mcfg.interval_ms;
	d.autoscale = autoscale_new(&d.ascfg);
	autoscale_start(d.autoscale);
	char *sock = xasprintf("%s/paasops.sock", d.data_dir);
	struct api_config ac = {
		.loop = &d.loop, .store = d.store, .sv = d.sv, .router = d.router, .socket_path = sock,
		.deploy = d.deploy, .data_dir = d.data_dir,
		.metrics = d.metrics, .metrics_public = d.metrics_public, .logs = d.logs, .alerts = d.alerts,
		.autoscale = d.autoscale, .audit = d.audit,
		.tcp_addr = d.api_addr, .tls = d.api_tls, .version = PAASOPS_VERSION,
	};
	d.api = api_start(&ac, &err);
	if (!d.api) {
		fprintf(stderr, "paasops serve: %s\n", err);
		free(err);
		free(sock);
		supervisor_shutdown(d.sv, NULL, NULL);
		goto out_loop;
	}
	uv_signal_init(&d.loop, &d.sigterm);
	uv_signal_init(&d.loop, &d.sigint);
	d.sigterm.data = d.sigint.data = &d;
	uv_signal_start(&d.sigterm, on_signal, SIGTERM);
	uv_signal_start(&d.sigint, on_signal, SIGINT);
	uv_signal_init(&d.loop, &d.sighup);
	d.sighup.data = &d;
	uv_signal_start(&d.sighup, on_sighup, SIGHUP);
	log_info("paasops %s serving data dir %s on unix:%s%s%s", PAASOPS_VERSION, d.data_dir, sock,
		 !d.api_addr ? "" : d.api_tls ? " and https://" : " and http://",
		 d.api_addr ? d.api_addr : "");
	free(sock);
	if (d.has_run_as)
		log_info("app code runs as user '%s' (uid %u, gid %u)", d.run_as.user, (unsigned)d.run_as.uid,
			 (unsigned)d.run_as.gid);
	uv_run(&d.loop, UV_RUN_DEFAULT);
	rc = 0;
out_loop:
	/* On a failed start the samplers and rules still run: they read the
	 * router and the supervisor, so they stop before either goes. */
	alerts_stop(d.alerts);
	metrics_stop(d.metrics);
	autoscale_stop(d.autoscale);
	router_free(d.router);
	d.router = NULL;
	supervisor_free(d.sv);
	deploy_free(d.deploy);
	alerts_free(d.alerts);
	logs_stop(d.logs);
	uv_walk(&d.loop, walk_close, NULL);
	uv_run(&d.loop, UV_RUN_DEFAULT);
	autoscale_free(d.autoscale);
	metrics_free(d.metrics);
	logs_free(d.logs);
	if (uv_loop_close(&d.loop) != 0)
		log_warn("event loop closed with handles open");
out:
	audit_free(d.audit);
	store_close(d.store);
	if (d.lock_fd >= 0)
		close(d.lock_fd);
	tls_ctx_free(d.api_tls);
	daemon_tls_release(&d);
	free(d.data_dir);
	free(d.api_addr);
	free(d.api_tls_cert);
	free(d.api_tls_key);
	free(d.http_addr);
	free(d.hook_secret);
	alerts_config_release(&d.acfg);
	if (d.has_run_as)
		runas_release(&d.run_as);
	return rc;
}
