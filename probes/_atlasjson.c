/* Native decoder of RIPE Atlas traceroute results (NDJSON) into the columns of RAW_SCHEMA.
 *
 * probes/parse.py calls decode() on a block of lines whose text is valid UTF-8 without
 * NaN/Infinity. It decodes only the plain shape of the Atlas format: every field pathexp
 * keeps holds its own JSON type or null, every list element is an object, keys are
 * unescaped and unique. On anything else (a number where a string belongs, an integer with
 * a fraction or beyond 18 digits, a duplicate key, a control character, invalid JSON, a
 * line holding anything but one object, ...) it gives up on the whole block and returns
 * None: Arrow's reader and the line-by-line path then judge the block exactly as they do
 * without this module. Fields pathexp does not keep are checked for JSON validity (at least
 * as strictly as orjson) and skipped.
 *
 * The columns come back as buffers in the layout of Arrow arrays (int64/double values,
 * int32 offsets, string bytes, bitmaps), handed to Python without a copy; parse.py
 * assembles them into the nested table, which equals what Arrow's JSON reader builds from the same
 * text (tests/probes/test_native_json.py checks that on every real line).
 */
#define _GNU_SOURCE /* memmem */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *p;
    size_t len, cap;
} buf_t;

enum kind { K_INT, K_F64, K_STR, K_BOOL, K_LIST, K_STRUCT };

typedef struct {
    int kind;
    buf_t val;   /* int64, double, bool byte, or int32 offsets (strings, lists) */
    buf_t data;  /* string bytes */
    buf_t valid; /* one byte per element */
    Py_ssize_t n, nulls;
} col_t;

/* Column order: parse.py's _NATIVE_COLUMNS names them in this order. */
enum {
    T_TYPE, T_MSM, T_PRB, T_TS, T_END, T_AF, T_PROTO, T_PARIS, T_SRC, T_FROM, T_DST,
    T_DSTNAME, T_SIZE, T_FW, T_LTS, T_ERROR, T_ORIGIN, T_RESULT,
    H_HOP, H_ERROR, H_RESULT,
    R_FROM, R_RTT, R_SIZE, R_TTL, R_X, R_ERR, R_LATE, R_ITOS, R_EDST, R_DUP, R_ERROR, R_ICMPEXT,
    E_OBJ,
    O_CLASS, O_TYPE, O_MPLS,
    M_LABEL, M_EXP, M_S, M_TTL,
    NCOLS
};

static const int KINDS[NCOLS] = {
    K_STR, K_INT, K_INT, K_INT, K_INT, K_INT, K_STR, K_INT, K_STR, K_STR, K_STR,
    K_STR, K_INT, K_INT, K_INT, K_STR, K_STR, K_LIST,
    K_INT, K_STR, K_LIST,
    K_STR, K_F64, K_INT, K_INT, K_STR, K_STR, K_INT, K_INT, K_STR, K_BOOL, K_STR, K_STRUCT,
    K_LIST,
    K_INT, K_INT, K_LIST,
    K_INT, K_INT, K_INT, K_INT,
};

typedef struct {
    const unsigned char *p, *end;
    col_t col[NCOLS];
    int oom;
    Py_ssize_t rows;
    buf_t refused; /* int64 indices of the lines not taken */
} state_t;

#define BAIL (-1)
#define MAX_SKIP_DEPTH 64

