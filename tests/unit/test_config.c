/* config.json loading and typed getters with dotted paths. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/rng.h"
#include "format/config.h"

static void expect_error(df_status st, df_status want, const char *const *words) {
    cr_assert_eq(st, want, "status %s (%d), expected %s; message: %s", df_status_name(st), st,
                 df_status_name(want), df_last_error());
    for (int i = 0; words[i]; i++)
        cr_assert(strstr(df_last_error(), words[i]) != NULL, "message \"%s\" lacks \"%s\"", df_last_error(),
                  words[i]);
}
#define EXPECT_ERROR(st, want, ...) expect_error((st), (want), (const char *const[]){__VA_ARGS__, NULL})

/* Shaped like a Qwen3_5ForConditionalGeneration config: the text model nested under
 * "text_config", nulls for unset options, mixed arrays. */
static const char k_json[] =
    "{\n"
    "  \"architectures\": [\"Qwen3_5ForConditionalGeneration\"],\n"
    "  \"model_type\": \"qwen3_5\",\n"
    "  \"tie_word_embeddings\": false,\n"
    "  \"rope_scaling\": null,\n"
    "  \"text_config\": {\n"
    "    \"hidden_size\": 1024,\n"
    "    \"num_hidden_layers\": 4,\n"
    "    \"rms_norm_eps\": 1e-06,\n"
    "    \"head_dim\": 256.0,\n"
    "    \"layer_types\": [\"linear_attention\", \"linear_attention\", \"linear_attention\", \"full_attention\"],\n"
    "    \"rope_parameters\": {\"rope_theta\": 10000000, \"mrope_section\": [11, 11, 10], \"partial_rotary_factor\": 0.25},\n"
    "    \"attn_output_gate\": true,\n"
    "    \"mixed\": [1, \"two\", 3.5],\n"
    "    \"empty\": [],\n"
    "    \"big\": 9007199254740993,\n"
    "    \"half\": 0.5,\n"
    "    \"neg\": -7\n"
    "  },\n"
    "  \"1\": \"numeric key\"\n"
    "}\n";

static df_config *load(void) {
    df_config *cfg;
    cr_assert_eq(df_config_parse(k_json, strlen(k_json), "config.json", &cfg), DF_OK, "%s", df_last_error());
    return cfg;
}

Test(config, scalars_and_nested_paths) {
    df_config *cfg = load();
    int64_t i;
    double d;
    bool b;
    const char *s;
    cr_assert_eq(df_config_get_int(cfg, "text_config.hidden_size", &i), DF_OK, "%s", df_last_error());
    cr_assert_eq(i, 1024);
    cr_assert_eq(df_config_get_int(cfg, "text_config.neg", &i), DF_OK);
    cr_assert_eq(i, -7);
    cr_assert_eq(df_config_get_int(cfg, "text_config.big", &i), DF_OK);
    cr_assert_eq(i, 9007199254740993LL); /* beyond a double's 53 bits: must stay exact */
    cr_assert_eq(df_config_get_int(cfg, "text_config.rope_parameters.rope_theta", &i), DF_OK);
    cr_assert_eq(i, 10000000);
    /* An integral real is accepted as an integer. */
    cr_assert_eq(df_config_get_int(cfg, "text_config.head_dim", &i), DF_OK, "%s", df_last_error());
    cr_assert_eq(i, 256);

    cr_assert_eq(df_config_get_float(cfg, "text_config.rms_norm_eps", &d), DF_OK);
    cr_assert_eq(d, 1e-6);
    cr_assert_eq(df_config_get_float(cfg, "text_config.rope_parameters.partial_rotary_factor", &d), DF_OK);
    cr_assert_eq(d, 0.25);
    /* Integers are accepted as floats. */
    cr_assert_eq(df_config_get_float(cfg, "text_config.rope_parameters.rope_theta", &d), DF_OK);
    cr_assert_eq(d, 1e7);

    cr_assert_eq(df_config_get_bool(cfg, "tie_word_embeddings", &b), DF_OK);
    cr_assert_eq(b, false);
    cr_assert_eq(df_config_get_bool(cfg, "text_config.attn_output_gate", &b), DF_OK);
    cr_assert_eq(b, true);

    cr_assert_eq(df_config_get_str(cfg, "model_type", &s), DF_OK);
    cr_assert_str_eq(s, "qwen3_5");
    cr_assert_eq(df_config_get_str(cfg, "architectures.0", &s), DF_OK, "%s", df_last_error());
    cr_assert_str_eq(s, "Qwen3_5ForConditionalGeneration");
    cr_assert_eq(df_config_get_str(cfg, "text_config.layer_types.3", &s), DF_OK);
    cr_assert_str_eq(s, "full_attention");
    /* A digit segment on an object is an ordinary key. */
    cr_assert_eq(df_config_get_str(cfg, "1", &s), DF_OK, "%s", df_last_error());
    cr_assert_str_eq(s, "numeric key");
    cr_assert_str_eq(df_config_name(cfg), "config.json");
    df_config_close(cfg);
}

