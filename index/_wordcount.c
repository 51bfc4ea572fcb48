/* Tokenize and count a chunk of documents in one pass: the index-time hot loop.
 *
 * A Counter lives for a whole build in one worker process. It numbers every distinct word once,
 * in a hash table keyed by the word's UTF-8 bytes; the first time a word is met, the Python
 * `resolve` callback gives its surface and term numbers (stopwords, the length limit and
 * stemming stay in Python, in index.analyzer). After that a token costs one hash lookup and a
 * few counter updates, in records laid out so that a token touches few cache lines.
 *
 * Words follow index.analyzer.Analyzer.words exactly: NFKC, casefold, apostrophes (U+0027,
 * U+2019) deleted, and words are the runs of characters for which str.isalnum() holds (the `\w`
 * of `re` without the underscore, which separates words).
 *  - ASCII text is its own NFKC form and its casefold is its lowercase: done here.
 *  - Other text already in NFKC (unicodedata.is_normalized, the `is_nfkc` callback) is
 *    casefolded here character by character, as str.casefold does, with the same table.
 *  - Anything else goes through the `normalize` callback (NFKC + casefold) first.
 *
 * Counting matches index.chunk.analyze_chunk bit for bit: a posting's frequency is
 * (double)body_count + (double)title_count * title_weight, and a document's length is the sum,
 * in token order, of (double)(float)title_weight per kept title token and 1.0 per kept body
 * token, as numpy's bincount adds them.
 *
 * Words are numbered by `resolve` for the Counter's whole life, so a chunk's result names its
 * surfaces and terms by those numbers; the caller sends each word's text once.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "_buffers.h"
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(p) __builtin_prefetch(p)
#else
#define PREFETCH(p) ((void)(p))
#endif

#if PY_VERSION_HEX >= 0x030D0000
/* Newer Pythons hide the casefold table; non-ASCII text then always goes through `normalize`. */
#define HAVE_FOLD 0
#else
#define HAVE_FOLD 1
#endif

/* ---- growable arrays ------------------------------------------------------------------- */

static int
grow(void **buf, size_t *cap, size_t need, size_t item)
{
    if (need <= *cap) {
        return 0;
    }
    size_t cap2 = *cap ? *cap : 1024;
    while (cap2 < need) {
        cap2 *= 2;
    }
    void *p = PyMem_Realloc(*buf, cap2 * item);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *buf = p;
    *cap = cap2;
    return 0;
}

typedef struct {
    int32_t *a;
    size_t n, cap;
} I32Vec;

static inline int
i32_push(I32Vec *v, int32_t x)
{
    if (v->n == v->cap && grow((void **)&v->a, &v->cap, v->n + 1, sizeof(int32_t)) < 0) {
        return -1;
    }
    v->a[v->n++] = x;
    return 0;
}

/* ---- the Counter object ---------------------------------------------------------------- */

/* One distinct word (normalized, before filtering), stored in the hash table itself: a lookup
   touches one 32-byte bucket, which also holds the counters of the word's surface (a kept word
   is exactly one surface), and the word's bytes in the arena, which stays small. Stamps are
   document and chunk serials, so counters never need clearing. */
typedef struct {
    uint32_t hash;
    int32_t len;        /* 0: empty bucket */
    int32_t surface;    /* -1: not indexed (stopword, too long) */
    int32_t term;
    int32_t surf_doc;   /* stamp of the last document counted in the surface's df */
    int32_t surf_chunk; /* stamp of the chunk that gave surf_local */
    int32_t surf_local; /* chunk-local surface number */
    uint32_t off;       /* the word's bytes in the arena */
} Bucket;

typedef struct {
    int32_t doc;   /* stamp of the last document that counted this term */
    int32_t local; /* chunk-local term number, -1 outside the chunk being counted */
    int32_t title, body;
} Term;

/* A word found by the scanner: its bytes in Counter.word, its (mixed) hash. */
typedef struct {
    uint32_t off, len, hash;
} WordRef;

/* The chunk being counted. Its buffers belong to the Counter and are reused from chunk to chunk
   (fresh memory costs page faults). */
typedef struct {
    I32Vec doc_terms;     /* distinct terms of the current document */
    I32Vec local_terms;   /* chunk-local term number -> term */
    I32Vec local_surfs;   /* chunk-local surface number -> surface */
    I32Vec surf_df;       /* per chunk-local surface */
    I32Vec p_term, p_doc; /* postings in document order */
    float *p_tf;
    size_t p_tf_cap;
    double title_len_w;   /* (double)(float)title_weight, as bincount adds it */
    double title_tf_w;    /* title_weight, for term frequencies */
    int32_t doc, chunk;   /* stamps */
    PyObject *collect;    /* a list: only collect the words (Counter.words) */
} Chunk;

