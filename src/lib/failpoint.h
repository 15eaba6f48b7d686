/*
 * failpoint.h - named fault-injection points compiled into the code.
 *
 * CASTOR_FAILPOINTS="name=action[,name=action...]" arms points at start-up
 * (failpoint_init(), called by every program's main).  Actions:
 *     crash        SIGKILL ourselves at once: no cleanup, no atexit, no flush
 *     error        the point returns -1; the caller fails as if the
 *                  operation had failed (with ERR_TEMP)
 *     sleep(MS)    sleep MS milliseconds, then carry on
 *     off          disarmed
 * Any action may take a prefix "N*" meaning "only on the N-th hit"
 * (e.g. store.append.before_commit=3*crash), counted per process.
 *
 * Cost when nothing is armed: one predictable branch on a global.
 *
 *     if (FAILPOINT("store.append.after_blob_fsync") < 0)
 *             return err_set(err, ERR_TEMP, "failpoint store.append.after_blob_fsync");
 */
#ifndef CASTOR_FAILPOINT_H
#define CASTOR_FAILPOINT_H

#include <stdbool.h>

extern bool failpoint_armed;

/* Read CASTOR_FAILPOINTS.  Returns -1 (and prints to stderr) on a malformed spec. */
int failpoint_init(void);
/* Parse and arm a spec string (replacing what was armed). */
int failpoint_set(const char *spec);
/* Evaluate a point: 0 carry on, -1 inject an error.  May not return (crash). */
int failpoint_eval(const char *name);

#define FAILPOINT(name) (__builtin_expect(failpoint_armed, 0) ? failpoint_eval(name) : 0)

#endif
