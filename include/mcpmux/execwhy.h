#ifndef MCPMUX_EXECWHY_H
#define MCPMUX_EXECWHY_H

/*
 * What is said of argv0 that exec refused with err, as "cannot run 'X': why (advice)"
 * (malloc'd; NULL for want of memory).  ENOENT of a file that is there (argv0 itself when
 * it has a '/', else the first of that name in PATH) is said of its interpreter: the
 * first word of its "#!" line, or an ELF file's dynamic loader, named when it can be read;
 * one that is there is followed to its own interpreter (up to 6 deep, as Linux goes).
 * not_found_hint (NULL: none) is said after an argv0 that is not there at all.
 */
char *execwhy_text(const char *argv0, int err, const char *not_found_hint);

#endif
