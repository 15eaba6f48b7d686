/*
 * fuzz_servicesconf.c - libFuzzer target for the services.conf reader
 * (lib/servicesconf.c).
 *
 * Parses the input as a whole file.  On success it checks what the
 * parser promises: every entry has a cmd split into argc >= 1 words,
 * every SERVICES entry a listen address that netaddr accepts, values in
 * range, names unique; on failure the message carries "NAME:LINE:COL: ".
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/netaddr.h"
#include "lib/servicesconf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct servicesconf *c = NULL;
	struct err err;
	size_t i;

	if (servicesconf_parse((const char *)data, size, "/fuzz/services.conf", &c, &err) < 0) {
		int line = 0, col = 0;
		if (c != NULL || sscanf(err.msg, "/fuzz/services.conf:%d:%d: ", &line, &col) != 2 || line < 1 ||
		    col < 1)
			abort();
		return 0;
	}
	for (i = 0; i < c->n; i++) {
		const struct servicesconf_entry *e = &c->entries[i];
		struct netaddr a;
		int j;

		if (e->name == NULL || e->cmd == NULL || e->argv == NULL || e->argc < 1 || e->argv[e->argc] != NULL)
			abort();
		for (j = 0; j < e->argc; j++)
			if (e->argv[j] == NULL)
				abort();
		if (servicesconf_find(c, e->name) != e)
			abort();
		if (e->section == SCONF_SERVICES) {
			if (e->listen == NULL || netaddr_parse(e->listen, &a, NULL) < 0)
				abort();
			if (e->prefork < 0 || e->maxchild == 0 || e->maxchild < -1 ||
			    (e->maxchild > 0 && e->prefork > e->maxchild))
				abort();
		} else if (e->listen != NULL) {
			abort();
		}
		if (e->section == SCONF_EVENTS && (e->period > 0) == (e->at >= 0))
			abort();
		if (e->at > 2359 || (e->at >= 0 && e->at % 100 > 59))
			abort();
		(void)svc_section_name(e->section);
	}
	servicesconf_free(c);
	return 0;
}