static int reserve(state_t *s, buf_t *b, size_t extra) {
    if (b->len + extra <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra)
        cap *= 2;
    void *p = realloc(b->p, cap);
    if (!p) {
        s->oom = 1;
        return BAIL;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static void drop_buf(buf_t *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static inline int put(state_t *s, buf_t *b, const void *src, size_t n) {
    if (b->len + n > b->cap && reserve(s, b, n))
        return BAIL;
    memcpy(b->p + b->len, src, n);
    b->len += n;
    return 0;
}

static inline int put_valid(state_t *s, col_t *c, char v) {
    c->n++;
    if (!v)
        c->nulls++;
    return put(s, &c->valid, &v, 1);
}

static inline int put_offset(state_t *s, col_t *c, size_t at) {
    if (at > INT32_MAX)
        return BAIL;
    int32_t o = (int32_t)at;
    return put(s, &c->val, &o, 4);
}

/* An absent or null value of column i. */
static int put_null(state_t *s, int i) {
    col_t *c = &s->col[i];
    switch (c->kind) {
    case K_INT:
    case K_F64: {
        int64_t z = 0;
        if (put(s, &c->val, &z, 8))
            return BAIL;
        break;
    }
    case K_BOOL: {
        char z = 0;
        if (put(s, &c->val, &z, 1))
            return BAIL;
        break;
    }
    case K_STR:
        if (put_offset(s, c, c->data.len))
            return BAIL;
        break;
    case K_LIST: {
        /* an empty list slot: the offset repeats */
        int32_t last = ((int32_t *)c->val.p)[c->val.len / 4 - 1];
        if (put(s, &c->val, &last, 4))
            return BAIL;
        break;
    }
    case K_STRUCT:
        break;
    }
    return put_valid(s, c, 0);
}

static inline void ws(state_t *s) {
    if (s->p < s->end && *s->p > ' ')
        return; /* the usual case: no whitespace between tokens */
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\r'))
        s->p++;
}

static inline int expect(state_t *s, unsigned char ch) {
    ws(s);
    if (s->p >= s->end || *s->p != ch)
        return BAIL;
    s->p++;
    return 0;
}

static int hex4(const unsigned char *p, const unsigned char *end, unsigned *out) {
    if (end - p < 4)
        return BAIL;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char ch = p[i];
        v <<= 4;
        if (ch >= '0' && ch <= '9')
            v |= ch - '0';
        else if (ch >= 'a' && ch <= 'f')
            v |= ch - 'a' + 10;
        else if (ch >= 'A' && ch <= 'F')
            v |= ch - 'A' + 10;
        else
            return BAIL;
    }
    *out = v;
    return 0;
}

/* Bytes that end a run of plain string text: the quote, the backslash, control characters. */
static unsigned char STOP[256];

static void init_stop(void) {
    for (int c = 0; c < 0x20; c++)
        STOP[c] = 1;
    STOP['"'] = STOP['\\'] = 1;
}

/* A JSON string at s->p (the opening quote). With out, its decoded bytes are appended to
 * out; without, it is only checked. Control characters, bad escapes, unpaired surrogates
 * and \u0000 give up. */
static int string(state_t *s, buf_t *out) {
    const unsigned char *p = s->p + 1, *end = s->end;
    for (;;) {
        const unsigned char *run = p;
        while (p < end && !STOP[*p])
            p++;
        if (p >= end || *p < 0x20)
            return BAIL;
        if (out && p > run && put(s, out, run, p - run))
            return BAIL;
        if (*p == '"') {
            s->p = p + 1;
            return 0;
        }
        /* an escape */
        if (end - p < 2)
            return BAIL;
        unsigned char e = p[1], ch;
        p += 2;
        switch (e) {
        case '"': ch = '"'; break;
        case '\\': ch = '\\'; break;
        case '/': ch = '/'; break;
        case 'b': ch = '\b'; break;
        case 'f': ch = '\f'; break;
        case 'n': ch = '\n'; break;
        case 'r': ch = '\r'; break;
        case 't': ch = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (hex4(p, end, &cp))
                return BAIL;
            p += 4;
            if (cp == 0 || (cp >= 0xDC00 && cp <= 0xDFFF))
                return BAIL;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, end, &lo))
                    return BAIL;
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return BAIL;
                p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (out) {
                unsigned char u[4];
                size_t n;
                if (cp < 0x80) {
                    u[0] = (unsigned char)cp;
                    n = 1;
                } else if (cp < 0x800) {
                    u[0] = 0xC0 | (cp >> 6);
                    u[1] = 0x80 | (cp & 0x3F);
                    n = 2;
                } else if (cp < 0x10000) {
                    u[0] = 0xE0 | (cp >> 12);
                    u[1] = 0x80 | ((cp >> 6) & 0x3F);
                    u[2] = 0x80 | (cp & 0x3F);
                    n = 3;
                } else {
                    u[0] = 0xF0 | (cp >> 18);
                    u[1] = 0x80 | ((cp >> 12) & 0x3F);
                    u[2] = 0x80 | ((cp >> 6) & 0x3F);
                    u[3] = 0x80 | (cp & 0x3F);
                    n = 4;
                }
                if (put(s, out, u, n))
                    return BAIL;
            }
            continue;
        }
        default:
            return BAIL;
        }
        if (out && put(s, out, &ch, 1))
            return BAIL;
    }
}

