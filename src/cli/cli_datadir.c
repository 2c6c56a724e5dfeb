/* cli_datadir.c: where paasops keeps its data (and its socket) when no
 * directory is given. Kept apart from the rest of the CLI so that the daemon
 * links only this file when it computes the same default. */
#include "cli/cli.h"
#include "core/util.h"
#include <pwd.h>
#include <stdlib.h>
#include <unistd.h>

/* The daemon runs as root in production, so root gets the FHS location; any
 * other user gets a per-user directory following the XDG base directory
 * spec, which says relative values of XDG_DATA_HOME are to be ignored. */
char *cli_default_data_dir(void)
{
	if (geteuid() == 0)
		return xstrdup("/var/lib/paasops");

	const char *xdg = getenv("XDG_DATA_HOME");
	if (xdg && xdg[0] == '/')
		return xasprintf("%s/paasops", xdg);

	const char *home = getenv("HOME");
	if (!home || home[0] != '/') {
		struct passwd *pw = getpwuid(geteuid());
		home = pw && pw->pw_dir && pw->pw_dir[0] == '/' ? pw->pw_dir : NULL;
	}
	if (!home)
		return NULL;
	/* "/" as a home directory must not give "//.local". */
	return xasprintf("%s/.local/share/paasops", home[1] ? home : "");
}
