#include "format/checkpoint.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/mapfile.h"

/* Real indexes are a few MB even for the largest models; this only stops a runaway file. */
enum { MAX_INDEX_BYTES = 256u << 20 };

static char *join_path(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t n = a;
    if (a > 0 && dir[a - 1] != '/') p[n++] = '/';
    memcpy(p + n, name, b + 1);
    return p;
}

static bool is_regular_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* A shard name comes from an untrusted index: keep it inside the model directory. */
static bool shard_name_is_safe(const char *name) {
    if (name[0] == '\0' || name[0] == '/') return false;
    for (const char *p = name; *p;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 2 && p[0] == '.' && p[1] == '.') return false;
        if (!slash) break;
        p = slash + 1;
    }
    return true;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_entry(const void *a, const void *b) {
    const df_ckpt_entry *x = a, *y = b;
    int c = strcmp(x->tensor->name, y->tensor->name);
    if (c) return c;
    return x->shard < y->shard ? -1 : x->shard > y->shard;
}

/* ---- building ---------------------------------------------------------------------------- */

static df_status alloc_shards(df_ckpt *c, size_t n) {
    c->shards = calloc(n ? n : 1, sizeof *c->shards);
    if (!c->shards) return df_fail(DF_ERR_NOMEM, "%s: out of memory", c->dir);
    c->n_shards = n;
    return DF_OK;
}

/* Gathers every tensor of every shard into the name-sorted table; refuses a name held by
 * two shards. */
static df_status build_entries(df_ckpt *c) {
    size_t total = 0;
    for (size_t s = 0; s < c->n_shards; s++) total += c->shards[s]->n_tensors;
    c->entries = calloc(total ? total : 1, sizeof *c->entries);
    if (!c->entries) return df_fail(DF_ERR_NOMEM, "%s: out of memory for %zu tensors", c->dir, total);
    size_t k = 0;
    for (size_t s = 0; s < c->n_shards; s++)
        for (size_t i = 0; i < c->shards[s]->n_tensors; i++)
            c->entries[k++] = (df_ckpt_entry){.tensor = &c->shards[s]->tensors[i], .shard = s};
    c->n_tensors = total;
    qsort(c->entries, total, sizeof *c->entries, cmp_entry);
    for (size_t i = 1; i < total; i++)
        if (strcmp(c->entries[i - 1].tensor->name, c->entries[i].tensor->name) == 0)
            return df_fail(DF_ERR_MISMATCH, "%s: tensor '%s' appears in two shards, %s and %s", c->dir,
                           c->entries[i].tensor->name, c->shards[c->entries[i - 1].shard]->path,
                           c->shards[c->entries[i].shard]->path);
    return DF_OK;
}

static df_status open_single(df_ckpt *c, const char *file) {
    DF_TRY(alloc_shards(c, 1));
    DF_TRY(df_st_open(file, &c->shards[0]));
    return build_entries(c);
}

/* Index position of a shard name in the sorted list, or -1. */
static long find_shard(char **names, size_t n, const char *name) {
    char **hit = bsearch(&name, names, n, sizeof *names, cmp_str);
    return hit ? (long)(hit - names) : -1;
}

static df_status open_indexed_json(df_ckpt *c, const char *index_path, json_t *root) {
    if (!json_is_object(root))
        return df_fail(DF_ERR_FORMAT, "%s: expected a JSON object at the top level", index_path);
    json_t *map = json_object_get(root, "weight_map");
    if (!map) return df_fail(DF_ERR_FORMAT, "%s: missing \"weight_map\"", index_path);
    if (!json_is_object(map))
        return df_fail(DF_ERR_FORMAT, "%s: \"weight_map\" is not an object of tensor name -> shard file",
                       index_path);

    /* The distinct shard names, sorted: a stable shard order whatever the index order. */
    size_t n_map = json_object_size(map);
    char **names = calloc(n_map ? n_map : 1, sizeof *names);
    if (!names) return df_fail(DF_ERR_NOMEM, "%s: out of memory", index_path);
    size_t n_names = 0;
    const char *tensor;
    json_t *value;
    df_status st = DF_OK;
    json_object_foreach(map, tensor, value) {
        if (!json_is_string(value)) {
            st = df_fail(DF_ERR_FORMAT, "%s: weight_map entry '%s' is not a string (a shard file name)",
                         index_path, tensor);
            goto done;
        }
        const char *shard = json_string_value(value);
        if (!shard_name_is_safe(shard)) {
            st = df_fail(DF_ERR_FORMAT, "%s: weight_map entry '%s' names shard '%s', which is not a file "
                         "name inside the model directory", index_path, tensor, shard);
            goto done;
        }
        names[n_names++] = (char *)shard;
    }
    qsort(names, n_names, sizeof *names, cmp_str);
    size_t u = 0;
    for (size_t i = 0; i < n_names; i++)
        if (u == 0 || strcmp(names[u - 1], names[i]) != 0) names[u++] = names[i];
    n_names = u;

    st = alloc_shards(c, n_names);
    if (st != DF_OK) goto done;
    for (size_t s = 0; s < n_names; s++) {
        char *shard_path = join_path(c->dir, names[s]);
        if (!shard_path) {
            st = df_fail(DF_ERR_NOMEM, "%s: out of memory", index_path);
            goto done;
        }
        if (!is_regular_file(shard_path)) {
            st = df_fail(DF_ERR_NOT_FOUND, "%s: the index names shard '%s', which is missing (%s)",
                         index_path, names[s], shard_path);
            free(shard_path);
            goto done;
        }
        st = df_st_open(shard_path, &c->shards[s]);
        free(shard_path);
        if (st != DF_OK) goto done;
    }

    /* Every mapped tensor is in the shard the index names ... */
    json_object_foreach(map, tensor, value) {
        const char *shard = json_string_value(value);
        long s = find_shard(names, n_names, shard);
        if (s < 0 || !df_st_find(c->shards[s], tensor)) {
            st = df_fail(DF_ERR_MISMATCH, "%s: the index maps tensor '%s' to shard '%s', which does not "
                         "contain it", index_path, tensor, shard);
            goto done;
        }
    }
    st = build_entries(c);
    if (st != DF_OK) goto done;
    /* ... and every tensor of a shard is in the index, mapped to that shard. */
    for (size_t i = 0; i < c->n_tensors; i++) {
        const df_ckpt_entry *e = &c->entries[i];
        json_t *mapped = json_object_get(map, e->tensor->name);
        if (!mapped || strcmp(json_string_value(mapped), names[e->shard]) != 0) {
            st = df_fail(DF_ERR_MISMATCH, "%s: shard '%s' holds tensor '%s', which the index %s", index_path,
                         names[e->shard], e->tensor->name,
                         mapped ? "maps to another shard" : "does not list");
            goto done;
        }
    }
done:
    free(names);
    return st;
}