/* An object key without escapes: its bytes at *key, length *klen; s->p after the colon. */
static int key(state_t *s, const unsigned char **k, size_t *klen) {
    ws(s);
    if (s->p >= s->end || *s->p != '"')
        return BAIL;
    const unsigned char *p = s->p + 1, *end = s->end;
    const unsigned char *start = p;
    while (p < end && !STOP[*p])
        p++;
    if (p >= end || *p != '"')
        return BAIL;
    *k = start;
    *klen = (size_t)(p - start);
    s->p = p + 1;
    return expect(s, ':');
}

/* A JSON number token: checks the grammar; reports the integer part's digit count, the
 * fraction's digit count and whether an exponent follows. */
typedef struct {
    const unsigned char *start, *end;
    int neg, int_digits, frac_digits, has_exp, exp_digits;
} num_t;

static int number(state_t *s, num_t *n) {
    const unsigned char *p = s->p, *end = s->end;
    memset(n, 0, sizeof *n);
    n->start = p;
    if (p < end && *p == '-') {
        n->neg = 1;
        p++;
    }
    if (p >= end || *p < '0' || *p > '9')
        return BAIL;
    if (*p == '0') {
        p++;
        n->int_digits = 1;
        if (p < end && *p >= '0' && *p <= '9')
            return BAIL; /* leading zero */
    } else {
        while (p < end && *p >= '0' && *p <= '9') {
            p++;
            n->int_digits++;
        }
    }
    if (p < end && *p == '.') {
        p++;
        while (p < end && *p >= '0' && *p <= '9') {
            p++;
            n->frac_digits++;
        }
        if (!n->frac_digits)
            return BAIL;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        n->has_exp = 1;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        while (p < end && *p >= '0' && *p <= '9') {
            p++;
            n->exp_digits++;
        }
        if (!n->exp_digits)
            return BAIL;
    }
    n->end = p;
    s->p = p;
    return 0;
}

static inline int is_null(state_t *s) {
    if (s->end - s->p >= 4 && memcmp(s->p, "null", 4) == 0) {
        s->p += 4;
        return 1;
    }
    return 0;
}

/* After a member or an element: 1 where a comma follows (another comes), 0 where `close`
 * ends the object or list, BAIL otherwise. */
static inline int more(state_t *s, unsigned char close) {
    ws(s);
    if (s->p < s->end && *s->p == ',') {
        s->p++;
        return 1;
    }
    return expect(s, close) ? BAIL : 0;
}

/* Any JSON value, checked and skipped (a field pathexp does not keep). */
static int skip(state_t *s, int depth) {
    ws(s);
    if (s->p >= s->end)
        return BAIL;
    unsigned char ch = *s->p;
    if (ch == '"')
        return string(s, NULL);
    if (ch == '{' || ch == '[') {
        if (depth >= MAX_SKIP_DEPTH)
            return BAIL;
        unsigned char close = ch == '{' ? '}' : ']';
        s->p++;
        ws(s);
        if (s->p < s->end && *s->p == close) {
            s->p++;
            return 0;
        }
        for (;;) {
            if (ch == '{') {
                ws(s);
                if (s->p >= s->end || *s->p != '"' || string(s, NULL) || expect(s, ':'))
                    return BAIL;
            }
            if (skip(s, depth + 1))
                return BAIL;
            int m = more(s, close);
            if (m <= 0)
                return m;
        }
    }
    if (ch == 't' && s->end - s->p >= 4 && memcmp(s->p, "true", 4) == 0) {
        s->p += 4;
        return 0;
    }
    if (ch == 'f' && s->end - s->p >= 5 && memcmp(s->p, "false", 5) == 0) {
        s->p += 5;
        return 0;
    }
    if (is_null(s))
        return 0;
    num_t n;
    if (number(s, &n))
        return BAIL;
    /* orjson refuses integers beyond 64 bits and doubles beyond their range: give up on
     * anything that could come near */
    if (n.int_digits + n.frac_digits > 18 || n.exp_digits > 2)
        return BAIL;
    return 0;
}

