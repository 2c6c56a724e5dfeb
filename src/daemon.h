/* daemon.h: `paasops serve`. */
#ifndef PAASOPS_DAEMON_H
#define PAASOPS_DAEMON_H

#define PAASOPS_VERSION "0.1.0"

/* Runs the daemon until SIGTERM/SIGINT; returns the process exit code.
 * argv[0] is "serve". */
int daemon_main(int argc, char **argv);

#endif
