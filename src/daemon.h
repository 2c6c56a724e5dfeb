/* daemon.h: `paasops serve`. */
#ifndef PAASOPS_DAEMON_H
#define PAASOPS_DAEMON_H

#include "core/version.h"

/* Runs the daemon until SIGTERM/SIGINT; returns the process exit code.
 * argv[0] is "serve". */
int daemon_main(int argc, char **argv);

#endif