/* A non-null fixed-width value of column i (int64, double or a bool byte). */
static inline int put_value(state_t *s, int i, const void *v, size_t n) {
    col_t *c = &s->col[i];
    return put(s, &c->val, v, n) ? BAIL : put_valid(s, c, 1);
}

/* Values of each column kind, at s->p after the key's colon. */
static int v_int(state_t *s, int i) {
    ws(s);
    if (is_null(s))
        return put_null(s, i);
    num_t n;
    if (number(s, &n) || n.frac_digits || n.has_exp || n.int_digits > 18)
        return BAIL;
    if (n.neg && n.int_digits == 1 && n.start[1] == '0')
        return BAIL; /* -0 */
    int64_t v = 0;
    for (const unsigned char *p = n.start + n.neg; p < n.end; p++)
        v = v * 10 + (*p - '0');
    if (n.neg)
        v = -v;
    return put_value(s, i, &v, 8);
}

static const double POW10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                               1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                               1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static int v_f64(state_t *s, int i) {
    ws(s);
    if (is_null(s))
        return put_null(s, i);
    num_t n;
    if (number(s, &n))
        return BAIL;
    double v;
    if (!n.has_exp && n.int_digits + n.frac_digits <= 15) {
        /* an integer mantissa below 2^53 over an exact power of ten: one correctly
         * rounded division, the value strtod gives */
        int64_t m = 0;
        for (const unsigned char *p = n.start + n.neg; p < n.end; p++)
            if (*p != '.')
                m = m * 10 + (*p - '0');
        v = (double)m / POW10[n.frac_digits];
        if (n.neg)
            v = -v;
    } else {
        /* |exponent| < 100 and at most 40 digits: finite, no underflow to zero */
        if (n.int_digits + n.frac_digits > 40 || n.exp_digits > 2)
            return BAIL;
        char tmp[64];
        size_t len = (size_t)(n.end - n.start);
        if (len >= sizeof tmp)
            return BAIL;
        memcpy(tmp, n.start, len);
        tmp[len] = 0;
        char *stop;
        v = strtod(tmp, &stop);
        if (stop != tmp + len || !isfinite(v))
            return BAIL;
    }
    return put_value(s, i, &v, 8);
}

static int v_str(state_t *s, int i) {
    ws(s);
    if (is_null(s))
        return put_null(s, i);
    if (s->p >= s->end || *s->p != '"')
        return BAIL;
    col_t *c = &s->col[i];
    if (string(s, &c->data) || put_offset(s, c, c->data.len))
        return BAIL;
    return put_valid(s, c, 1);
}

static int v_bool(state_t *s, int i) {
    ws(s);
    if (is_null(s))
        return put_null(s, i);
    char v;
    if (s->end - s->p >= 4 && memcmp(s->p, "true", 4) == 0) {
        v = 1;
        s->p += 4;
    } else if (s->end - s->p >= 5 && memcmp(s->p, "false", 5) == 0) {
        v = 0;
        s->p += 5;
    } else
        return BAIL;
    return put_value(s, i, &v, 1);
}

/* An object's fields: each known key maps to a column (or a nested parser); the columns of
 * the keys the object lacks get a null at its end. */
typedef int (*obj_fn)(state_t *, int);

typedef struct {
    const char *name;
    int col;
    obj_fn nested; /* for a list or struct column: parses the value; NULL: by kind */
    size_t len;    /* strlen(name), set by init_fields */
} field_t;

