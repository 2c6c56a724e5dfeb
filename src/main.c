/* main.c: argv → `serve` runs the daemon; anything else is a CLI command. */
#include "cli/cli.h"
#include "daemon.h"
#include <string.h>

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "serve") == 0)
		return daemon_main(argc - 1, argv + 1);
	return cli_main(argc, argv);
}
