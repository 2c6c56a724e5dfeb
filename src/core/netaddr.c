/* netaddr.c: network address questions (see netaddr.h). */
#include "core/netaddr.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

bool netaddr_is_loopback(const char *hostport)
{
	if (!hostport)
		return false;
	const char *colon = strrchr(hostport, ':');
	if (!colon)
		return false;
	size_t len = (size_t)(colon - hostport);
	const char *host = hostport;
	if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
		host++;
		len -= 2;
	}
	char buf[INET6_ADDRSTRLEN];
	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, host, len);
	buf[len] = '\0';
	struct in_addr a4;
	struct in6_addr a6;
	if (inet_pton(AF_INET, buf, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, buf, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
	return false;
}