static int object(state_t *s, const field_t *fields, int nfields);

static int value_of(state_t *s, const field_t *f) {
    if (f->nested)
        return f->nested(s, f->col);
    switch (KINDS[f->col]) {
    case K_INT: return v_int(s, f->col);
    case K_F64: return v_f64(s, f->col);
    case K_STR: return v_str(s, f->col);
    case K_BOOL: return v_bool(s, f->col);
    }
    return BAIL;
}

/* A list of objects parsed by `element` into the child columns; the list column gets the
 * child count after it as its offset. */
static int list_of(state_t *s, int i, int child, int (*element)(state_t *)) {
    ws(s);
    col_t *c = &s->col[i];
    if (is_null(s))
        return put_null(s, i);
    if (expect(s, '['))
        return BAIL;
    ws(s);
    if (s->p < s->end && *s->p == ']') {
        s->p++;
    } else {
        for (;;) {
            ws(s);
            if (s->p >= s->end || *s->p != '{')
                return BAIL; /* null or a non-object element: the reader's judgment */
            if (element(s))
                return BAIL;
            int m = more(s, ']');
            if (m < 0)
                return BAIL;
            if (!m)
                break;
        }
    }
    if (put_offset(s, c, (size_t)s->col[child].n))
        return BAIL;
    return put_valid(s, c, 1);
}

static field_t MPLS_FIELDS[] = {
    {"label", M_LABEL, NULL}, {"exp", M_EXP, NULL}, {"s", M_S, NULL}, {"ttl", M_TTL, NULL},
};
static int mpls_entry(state_t *s) { return object(s, MPLS_FIELDS, 4); }
static int mpls_list(state_t *s, int i) { return list_of(s, i, M_LABEL, mpls_entry); }

static field_t OBJ_FIELDS[] = {
    {"class", O_CLASS, NULL}, {"type", O_TYPE, NULL}, {"mpls", O_MPLS, mpls_list},
};
static int obj_entry(state_t *s) { return object(s, OBJ_FIELDS, 3); }
static int obj_list(state_t *s, int i) { return list_of(s, i, O_CLASS, obj_entry); }

static field_t ICMPEXT_FIELDS[] = {{"obj", E_OBJ, obj_list}};

static int icmpext(state_t *s, int i) {
    ws(s);
    if (is_null(s))
        return put_null(s, i) || put_null(s, E_OBJ);
    if (s->p >= s->end || *s->p != '{')
        return BAIL;
    if (object(s, ICMPEXT_FIELDS, 1))
        return BAIL;
    return put_valid(s, &s->col[i], 1);
}

static field_t REPLY_FIELDS[] = {
    {"from", R_FROM, NULL}, {"rtt", R_RTT, NULL},   {"size", R_SIZE, NULL},
    {"ttl", R_TTL, NULL},   {"x", R_X, NULL},       {"err", R_ERR, NULL},
    {"late", R_LATE, NULL}, {"itos", R_ITOS, NULL}, {"edst", R_EDST, NULL},
    {"dup", R_DUP, NULL},   {"error", R_ERROR, NULL}, {"icmpext", R_ICMPEXT, icmpext},
};
static int reply(state_t *s) { return object(s, REPLY_FIELDS, 12); }
static int reply_list(state_t *s, int i) { return list_of(s, i, R_FROM, reply); }

static field_t HOP_FIELDS[] = {
    {"hop", H_HOP, NULL}, {"error", H_ERROR, NULL}, {"result", H_RESULT, reply_list},
};
static int hop(state_t *s) { return object(s, HOP_FIELDS, 3); }
static int hop_list(state_t *s, int i) { return list_of(s, i, H_HOP, hop); }