Test(config, has_and_defaults) {
    df_config *cfg = load();
    cr_assert(df_config_has(cfg, "text_config"));
    cr_assert(df_config_has(cfg, "text_config.rope_parameters.mrope_section"));
    cr_assert(df_config_has(cfg, "text_config.layer_types.0"));
    cr_assert(!df_config_has(cfg, "text_config.layer_types.4"));
    cr_assert(!df_config_has(cfg, "rope_scaling"), "null counts as absent");
    cr_assert(!df_config_has(cfg, "hidden_size"));
    cr_assert(!df_config_has(cfg, "model_type.x"));
    cr_assert(!df_config_has(cfg, ""));

    int64_t i = 0;
    double d = 0;
    bool b = false;
    const char *s = NULL;
    cr_assert_eq(df_config_get_int_or(cfg, "num_nextn_predict_layers", 3, &i), DF_OK);
    cr_assert_eq(i, 3);
    cr_assert_eq(df_config_get_int_or(cfg, "text_config.num_hidden_layers", 3, &i), DF_OK);
    cr_assert_eq(i, 4);
    cr_assert_eq(df_config_get_float_or(cfg, "rope_scaling", 2.5, &d), DF_OK);
    cr_assert_eq(d, 2.5);
    cr_assert_eq(df_config_get_float_or(cfg, "text_config.half", 2.5, &d), DF_OK);
    cr_assert_eq(d, 0.5);
    cr_assert_eq(df_config_get_bool_or(cfg, "text_config.missing_flag", true, &b), DF_OK);
    cr_assert_eq(b, true);
    cr_assert_eq(df_config_get_str_or(cfg, "absent.deeper", "dflt", &s), DF_OK);
    cr_assert_str_eq(s, "dflt");
    /* Present with the wrong type: an error, not the default. */
    EXPECT_ERROR(df_config_get_int_or(cfg, "model_type", 3, &i), DF_ERR_FORMAT, "config.json", "model_type",
                 "expected an integer, found a string");
    EXPECT_ERROR(df_config_get_str_or(cfg, "model_type.sub", "x", &s), DF_ERR_FORMAT, "model_type.sub",
                 "expected an object");
    df_config_close(cfg);
}

