/*
 * table: uthash as mcpmux uses it.  An entry that cannot be added for want of memory is
 * not added (HASH_NONFATAL_OOM): the table stays as it was, never exit(), and the caller
 * learns it from TABLE_ADD().  Include this rather than <uthash.h>, before anything that
 * includes it: the setting is read at uthash.h's first inclusion in a file.
 */
#ifndef MCPMUX_TABLE_H
#define MCPMUX_TABLE_H

#ifdef UTHASH_H
#error "uthash.h included before mcpmux/table.h: its out-of-memory handling would be fatal"
#endif

#include <stdbool.h>

#define HASH_FUNCTION	  HASH_FNV
#define HASH_NONFATAL_OOM 1
#include <uthash.h>

/*
 * HASH_ADD_KEYPTR(hh, head, keyptr, keylen, add), setting the bool added to whether add
 * is now in the table: false when the table could not grow (add is not in it; the caller
 * still owns it).
 */
#define TABLE_ADD(hh, head, keyptr, keylen, add, added)         \
	do {                                                    \
		unsigned int table_before_ = HASH_COUNT(head);  \
                                                                \
		HASH_ADD_KEYPTR(hh, head, keyptr, keylen, add); \
		(added) = HASH_COUNT(head) != table_before_;    \
	} while (0)

#endif
