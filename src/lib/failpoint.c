/*
 * failpoint.c - named fault-injection points.  See failpoint.h.
 */
#include "lib/failpoint.h"
#include "lib/log.h"
#include "lib/str.h"
#include "lib/xalloc.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

bool failpoint_armed;

enum fp_action { FP_OFF, FP_CRASH, FP_ERROR, FP_SLEEP };

struct fp {
	char name[96];
	enum fp_action action;
	long sleep_ms;
	unsigned long nth;   /* 0: every hit */
	unsigned long hits;
};

#define FP_MAX 32
static struct fp fps[FP_MAX];
static int nfps;

static int
fp_parse_one(char *item, struct fp *fp)
{
	char *eq = strchr(item, '=');
	char *act, *star;

	memset(fp, 0, sizeof(*fp));
	if (eq == NULL || eq == item)
		return -1;
	*eq = '\0';
	act = eq + 1;
	if (str_lcpy(fp->name, str_trim(item), sizeof(fp->name)) >= sizeof(fp->name))
		return -1;
	star = strchr(act, '*');
	if (star != NULL) {
		uint64_t n;
		*star = '\0';
		if (str_to_u64(str_trim(act), &n) < 0 || n == 0)
			return -1;
		fp->nth = (unsigned long)n;
		act = star + 1;
	}
	act = str_trim(act);
	if (str_eq(act, "crash")) {
		fp->action = FP_CRASH;
	} else if (str_eq(act, "error")) {
		fp->action = FP_ERROR;
	} else if (str_eq(act, "off")) {
		fp->action = FP_OFF;
	} else if (str_has_prefix(act, "sleep(") && str_has_suffix(act, ")")) {
		char num[32];
		uint64_t ms;
		size_t n = strlen(act) - 7;
		if (n == 0 || n >= sizeof(num))
			return -1;
		memcpy(num, act + 6, n);
		num[n] = '\0';
		if (str_to_u64(num, &ms) < 0 || ms > 3600 * 1000)
			return -1;
		fp->action = FP_SLEEP;
		fp->sleep_ms = (long)ms;
	} else {
		return -1;
	}
	return 0;
}

int
failpoint_set(const char *spec)
{
	char *copy, *save = NULL, *item;
	struct fp tmp[FP_MAX];
	int n = 0;

	copy = xstrdup(spec ? spec : "");
	for (item = strtok_r(copy, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
		if (*str_trim(item) == '\0')
			continue;
		if (n == FP_MAX || fp_parse_one(item, &tmp[n]) < 0) {
			free(copy);
			return -1;
		}
		n++;
	}
	free(copy);
	memcpy(fps, tmp, sizeof(struct fp) * (size_t)n);
	nfps = n;
	failpoint_armed = n > 0;
	return 0;
}

int
failpoint_init(void)
{
	const char *spec = getenv("CASTOR_FAILPOINTS");

	if (spec == NULL || *spec == '\0')
		return 0;
	if (failpoint_set(spec) < 0) {
		fprintf(stderr, "castor: malformed CASTOR_FAILPOINTS: %s\n", spec);
		return -1;
	}
	return 0;
}

int
failpoint_eval(const char *name)
{
	int i;

	for (i = 0; i < nfps; i++) {
		struct fp *fp = &fps[i];
		if (!str_eq(fp->name, name))
			continue;
		fp->hits++;
		if (fp->nth != 0 && fp->hits != fp->nth)
			return 0;
		switch (fp->action) {
		case FP_OFF:
			return 0;
		case FP_CRASH:
			log_warn("failpoint crash name=%s", name);
			kill(getpid(), SIGKILL);
			_exit(137); /* not reached */
		case FP_ERROR:
			log_warn("failpoint error name=%s", name);
			return -1;
		case FP_SLEEP: {
			struct timespec ts = { fp->sleep_ms / 1000, (fp->sleep_ms % 1000) * 1000000L };
			while (nanosleep(&ts, &ts) < 0)
				;
			return 0;
		}
		}
	}
	return 0;
}
