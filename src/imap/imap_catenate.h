/*
 * imap_catenate.h - CATENATE (RFC 4469): build an APPEND message from
 * TEXT literals and URLs naming (parts of) messages in the user's own
 * mailboxes.  Used by imap_append.c.
 */
#ifndef CASTOR_IMAP_CATENATE_H
#define CASTOR_IMAP_CATENATE_H

#include <stdbool.h>
#include <stdint.h>

#include "imap/imap_session.h"

/* Where a message being built goes: memory up to IMAP_APPEND_STREAM_MIN,
 * then a file of the store (bounded memory for any size). */
struct imap_cat_out {
	struct buf mem;
	struct store_blob_tmp *tmp;   /* NULL: everything is in mem */
	uint64_t len;
	bool toobig;                  /* more than imap_cfg.appendlimit was offered */
};

/* Build m's CATENATE parts into out.  0, or -1 with the tagged reply
 * already set: NO [BADURL url] for a URL that is not a message (part) of
 * this user, NO [TOOBIG] over the APPENDLIMIT.  out is freed by
 * imap_cat_out_free in every case. */
int imap_catenate_build(struct imap_session *s, const struct imap_append_msg *m,
	struct imap_cat_out *out);
void imap_cat_out_free(struct imap_cat_out *out);

#endif
