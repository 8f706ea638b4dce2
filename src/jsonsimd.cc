/*
 * jsonsimd: strict JSON validation with simdjson, replayed as yajl callbacks.
 *
 * The only C++ in mcpmux: simdjson is a C++ library.  Nothing here throws (simdjson's
 * error-code interface, allocation with std::nothrow); every failure is JSONSIMD_UNSURE.
 */
#include <cstdint>
#include <cstring>
#include <new>
#include <string_view>

#include <simdjson.h>

#include "mcpmux/jsonsimd.h"

using simdjson::dom::element;
using simdjson::dom::element_type;

struct jsonsimd {
	simdjson::dom::parser parser;
	const char *text; /* the text being fed: for -0 */
	size_t len;
	int has_minus_zero; /* does the text hold "-0"? -1: not looked yet (once a feed) */

	explicit jsonsimd(size_t max_capacity)
	    : parser(max_capacity), text(nullptr), len(0), has_minus_zero(-1)
	{
	}
};

extern "C" struct jsonsimd *
jsonsimd_new(size_t max_depth)
{
	struct jsonsimd *j = new (std::nothrow) jsonsimd(JSONSIMD_MAX_LEN);

	if (j == nullptr) {
		return nullptr;
	}
	/* Small at first: the buffers grow to the longest text seen. */
	if (j->parser.allocate(4096, max_depth) != simdjson::SUCCESS) {
		delete j;
		return nullptr;
	}
	return j;
}

extern "C" void
jsonsimd_free(struct jsonsimd *j)
{
	delete j;
}

namespace
{

bool
muted(const yajl_callbacks *cb)
{
	return cb->yajl_null == nullptr && cb->yajl_boolean == nullptr &&
	       cb->yajl_number == nullptr && cb->yajl_string == nullptr &&
	       cb->yajl_map_key == nullptr;
}

/* An integer's JSON text: the text it was written as, for all but -0 (see number()). */
size_t
print_u64(uint64_t v, bool negative, char *out)
{
	char tmp[24];
	size_t n = 0, k = 0;

	do {
		tmp[n++] = static_cast<char>('0' + v % 10);
		v /= 10;
	} while (v != 0);
	if (negative) {
		out[k++] = '-';
	}
	while (n > 0) {
		out[k++] = tmp[--n];
	}
	return k;
}

bool
number(struct jsonsimd *j, element e, const yajl_callbacks *cb, void *ctx)
{
	char buf[24];
	size_t n;

	if (cb->yajl_number == nullptr) {
		return true;
	}
	if (e.type() == element_type::INT64) {
		int64_t v = e.get_int64().value_unsafe();

		/*
		 * simdjson reads "-0" as the integer 0: its text is not known then, unless
		 * the text holds no "-0" at all.  Looked up once a feed: a line of many zeros
		 * must not cost a pass over the line for each.
		 */
		if (v == 0) {
			if (j->has_minus_zero < 0) {
				j->has_minus_zero = memmem(j->text, j->len, "-0", 2) != nullptr;
			}
			if (j->has_minus_zero != 0) {
				return false;
			}
		}
		n = v < 0 ? print_u64(0 - static_cast<uint64_t>(v), true, buf)
			  : print_u64(static_cast<uint64_t>(v), false, buf);
	} else if (e.type() == element_type::UINT64) {
		n = print_u64(e.get_uint64().value_unsafe(), false, buf);
	} else {
		return false; /* a fraction or an exponent: written in many ways */
	}
	return cb->yajl_number(ctx, buf, n) != 0;
}

bool
replay(struct jsonsimd *j, element e, const yajl_callbacks *cb, void *ctx)
{
	switch (e.type()) {
	case element_type::OBJECT: {
		if (cb->yajl_start_map != nullptr && cb->yajl_start_map(ctx) == 0) {
			return false;
		}
		if (!muted(cb)) {
			simdjson::dom::object o = e.get_object().value_unsafe();

			for (simdjson::dom::key_value_pair kv : o) {
				if (cb->yajl_map_key != nullptr &&
				    cb->yajl_map_key(
					    ctx,
					    reinterpret_cast<const unsigned char *>(kv.key.data()),
					    kv.key.size()) == 0) {
					return false;
				}
				if (!replay(j, kv.value, cb, ctx)) {
					return false;
				}
			}
		}
		return cb->yajl_end_map == nullptr || cb->yajl_end_map(ctx) != 0;
	}
	case element_type::ARRAY: {
		if (cb->yajl_start_array != nullptr && cb->yajl_start_array(ctx) == 0) {
			return false;
		}
		if (!muted(cb)) {
			simdjson::dom::array a = e.get_array().value_unsafe();

			for (element x : a) {
				// cppcheck-suppress useStlAlgorithm
				if (!replay(j, x, cb, ctx)) {
					return false;
				}
			}
		}
		return cb->yajl_end_array == nullptr || cb->yajl_end_array(ctx) != 0;
	}
	case element_type::STRING: {
		if (cb->yajl_string == nullptr) {
			return true;
		}
		std::string_view s = e.get_string().value_unsafe();

		return cb->yajl_string(ctx, reinterpret_cast<const unsigned char *>(s.data()),
				       s.size()) != 0;
	}
	case element_type::INT64:
	case element_type::UINT64:
	case element_type::DOUBLE:
		return number(j, e, cb, ctx);
	case element_type::BOOL:
		return cb->yajl_boolean == nullptr ||
		       cb->yajl_boolean(ctx, e.get_bool().value_unsafe() ? 1 : 0) != 0;
	case element_type::NULL_VALUE:
		return cb->yajl_null == nullptr || cb->yajl_null(ctx) != 0;
	}
	return false;
}

} // namespace

extern "C" enum jsonsimd_result
jsonsimd_feed(struct jsonsimd *j, const char *text, size_t len, const yajl_callbacks *cb, void *ctx)
{
	if (j == nullptr || len > JSONSIMD_MAX_LEN) {
		return JSONSIMD_UNSURE;
	}
	/* Copied into the parser's own padded buffer: simdjson reads past a text's end. */
	simdjson::simdjson_result<element> r = j->parser.parse(text, len, true);

	if (r.error() != simdjson::SUCCESS) {
		return JSONSIMD_UNSURE;
	}
	j->text = text;
	j->len = len;
	j->has_minus_zero = -1;
	return replay(j, r.value_unsafe(), cb, ctx) ? JSONSIMD_DONE : JSONSIMD_UNSURE;
}
