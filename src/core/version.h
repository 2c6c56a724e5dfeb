/* version.h: the one version string of the daemon and the CLI. */
#ifndef PAASOPS_VERSION_H
#define PAASOPS_VERSION_H

#define PAASOPS_VERSION "0.1.0"

#endif
