/* netaddr.h: questions about network addresses as users write them
 * ("HOST:PORT", IPv6 in brackets), answered the same way wherever they are
 * asked: by the API when it binds and by doctor when it reports. */
#ifndef PAASOPS_NETADDR_H
#define PAASOPS_NETADDR_H
#include <stdbool.h>

/* Whether hostport, "IPV4:PORT" or "[IPV6]:PORT" as --api takes it, names
 * a loopback address: 127.0.0.0/8, ::1, or an IPv4-mapped 127.x.y.z
 * (::ffff:127.0.0.1). Names such as "localhost" are not addresses and are
 * not trusted: what they resolve to is not known here. The wildcard
 * addresses (0.0.0.0, ::) reach every interface and are not loopback.
 * false for NULL or a string without a port. */
bool netaddr_is_loopback(const char *hostport);

#endif
