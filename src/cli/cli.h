/* cli.h: the paasops command-line client. Every command but `serve` is a
 * client of the daemon's HTTP API (doc/api.md) and is documented in
 * doc/cli.md. */
#ifndef PAASOPS_CLI_H
#define PAASOPS_CLI_H

/* Runs one CLI command: argv[0] is the program name, argv[1] the command
 * (global flags may come before it). Writes to stdout/stderr and returns the
 * process exit code: 0 success, 1 the operation failed (an error the server
 * reported, an invalid spec), 2 usage error, 3 the daemon is unreachable. */
int cli_main(int argc, char **argv);

/* The default data directory: /var/lib/paasops for root, otherwise
 * $XDG_DATA_HOME/paasops (when XDG_DATA_HOME is an absolute path) or
 * $HOME/.local/share/paasops (HOME from the environment, else the password
 * database). The daemon's socket is DIR/paasops.sock. Returns NULL when no
 * home directory can be found; otherwise the caller frees. Depends only on
 * src/core, so the daemon can share it. */

#endif