typedef struct {
    PyObject_HEAD
    PyObject *resolve;   /* word -> (surface, term), (-1, -1) when the word is not indexed */
    PyObject *normalize; /* text -> NFKC + casefold */
    PyObject *is_nfkc;   /* text -> whether NFKC leaves it unchanged */
    Bucket *table;
    size_t mask, n_words;
    char *arena;
    size_t arena_len, arena_cap;
    Term *terms;
    size_t term_cap;
    int32_t doc_serial, chunk_serial;
    int busy; /* analyze is running: a callback must not re-enter it */
    unsigned char *word; /* the words of the text being read, back to back */
    size_t word_cap;
    WordRef *refs;
    size_t n_refs, refs_cap;
    Chunk chunk;
    size_t *run_start;
    size_t run_start_cap;
} Counter;

static void
chunk_free(Chunk *c)
{
    PyMem_Free(c->doc_terms.a);
    PyMem_Free(c->local_terms.a);
    PyMem_Free(c->local_surfs.a);
    PyMem_Free(c->surf_df.a);
    PyMem_Free(c->p_term.a);
    PyMem_Free(c->p_doc.a);
    PyMem_Free(c->p_tf);
}

static void
Counter_dealloc(Counter *self)
{
    Py_XDECREF(self->resolve);
    Py_XDECREF(self->normalize);
    Py_XDECREF(self->is_nfkc);
    PyMem_Free(self->table);
    PyMem_Free(self->arena);
    PyMem_Free(self->terms);
    PyMem_Free(self->word);
    PyMem_Free(self->refs);
    chunk_free(&self->chunk);
    PyMem_Free(self->run_start);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static Bucket *
new_table(size_t cap)
{
    Bucket *t = PyMem_Calloc(cap, sizeof(Bucket));
    if (t == NULL) {
        PyErr_NoMemory();
    }
    return t;
}

static int
Counter_init(Counter *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"resolve", "normalize", "is_nfkc", NULL};
    PyObject *resolve, *normalize, *is_nfkc;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO", kwlist, &resolve, &normalize,
                                     &is_nfkc)) {
        return -1;
    }
    if (!PyCallable_Check(resolve) || !PyCallable_Check(normalize) ||
        !PyCallable_Check(is_nfkc)) {
        PyErr_SetString(PyExc_TypeError, "resolve, normalize and is_nfkc must be callable");
        return -1;
    }
    if (self->table != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Counter is already initialized");
        return -1;
    }
    size_t cap = 1 << 14;
    self->table = new_table(cap);
    if (self->table == NULL) {
        return -1;
    }
    self->mask = cap - 1;
    Py_INCREF(resolve);
    Py_INCREF(normalize);
    Py_INCREF(is_nfkc);
    self->resolve = resolve;
    self->normalize = normalize;
    self->is_nfkc = is_nfkc;
    return 0;
}

static int
rehash(Counter *self)
{
    size_t cap = (self->mask + 1) * 2;
    Bucket *table = new_table(cap);
    if (table == NULL) {
        return -1;
    }
    for (size_t i = 0; i <= self->mask; i++) {
        Bucket *b = &self->table[i];
        if (b->len == 0) {
            continue;
        }
        size_t j = b->hash & (cap - 1);
        while (table[j].len != 0) {
            j = (j + 1) & (cap - 1);
        }
        table[j] = *b;
    }
    PyMem_Free(self->table);
    self->table = table;
    self->mask = cap - 1;
    return 0;
}

static int
reserve_term(Counter *self, int32_t t)
{
    size_t old = self->term_cap;
    if ((size_t)t < old) {
        return 0;
    }
    if (grow((void **)&self->terms, &self->term_cap, (size_t)t + 1, sizeof(Term)) < 0) {
        return -1;
    }
    for (size_t i = old; i < self->term_cap; i++) {
        self->terms[i].doc = -1;
        self->terms[i].local = -1;
    }
    return 0;
}

/* A word met for the first time: ask Python for its surface and term numbers, and store it in
   bucket `i` (found empty by the caller; nothing here touches the table before). Returns the
   word's bucket, which a rehash may have moved, or NULL. */
