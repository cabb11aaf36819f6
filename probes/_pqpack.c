/* Parquet data page bodies for columns given over a small key set.
 *
 * probes/_parquet_gather.py writes a table whose every row takes its values from one of a
 * few thousand keys (a hop row's reply address): a column is a table over the keys, and the
 * rows are their key indices. pack() builds, for every row group and every column, the
 * uncompressed body of a v1 data page: the definition levels (1 bit; 2 bits and repetition
 * levels for a list column) as the RLE/bit-packing hybrid with their byte length in front,
 * then the values: a dictionary page's indices (bit width byte, then one bit-packed run) or
 * PLAIN booleans (bit-packed, LSB first). It walks each row group's rows once per column,
 * group by group, so that the group's keys stay in the cache (a column few keys hold: only
 * the rows such columns may hold, found in one pass).
 *
 * A column is given by ``tabs`` (int32, groups x entries: per group, each entry's index in
 * the group's dictionary or its boolean value; -1 for null) and ``widths`` (uint8 per
 * group: the bits per index). A scalar column has one entry per key; a list column gives
 * ``offsets`` (int64, keys + 1: key k stands for entries offsets[k]..offsets[k+1]) and each
 * entry's definition (0..3) and repetition (0..1) levels. The caller checks the sizes it
 * passes; every index used is checked here (ValueError).
 *
 * Little-endian machines with 128-bit integers only (x86-64, arm64): elsewhere the module
 * is not built (it is optional) and pathexp writes with pyarrow.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__ || !defined(__SIZEOF_INT128__)
#error "probes/_pqpack.c packs bits little-endian with 128-bit integers"
#endif

/* A scalar column whose table holds at most 1 key in SPARSE_SHARE in a row group is
 * written from the rows whose key some such column holds (found in one pass), not from
 * every row. */
#define SPARSE_SHARE 16

typedef struct {
    uint8_t *p;
    Py_ssize_t pos; /* bytes written */
    uint64_t acc;   /* pending bits */
    int nbits;
} bits_t;

/* Flush the pending bits and pad with zeros to whole groups of 8 values; the byte count. */
static Py_ssize_t finish(bits_t *b, Py_ssize_t count, int width) {
    while (b->nbits > 0) {
        b->p[b->pos++] = (uint8_t)b->acc;
        b->acc >>= 8;
        b->nbits -= 8;
    }
    Py_ssize_t want = (count + 7) / 8 * width;
    if (b->pos < want) {
        memset(b->p + b->pos, 0, (size_t)(want - b->pos));
    }
    b->pos = want;
    b->acc = 0;
    b->nbits = 0;
    return want;
}

