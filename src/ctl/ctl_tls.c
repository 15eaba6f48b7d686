/*
 * ctl_tls.c - `castorctl tls-check [--bundle-fd N]`: build the server TLS
 * context castor.conf describes, as a service would, and say whether it
 * loads.  Operators run it before a reload; castord runs it on the
 * certificates it read (the bundle on fd N, lib/tlsbundle.h) before it
 * hands them to its children (docs/security.md, "TLS").
 *
 * Output: "tls ok sni_names=N" and exit 0, or "castorctl: <what, naming
 * the file>" on stderr and the exit code of the error's kind.
 */
#include "ctl/ctl.h"

#include "lib/conf.h"
#include "lib/str.h"
#include "lib/tls.h"
#include "lib/tlsbundle.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int
ctl_cmd_tls_check(struct ctl *c, int argc, char **argv)
{
	const char *fdarg = NULL, *path;
	const struct ctl_opt opts[] = {
		{ "bundle-fd", 0, &fdarg, NULL, NULL },
		{ NULL, 0, NULL, NULL, NULL },
	};
	struct tlsbundle *b = NULL;
	struct tls_ctx *ctx;
	struct conf *conf;
	struct err err = { 0 };
	char **pos = NULL;
	int npos = 0, rc;
	uint32_t fd = 0;

	rc = ctl_parse(c, argc, argv, opts, &pos, &npos);
	free(pos);
	if (rc < 0) {
		printf("usage: castorctl tls-check [--bundle-fd N]\n");
		return 0;
	}
	if (rc > 0)
		return rc;
	if (npos > 0)
		return ctl_usage_error(c, "tls-check takes no operands");
	if (fdarg != NULL && (str_to_u32(fdarg, &fd) < 0 || fd > 1024))
		return ctl_usage_error(c, "--bundle-fd %s: not a descriptor", fdarg);
	path = c->conf_path;
	if (path == NULL || path[0] == '\0')
		path = getenv("CASTOR_CONFIG");
	if (path == NULL || path[0] == '\0')
		path = "castor.conf";
	conf = conf_load(path, &err);
	if (conf == NULL) {
		fprintf(stderr, "%s: bad configuration: %s\n", c->prog, err.msg);
		return CTL_EXIT_CONFIG;
	}
	if (fdarg != NULL && (b = tlsbundle_from_fd((int)fd, &err)) == NULL) {
		conf_free(conf);
		return ctl_fail(c, &err);
	}
	ctx = tls_server_ctx_from_conf(conf, b, &err);
	tlsbundle_free(&b);
	conf_free(conf);
	if (ctx == NULL)
		return ctl_fail(c, &err);
	printf("tls ok sni_names=%zu\n", tls_ctx_sni_count(ctx));
	tls_ctx_free(&ctx);
	return 0;
}