static Bucket *
add_word(Counter *self, const unsigned char *w, uint32_t len, uint32_t h, size_t i)
{
    PyObject *word = PyUnicode_DecodeUTF8((const char *)w, (Py_ssize_t)len, "strict");
    if (word == NULL) {
        return NULL;
    }
    PyObject *res = PyObject_CallOneArg(self->resolve, word);
    Py_DECREF(word);
    if (res == NULL) {
        return NULL;
    }
    if (!PyTuple_Check(res) || PyTuple_GET_SIZE(res) != 2) {
        Py_DECREF(res);
        PyErr_SetString(PyExc_TypeError, "resolve must return (surface, term)");
        return NULL;
    }
    long s = PyLong_AsLong(PyTuple_GET_ITEM(res, 0));
    long t = PyLong_AsLong(PyTuple_GET_ITEM(res, 1));
    Py_DECREF(res);
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (s > INT32_MAX || t > INT32_MAX || s < -1 || t < -1 || (s < 0) != (t < 0)) {
        PyErr_SetString(PyExc_ValueError, "resolve returned bad numbers");
        return NULL;
    }
    if (t >= 0 && reserve_term(self, (int32_t)t) < 0) {
        return NULL;
    }
    if (self->arena_len + len > UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "too many distinct words");
        return NULL;
    }
    if (grow((void **)&self->arena, &self->arena_cap, self->arena_len + len, 1) < 0) {
        return NULL;
    }
    Bucket *b = &self->table[i];
    b->hash = h;
    b->len = (int32_t)len;
    b->surface = (int32_t)s;
    b->term = (int32_t)t;
    b->surf_doc = -1;
    b->surf_chunk = -1;
    b->surf_local = -1;
    b->off = (uint32_t)self->arena_len;
    memcpy(self->arena + self->arena_len, w, len);
    self->arena_len += len;
    self->n_words++;
    if (self->n_words * 2 > self->mask + 1) {
        uint32_t off = b->off; /* unique to this word */
        if (rehash(self) < 0) {
            return NULL;
        }
        for (i = h & self->mask; self->table[i].len == 0 || self->table[i].off != off;
             i = (i + 1) & self->mask) {
        }
        b = &self->table[i];
    }
    return b;
}

/* memcmp(a, b, len) == 0 for short words, without a library call. */
static inline int
same_bytes(const unsigned char *a, const unsigned char *b, size_t len)
{
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t x, y;
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        if (x != y) {
            return 0;
        }
    }
    for (; i < len; i++) {
        if (a[i] != b[i]) {
            return 0;
        }
    }
    return 1;
}

static inline Bucket *
lookup(Counter *self, const unsigned char *w, uint32_t len, uint32_t h)
{
    size_t i = h & self->mask;
    for (;;) {
        Bucket *b = &self->table[i];
        if (b->len == 0) {
            return add_word(self, w, len, h, i);
        }
        if (b->hash == h && (uint32_t)b->len == len &&
            same_bytes((const unsigned char *)self->arena + b->off, w, len)) {
            return b;
        }
        i = (i + 1) & self->mask;
    }
}

/* ---- one chunk ------------------------------------------------------------------------- */

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL
#define AHEAD 16 /* words looked up ahead, to overlap their cache misses */

static inline uint32_t
finish_hash(uint64_t h)
{
    /* FNV-1a leaves the low bits, which pick the bucket, poorly mixed: finish with fmix64. */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return (uint32_t)h;
}

static inline int
add_ref(Counter *self, size_t start, size_t end, uint64_t h)
{
    if (self->n_refs == self->refs_cap &&
        grow((void **)&self->refs, &self->refs_cap, self->n_refs + 1, sizeof(WordRef)) < 0) {
        return -1;
    }
    WordRef *r = &self->refs[self->n_refs++];
    r->off = (uint32_t)start;
    r->len = (uint32_t)(end - start);
    r->hash = finish_hash(h);
    return 0;
}

