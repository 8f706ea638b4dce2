/*
 * execwhy: what is said of a command that could not be executed.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mcpmux/execwhy.h"
#include "mcpmux/sys.h"

#define EXEC_NAME_MAX 256 /* of a command or an interpreter, in what is said */

/*
 * The file execvpe() ran for argv0: argv0 itself when it has a '/', else the first
 * regular file of that name in PATH that may be executed (glibc's default path when there
 * is no PATH).  path gets it; -1 when there is none.
 */
static int
exec_file(const char *argv0, char *path, size_t len)
{
	struct stat st;

	if (strchr(argv0, '/') != NULL) {
		return (size_t)snprintf(path, len, "%s", argv0) < len && stat(path, &st) == 0 ? 0
											      : -1;
	}
	const char *dirs = getenv("PATH");

	for (const char *d = dirs != NULL ? dirs : "/bin:/usr/bin";; d++) {
		size_t n = strcspn(d, ":");

		/* (an empty entry is the current directory, as execvpe() takes it) */
		if ((size_t)snprintf(path, len, "%.*s%s%s", (int)n, d, n > 0 ? "/" : "", argv0) <
			    len &&
		    stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0) {
			return 0;
		}
		d += n;
		if (*d == '\0') {
			return -1;
		}
	}
}

/* The interpreter an ELF file asks for (its PT_INTERP), in name; -1 when none is read. */
static int
elf_interp(int fd, const unsigned char *head, size_t n, char *name, size_t len)
{
	bool wide = head[EI_CLASS] == ELFCLASS64;
	uint64_t phoff;
	unsigned int phnum, phsize;

	if (n < (wide ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr)) ||
	    (head[EI_CLASS] != ELFCLASS64 && head[EI_CLASS] != ELFCLASS32) ||
	    head[EI_DATA] !=
		    (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? ELFDATA2LSB : ELFDATA2MSB)) {
		return -1;
	}
	if (wide) {
		Elf64_Ehdr eh;

		memcpy(&eh, head, sizeof(eh));
		phoff = eh.e_phoff;
		phnum = eh.e_phnum;
		phsize = eh.e_phentsize;
	} else {
		Elf32_Ehdr eh;

		memcpy(&eh, head, sizeof(eh));
		phoff = eh.e_phoff;
		phnum = eh.e_phnum;
		phsize = eh.e_phentsize;
	}
	if (phsize != (wide ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr)) || phnum > 128) {
		return -1;
	}
	for (unsigned int i = 0; i < phnum; i++) {
		unsigned char ph[sizeof(Elf64_Phdr)];
		uint64_t off, size;
		uint32_t type;

		if (pread(fd, ph, phsize, (off_t)(phoff + (uint64_t)i * phsize)) !=
		    (ssize_t)phsize) {
			return -1;
		}
		if (wide) {
			Elf64_Phdr p;

			memcpy(&p, ph, sizeof(p));
			type = p.p_type;
			off = p.p_offset;
			size = p.p_filesz;
		} else {
			Elf32_Phdr p;

			memcpy(&p, ph, sizeof(p));
			type = p.p_type;
			off = p.p_offset;
			size = p.p_filesz;
		}
		if (type != PT_INTERP) {
			continue;
		}
		size = SYS_MIN(size, (uint64_t)len - 1);
		ssize_t got = size > 0 ? pread(fd, name, (size_t)size, (off_t)off) : -1;

		if (got <= 0) {
			return -1;
		}
		name[got] = '\0';
		return name[0] != '\0' ? 0 : -1;
	}
	return -1;
}

/*
 * The interpreter of path, a file that exists but that exec says ENOENT of: the first
 * word of its "#!" line (*script set; *crlf when that line ends with a carriage
 * return, then part of the word), or an ELF file's dynamic loader, in name as the file
 * has it.  -1 when it names none (or cannot be read).  The file is opened without
 * waiting (a FIFO put there since) and read only when it is a regular file.
 */