static uint8_t *varint(uint8_t *o, uint64_t v) {
    while (v >= 0x80) {
        *o++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *o++ = (uint8_t)v;
    return o;
}

/* Group ``u`` of 8 levels of ``width`` (1 or 2) bits, as an integer. */
static inline uint64_t unit(const uint8_t *packed, Py_ssize_t u, int width) {
    if (width == 1) {
        return packed[u];
    }
    uint16_t w;
    memcpy(&w, packed + u * 2, 2);
    return w;
}

/* Levels (``count`` values of ``width`` <= 8 bits, bit-packed in ``packed``) as the
 * RLE/bit-packing hybrid with its 4-byte length in front: groups of 8 equal values in a
 * row of at least two become one RLE run, the rest bit-packed runs. Writes at ``o``
 * (room: 4 + 2 * packed bytes + 16); returns the end. */
static uint8_t *levels(uint8_t *o, const uint8_t *packed, Py_ssize_t count, int width) { /* width: 1 or 2 */
    uint8_t *start = o;
    o += 4;
    Py_ssize_t units = (count + 7) / 8, full = count / 8;
    uint64_t mask = (1u << width) - 1, spread = 0;
    for (int i = 0; i < 8; i++) {
        spread |= (uint64_t)1 << (i * width);
    }
    Py_ssize_t u = 0, lit = 0; /* literal groups pending from unit lit */
    while (u < units) {
        uint64_t bits = 0, v = 0;
        int same = 0;
        if (u < full) {
            bits = unit(packed, u, width);
            v = bits & mask;
            same = bits == v * spread;
        }
        Py_ssize_t end = u + 1;
        if (same) {
            while (end < full && unit(packed, end, width) == bits) {
                end++;
            }
        }
        if (same && end - u >= 2) {
            if (u > lit) {
                o = varint(o, (uint64_t)(u - lit) << 1 | 1);
                memcpy(o, packed + lit * width, (size_t)((u - lit) * width));
                o += (u - lit) * width;
            }
            o = varint(o, (uint64_t)((end - u) * 8) << 1);
            *o++ = (uint8_t)v;
            lit = end;
        }
        u = end;
    }
    if (units > lit) {
        o = varint(o, (uint64_t)(units - lit) << 1 | 1);
        memcpy(o, packed + lit * width, (size_t)((units - lit) * width));
        o += (units - lit) * width;
    }
    uint32_t len = (uint32_t)(o - start - 4);
    memcpy(start, &len, 4);
    return o;
}

/* The values after the levels: a dictionary page's indices, or PLAIN booleans. */
static uint8_t *values(uint8_t *o, const uint8_t *packed, Py_ssize_t count, int width, int plain) {
    Py_ssize_t n = (count + 7) / 8 * width;
    if (!plain) {
        *o++ = (uint8_t)width;
        if (count) {
            o = varint(o, (uint64_t)((count + 7) / 8) << 1 | 1);
        }
    }
    memcpy(o, packed, (size_t)n);
    return o + n;
}

/* ``count`` values of ``width`` bits bit-packed (LSB first) in groups of 8, the last group
 * padded with zeros; returns the bytes written ((count + 7) / 8 * width). ``vals`` must
 * have room for the padding values (they are set to 0 here). */
static Py_ssize_t pack_fixed(uint8_t *o, uint32_t *vals, Py_ssize_t count, int width) {
    Py_ssize_t groups = (count + 7) / 8;
    for (Py_ssize_t i = count; i < groups * 8; i++) {
        vals[i] = 0;
    }
    if (width <= 16) {
        for (Py_ssize_t g = 0; g < groups; g++) {
            const uint32_t *v = vals + g * 8;
            unsigned __int128 acc = 0;
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++) {
                acc |= (unsigned __int128)v[j] << (j * width);
            }
            memcpy(o + g * width, &acc, (size_t)width);
        }
    } else {
        uint64_t acc = 0;
        int nb = 0;
        uint8_t *p = o;
        for (Py_ssize_t i = 0; i < groups * 8; i++) {
            acc |= (uint64_t)vals[i] << nb;
            nb += width;
            while (nb >= 8) {
                *p++ = (uint8_t)acc;
                acc >>= 8;
                nb -= 8;
            }
        }
    }
    return groups * width;
}

typedef struct {
    Py_buffer tabs, widths, offsets, defs, reps;
    int plain, list;
    Py_ssize_t ntab;
    PyObject *out; /* list per group */
} col_t;

static void release_col(col_t *c) {
    Py_buffer *all[] = {&c->tabs, &c->widths, &c->offsets, &c->defs, &c->reps};
    for (int i = 0; i < 5; i++) {
        if (all[i]->obj != NULL) {
            PyBuffer_Release(all[i]);
        }
    }
}

static int fail(const char *msg) {
    PyErr_SetString(PyExc_ValueError, msg);
    return -1;
}