/* Count the words the scanner found in one field of the current document. */
static int
count_words(Counter *self, Chunk *c, int title, double *doc_len)
{
    size_t n = self->n_refs;
    const WordRef *refs = self->refs;
    const unsigned char *w = self->word;
    if (c->collect != NULL) {
        for (size_t k = 0; k < n; k++) {
            PyObject *word =
                PyUnicode_DecodeUTF8((const char *)w + refs[k].off, refs[k].len, "strict");
            int rc = word == NULL ? -1 : PyList_Append(c->collect, word);
            Py_XDECREF(word);
            if (rc < 0) {
                return -1;
            }
        }
        return 0;
    }
    double len_w = title ? c->title_len_w : 1.0;
    for (size_t k = 0; k < n; k++) {
        if (k + AHEAD < n) {
            PREFETCH(&self->table[refs[k + AHEAD].hash & self->mask]);
        }
        if (k + AHEAD / 2 < n) {
            /* The bucket asked for above has likely arrived: ask for its term's counters. */
            const Bucket *p = &self->table[refs[k + AHEAD / 2].hash & self->mask];
            if (p->len != 0) {
                PREFETCH(self->arena + p->off);
                if (p->term >= 0) {
                    PREFETCH(&self->terms[p->term]);
                }
            }
        }
        Bucket *b = lookup(self, w + refs[k].off, refs[k].len, refs[k].hash);
        if (b == NULL) {
            return -1;
        }
        if (b->surface < 0) {
            continue;
        }
        Term *t = &self->terms[b->term];
        *doc_len += len_w;
        if (t->doc != c->doc) {
            t->doc = c->doc;
            t->title = 0;
            t->body = 0;
            if (i32_push(&c->doc_terms, b->term) < 0) {
                return -1;
            }
        }
        if (title) {
            t->title++;
        }
        else {
            t->body++;
        }
        if (b->surf_doc != c->doc) {
            b->surf_doc = c->doc;
            if (b->surf_chunk != c->chunk) {
                b->surf_chunk = c->chunk;
                b->surf_local = (int32_t)c->local_surfs.n;
                if (i32_push(&c->local_surfs, b->surface) < 0 || i32_push(&c->surf_df, 0) < 0) {
                    return -1;
                }
            }
            c->surf_df.a[b->surf_local]++;
        }
    }
    return 0;
}

/* ASCII classes: 0 separates words, 1 is part of a word, 2 is an uppercase letter (lowercased),
   3 is an apostrophe (deleted). */
static unsigned char ascii_class[128];

static void
init_ascii_class(void)
{
    for (int ch = 0; ch < 128; ch++) {
        unsigned char k = 0;
        if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z')) {
            k = 1;
        }
        else if (ch >= 'A' && ch <= 'Z') {
            k = 2;
        }
        else if (ch == '\'') {
            k = 3;
        }
        ascii_class[ch] = k;
    }
}

static int
reserve_text(Counter *self, size_t bytes)
{
    if (bytes > UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "text too long");
        return -1;
    }
    self->n_refs = 0;
    return grow((void **)&self->word, &self->word_cap, bytes + 1, 1);
}

/* The words of ASCII text, back to back in self->word. */
static int
scan_ascii(Counter *self, const unsigned char *p, Py_ssize_t n)
{
    if (reserve_text(self, (size_t)n) < 0) {
        return -1;
    }
    unsigned char *w = self->word;
    size_t len = 0, start = 0;
    uint64_t h = FNV_OFFSET;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char ch = p[i];
        unsigned char k = ascii_class[ch];
        if (k == 1 || k == 2) {
            ch |= (unsigned char)(k == 2 ? 0x20 : 0);
            w[len++] = ch;
            h = (h ^ ch) * FNV_PRIME;
        }
        else if (k == 0 && len > start) {
            if (add_ref(self, start, len, h) < 0) {
                return -1;
            }
            start = len;
            h = FNV_OFFSET;
        }
    }
    if (len > start && add_ref(self, start, len, h) < 0) {
        return -1;
    }
    return 0;
}

/* The word being built by scan_unicode. */
typedef struct {
    unsigned char *w;
    size_t len, start;
    uint64_t h;
} Scan;

static inline int
scan_break(Counter *self, Scan *sc)
{
    if (sc->len > sc->start) {
        if (add_ref(self, sc->start, sc->len, sc->h) < 0) {
            return -1;
        }
        sc->start = sc->len;
        sc->h = FNV_OFFSET;
    }
    return 0;
}