static field_t TOP_FIELDS[] = {
    {"type", T_TYPE, NULL},       {"msm_id", T_MSM, NULL},   {"prb_id", T_PRB, NULL},
    {"timestamp", T_TS, NULL},    {"endtime", T_END, NULL},  {"af", T_AF, NULL},
    {"proto", T_PROTO, NULL},     {"paris_id", T_PARIS, NULL}, {"src_addr", T_SRC, NULL},
    {"from", T_FROM, NULL},       {"dst_addr", T_DST, NULL}, {"dst_name", T_DSTNAME, NULL},
    {"size", T_SIZE, NULL},       {"fw", T_FW, NULL},        {"lts", T_LTS, NULL},
    {"error", T_ERROR, NULL},     {"origin", T_ORIGIN, NULL}, {"result", T_RESULT, hop_list},
};

static int object(state_t *s, const field_t *fields, int nfields) {
    uint32_t seen = 0;
    int last = -1;
    if (expect(s, '{'))
        return BAIL;
    ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
    } else {
        for (;;) {
            const unsigned char *k;
            size_t klen;
            if (key(s, &k, &klen))
                return BAIL;
            /* keys usually come in the table's order: look from the one after the last */
            int f = nfields;
            for (int tried = 0, at = last + 1; tried < nfields; tried++, at++) {
                if (at == nfields)
                    at = 0;
                if (fields[at].len == klen && fields[at].name[0] == k[0] && memcmp(fields[at].name, k, klen) == 0) {
                    f = at;
                    break;
                }
            }
            if (f < nfields) {
                if (seen & (1u << f))
                    return BAIL; /* a duplicate key */
                seen |= 1u << f;
                last = f;
                if (value_of(s, &fields[f]))
                    return BAIL;
            } else if (skip(s, 0)) {
                return BAIL;
            }
            int m = more(s, '}');
            if (m < 0)
                return BAIL;
            if (!m)
                break;
        }
    }
    for (int f = 0; f < nfields; f++) {
        if (seen & (1u << f))
            continue;
        if (put_null(s, fields[f].col))
            return BAIL;
        if (fields[f].col == R_ICMPEXT && put_null(s, E_OBJ))
            return BAIL;
    }
    return 0;
}

/* Every line of the block: one object each, nothing else on the line. A line the decoder
 * does not take leaves the columns as they were before it and is listed in s->refused
 * (its index in the block), for the reader and the line-by-line path. */
static int block(state_t *s) {
    size_t mark[NCOLS][3];
    Py_ssize_t mark_n[NCOLS][2];
    const unsigned char *end = s->end;
    for (int64_t line = 0; s->p < end; line++) {
        const unsigned char *nl = memchr(s->p, '\n', (size_t)(end - s->p));
        const unsigned char *line_end = nl ? nl : end;
        for (int i = 0; i < NCOLS; i++) {
            col_t *c = &s->col[i];
            mark[i][0] = c->val.len;
            mark[i][1] = c->data.len;
            mark[i][2] = c->valid.len;
            mark_n[i][0] = c->n;
            mark_n[i][1] = c->nulls;
        }
        s->end = line_end;
        ws(s);
        int rc = s->p >= line_end || *s->p != '{' || object(s, TOP_FIELDS, 18);
        if (!rc) {
            ws(s);
            rc = s->p != line_end;
        }
        s->end = end;
        if (s->oom)
            return BAIL;
        if (rc) {
            for (int i = 0; i < NCOLS; i++) {
                col_t *c = &s->col[i];
                c->val.len = mark[i][0];
                c->data.len = mark[i][1];
                c->valid.len = mark[i][2];
                c->n = mark_n[i][0];
                c->nulls = mark_n[i][1];
            }
            if (put(s, &s->refused, &line, sizeof line))
                return BAIL;
        } else {
            s->rows++;
        }
        s->p = nl ? nl + 1 : end;
    }
    return 0;
}

static void release(state_t *s) {
    drop_buf(&s->refused);
    for (int i = 0; i < NCOLS; i++) {
        drop_buf(&s->col[i].val);
        drop_buf(&s->col[i].data);
        drop_buf(&s->col[i].valid);
    }
}

/* A buffer the decoder filled, handed to Python without a copy: it exposes the buffer
 * protocol (pyarrow.py_buffer wraps it) and frees the memory when the last user goes. */
