/*
 * crc32c.h - CRC-32C (Castagnoli, the polynomial 0x1EDC6F41 reflected),
 * the checksum of the sync log's frames, the cursor and status files and
 * the per-user summaries.  crc32c(0, p, n) is the checksum of n bytes;
 * passing a previous result continues it over more data.
 */
#ifndef CASTOR_CRC32C_H
#define CASTOR_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t crc32c(uint32_t crc, const void *data, size_t len);

#endif