/* One character of normalized (NFKC + casefold) text. */
static inline int
scan_folded(Counter *self, Scan *sc, Py_UCS4 ch)
{
    if (ch < 128) {
        unsigned char k = ascii_class[ch];
        if (k == 1 || k == 2) {
            sc->w[sc->len++] = (unsigned char)ch;
            sc->h = (sc->h ^ ch) * FNV_PRIME;
            return 0;
        }
        return k == 3 ? 0 : scan_break(self, sc);
    }
    if (ch == 0x2019) {
        return 0;
    }
    if (!Py_UNICODE_ISALNUM(ch)) {
        return scan_break(self, sc);
    }
    unsigned char b[4];
    int nb;
    if (ch < 0x800) {
        b[0] = (unsigned char)(0xC0 | (ch >> 6));
        b[1] = (unsigned char)(0x80 | (ch & 0x3F));
        nb = 2;
    }
    else if (ch < 0x10000) {
        b[0] = (unsigned char)(0xE0 | (ch >> 12));
        b[1] = (unsigned char)(0x80 | ((ch >> 6) & 0x3F));
        b[2] = (unsigned char)(0x80 | (ch & 0x3F));
        nb = 3;
    }
    else {
        b[0] = (unsigned char)(0xF0 | (ch >> 18));
        b[1] = (unsigned char)(0x80 | ((ch >> 12) & 0x3F));
        b[2] = (unsigned char)(0x80 | ((ch >> 6) & 0x3F));
        b[3] = (unsigned char)(0x80 | (ch & 0x3F));
        nb = 4;
    }
    for (int j = 0; j < nb; j++) {
        sc->w[sc->len++] = b[j];
        sc->h = (sc->h ^ b[j]) * FNV_PRIME;
    }
    return 0;
}

/* One character of NFKC text, casefolded here as str.casefold does (character by character). */
static inline int
scan_raw(Counter *self, Scan *sc, Py_UCS4 ch)
{
    if (ch < 128) {
        return scan_folded(self, sc, ascii_class[ch] == 2 ? (ch | 0x20) : ch);
    }
#if HAVE_FOLD
    Py_UCS4 folded[3];
    int nf = _PyUnicode_ToFoldedFull(ch, folded);
    for (int f = 0; f < nf; f++) {
        if (scan_folded(self, sc, folded[f]) < 0) {
            return -1;
        }
    }
    return 0;
#else
    return scan_folded(self, sc, ch);
#endif
}

#define SCAN_KIND(TYPE, STEP)                                                                 \
    for (Py_ssize_t i = 0; i < n; i++) {                                                      \
        if (STEP(self, &sc, ((const TYPE *)data)[i]) < 0) {                                   \
            return -1;                                                                        \
        }                                                                                     \
    }

/* The words of text of any kind; `fold`: the text is NFKC but not yet casefolded. */
static int
scan_unicode(Counter *self, PyObject *text, int fold)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    /* A character folds to at most 3 characters of at most 4 UTF-8 bytes. */
    if (reserve_text(self, (size_t)n * 12) < 0) {
        return -1;
    }
    Scan sc = {self->word, 0, 0, FNV_OFFSET};
    if (fold) {
        switch (kind) {
        case PyUnicode_1BYTE_KIND:
            SCAN_KIND(Py_UCS1, scan_raw);
            break;
        case PyUnicode_2BYTE_KIND:
            SCAN_KIND(Py_UCS2, scan_raw);
            break;
        default:
            SCAN_KIND(Py_UCS4, scan_raw);
        }
    }
    else {
        switch (kind) {
        case PyUnicode_1BYTE_KIND:
            SCAN_KIND(Py_UCS1, scan_folded);
            break;
        case PyUnicode_2BYTE_KIND:
            SCAN_KIND(Py_UCS2, scan_folded);
            break;
        default:
            SCAN_KIND(Py_UCS4, scan_folded);
        }
    }
    return scan_break(self, &sc);
}

/* Find the words of one text (into self->word and self->refs). */
static int
scan_text(Counter *self, PyObject *text)
{
    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "texts must be str, not %.100s", Py_TYPE(text)->tp_name);
        return -1;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0) {
        return -1;
    }
#endif
    if (PyUnicode_IS_ASCII(text)) {
        return scan_ascii(self, PyUnicode_1BYTE_DATA(text), PyUnicode_GET_LENGTH(text));
    }
    if (HAVE_FOLD) {
        PyObject *ok = PyObject_CallOneArg(self->is_nfkc, text);
        if (ok == NULL) {
            return -1;
        }
        int nfkc = PyObject_IsTrue(ok);
        Py_DECREF(ok);
        if (nfkc < 0) {
            return -1;
        }
        if (nfkc) {
            return scan_unicode(self, text, 1);
        }
    }
    PyObject *norm = PyObject_CallOneArg(self->normalize, text);
    if (norm == NULL) {
        return -1;
    }
    int rc;
    if (!PyUnicode_Check(norm)) {
        PyErr_SetString(PyExc_TypeError, "normalize must return str");
        rc = -1;
    }
    else {
        rc = scan_unicode(self, norm, 0);
    }
    Py_DECREF(norm);
    return rc;
}

