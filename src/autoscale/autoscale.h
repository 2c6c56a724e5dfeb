/* autoscale.h: the autoscaler, one controller per process type whose spec
 * has an `autoscale` key.
 *
 * Every interval (1 s) the autoscaler samples each such process type
 * (request and latency counters and in-flight requests from the router;
 * CPU or memory from the metrics history) into a ring of samples, and
 * decides on the value over the stable window (60 s): how many instances
 * would bring the value per instance to the target. It applies that count
 * through supervisor_scale(), exactly as `paasops scale` would: the count
 * is persisted and an event of type "autoscale" says why. It scales up at
 * once and down only once the lower count has been wanted for the whole
 * scale-down delay. When the value over the panic window (a tenth of the
 * stable window) reaches the spec's panic_threshold (2) times the target it
 * panics: it scales up at once to what that short window asks for and
 * never down, until the short window has stayed below the threshold for a
 * whole stable window. Apps that are stopped or rolling out are left alone.
 *
 * Invariants: everything runs on the control loop; the autoscaler holds no
 * pointer into the supervisor's tree between ticks (it keeps copies of the
 * app and process names), so apps may come and go at any time. A manual
 * scale is simply the next tick's current count. What a restart must not
 * forget (the last scale, a pending scale-down and its clock, panic) is
 * written to the store when it changes, and read back at start. A tick
 * costs in proportion to the autoscaled process types only. */
#ifndef PAASOPS_AUTOSCALE_H
#define PAASOPS_AUTOSCALE_H
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct supervisor;
struct store;
struct router;
struct metrics;
struct json;
struct autoscale;

struct autoscale_config {
	uv_loop_t *loop;          /* borrowed */
	struct supervisor *sv;    /* borrowed */
	struct router *router;    /* borrowed; NULL when the router is off */
	struct metrics *metrics;  /* borrowed; may be NULL (no cpu/memory, no gauges) */
	struct store *store;      /* borrowed; may be NULL (state is not kept across restarts) */
	int64_t interval_ms;      /* evaluation period; default 1 s */
	int64_t stable_window_ms; /* what a decision averages over; default 60 s */
	int64_t scale_down_delay_ms; /* how long a lower count must be wanted; default 5 min */
	int64_t metrics_interval_ms; /* the metrics sampling period (cpu/memory windows) */
};

/* Fills the documented defaults (1 s, 60 s, 5 min, 1 s). */
void autoscale_config_defaults(struct autoscale_config *cfg);
/* Applies one `paasops serve` flag: "autoscale-interval" or
 * "autoscale-stable-window" (durations > 0) or "autoscale-scale-down-delay"
 * (a duration ≥ 0). Returns 0, or -EINVAL with *err set (caller frees). */
int autoscale_config_parse(struct autoscale_config *cfg, const char *flag, const char *value,
			   char **err);

/* Creates the autoscaler and registers its gauges with cfg->metrics.
 * Caller frees with autoscale_free(). */
struct autoscale *autoscale_new(const struct autoscale_config *cfg);
/* Starts the timer: the first evaluation takes the baselines, the next one
 * may scale. */
void autoscale_start(struct autoscale *as);
/* Stops evaluating and forgets the supervisor, router and metrics (they may
 * be freed next). The timer is closed; run the loop before autoscale_free. */
void autoscale_stop(struct autoscale *as);
/* autoscale_free(NULL) does nothing. */
void autoscale_free(struct autoscale *as);

/* Adds an "autoscale" object ({min, max, metric, target, current_value,
 * panic_value, desired, last_scaled_at, panic, panic_since,
 * scale_down_since, scale_down_to}) to every process of app (an object as
 * supervisor_app_json() makes it) whose spec enables autoscaling. */
void autoscale_decorate(struct autoscale *as, struct json *app);

/* ------------------------------------------------------------------------ */
/* The decision, a pure function                                            */

/* Below this relative distance from the target nothing changes (the
 * measurement is never exact, and every change costs a start or a drain). */
#define AUTOSCALE_TOLERANCE 0.1

/* The instance count wanted for a process type that has `current`
 * instances wanted of which `ready` are ready, and measures `value` per
 * ready instance against `target` (> 0): ceil(ready * value / target),
 * clamped to [min, max]; current (clamped) when value is within
 * AUTOSCALE_TOLERANCE of target. With no ready instance there is no value
 * per instance: `value` is then the demand seen (say requests per second),
 * and a process type scaled to zero wakes to max(1, min) on any demand;
 * otherwise the count stays at current (clamped) until instances are ready. */
int autoscale_desired(int current, int ready, double value, double target, int min, int max);

/* Panic state of one controller; times are in any one clock's ms. */
struct autoscale_panic {
	bool active;
	int64_t since;      /* when it started, if active */
	bool calm;          /* active, and below the threshold since calm_since */
	int64_t calm_since;
};

/* The panic state after an evaluation at `now` that measured `value` per
 * ready instance (of `ready`, > 0) over the panic window: a value at or
 * above threshold × target starts a panic (or keeps it
 * from calming); a panic ends once the value has stayed below that for
 * stable_window_ms. A value that is not a number, or no ready instance,
 * changes nothing. */
struct autoscale_panic autoscale_panic_next(struct autoscale_panic p, int ready, double value,
					    double target, double threshold, int64_t now,
					    int64_t stable_window_ms);

/* The instance count wanted while panicking: the higher of what the
 * stable and the panic values ask for (autoscale_desired of each), and
 * never below the current count (clamped to [min, max]). */
int autoscale_desired_in_panic(int current, int ready, double stable_value, double panic_value,
			       double target, int min, int max);


#endif