Test(config, error_messages_name_the_path_and_the_types) {
    df_config *cfg = load();
    int64_t i = 12345;
    double d;
    bool b;
    const char *s;
    EXPECT_ERROR(df_config_get_int(cfg, "text_config.hidden_sise", &i), DF_ERR_NOT_FOUND, "config.json",
                 "text_config.hidden_sise", "missing");
    cr_assert_eq(i, 12345, "a failed getter must leave *out alone");
    EXPECT_ERROR(df_config_get_int(cfg, "vision_config.hidden_size", &i), DF_ERR_NOT_FOUND,
                 "vision_config.hidden_size", "missing");
    EXPECT_ERROR(df_config_get_int(cfg, "rope_scaling", &i), DF_ERR_NOT_FOUND, "rope_scaling", "missing (null)");
    EXPECT_ERROR(df_config_get_int(cfg, "model_type", &i), DF_ERR_FORMAT, "config.json: model_type",
                 "expected an integer, found a string");
    EXPECT_ERROR(df_config_get_int(cfg, "text_config.half", &i), DF_ERR_FORMAT, "text_config.half",
                 "expected an integer", "0.5");
    EXPECT_ERROR(df_config_get_int(cfg, "text_config.layer_types", &i), DF_ERR_FORMAT,
                 "expected an integer, found an array");
    EXPECT_ERROR(df_config_get_float(cfg, "text_config.attn_output_gate", &d), DF_ERR_FORMAT,
                 "text_config.attn_output_gate", "expected a number, found a boolean");
    EXPECT_ERROR(df_config_get_bool(cfg, "text_config.hidden_size", &b), DF_ERR_FORMAT,
                 "expected a boolean, found an integer");
    EXPECT_ERROR(df_config_get_str(cfg, "text_config", &s), DF_ERR_FORMAT, "expected a string, found an object");
    /* Walking through a scalar names the segment that is not an object. */
    EXPECT_ERROR(df_config_get_int(cfg, "text_config.hidden_size.x", &i), DF_ERR_FORMAT,
                 "text_config.hidden_size.x", "text_config.hidden_size is an integer", "expected an object");
    EXPECT_ERROR(df_config_get_str(cfg, "text_config.layer_types.first", &s), DF_ERR_FORMAT,
                 "text_config.layer_types is an array");
    EXPECT_ERROR(df_config_get_int(cfg, "text_config..hidden_size", &i), DF_ERR_INVALID, "empty segment");
    EXPECT_ERROR(df_config_get_int(cfg, "text_config.", &i), DF_ERR_INVALID, "empty segment");
    EXPECT_ERROR(df_config_get_int(cfg, "", &i), DF_ERR_INVALID, "empty field path");
    df_config_close(cfg);
}

Test(config, arrays) {
    df_config *cfg = load();
    const char **strs = NULL;
    int64_t *ints = NULL;
    double *dbls = NULL;
    size_t n = 99;
    cr_assert_eq(df_config_get_str_array(cfg, "text_config.layer_types", &strs, &n), DF_OK, "%s",
                 df_last_error());
    cr_assert_eq(n, 4u);
    for (int k = 0; k < 3; k++) cr_assert_str_eq(strs[k], "linear_attention");
    cr_assert_str_eq(strs[3], "full_attention");
    free(strs);

    cr_assert_eq(df_config_get_int_array(cfg, "text_config.rope_parameters.mrope_section", &ints, &n), DF_OK);
    cr_assert_eq(n, 3u);
    cr_assert_eq(ints[0], 11);
    cr_assert_eq(ints[1], 11);
    cr_assert_eq(ints[2], 10);
    free(ints);

    cr_assert_eq(df_config_get_float_array(cfg, "text_config.rope_parameters.mrope_section", &dbls, &n), DF_OK);
    cr_assert_eq(n, 3u);
    cr_assert_eq(dbls[2], 10.0);
    free(dbls);

    cr_assert_eq(df_config_get_int_array(cfg, "text_config.empty", &ints, &n), DF_OK);
    cr_assert_eq(n, 0u);
    cr_assert_null(ints);
    cr_assert_eq(df_config_array_len(cfg, "text_config.layer_types", &n), DF_OK);
    cr_assert_eq(n, 4u);

    ints = (int64_t *)1;
    EXPECT_ERROR(df_config_get_int_array(cfg, "text_config.mixed", &ints, &n), DF_ERR_FORMAT,
                 "text_config.mixed[1]", "expected an integer, found a string");
    cr_assert_eq(ints, (int64_t *)1, "a failed getter must leave *out alone");
    EXPECT_ERROR(df_config_get_str_array(cfg, "text_config.mixed", &strs, &n), DF_ERR_FORMAT,
                 "text_config.mixed[0]", "expected a string, found an integer");
    EXPECT_ERROR(df_config_get_int_array(cfg, "text_config.mixed", &ints, &n), DF_ERR_FORMAT, "[1]");
    EXPECT_ERROR(df_config_get_int_array(cfg, "text_config.hidden_size", &ints, &n), DF_ERR_FORMAT,
                 "text_config.hidden_size", "expected an array, found an integer");
    EXPECT_ERROR(df_config_get_str_array(cfg, "text_config.nothing", &strs, &n), DF_ERR_NOT_FOUND,
                 "text_config.nothing", "missing");
    EXPECT_ERROR(df_config_array_len(cfg, "model_type", &n), DF_ERR_FORMAT, "expected an array");
    df_config_close(cfg);
}