static int
count_text(Counter *self, Chunk *c, PyObject *text, int title, double *doc_len)
{
    if (scan_text(self, text) < 0) {
        return -1;
    }
    return count_words(self, c, title, doc_len);
}

static int
emit_doc(Counter *self, Chunk *c, int32_t d)
{
    for (size_t k = 0; k < c->doc_terms.n; k++) {
        Term *t = &self->terms[c->doc_terms.a[k]];
        if (t->local < 0) {
            t->local = (int32_t)c->local_terms.n;
            if (i32_push(&c->local_terms, c->doc_terms.a[k]) < 0) {
                return -1;
            }
        }
        if (c->p_term.n == c->p_tf_cap &&
            grow((void **)&c->p_tf, &c->p_tf_cap, c->p_term.n + 1, sizeof(float)) < 0) {
            return -1;
        }
        double tf = (double)t->body + (double)t->title * c->title_tf_w;
        c->p_tf[c->p_term.n] = (float)tf;
        if (i32_push(&c->p_term, t->local) < 0 || i32_push(&c->p_doc, d) < 0) {
            return -1;
        }
    }
    c->doc_terms.n = 0;
    return 0;
}

static PyObject *
i32_bytes(const I32Vec *v)
{
    return PyBytes_FromStringAndSize((const char *)v->a, (Py_ssize_t)(v->n * sizeof(int32_t)));
}

/* The chunk's surfaces and its postings grouped by term (runs, in chunk-local term order), each
   run ordered by document. */
static PyObject *
finish(Counter *self, Chunk *c, const float *doc_len, Py_ssize_t n_docs)
{
    size_t n_post = c->p_term.n, n_local = c->local_terms.n;
    PyObject *items[7] = {NULL};
    PyObject *out = NULL;
    if (grow((void **)&self->run_start, &self->run_start_cap, n_local + 1, sizeof(size_t)) < 0) {
        return NULL;
    }
    size_t *start = self->run_start;
    memset(start, 0, (n_local + 1) * sizeof(size_t));
    items[0] = i32_bytes(&c->local_surfs);
    items[1] = i32_bytes(&c->surf_df);
    items[2] = i32_bytes(&c->local_terms);
    items[3] = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n_local * sizeof(int32_t)));
    items[4] = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n_post * sizeof(int32_t)));
    items[5] = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n_post * sizeof(float)));
    items[6] = PyBytes_FromStringAndSize((const char *)doc_len,
                                         n_docs * (Py_ssize_t)sizeof(float));
    for (int i = 0; i < 7; i++) {
        if (items[i] == NULL) {
            goto done;
        }
    }
    /* A stable counting sort by term keeps each term's postings in document order. */
    for (size_t i = 0; i < n_post; i++) {
        start[c->p_term.a[i] + 1]++;
    }
    int32_t *run_len = (int32_t *)PyBytes_AS_STRING(items[3]);
    for (size_t i = 0; i < n_local; i++) {
        run_len[i] = (int32_t)start[i + 1];
        start[i + 1] += start[i];
    }
    int32_t *pd = (int32_t *)PyBytes_AS_STRING(items[4]);
    float *pf = (float *)PyBytes_AS_STRING(items[5]);
    for (size_t i = 0; i < n_post; i++) {
        size_t j = start[c->p_term.a[i]]++;
        pd[j] = c->p_doc.a[i];
        pf[j] = c->p_tf[i];
    }
    out = PyTuple_New(7);
    if (out != NULL) {
        for (int i = 0; i < 7; i++) {
            PyTuple_SET_ITEM(out, i, items[i]);
            items[i] = NULL;
        }
    }
done:
    for (int i = 0; i < 7; i++) {
        Py_XDECREF(items[i]);
    }
    return out;
}

PyDoc_STRVAR(analyze_doc,
"analyze(titles, bodies, title_weight, /)\n--\n\n"
"Count the words of a chunk of documents. Returns seven bytes objects: int32 surfaces (the\n"
"numbers resolve gave) and their document frequencies in the chunk; int32 run_term and\n"
"run_len: the chunk's postings come in runs, one per term, of run_len postings each;\n"
"int32 post_doc and float32 post_tf, ordered by run then document; float32 doc_len.");

