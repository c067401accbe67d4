// A log-pipeline transform in C: checks each record is a JSON object, drops
// debug lines, redacts e-mail addresses and bearer tokens, adds the field
// `env` from the stream's config, and partitions by `service`.
//
// C has no JSON library in wasi-libc, so this works on the bytes: it finds
// string fields with a small scanner and splices the output. Config
// (`transform.config` in the stream's YAML): {"env": "prod"}.

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "transformer.h"

typedef struct {
    uint8_t *ptr;
    size_t len, cap;
} buf_t;

static void buf_reserve(buf_t *b, size_t more) {
    if (b->len + more <= b->cap) return;
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap < b->len + more) cap *= 2;
    b->ptr = realloc(b->ptr, cap);
    if (!b->ptr) abort();
    b->cap = cap;
}

static void buf_put(buf_t *b, const void *p, size_t n) {
    buf_reserve(b, n);
    memcpy(b->ptr + b->len, p, n);
    b->len += n;
}

// Replaces b[at, at+n) with the string `with`.
static void buf_splice(buf_t *b, size_t at, size_t n, const char *with) {
    size_t w = strlen(with);
    if (w > n) buf_reserve(b, w - n);
    memmove(b->ptr + at + w, b->ptr + at + n, b->len - at - n);
    memcpy(b->ptr + at, with, w);
    b->len = b->len - n + w;
}

// Finds the string value of "key" (the first occurrence); false if absent or
// not a string. The value is returned as it is written, escapes included.
static bool string_field(const uint8_t *s, size_t n, const char *key, const uint8_t **val, size_t *vlen) {
    size_t k = strlen(key);
    for (size_t i = 0; i + k + 2 <= n; i++) {
        if (s[i] != '"' || memcmp(s + i + 1, key, k) != 0 || s[i + 1 + k] != '"') continue;
        size_t j = i + k + 2;
        while (j < n && (s[j] == ' ' || s[j] == '\t')) j++;
        if (j >= n || s[j] != ':') continue;
        j++;
        while (j < n && (s[j] == ' ' || s[j] == '\t')) j++;
        if (j >= n || s[j] != '"') return false;
        size_t start = ++j;
        while (j < n && s[j] != '"') j += (s[j] == '\\') ? 2 : 1;
        if (j >= n) return false;
        *val = s + start;
        *vlen = j - start;
        return true;
    }
    return false;
}

static bool email_char(uint8_t c, bool host) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-') return true;
    return !host && (c == '_' || c == '%' || c == '+');
}

static void redact_emails(buf_t *b) {
    for (size_t i = 0; i < b->len; i++) {
        if (b->ptr[i] != '@') continue;
        size_t l = i, r = i + 1;
        while (l > 0 && email_char(b->ptr[l - 1], false)) l--;
        while (r < b->len && email_char(b->ptr[r], true)) r++;
        bool dot = false;
        for (size_t j = i + 2; j + 1 < r; j++) dot |= b->ptr[j] == '.';
        if (l == i || !dot) continue;
        buf_splice(b, l, r - l, "<email>");
        i = l + strlen("<email>") - 1;
    }
}

static void redact_bearer(buf_t *b) {
    const char *word = "bearer ";
    size_t w = strlen(word);
    for (size_t i = 0; i + w < b->len; i++) {
        if (strncasecmp((const char *)b->ptr + i, word, w) != 0) continue;
        size_t start = i + w, end = start;
        while (end < b->len && b->ptr[end] != ' ' && b->ptr[end] != '"') end++;
        if (end == start) continue;
        buf_splice(b, start, end - start, "<token>");
        i = start + strlen("<token>") - 1;
    }
}

static char *env_value = NULL;

bool exports_transformer_init(transformer_string_t *config, transformer_string_t *err) {
    const uint8_t *v;
    size_t n;
    if (config->len && string_field(config->ptr, config->len, "env", &v, &n)) {
        env_value = malloc(n + 1);
        memcpy(env_value, v, n);
        env_value[n] = 0;
    } else if (config->len && memchr(config->ptr, '{', config->len) == NULL) {
        transformer_string_dup(err, "config is not JSON: expected an object such as {\"env\": \"prod\"}");
        transformer_string_free(config);
        return false;
    }
    transformer_string_free(config);
    return true;
}

static void set_failed(transformer_outcome_t *o, const char *why) {
    o->tag = HYDRANT_TRANSFORM_TYPES_OUTCOME_FAILED;
    transformer_string_dup(&o->val.failed, why);
}

static void one(const transformer_record_t *r, transformer_outcome_t *o) {
    const uint8_t *s = r->data.ptr;
    size_t n = r->data.len;
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ')) n--;
    while (n && (*s == ' ' || *s == '\t')) s++, n--;
    if (n < 2 || s[0] != '{' || s[n - 1] != '}') {
        set_failed(o, "record is not JSON: not an object");
        return;
    }
    const uint8_t *level;
    size_t level_len;
    if (string_field(s, n, "level", &level, &level_len) && level_len == 5 &&
        strncasecmp((const char *)level, "debug", 5) == 0) {
        o->tag = HYDRANT_TRANSFORM_TYPES_OUTCOME_DROPPED;
        return;
    }
    buf_t out = {0};
    buf_put(&out, s, n);
    redact_emails(&out);
    redact_bearer(&out);
    // Add "env" before the closing brace.
    out.len--;
    bool empty = out.len == 1;
    const char *env = env_value ? env_value : "unknown";
    if (!empty) buf_put(&out, ",", 1);
    buf_put(&out, "\"env\":\"", 7);
    buf_put(&out, env, strlen(env));
    buf_put(&out, "\"}\n", 3);

    const uint8_t *service;
    size_t service_len;
    if (!string_field(s, n, "service", &service, &service_len) || service_len == 0) {
        service = (const uint8_t *)"unknown";
        service_len = 7;
    }
    o->tag = HYDRANT_TRANSFORM_TYPES_OUTCOME_OK;
    o->val.ok.data.ptr = out.ptr;
    o->val.ok.data.len = out.len;
    transformer_tuple2_string_string_t *key = malloc(sizeof *key);
    transformer_string_dup_n(&key->f0, "service", 7);
    transformer_string_dup_n(&key->f1, (const char *)service, service_len);
    o->val.ok.partition_keys.ptr = key;
    o->val.ok.partition_keys.len = 1;
}

void exports_transformer_transform(transformer_list_record_t *batch, transformer_list_outcome_t *ret) {
    ret->len = batch->len;
    ret->ptr = calloc(batch->len ? batch->len : 1, sizeof *ret->ptr);
    for (size_t i = 0; i < batch->len; i++) one(&batch->ptr[i], &ret->ptr[i]);
    transformer_list_record_free(batch);
}