/* One column spec: (tabs, widths, plain) or (tabs, widths, plain, offsets, defs, reps). */
static int get_col(PyObject *spec, col_t *c, Py_ssize_t groups, Py_ssize_t nkeys) {
    memset(c, 0, sizeof(*c));
    PyObject *o[5] = {NULL};
    if (!PyArg_ParseTuple(spec, "OOp|OOO", &o[0], &o[1], &c->plain, &o[2], &o[3], &o[4])) {
        return -1;
    }
    Py_buffer *all[] = {&c->tabs, &c->widths, &c->offsets, &c->defs, &c->reps};
    for (int i = 0; i < 5; i++) {
        if (o[i] != NULL && PyObject_GetBuffer(o[i], all[i], PyBUF_SIMPLE) < 0) {
            return -1;
        }
    }
    c->list = o[2] != NULL;
    if (c->list && (o[3] == NULL || o[4] == NULL)) {
        return fail("a list column needs offsets, definition and repetition levels");
    }
    if (c->widths.len != groups || c->tabs.len % 4 || (groups && (c->tabs.len / 4) % groups)) {
        return fail("tables and widths disagree with the number of row groups");
    }
    c->ntab = groups ? c->tabs.len / 4 / groups : 0;
    for (Py_ssize_t g = 0; g < groups; g++) {
        int w = ((const uint8_t *)c->widths.buf)[g];
        if (w < 1 || w > 32 || (c->plain && w != 1)) {
            return fail("bit width out of range");
        }
    }
    if (c->list && groups) { /* (no group: nothing is packed, and tabs tell no entry count) */
        const int64_t *off = c->offsets.buf;
        const uint8_t *d = c->defs.buf, *r = c->reps.buf;
        if (c->offsets.len != (nkeys + 1) * 8 || c->defs.len != c->ntab || c->reps.len != c->ntab) {
            return fail("offsets, levels and tables disagree on the number of entries");
        }
        for (Py_ssize_t k = 0; k < nkeys; k++) {
            if (off[k] < 0 || off[k] > off[k + 1] || off[k + 1] > c->ntab) {
                return fail("entry offsets out of range");
            }
            for (int64_t e = off[k]; e < off[k + 1]; e++) {
                if (r[e] != (e > off[k])) { /* a row's first entry starts it (0), the others repeat (1) */
                    return fail("a repetition level is out of place");
                }
            }
        }
        for (Py_ssize_t e = 0; e < c->ntab; e++) {
            if (d[e] > 3 || r[e] > 1) {
                return fail("a level is out of range");
            }
        }
    } else if (groups && c->ntab != nkeys) {
        return fail("a scalar column's table must have one entry per key");
    }
    c->out = PyList_New(groups);
    return c->out == NULL ? -1 : 0;
}

/* One group of one column: its page body and the number of values that are not null. */
/* The rows of a group a sparse column may hold: their positions, ascending. */
typedef struct {
    const int32_t *pos;
    Py_ssize_t n;
} rows_t;