typedef struct {
    PyObject_HEAD
    char *p;
    Py_ssize_t len;
} owned_t;

static void owned_dealloc(owned_t *self) {
    free(self->p);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int owned_getbuffer(owned_t *self, Py_buffer *view, int flags) {
    return PyBuffer_FillInfo(view, (PyObject *)self, self->p ? self->p : (char *)"", self->len, 1, flags);
}

static PyBufferProcs owned_as_buffer = {(getbufferproc)owned_getbuffer, NULL};

static PyTypeObject owned_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "probes._atlasjson.Buffer",
    .tp_basicsize = sizeof(owned_t),
    .tp_dealloc = (destructor)owned_dealloc,
    .tp_as_buffer = &owned_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Memory the decoder filled (read-only buffer protocol).",
};

/* The buffer's memory, now owned by a Python object (b is emptied). Its spare capacity
 * is given back first: the store keeps a segment's tables (several blocks) in memory. */
static PyObject *as_bytes(buf_t *b) {
    owned_t *o = PyObject_New(owned_t, &owned_type);
    if (!o)
        return NULL;
    if (b->p && b->len < b->cap) {
        char *p = realloc(b->p, b->len ? b->len : 1);
        if (p)
            b->p = p;
    }
    o->p = b->p;
    o->len = (Py_ssize_t)b->len;
    b->p = NULL;
    b->len = b->cap = 0;
    return (PyObject *)o;
}

/* One byte per element to Arrow's bitmap (bit i of byte i / 8, least significant first),
 * in place: byte k of the bitmap is written after bytes 8k..8k+7 were read. */
static void pack_bits(buf_t *b) {
    unsigned char *p = (unsigned char *)b->p;
    size_t n = b->len, k = 0;
    for (; k < n / 8; k++) {
        const unsigned char *q = p + 8 * k;
        p[k] = (unsigned char)((q[0] != 0) | (q[1] != 0) << 1 | (q[2] != 0) << 2 | (q[3] != 0) << 3 |
                               (q[4] != 0) << 4 | (q[5] != 0) << 5 | (q[6] != 0) << 6 | (q[7] != 0) << 7);
    }
    if (n % 8) {
        unsigned char last = 0;
        for (size_t i = 0; i < n % 8; i++)
            last |= (unsigned char)((p[8 * k + i] != 0) << i);
        p[k++] = last;
    }
    b->len = k;
}

/* Each column's final sizes in the last block this thread decoded: the next block's
 * buffers start there, so they are seldom reallocated (and copied) while they grow. */
static _Thread_local size_t size_hint[NCOLS][3];

static void presize(state_t *s) {
    for (int i = 0; i < NCOLS; i++) {
        col_t *c = &s->col[i];
        buf_t *bufs[3] = {&c->val, &c->data, &c->valid};
        for (int k = 0; k < 3; k++)
            if (size_hint[i][k] && reserve(s, bufs[k], size_hint[i][k] + size_hint[i][k] / 8))
                return;
    }
}

static void remember_sizes(state_t *s) {
    for (int i = 0; i < NCOLS; i++) {
        size_hint[i][0] = s->col[i].val.len;
        size_hint[i][1] = s->col[i].data.len;
        size_hint[i][2] = s->col[i].valid.len;
    }
}

PyDoc_STRVAR(decode_doc,
             "decode(data: bytes) -> (rows, columns, refused)\n\n"
             "Decode a block of NDJSON Atlas traceroute results into RAW_SCHEMA's columns, in\n"
             "the order of probes.parse._NATIVE_COLUMNS: each a tuple (length, null_count,\n"
             "validity bitmap, values (booleans as a bitmap) or offsets, string bytes or None),\n"
             "the buffers in Arrow's layout, handed over without a copy. The rows are the lines\n"
             "the decoder takes, in order; refused lists the indices of the lines it does not\n"
             "(anything but the plain shape it decodes), which are not in the columns.");