static PyObject *
Counter_analyze(Counter *self, PyObject *args)
{
    PyObject *titles, *bodies;
    double title_weight;
    if (!PyArg_ParseTuple(args, "O!O!d", &PyList_Type, &titles, &PyList_Type, &bodies,
                          &title_weight)) {
        return NULL;
    }
    if (self->table == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Counter is not initialized");
        return NULL;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "Counter.analyze is not re-entrant");
        return NULL;
    }
    Py_ssize_t n_docs = PyList_GET_SIZE(titles);
    if (PyList_GET_SIZE(bodies) != n_docs) {
        PyErr_SetString(PyExc_ValueError, "titles and bodies differ in length");
        return NULL;
    }
    if (n_docs >= INT32_MAX || self->chunk_serial == INT32_MAX ||
        self->doc_serial > INT32_MAX - n_docs) {
        PyErr_SetString(PyExc_OverflowError, "too many documents or chunks for one Counter");
        return NULL;
    }
    Chunk *c = &self->chunk;
    c->doc_terms.n = c->local_terms.n = c->local_surfs.n = c->surf_df.n = 0;
    c->p_term.n = c->p_doc.n = 0;
    c->collect = NULL;
    c->title_len_w = (double)(float)title_weight;
    c->title_tf_w = title_weight;
    c->chunk = ++self->chunk_serial;
    PyObject *out = NULL;
    float *doc_len = PyMem_Malloc((size_t)(n_docs ? n_docs : 1) * sizeof(float));
    if (doc_len == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    self->busy = 1;
    for (Py_ssize_t d = 0; d < n_docs; d++) {
        double len = 0.0;
        c->doc = ++self->doc_serial;
        /* A callback could mutate the lists: hold the texts while reading them. */
        PyObject *title = PyList_GET_ITEM(titles, d);
        PyObject *body = PyList_GET_ITEM(bodies, d);
        Py_INCREF(title);
        Py_INCREF(body);
        int rc = count_text(self, c, title, 1, &len);
        if (rc == 0) {
            rc = count_text(self, c, body, 0, &len);
        }
        Py_DECREF(title);
        Py_DECREF(body);
        if (rc < 0 || emit_doc(self, c, (int32_t)d) < 0) {
            goto done;
        }
        doc_len[d] = (float)len;
        if (PyList_GET_SIZE(titles) != n_docs || PyList_GET_SIZE(bodies) != n_docs) {
            PyErr_SetString(PyExc_RuntimeError, "titles or bodies changed during analysis");
            goto done;
        }
    }
    out = finish(self, c, doc_len, n_docs);
done:
    for (size_t k = 0; k < c->local_terms.n; k++) {
        self->terms[c->local_terms.a[k]].local = -1;
    }
    self->busy = 0;
    PyMem_Free(doc_len);
    return out;
}

PyDoc_STRVAR(words_doc,
"words(text, /)\n--\n\n"
"The words of one text, in order, as analyze reads them (index.analyzer.Analyzer.words).");

static PyObject *
Counter_words(Counter *self, PyObject *text)
{
    Chunk c;
    double len = 0.0;
    memset(&c, 0, sizeof(c));
    if (self->table == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Counter is not initialized");
        return NULL;
    }
    c.collect = PyList_New(0);
    if (c.collect == NULL) {
        return NULL;
    }
    if (count_text(self, &c, text, 0, &len) < 0) {
        Py_CLEAR(c.collect);
    }
    chunk_free(&c);
    return c.collect;
}

static PyMethodDef Counter_methods[] = {
    {"analyze", (PyCFunction)Counter_analyze, METH_VARARGS, analyze_doc},
    {"words", (PyCFunction)Counter_words, METH_O, words_doc},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CounterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "index._wordcount.Counter",
    .tp_basicsize = sizeof(Counter),
    .tp_dealloc = (destructor)Counter_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = PyDoc_STR("Counter(resolve, normalize, is_nfkc): tokenizes and counts chunks."),
    .tp_methods = Counter_methods,
    .tp_init = (initproc)Counter_init,
    .tp_new = PyType_GenericNew,
};

/* ---- placing a chunk's postings into the CSR arrays ------------------------------------- */

#define N_BUFS 8

/* BM25 impacts exactly as index.core.bm25.impacts computes them with numpy float32 arithmetic, one
   rounding per operation; the document part (k1 * ((1 - b) + b * len / avg_len)) comes
   precomputed per document. Contracting a multiply and an add into one fused operation would
   change the last bit, so it is turned off here. */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("fp-contract=off")))