static df_status open_indexed(df_ckpt *c, const char *index_path) {
    char *text = NULL;
    size_t len = 0;
    DF_TRY(df_read_file(index_path, MAX_INDEX_BYTES, &text, &len));
    json_error_t err;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    free(text);
    if (!root)
        return df_fail(DF_ERR_FORMAT, "%s: line %d column %d: %s", index_path, err.line, err.column,
                       err.text);
    df_status st = open_indexed_json(c, index_path, root);
    json_decref(root);
    return st;
}

/* ---- public ------------------------------------------------------------------------------ */

df_status df_ckpt_open(const char *path, df_ckpt **out) {
    *out = NULL;
    if (!path) return df_fail(DF_ERR_INVALID, "df_ckpt_open: path is NULL");
    struct stat sb;
    if (stat(path, &sb) != 0)
        return df_fail(errno == ENOENT ? DF_ERR_NOT_FOUND : DF_ERR_IO, "%s: %s", path, strerror(errno));
    df_ckpt *c = calloc(1, sizeof *c);
    if (!c || !(c->dir = strdup(path))) {
        free(c);
        return df_fail(DF_ERR_NOMEM, "%s: out of memory", path);
    }

    df_status st;
    if (S_ISREG(sb.st_mode)) {
        st = open_single(c, path);
    } else if (S_ISDIR(sb.st_mode)) {
        char *index = join_path(path, DF_CKPT_INDEX_FILE);
        char *single = join_path(path, DF_CKPT_SINGLE_FILE);
        if (!index || !single)
            st = df_fail(DF_ERR_NOMEM, "%s: out of memory", path);
        else if (is_regular_file(index))
            st = open_indexed(c, index);
        else if (is_regular_file(single))
            st = open_single(c, single);
        else
            st = df_fail(DF_ERR_NOT_FOUND, "%s: no %s or %s in this directory", path, DF_CKPT_SINGLE_FILE,
                         DF_CKPT_INDEX_FILE);
        free(index);
        free(single);
    } else {
        st = df_fail(DF_ERR_INVALID, "%s: neither a directory nor a regular file", path);
    }
    if (st != DF_OK) {
        df_ckpt_close(c);
        return st;
    }
    *out = c;
    return DF_OK;
}

void df_ckpt_close(df_ckpt *c) {
    if (!c) return;
    for (size_t s = 0; s < c->n_shards; s++) df_st_close(c->shards[s]);
    free(c->shards);
    free(c->entries);
    free(c->dir);
    free(c);
}

const df_st_tensor *df_ckpt_find(const df_ckpt *c, const char *name) {
    if (!c || !name) return NULL;
    size_t lo = 0, hi = c->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = strcmp(c->entries[mid].tensor->name, name);
        if (r == 0) return c->entries[mid].tensor;
        if (r < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

df_status df_ckpt_get(const df_ckpt *c, const char *name, const df_st_tensor **out) {
    *out = df_ckpt_find(c, name);
    if (!*out)
        return df_fail(DF_ERR_NOT_FOUND, "%s: no tensor named '%s' in the checkpoint", c ? c->dir : "<null>",
                       name ? name : "<null>");
    return DF_OK;
}

const char *df_ckpt_shard_path(const df_ckpt *c, size_t i) {
    return i < c->n_tensors ? c->shards[c->entries[i].shard]->path : NULL;
}
