/* JSON text for the chat layer, written the way Python writes it, so that what we produce
 * (tool-call arguments, tool schemas in a prompt) matches what the model saw in training. */
#ifndef DF_TEXT_CHAT_JSON_H
#define DF_TEXT_CHAT_JSON_H

#include <jansson.h>
#include <stdbool.h>

/* Python's repr() of a float: the shortest digits that read back to the same double, in
 * fixed notation for exponents -4..15 (always with a fraction: "1.0") and scientific
 * otherwise ("1e-05", "1.5e+16"); "nan", "inf", "-inf" for the specials. */
void df_json_format_double(double f, char out[40]);

/* JSON text of `v`: keys in insertion order, UTF-8 kept as is, reals in the shortest form
 * above (Jansson's own dumper writes 17 digits: 0.1 would come out as 0.10000000000000001).
 * Compact ({"a":1,"b":[true,null]}) or spaced like Python's json.dumps default
 * ({"a": 1, "b": [true, null]}). NULL when out of memory, nesting is deeper than 512 or a
 * real is not finite. free() the result. */
char *df_json_dumps(const json_t *v, bool spaced);
static inline char *df_json_dump_compact(const json_t *v) { return df_json_dumps(v, false); }

#endif
