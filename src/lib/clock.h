/*
 * clock.h - the monotonic clock, in the units callers use.
 *
 * Every timeout, backoff and duration in Castor is measured on
 * CLOCK_MONOTONIC (never the wall clock, which jumps); these are the
 * one place that reads it.  Wall-clock times (log stamps, the sync
 * log's record times) use CLOCK_REALTIME where they are made.
 */
#ifndef CASTOR_LIB_CLOCK_H
#define CASTOR_LIB_CLOCK_H

#include <stdint.h>

int64_t clock_mono_ms(void);    /* milliseconds */
uint64_t clock_mono_us(void);   /* microseconds */
double clock_mono_s(void);      /* seconds, with the fraction */
/* The wall clock (CLOCK_REALTIME) in unix milliseconds: for times that are
 * stored or shown (log records, status files), never for durations. */
uint64_t clock_wall_ms(void);

#endif