static PyObject *page(const col_t *c, Py_ssize_t g, const uint32_t *keys, Py_ssize_t n, uint8_t *scratch[4],
                      const rows_t *sparse) {
    const int32_t *tab = (const int32_t *)c->tabs.buf + g * c->ntab;
    int width = ((const uint8_t *)c->widths.buf)[g];
    bits_t rep = {scratch[0], 0, 0, 0}, def = {scratch[1], 0, 0, 0}, idx = {scratch[2], 0, 0, 0};
    Py_ssize_t leaves = n, valid = 0;
    if (sparse != NULL) {
        /* a column few keys hold: only the rows whose key some sparse column holds are
         * looked at; every other row is null */
        uint32_t *held_idx = (uint32_t *)scratch[3];
        memset(def.p, 0, (size_t)((n + 7) / 8));
        for (Py_ssize_t j = 0; j < sparse->n; j++) {
            int32_t p = sparse->pos[j], v = tab[keys[p]];
            if (v >= 0) {
                def.p[p >> 3] |= (uint8_t)(1u << (p & 7));
                held_idx[valid++] = (uint32_t)v;
            }
        }
        def.pos = (n + 7) / 8;
        idx.pos = pack_fixed(idx.p, held_idx, valid, width);
    } else if (!c->list) {
        /* two passes: the definition bits, a byte per 8 rows, and the indices of the
         * rows that hold a value, both branch-free; then those indices bit-packed, 8 at a
         * time into ``width`` bytes */
        uint32_t *held_idx = (uint32_t *)scratch[3];
        uint8_t *dp = def.p;
        Py_ssize_t i = 0;
        for (; i + 8 <= n; i += 8) {
            uint32_t byte = 0;
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++) {
                int32_t v = tab[keys[i + j]];
                uint32_t held = v >= 0;
                byte |= held << j;
                held_idx[valid] = (uint32_t)v;
                valid += held;
            }
            *dp++ = (uint8_t)byte;
        }
        if (i < n) {
            uint32_t byte = 0;
            for (int j = 0; i + j < n; j++) {
                int32_t v = tab[keys[i + j]];
                uint32_t held = v >= 0;
                byte |= held << j;
                held_idx[valid] = (uint32_t)v;
                valid += held;
            }
            *dp++ = (uint8_t)byte;
        }
        def.pos = dp - def.p;
        idx.pos = pack_fixed(idx.p, held_idx, valid, width);
    } else {
        /* a list column: per leaf entry its repetition bit and 2 definition bits in local
         * accumulators, and its index kept when it holds a value, then bit-packed */
        const int64_t *off = c->offsets.buf;
        const uint8_t *d = c->defs.buf, *r = c->reps.buf;
        uint32_t *held_idx = (uint32_t *)scratch[3];
        uint64_t racc = 0, dacc = 0;
        int rn = 0, dn = 0;
        uint8_t *rp = rep.p, *dp = def.p;
        leaves = 0;
/* one leaf entry: its repetition bit and definition bits appended, its index kept */
#define LEAF(repbit, e)                                                                                                \
    do {                                                                                                               \
        racc |= (uint64_t)(repbit) << rn;                                                                              \
        if (++rn == 64) {                                                                                              \
            memcpy(rp, &racc, 8);                                                                                      \
            rp += 8;                                                                                                   \
            racc = 0;                                                                                                  \
            rn = 0;                                                                                                    \
        }                                                                                                              \
        dacc |= (uint64_t)d[e] << dn;                                                                                  \
        dn += 2;                                                                                                       \
        if (dn == 64) {                                                                                                \
            memcpy(dp, &dacc, 8);                                                                                      \
            dp += 8;                                                                                                   \
            dacc = 0;                                                                                                  \
            dn = 0;                                                                                                    \
        }                                                                                                              \
        int32_t v = tab[e];                                                                                            \
        held_idx[valid] = (uint32_t)v;                                                                                 \
        valid += v >= 0;                                                                                               \
        leaves++;                                                                                                      \
    } while (0)
        for (Py_ssize_t i = 0; i < n; i++) {
            int64_t e = off[keys[i]], end = off[keys[i] + 1];
            if (end - e == 1) { /* nearly every row: one entry, which starts the row (level 0) */
                LEAF(0, e);
            } else {
                for (; e < end; e++) {
                    LEAF(r[e], e);
                }
            }
        }
#undef LEAF
        rep.pos = rp - rep.p;
        rep.acc = racc;
        rep.nbits = rn;
        def.pos = dp - def.p;
        def.acc = dacc;
        def.nbits = dn;
        idx.pos = pack_fixed(idx.p, held_idx, valid, width);
    }
    Py_ssize_t rb = c->list ? finish(&rep, leaves, 1) : 0, db = finish(&def, leaves, c->list ? 2 : 1);
    Py_ssize_t xb = finish(&idx, valid, width);
    PyObject *body = PyBytes_FromStringAndSize(NULL, 2 * (rb + db) + xb + 64);
    if (body == NULL) {
        return NULL;
    }
    uint8_t *o = (uint8_t *)PyBytes_AS_STRING(body), *start = o;
    if (c->list) {
        o = levels(o, rep.p, leaves, 1);
    }
    o = levels(o, def.p, leaves, c->list ? 2 : 1);
    o = values(o, idx.p, valid, width, c->plain);
    if (_PyBytes_Resize(&body, o - start) < 0) {
        return NULL;
    }
    return Py_BuildValue("(Nnn)", body, leaves, valid);
}

/* The rows' keys (uint32) and the row groups' bounds (int64, groups + 1, ascending within
 * the rows), checked; -1 with an exception set (and nothing held) otherwise. */