#endif
static void
place_runs(size_t n_runs, const int64_t *dest, const int32_t *run_len, const float *run_idf,
           const int32_t *doc, const float *tf, const float *doc_norm, int32_t *out_doc,
           float *out_imp)
{
    size_t p = 0;
    for (size_t r = 0; r < n_runs; r++) {
        int64_t o = dest[r];
        float idf = run_idf[r];
        for (int32_t j = 0; j < run_len[r]; j++, p++, o++) {
            int32_t d = doc[p];
            float s = tf[p] + doc_norm[d];
            float ratio = tf[p] / s;
            out_doc[o] = d;
            out_imp[o] = idf * ratio;
        }
    }
}

PyDoc_STRVAR(place_doc,
"place(post_doc, post_imp, dest, run_len, run_idf, doc, tf, doc_norm, /)\n--\n\n"
"Copy a chunk's postings, run by run, to post_doc[dest[r]:], and their BM25 impacts\n"
"(run_idf * tf / (tf + doc_norm[doc])) to post_imp. Arrays are contiguous: int32 post_doc,\n"
"run_len and doc, float32 post_imp, run_idf, tf and doc_norm, int64 dest. The GIL is released\n"
"while copying.");

static PyObject *
wordcount_place(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *objs[N_BUFS];
    if (!PyArg_ParseTuple(args, "OOOOOOOO", &objs[0], &objs[1], &objs[2], &objs[3], &objs[4],
                          &objs[5], &objs[6], &objs[7])) {
        return NULL;
    }
    static const char *names[N_BUFS] = {"post_doc", "post_imp", "dest", "run_len",
                                        "run_idf",  "doc",      "tf",   "doc_norm"};
    static const Py_ssize_t items[N_BUFS] = {4, 4, 8, 4, 4, 4, 4, 4};
    Buf bufs[N_BUFS];
    memset(bufs, 0, sizeof(bufs));
    PyObject *out = NULL;
    for (int i = 0; i < N_BUFS; i++) {
        if (get_buf(objs[i], &bufs[i], items[i], i < 2, 0, names[i]) < 0) {
            goto done;
        }
    }
    Py_ssize_t n_out = bufs[0].view.len / 4, n_runs = bufs[2].view.len / 8;
    Py_ssize_t n_post = bufs[5].view.len / 4, n_docs = bufs[7].view.len / 4;
    if (bufs[1].view.len != bufs[0].view.len || bufs[3].view.len != n_runs * 4 ||
        bufs[4].view.len != n_runs * 4 || bufs[6].view.len != bufs[5].view.len) {
        PyErr_SetString(PyExc_ValueError, "place: array lengths do not match");
        goto done;
    }
    /* Check every write and read stays inside its array before letting go of the GIL. */
    const int64_t *dest = bufs[2].view.buf;
    const int32_t *run_len = bufs[3].view.buf;
    const int32_t *doc = bufs[5].view.buf;
    Py_ssize_t total = 0;
    for (Py_ssize_t r = 0; r < n_runs; r++) {
        if (run_len[r] < 0 || dest[r] < 0 || dest[r] + run_len[r] > n_out) {
            PyErr_SetString(PyExc_ValueError, "place: a run falls outside post_doc");
            goto done;
        }
        total += run_len[r];
    }
    if (total != n_post) {
        PyErr_SetString(PyExc_ValueError, "place: run lengths do not add up to the postings");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n_post; i++) {
        if (doc[i] < 0 || doc[i] >= n_docs) {
            PyErr_SetString(PyExc_ValueError, "place: a document number is out of range");
            goto done;
        }
    }
    Py_BEGIN_ALLOW_THREADS
    place_runs((size_t)n_runs, dest, run_len, bufs[4].view.buf, doc, bufs[6].view.buf,
               bufs[7].view.buf, bufs[0].view.buf, bufs[1].view.buf);
    Py_END_ALLOW_THREADS
    out = Py_NewRef(Py_None);
done:
    release_bufs(bufs, N_BUFS);
    return out;
}

static PyMethodDef module_methods[] = {
    {"place", (PyCFunction)wordcount_place, METH_VARARGS, place_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_wordcount",
    .m_doc = "Index-time hot loops: tokenizing and counting (index.chunk), placing postings "
             "(index.builder).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__wordcount(void)
{
    init_ascii_class();
    if (PyType_Ready(&CounterType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    Py_INCREF(&CounterType);
    if (PyModule_AddObject(m, "Counter", (PyObject *)&CounterType) < 0) {
        Py_DECREF(&CounterType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
