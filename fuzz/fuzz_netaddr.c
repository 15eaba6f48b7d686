/*
 * fuzz_netaddr.c - libFuzzer target for listen/connect specs
 * (lib/netaddr.c).
 *
 * The input (up to its first NUL) is parsed; an accepted address must
 * format to a canonical form that parses back to the same address, and a
 * rejection must point inside the spec or just past its end.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/netaddr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct netaddr a, b;
	char *spec, out[400];
	size_t pos = 0;
	int n;

	if (size > 1024)
		return 0;
	spec = malloc(size + 1);
	if (spec == NULL)
		abort();
	memcpy(spec, data, size);
	spec[size] = '\0';
	if (netaddr_parse_pos(spec, &a, &pos, NULL) < 0) {
		if (pos > strlen(spec) || a.kind != 0)
			abort();
		free(spec);
		return 0;
	}
	n = netaddr_format(&a, out, sizeof(out));
	if (n < 0 || (size_t)n != strlen(out))
		abort();
	if (netaddr_parse(out, &b, NULL) < 0 || a.kind != b.kind || a.port != b.port ||
	    strcmp(a.host, b.host) != 0 || strcmp(a.path, b.path) != 0)
		abort();
	if (a.kind == NETADDR_TCP && a.port == 0)
		abort();
	free(spec);
	return 0;
}
