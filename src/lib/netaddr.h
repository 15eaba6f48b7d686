/*
 * netaddr.h - listen/connect address specifications.
 *
 * Accepted forms (services.conf listen=, castor.conf *_sync_host/port):
 *     "127.0.0.1:143"   IPv4 literal and port
 *     "[::1]:143"       IPv6 literal in brackets and port
 *     "localhost:143"   host name and port (resolved when used)
 *     "*:143"           any address, port
 *     "143"             port alone: any address
 *     "/path/to/sock"   a unix-domain socket (absolute path, < 108 bytes)
 * Ports are 1..65535, decimal.  Anything else is rejected with a reason.
 */
#ifndef CASTOR_NETADDR_H
#define CASTOR_NETADDR_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

enum netaddr_kind { NETADDR_TCP = 1, NETADDR_UNIX };

struct netaddr {
	enum netaddr_kind kind;
	char host[256];   /* TCP: without brackets; "" means any address */
	uint16_t port;    /* TCP */
	char path[108];   /* UNIX */
};

/* 0 and *out filled, or -1 with err (ERR_INVALID, a reason without position)
 * and *out zeroed. */
int netaddr_parse(const char *spec, struct netaddr *out, struct err *err);
/* Same; on error *pos_r (if not NULL) is the byte offset in spec of the
 * offending character (strlen(spec) when something is missing at the end). */
int netaddr_parse_pos(const char *spec, struct netaddr *out, size_t *pos_r, struct err *err);
/* Canonical text form ("[::1]:143", "*:143", "/path"); returns length or -1 if it does not fit. */
int netaddr_format(const struct netaddr *a, char *buf, size_t size);

#endif
