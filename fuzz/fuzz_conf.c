/*
 * fuzz_conf.c - libFuzzer target for the castor.conf reader (lib/conf.c).
 *
 * Parses the input as a whole file.  On success every setting is read
 * back through every getter (exercising the typed parsers on hostile
 * values); on failure the message must carry the "NAME:LINE:COL: " prefix.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/conf.h"
#include "lib/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int init;
	struct err err;
	struct conf *c;
	const char *k, *v;
	size_t i;

	if (!init) {
		log_set_level(LOG_LVL_FATAL);   /* unknown keys would flood stderr */
		init = 1;
	}
	c = conf_parse((const char *)data, size, "/fuzz/castor.conf", &err);
	if (c == NULL) {
		int line = 0, col = 0;
		if (sscanf(err.msg, "/fuzz/castor.conf:%d:%d: ", &line, &col) != 2 || line < 1 || col < 1 ||
		    col > CONF_LINE_MAX + 1)
			abort();
		return 0;
	}
	for (i = 0; conf_iter(c, i, &k, &v); i++) {
		char **list;
		char *p;
		size_t n;

		if (!conf_has(c, k) || strcmp(conf_get_str(c, k, NULL), v) != 0)
			abort();
		(void)conf_get_int(c, k, 0);
		(void)conf_get_bool(c, k, false);
		(void)conf_get_duration_ms(c, k, 0);
		(void)conf_get_bytes(c, k, 0);
		(void)conf_get_double(c, k, 0.0);
		p = conf_get_path(c, k, NULL);
		if ((p == NULL) != (v[0] == '\0') || (p != NULL && p[0] != '/'))
			abort();
		free(p);
		list = conf_get_list(c, k, &n);
		if (list[n] != NULL)
			abort();
		conf_list_free(list);
		(void)conf_key_lookup(k);
	}
	conf_free(c);
	return 0;
}