static int rows_args(PyObject *keys_o, PyObject *bounds_o, Py_ssize_t nkeys, Py_buffer *kb, Py_buffer *bb) {
    if (PyObject_GetBuffer(keys_o, kb, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    if (PyObject_GetBuffer(bounds_o, bb, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(kb);
        return -1;
    }
    const int64_t *bounds = bb->buf;
    Py_ssize_t nrows = kb->len / 4, groups = bb->len / 8 - 1;
    const char *err = NULL;
    if (kb->len % 4 || bb->len % 8 || bb->len < 8 || nkeys < 0) {
        err = "keys must be uint32 and bounds int64";
    }
    for (Py_ssize_t g = 0; err == NULL && g < groups; g++) {
        if (bounds[g] < 0 || bounds[g] > bounds[g + 1] || bounds[g + 1] > nrows) {
            err = "row group bounds out of range";
        }
    }
    if (err != NULL) {
        PyBuffer_Release(kb);
        PyBuffer_Release(bb);
        return fail(err);
    }
    return 0;
}

/* pack(keys, bounds, columns) -> per column, per group: (body, n_values, n_valid).
 * keys: uint32 per row; bounds: int64, groups + 1 (where each group's rows start);
 * columns: a sequence of specs (see get_col); nkeys: how many keys the tables cover. */
static PyObject *pack(PyObject *self, PyObject *args) {
    PyObject *keys_o, *bounds_o, *cols_o;
    Py_ssize_t nkeys;
    if (!PyArg_ParseTuple(args, "OOOn", &keys_o, &bounds_o, &cols_o, &nkeys)) {
        return NULL;
    }
    Py_buffer kb = {0}, bb = {0};
    PyObject *seq = NULL, *result = NULL;
    col_t *cols = NULL;
    Py_ssize_t ncols = 0;
    uint8_t *scratch[4] = {NULL, NULL, NULL, NULL}, *any = NULL, *sparse_cols = NULL;
    int32_t *positions = NULL;
    if (rows_args(keys_o, bounds_o, nkeys, &kb, &bb) < 0) {
        goto done;
    }
    const uint32_t *keys = kb.buf;
    const int64_t *bounds = bb.buf;
    Py_ssize_t nrows = kb.len / 4, groups = bb.len / 8 - 1, most = 0;
    for (Py_ssize_t g = 0; g < groups; g++) {
        most = bounds[g + 1] - bounds[g] > most ? bounds[g + 1] - bounds[g] : most;
    }
    for (Py_ssize_t i = 0; i < nrows; i++) {
        if (keys[i] >= (uint64_t)nkeys) {
            fail("a row's key is outside the tables");
            goto done;
        }
    }
    seq = PySequence_Fast(cols_o, "columns must be a sequence");
    if (seq == NULL) {
        goto done;
    }
    ncols = PySequence_Fast_GET_SIZE(seq);
    cols = PyMem_Calloc((size_t)(ncols ? ncols : 1), sizeof(col_t));
    if (cols == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t most_leaves = most;
    for (Py_ssize_t j = 0; j < ncols; j++) {
        if (get_col(PySequence_Fast_GET_ITEM(seq, j), &cols[j], groups, nkeys) < 0) {
            ncols = j + 1;
            goto done;
        }
        if (cols[j].list) { /* the most leaf entries a group can have */
            const int64_t *off = cols[j].offsets.buf;
            for (Py_ssize_t g = 0; g < groups; g++) {
                Py_ssize_t leaves = 0;
                for (int64_t i = bounds[g]; i < bounds[g + 1]; i++) {
                    leaves += off[keys[i] + 1] - off[keys[i]];
                }
                most_leaves = leaves > most_leaves ? leaves : most_leaves;
            }
        }
    }
    for (int s = 0; s < 4; s++) { /* room for a group's levels or indices (32 bits each) */
        scratch[s] = PyMem_Malloc((size_t)((most_leaves + 7) / 8 * 32 + 16));
        if (scratch[s] == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    any = PyMem_Calloc((size_t)(nkeys ? nkeys : 1), 1);
    sparse_cols = PyMem_Calloc((size_t)(ncols ? ncols : 1), 1);
    positions = PyMem_Malloc((size_t)(most ? most : 1) * sizeof(int32_t));
    if (any == NULL || sparse_cols == NULL || positions == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t g = 0; g < groups; g++) {
        const uint32_t *gk = keys + bounds[g];
        Py_ssize_t n = bounds[g + 1] - bounds[g];
        /* a scalar column whose table holds at most one key in SPARSE_SHARE is sparse in
         * this group: one pass finds the rows any sparse column may hold */
        int some = 0;
        memset(any, 0, (size_t)nkeys);
        for (Py_ssize_t j = 0; j < ncols; j++) {
            sparse_cols[j] = 0;
            if (cols[j].list || cols[j].ntab == 0) {
                continue;
            }
            const int32_t *tab = (const int32_t *)cols[j].tabs.buf + g * cols[j].ntab;
            Py_ssize_t held = 0;
            for (Py_ssize_t k = 0; k < cols[j].ntab; k++) {
                held += tab[k] >= 0;
            }
            if (held * SPARSE_SHARE <= cols[j].ntab) {
                sparse_cols[j] = 1;
                some = 1;
                for (Py_ssize_t k = 0; k < cols[j].ntab; k++) {
                    any[k] |= tab[k] >= 0;
                }
            }
        }
        rows_t rows = {positions, 0};
        if (some && n > INT32_MAX) { /* positions are int32: a group this large has none sparse */
            some = 0;
            memset(sparse_cols, 0, (size_t)ncols);
        }
        if (some) {
            for (Py_ssize_t i = 0; i < n; i++) {
                positions[rows.n] = (int32_t)i;
                rows.n += any[gk[i]];
            }
        }
        for (Py_ssize_t j = 0; j < ncols; j++) {
            PyObject *item = page(&cols[j], g, gk, n, scratch, sparse_cols[j] ? &rows : NULL);
            if (item == NULL) {
                goto done;
            }
            PyList_SET_ITEM(cols[j].out, g, item);
        }
    }
    result = PyList_New(ncols);
    for (Py_ssize_t j = 0; result != NULL && j < ncols; j++) {
        PyList_SET_ITEM(result, j, cols[j].out);
        cols[j].out = NULL;
    }
done:
    for (Py_ssize_t j = 0; cols != NULL && j < ncols; j++) {
        Py_XDECREF(cols[j].out);
        release_col(&cols[j]);
    }
    PyMem_Free(cols);
    PyMem_Free(any);
    PyMem_Free(sparse_cols);
    PyMem_Free(positions);
    for (int s = 0; s < 4; s++) {
        PyMem_Free(scratch[s]);
    }
    Py_XDECREF(seq);
    if (kb.obj != NULL) {
        PyBuffer_Release(&kb);
    }
    if (bb.obj != NULL) {
        PyBuffer_Release(&bb);
    }
    return result;
}

/* used(keys, bounds, nkeys) -> bytes: per group, per key, 1 where a row of the group has
 * that key (groups x nkeys). */
static PyObject *used(PyObject *self, PyObject *args) {
    PyObject *keys_o, *bounds_o;
    Py_ssize_t nkeys;
    if (!PyArg_ParseTuple(args, "OOn", &keys_o, &bounds_o, &nkeys)) {
        return NULL;
    }
    Py_buffer kb = {0}, bb = {0};
    PyObject *out = NULL;
    if (rows_args(keys_o, bounds_o, nkeys, &kb, &bb) < 0) {
        goto done;
    }
    const uint32_t *keys = kb.buf;
    const int64_t *bounds = bb.buf;
    Py_ssize_t groups = bb.len / 8 - 1;
    out = PyBytes_FromStringAndSize(NULL, groups * nkeys);
    if (out == NULL) {
        goto done;
    }
    uint8_t *o = (uint8_t *)PyBytes_AS_STRING(out);
    memset(o, 0, (size_t)(groups * nkeys));
    for (Py_ssize_t g = 0; g < groups; g++) {
        uint8_t *row = o + g * nkeys;
        for (int64_t i = bounds[g]; i < bounds[g + 1]; i++) {
            if (keys[i] >= (uint64_t)nkeys) {
                Py_CLEAR(out);
                fail("a row's key is outside the tables");
                goto done;
            }
            row[keys[i]] = 1;
        }
    }
done:
    if (kb.obj != NULL) {
        PyBuffer_Release(&kb);
    }
    if (bb.obj != NULL) {
        PyBuffer_Release(&bb);
    }
    return out;
}

static PyMethodDef METHODS[] = {
    {"used", used, METH_VARARGS, "Which keys each row group's rows use."},
    {"pack", pack, METH_VARARGS, "Data page bodies of columns over a key set, per column and row group."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_pqpack", NULL, -1, METHODS};

PyMODINIT_FUNC PyInit__pqpack(void) { return PyModule_Create(&MODULE); }
