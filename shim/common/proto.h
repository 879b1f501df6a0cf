/* The control protocol's line format, shared by the shim and the injector.
 * docs/PROTOCOL.md is the user-facing description; this is its one parser.
 *
 * A line is a verb followed by key=value fields:
 *     list
 *     thread tid=4242 name="worker 1" state=S
 * A value is bare (no blanks, quotes, backslashes or control characters) or
 * quoted: "..." with the escapes \" \\ \n \t \r and \xHH. Lines end with \n,
 * hold at most KS_PROTO_MAX_LINE bytes and KS_PROTO_MAX_FIELDS fields. */
#ifndef KS_PROTO_H
#define KS_PROTO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KS_PROTO_VERSION 2
#define KS_PROTO_MAX_LINE 4096
#define KS_PROTO_MAX_FIELDS 32

struct ks_field {
    const char *key;
    const char *val;   /* unescaped, NUL-terminated (may contain no NUL) */
};

struct ks_msg {
    const char *verb;
    int nfields;
    struct ks_field f[KS_PROTO_MAX_FIELDS];
    char buf[KS_PROTO_MAX_LINE + 1];   /* storage the pointers above use */
};

/* Parses LINE[0..LEN) (without its '\n') into M. Returns 0, or -1 and sets
 * *ERR to a static description of the first problem. M may be reused. */
int ks_proto_parse(const char *line, size_t len, struct ks_msg *m, const char **err);

/* The value of KEY in M, or NULL. */
const char *ks_msg_get(const struct ks_msg *m, const char *key);
/* Parses KEY as a decimal (or 0x hex) integer in [MIN, MAX].
 * Returns 0, ENOENT if absent, EINVAL if malformed or out of range. */
int ks_msg_get_i64(const struct ks_msg *m, const char *key, int64_t min, int64_t max,
                   int64_t *out);
/* Same for an unsigned 64-bit value (addresses). */
int ks_msg_get_u64(const struct ks_msg *m, const char *key, uint64_t *out);
/* The same for a value already found (V NULL: ENOENT). */
int ks_val_i64(const char *v, int64_t min, int64_t max, int64_t *out);
int ks_val_u64(const char *v, uint64_t *out);

/* ---- Writing lines ---------------------------------------------------- */
struct ks_out {
    char *buf;
    size_t len, cap;
    int oom;           /* an allocation failed: the output is incomplete */
    /* Optional: where a long reply goes part by part (ks_out_part), so the
     * client reads the first rows while the rest is written. SINK returns 0,
     * or -1 when the part could not be delivered: the output is then LOST
     * (and oom set, so nothing more is written). */
    int (*sink)(void *arg, const char *buf, size_t len);
    void *sink_arg;
    int lost;
};

void ks_out_init(struct ks_out *o);
void ks_out_free(struct ks_out *o);
void ks_out_raw(struct ks_out *o, const char *s, size_t n);
/* Starts a line with WORD (a verb or record type). */
void ks_out_word(struct ks_out *o, const char *word);
/* Appends " key=value", quoting VAL when it needs it. */
void ks_out_str(struct ks_out *o, const char *key, const char *val);
void ks_out_fmt(struct ks_out *o, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void ks_out_i64(struct ks_out *o, const char *key, int64_t v);
void ks_out_hex(struct ks_out *o, const char *key, uint64_t v);
void ks_out_eol(struct ks_out *o);
/* At a line boundary: hands the lines written so far to the sink once at
 * least KS_OUT_PART bytes wait (nothing without a sink). */
#define KS_OUT_PART (64 * 1024)
void ks_out_part(struct ks_out *o);
/* A whole final line: "ok" or "err code=CODE msg=...". */
void ks_out_ok(struct ks_out *o);
void ks_out_err(struct ks_out *o, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#ifdef __cplusplus
}
#endif
#endif