Test(config, random_integers_round_trip) {
    /* Values written by printf, read back through the getter: no value is produced by the
     * code under test. */
    df_rng r;
    df_rng_seed(&r, 2024);
    char text[4096];
    int64_t want[64];
    size_t len = (size_t)snprintf(text, sizeof text, "{\"a\": {\"v\": [");
    for (int k = 0; k < 64; k++) {
        want[k] = (int64_t)df_rng_u64(&r);
        len += (size_t)snprintf(text + len, sizeof text - len, "%s%lld", k ? "," : "", (long long)want[k]);
    }
    len += (size_t)snprintf(text + len, sizeof text - len, "]}}");
    df_config *cfg;
    cr_assert_eq(df_config_parse(text, len, "rand.json", &cfg), DF_OK, "%s", df_last_error());
    int64_t *got;
    size_t n;
    cr_assert_eq(df_config_get_int_array(cfg, "a.v", &got, &n), DF_OK, "%s", df_last_error());
    cr_assert_eq(n, 64u);
    for (int k = 0; k < 64; k++) {
        cr_assert_eq(got[k], want[k]);
        char path[32];
        int64_t one;
        snprintf(path, sizeof path, "a.v.%d", k);
        cr_assert_eq(df_config_get_int(cfg, path, &one), DF_OK);
        cr_assert_eq(one, want[k]);
    }
    free(got);
    df_config_close(cfg);
}

Test(config, parse_errors) {
    df_config *cfg = (df_config *)1;
    const char *bad = "{\n  \"a\": 1,\n  \"b\": }\n";
    EXPECT_ERROR(df_config_parse(bad, strlen(bad), "cfg.json", &cfg), DF_ERR_FORMAT, "cfg.json", "line 3");
    cr_assert_null(cfg);
    const char *dup = "{\"a\": 1, \"a\": 2}";
    EXPECT_ERROR(df_config_parse(dup, strlen(dup), "cfg.json", &cfg), DF_ERR_FORMAT, "duplicate");
    const char *arr = "[1, 2]";
    EXPECT_ERROR(df_config_parse(arr, strlen(arr), "cfg.json", &cfg), DF_ERR_FORMAT,
                 "top level is an array", "expected an object");
    EXPECT_ERROR(df_config_parse("", 0, "cfg.json", &cfg), DF_ERR_FORMAT, "cfg.json");
    /* Length is honoured: the text need not be NUL-terminated at len. */
    const char *pre = "{\"x\": 5}garbage";
    cr_assert_eq(df_config_parse(pre, 8, "cfg.json", &cfg), DF_OK, "%s", df_last_error());
    int64_t x;
    cr_assert_eq(df_config_get_int(cfg, "x", &x), DF_OK);
    cr_assert_eq(x, 5);
    df_config_close(cfg);
}

Test(config, open_from_a_file) {
    char path[] = "/tmp/dflash-cfg-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, k_json, strlen(k_json)), (ssize_t)strlen(k_json));
    close(fd);
    df_config *cfg;
    df_status st = df_config_open(path, &cfg);
    unlink(path);
    cr_assert_eq(st, DF_OK, "%s", df_last_error());
    cr_assert_str_eq(df_config_name(cfg), path);
    int64_t i;
    EXPECT_ERROR(df_config_get_int(cfg, "text_config.nope", &i), DF_ERR_NOT_FOUND, path, "text_config.nope");
    df_config_close(cfg);
    EXPECT_ERROR(df_config_open("/nonexistent/config.json", &cfg), DF_ERR_IO, "/nonexistent/config.json");
}
