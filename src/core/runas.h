/* runas.h: the user that app code runs as (`paasops serve --run-as`):
 * who it is, and whether it can reach a path. The daemon keeps its own
 * uid; instances, health check commands, one-off runs and build and
 * release phases are started with this uid, its group and no
 * supplementary groups (see supervisor_spawn_as). */
#ifndef PAASOPS_RUNAS_H
#define PAASOPS_RUNAS_H
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/types.h>

struct runas {
	uid_t uid;
	gid_t gid;   /* the user's primary group, or the one given */
	char *user;  /* name (the uid in digits when it has no passwd entry) */
	char *home;  /* its home directory ("/" when it has none) */
};

/* Reads "USER" or "USER:GROUP", each a name or a number, into out
 * (release with runas_release). A user name must exist; a numeric uid
 * without a passwd entry needs its group. Root is refused: it would give
 * the code the daemon's authority. -EINVAL + *err (caller frees). */
int runas_parse(const char *spec, struct runas *out, char **err);
void runas_release(struct runas *r);

/* Whether r may do what mode asks (a mask of R_OK, W_OK, X_OK) on the file
 * st describes, by its mode bits and r's uid and gid alone (access() would
 * answer for the daemon). */
bool runas_may(const struct runas *r, const struct stat *st, int mode);

/* Checks that r can reach path: search every directory above it, and do
 * what mode asks on path itself (0: only reach it). Returns 0, or -EACCES
 * with *bad set to the first path that stops it (caller frees), or
 * -errno when a path cannot be looked at. */
int runas_reach(const struct runas *r, const char *path, int mode, char **bad);

/* Gives dir and everything under it to r (never following symbolic
 * links). 0 or -errno. */
int runas_chown_tree(const struct runas *r, const char *dir);

#endif
