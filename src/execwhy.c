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
 * word of its "#!" line (*script set), or an ELF file's dynamic loader.  -1 when it
 * names none (or cannot be read).  The file is opened without waiting (a FIFO put there
 * since) and read only when it is a regular file.
 */
static int
exec_interp(const char *path, char *name, size_t len, bool *script)
{
	unsigned char head[256];
	struct stat st;
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	ssize_t n;
	int rc = -1;

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
				rc = 0;
			}
		} else if (n >= SELFMAG && memcmp(head, ELFMAG, SELFMAG) == 0) {
			rc = elf_interp(fd, head, (size_t)n, name, len);
		}
	}
	(void)close(fd);
	/* A control byte of the file is not passed on to a terminal (or a client). */
	for (char *c = name; rc == 0 && *c != '\0'; c++) {
		if ((unsigned char)*c < 0x20 || *c == 0x7f) {
			*c = '?';
		}
	}
	return rc;
}

char *
execwhy_text(const char *argv0, int err)
{
	char path[PATH_MAX], name[EXEC_NAME_MAX];
	char text[3 * EXEC_NAME_MAX];
	int w = EXEC_NAME_MAX; /* of argv0 */
	bool script = false;

	if (err != ENOENT) {
		(void)snprintf(text, sizeof(text),
			       "cannot run '%.*s': %s (check that it is an executable file)", w,
			       argv0, strerror(err));
	} else if (exec_file(argv0, path, sizeof(path)) == -1) {
		(void)snprintf(text, sizeof(text),
			       "cannot run '%.*s': %s (check the command name and PATH)", w, argv0,
			       strerror(err));
	} else if (exec_interp(path, name, sizeof(name), &script) == -1) {
		(void)snprintf(text, sizeof(text),
			       "cannot run '%.*s': its interpreter was not found (the file is "
			       "there, but exec says: %s)",
			       w, argv0, strerror(err));
	} else {
		(void)snprintf(text, sizeof(text),
			       "cannot run '%.*s': its interpreter '%s' was not found (%s)", w,
			       argv0, name,
			       script ? "check its #! line"
				      : "check that it was built for this system");
	}
	return strdup(text);
}
