/*
 * jsonsimd: strict JSON validation with simdjson, replayed as yajl callbacks.
 *
 * jsonsimd_feed() parses a text with simdjson's DOM parser, which validates all of it
 * (RFC 8259 grammar, strictly valid UTF-8, no control character in a string), and then
 * calls a set of yajl callbacks on what it holds, in document order, the way yajl_parse()
 * would on the same text: decoded strings and keys, numbers as their JSON text (through
 * yajl_number only).  It is a faster path, not a second judge: whenever it is not sure to
 * give exactly yajl's events, it says so and the caller parses the text with yajl.
 *
 * Callbacks are read from *cb at each event, so a caller may switch them off on the way.
 * A container whose start callback leaves the null, boolean, number, string and map key
 * callbacks all NULL is not entered: its start and end callbacks are called, nothing in
 * between (yajl would call start and end callbacks of the containers inside it, too;
 * a caller that counts depth there gets its bound from max_depth instead).
 */
#ifndef MCPMUX_JSONSIMD_H
#define MCPMUX_JSONSIMD_H

#include <stddef.h>

#include <yajl/yajl_parse.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Texts longer than this are left to yajl: simdjson's buffers grow with the text (about
 * 14 bytes of address space per byte of it; touched: the text's copy, its strings, and
 * 12 bytes per structural character), so they are bounded at 2 MiB of text (28 MiB of
 * address space, given back once mcpmux is idle: jsonrpc_trim()).  A 1 MiB message is
 * still simdjson's: 13% faster round trips than with yajl, 22% more a second.
 */
#define JSONSIMD_MAX_LEN ((size_t)2 << 20)

struct jsonsimd;

/* NULL when out of memory (then every text goes to yajl). */
struct jsonsimd *jsonsimd_new(size_t max_depth);
void jsonsimd_free(struct jsonsimd *j);

enum jsonsimd_result {
	/*
	 * The text is one JSON value with JSON white space around it, nested at most
	 * max_depth deep, and every callback returned nonzero.
	 */
	JSONSIMD_DONE,
	/*
	 * Parse it with yajl: the text is not valid JSON for simdjson (yajl decides what
	 * it is), or it is too long, or a live number callback would need the text of a
	 * number simdjson does not keep (a fraction or exponent, -0), or a callback
	 * returned 0, or memory ran out.  Callbacks may have been called on part of it.
	 */
	JSONSIMD_UNSURE,
};

/*
 * Validate text[0..len) (which must not hold "\n") and replay it through cb with ctx.
 * The strings handed to callbacks are valid until the next call.
 */
enum jsonsimd_result jsonsimd_feed(struct jsonsimd *j, const char *text, size_t len,
				   const yajl_callbacks *cb, void *ctx);

#ifdef __cplusplus
}
#endif

#endif