static int
exec_interp(const char *path, char *name, size_t len, bool *script, bool *crlf)
{
	unsigned char head[256];
	struct stat st;
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	ssize_t n;
	int rc = -1;

	*script = false;
	*crlf = false;
	if (fd == -1) {
		return -1;
	}
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
	    (n = pread(fd, head, sizeof(head) - 1, 0)) > 0) {
		head[n] = '\0';
		*script = n >= 2 && head[0] == '#' && head[1] == '!';
		if (*script) {
			const char *w =
				(const char *)head + 2 + strspn((const char *)head + 2, " \t");
			size_t wl = strcspn(w, " \t\n");

			if (wl > 0 && wl < len) {
				memcpy(name, w, wl);
				name[wl] = '\0';
				*crlf = name[wl - 1] == '\r';
				rc = 0;
			}
		} else if (n >= SELFMAG && memcmp(head, ELFMAG, SELFMAG) == 0) {
			rc = elf_interp(fd, head, (size_t)n, name, len);
		}
	}
	(void)close(fd);
	return rc;
}

/* name as it is said: without the carriage return of a DOS line (crlf), and no control
 * byte of the file passed on to a terminal (or a client). */
static void
interp_shown(const char *name, bool crlf, char *out, size_t len)
{
	size_t n = strlen(name) - (crlf ? 1 : 0);

	n = SYS_MIN(n, len - 1);
	memcpy(out, name, n);
	out[n] = '\0';
	for (char *c = out; *c != '\0'; c++) {
		if ((unsigned char)*c < 0x20 || *c == 0x7f) {
			*c = '?';
		}
	}
}

#define EXEC_DEPTH 6 /* interpreters of interpreters followed: as deep as Linux goes (5.8 on) */

/*
 * What is said of path, a file that exists but that exec says ENOENT of, after
 * "cannot run 'X': " in text: the interpreter that is missing at the end of its chain
 * (its interpreter's interpreter, ...), or, when none is found missing, the first.
 */
static void
interp_chain(const char *path, int err, char *text, size_t len)
{
	char names[EXEC_DEPTH][EXEC_NAME_MAX], shown[EXEC_NAME_MAX];
	bool script = false, crlf = false, missing = false;
	struct stat st;
	int k = 0;
	size_t at = 0;

	for (const char *cur = path;; cur = names[k++]) {
		if (exec_interp(cur, names[k], sizeof(names[k]), &script, &crlf) == -1) {
			break; /* cur (names[k - 1]) names none: why it failed is not known */
		}
		if (stat(names[k], &st) == -1 && errno == ENOENT) {
			missing = true;
			break;
		}
		if (k + 1 == EXEC_DEPTH) {
			k++;
			break;
		}
	}
	if (k == 0 && !missing) {
		(void)snprintf(text, len,
			       "its interpreter was not found (the file is there, but exec says: "
			       "%s)",
			       strerror(err));
		return;
	}
	if (!missing) {
		/* None found missing (gone since, or deeper than followed): the first is said. */
		interp_shown(names[0], false, shown, sizeof(shown));
		(void)snprintf(text, len, "its interpreter '%s' could not be run", shown);
		return;
	}
	/* names[0 .. k - 1] exist; names[k] is missing */
	for (int i = 0; i < k && at < len; i++) {
		interp_shown(names[i], false, shown, sizeof(shown));
		at += (size_t)snprintf(text + at, len - at,
				       "its interpreter '%s' cannot run: ", shown);
	}
	if (at >= len) {
		return;
	}
	interp_shown(names[k], crlf, shown, sizeof(shown));
	(void)snprintf(text + at, len - at, "its interpreter '%s' was not found (%s)", shown,
		       !script ? "check that it was built for this system"
		       : crlf  ? "its #! line ends with a carriage return: DOS line endings?"
			       : "check its #! line");
}

char *
execwhy_text(const char *argv0, int err, const char *not_found_hint)
{
	char path[PATH_MAX];
	char text[(EXEC_DEPTH + 2) * EXEC_NAME_MAX];
	int w = EXEC_NAME_MAX; /* of argv0 */

	if (err != ENOENT) {
		(void)snprintf(text, sizeof(text),
			       "cannot run '%.*s': %s (check that it is an executable file)", w,
			       argv0, strerror(err));
	} else if (exec_file(argv0, path, sizeof(path)) == -1) {
		(void)snprintf(text, sizeof(text),
			       "cannot run '%.*s': %s (check the command name and PATH)%s", w,
			       argv0, strerror(err), not_found_hint != NULL ? not_found_hint : "");
	} else {
		int n = snprintf(text, sizeof(text), "cannot run '%.*s': ", w, argv0);

		interp_chain(path, err, text + n, sizeof(text) - (size_t)n);
	}
	return strdup(text);
}