static PyObject *decode(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    state_t s;
    memset(&s, 0, sizeof s);
    s.p = view.buf;
    s.end = s.p + view.len;
    int rc = 0;
    presize(&s);
    for (int i = 0; i < NCOLS; i++) {
        s.col[i].kind = KINDS[i];
        if (KINDS[i] == K_STR || KINDS[i] == K_LIST)
            rc |= put_offset(&s, &s.col[i], 0);
    }
    if (!rc) {
        Py_BEGIN_ALLOW_THREADS
        rc = block(&s);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&view);
    if (s.oom) {
        release(&s);
        return PyErr_NoMemory();
    }
    if (rc) {
        release(&s);
        Py_RETURN_NONE;
    }
    remember_sizes(&s);
    PyObject *cols = PyTuple_New(NCOLS);
    if (!cols) {
        release(&s);
        return NULL;
    }
    for (int i = 0; i < NCOLS; i++) {
        col_t *c = &s.col[i];
        pack_bits(&c->valid); /* the sizes before packing are remembered above */
        if (c->kind == K_BOOL)
            pack_bits(&c->val);
        PyObject *valid = as_bytes(&c->valid), *val = as_bytes(&c->val);
        PyObject *data = c->kind == K_STR ? as_bytes(&c->data) : Py_NewRef(Py_None);
        PyObject *item = NULL;
        if (valid && val && data)
            item = Py_BuildValue("(nnOOO)", c->n, c->nulls, valid, val, data);
        Py_XDECREF(valid);
        Py_XDECREF(val);
        Py_XDECREF(data);
        if (!item) {
            Py_DECREF(cols);
            release(&s);
            return NULL;
        }
        PyTuple_SET_ITEM(cols, i, item);
    }
    size_t n_refused = s.refused.len / sizeof(int64_t);
    PyObject *refused = PyList_New((Py_ssize_t)n_refused);
    if (!refused) {
        Py_DECREF(cols);
        release(&s);
        return NULL;
    }
    for (size_t k = 0; k < n_refused; k++) {
        PyObject *at = PyLong_FromLongLong(((int64_t *)s.refused.p)[k]);
        if (!at) {
            Py_DECREF(refused);
            Py_DECREF(cols);
            release(&s);
            return NULL;
        }
        PyList_SET_ITEM(refused, (Py_ssize_t)k, at);
    }
    release(&s);
    return Py_BuildValue("(nNN)", s.rows, cols, refused);
}

PyDoc_STRVAR(contains_doc,
"contains(data, word, /)\n--\n\n"
"Whether ``word in data``, as the bytes operator says; found with the C library's memmem,\n"
"about three times faster on Atlas text, without the GIL.");

static PyObject *contains(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer data, word;
    if (!PyArg_ParseTuple(args, "y*y*:contains", &data, &word))
        return NULL;
    int found;
    Py_BEGIN_ALLOW_THREADS
    found = word.len == 0 || memmem(data.buf, (size_t)data.len, word.buf, (size_t)word.len) != NULL;
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    PyBuffer_Release(&word);
    return PyBool_FromLong(found);
}

static PyMethodDef methods[] = {
    {"decode", decode, METH_O, decode_doc},
    {"contains", contains, METH_VARARGS, contains_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_atlasjson",
    "Native decoder of RIPE Atlas traceroute NDJSON into Arrow buffers (see probes.parse).", -1, methods,
};

static void init_fields(field_t *fields, size_t n) {
    for (size_t i = 0; i < n; i++)
        fields[i].len = strlen(fields[i].name);
}

#define INIT_FIELDS(t) init_fields(t, sizeof t / sizeof t[0])

PyMODINIT_FUNC PyInit__atlasjson(void) {
    if (PyType_Ready(&owned_type) < 0)
        return NULL;
    init_stop();
    INIT_FIELDS(MPLS_FIELDS);
    INIT_FIELDS(OBJ_FIELDS);
    INIT_FIELDS(ICMPEXT_FIELDS);
    INIT_FIELDS(REPLY_FIELDS);
    INIT_FIELDS(HOP_FIELDS);
    INIT_FIELDS(TOP_FIELDS);
    return PyModule_Create(&module);
}
