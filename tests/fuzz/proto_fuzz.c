/* libFuzzer target: the control protocol's line parser (shim/common/proto.c), which
 * reads bytes from any local client on one side and from the target process
 * on the other. Beyond "no crash, no sanitizer report", it checks the
 * parser's promises: a parsed line has a verb, at most KS_PROTO_MAX_FIELDS
 * distinct keys, values without NUL; and writing the parsed message back
 * with the writer gives a line that parses to the same message. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shim/common/proto.h"

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

static void ks_fuzz_roundtrip(const struct ks_msg *m)
{
    struct ks_out o;
    ks_out_init(&o);
    ks_out_word(&o, m->verb);
    for (int i = 0; i < m->nfields; i++)
        ks_out_str(&o, m->f[i].key, m->f[i].val);
    if (o.oom || o.len > KS_PROTO_MAX_LINE) {   /* escaping may outgrow a line */
        ks_out_free(&o);
        return;
    }
    static struct ks_msg again;
    const char *err = NULL;
    CHECK(ks_proto_parse(o.buf, o.len, &again, &err) == 0);
    CHECK(strcmp(again.verb, m->verb) == 0);
    CHECK(again.nfields == m->nfields);
    for (int i = 0; i < m->nfields; i++) {
        CHECK(strcmp(again.f[i].key, m->f[i].key) == 0);
        CHECK(strcmp(again.f[i].val, m->f[i].val) == 0);
    }
    ks_out_free(&o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ks_msg m;
    const char *err = NULL;
    if (ks_proto_parse((const char *)data, size, &m, &err) != 0) {
        CHECK(err && *err);
        return 0;
    }
    CHECK(m.verb && *m.verb);
    CHECK(m.nfields >= 0 && m.nfields <= KS_PROTO_MAX_FIELDS);
    for (int i = 0; i < m.nfields; i++) {
        CHECK(*m.f[i].key);
        CHECK(ks_msg_get(&m, m.f[i].key) == m.f[i].val);
        for (int j = 0; j < i; j++)
            CHECK(strcmp(m.f[i].key, m.f[j].key) != 0);
        int64_t x;
        uint64_t u;
        int rc = ks_msg_get_i64(&m, m.f[i].key, INT64_MIN, INT64_MAX, &x);
        CHECK(rc == 0 || rc == EINVAL);
        rc = ks_msg_get_u64(&m, m.f[i].key, &u);
        CHECK(rc == 0 || rc == EINVAL);
    }
    ks_fuzz_roundtrip(&m);
    return 0;
}
