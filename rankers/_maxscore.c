/* MaxScore top-k over impact postings, document at a time: the keyword phase's hot loop.

   Terms come in decreasing order of their best contribution (weight * best impact), with
   rest[j] the bound of terms j.. together. Documents are visited in increasing order, taken
   from the cursors of the "essential" terms; each gets its exact score: the essential terms
   at their cursors, then the other terms, best first, found by galloping search, stopping as
   soon as the score plus rest[j] cannot beat the k-th best score so far (theta). A top-k
   min-heap holds the best; each time theta rises, the terms whose rest falls to theta or below
   stop being essential: a document that has only those terms cannot enter the top k, so their
   long postings are no longer walked, only probed. The result is the exhaustive top-k (equal
   scores at the cut in document order). The GIL is released during the search. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "_buffers.h"

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* First position p in [lo, hi) with d[p] >= target (hi if none), galloping from lo. */
static inline int64_t
gallop(const int32_t *d, int64_t lo, int64_t hi, int32_t target)
{
    if (lo >= hi || d[lo] >= target) {
        return lo;
    }
    int64_t step = 1, prev = lo, probe = lo + 1;
    while (probe < hi && d[probe] < target) {
        prev = probe;
        step *= 2;
        probe = lo + step;
    }
    int64_t a = prev + 1, b = probe < hi ? probe : hi; /* d[prev] < target; answer in [a, b] */
    while (a < b) {
        int64_t m = a + (b - a) / 2;
        if (d[m] < target) {
            a = m + 1;
        } else {
            b = m;
        }
    }
    return a;
}

/* The heap's worst entry at the root: lowest score, and of equal scores the latest document. */
static inline int
worse(float sa, int32_t da, float sb, int32_t db)
{
    return sa < sb || (sa == sb && da > db);
}

static inline void
swap(float *hs, int32_t *hd, size_t i, size_t j)
{
    float ts = hs[i];
    int32_t td = hd[i];
    hs[i] = hs[j];
    hd[i] = hd[j];
    hs[j] = ts;
    hd[j] = td;
}

static void
sift_down(float *hs, int32_t *hd, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && worse(hs[l], hd[l], hs[m], hd[m])) {
            m = l;
        }
        if (r < n && worse(hs[r], hd[r], hs[m], hd[m])) {
            m = r;
        }
        if (m == i) {
            return;
        }
        swap(hs, hd, i, m);
        i = m;
    }
}

static void
sift_up(float *hs, int32_t *hd, size_t i)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!worse(hs[i], hd[i], hs[parent], hd[parent])) {
            return;
        }
        swap(hs, hd, i, parent);
        i = parent;
    }
}

#define MAX_TERMS 1024

typedef struct {
    const int64_t *ptr;
    const int32_t *post_doc;
    const float *post_imp;
    const int64_t *terms;
    const float *weights;
    const double *rest; /* n_terms + 1 entries, rest[n_terms] == 0 */
    Py_ssize_t n_terms;
    Py_ssize_t k;
    Py_ssize_t n_docs;
    int64_t *out_doc;
    float *out_score;
    const uint8_t *allow; /* NULL, or n_docs flags (0 or 1): documents at 0 are never scored */
} Search;

/* Returns the number of results written, or -1 (out of memory), or -2 (a bad document id). */
static Py_ssize_t
run_search(const Search *s)
{
    const size_t k = (size_t)s->k;
    const Py_ssize_t n = s->n_terms;
    int64_t pos[MAX_TERMS], end[MAX_TERMS];
    float *hs = malloc(k * sizeof(float));
    int32_t *hd = malloc(k * sizeof(int32_t));
    if (hs == NULL || hd == NULL) {
        free(hs);
        free(hd);
        return -1;
    }
    for (Py_ssize_t j = 0; j < n; j++) {
        pos[j] = s->ptr[s->terms[j]];
        end[j] = s->ptr[s->terms[j] + 1];
    }
    const int32_t *pd = s->post_doc;
    const float *pi = s->post_imp;
    size_t size = 0;
    double theta = -INFINITY;
    Py_ssize_t essential = n; /* terms [0, essential) are walked; the rest are probed */
    Py_ssize_t result = -1;

    int32_t cur = INT32_MAX;
    for (Py_ssize_t j = 0; j < essential; j++) {
        if (pos[j] < end[j] && pd[pos[j]] < cur) {
            cur = pd[pos[j]];
        }
    }
    while (cur != INT32_MAX) {
        if ((uint32_t)cur >= (uint64_t)s->n_docs) {
            result = -2;
            goto done;
        }
        if (s->allow != NULL && !s->allow[cur]) {
            /* Filtered out: jump to the next flagged document (memchr: the flags are 0 or 1),
               and gallop the walked lists to it, so a selective filter skips the postings in
               between instead of stepping through each of them. */
            const uint8_t *flagged =
                memchr(s->allow + cur + 1, 1, (size_t)(s->n_docs - cur - 1));
            if (flagged == NULL) {
                break;
            }
            const int32_t target = (int32_t)(flagged - s->allow);
            int32_t skip = INT32_MAX;
            for (Py_ssize_t j = 0; j < essential; j++) {
                const int64_t p = gallop(pd, pos[j], end[j], target);
                pos[j] = p;
                if (p < end[j] && pd[p] < skip) {
                    skip = pd[p];
                }
            }
            cur = skip;
            continue;
        }
        float score = 0.0f;
        int32_t next = INT32_MAX;
        for (Py_ssize_t j = 0; j < essential; j++) {
            int64_t p = pos[j];
            if (p < end[j]) {
                if (pd[p] == cur) {
                    score += pi[p] * s->weights[j];
                    pos[j] = ++p;
                }
                if (p < end[j] && pd[p] < next) {
                    next = pd[p];
                }
            }
        }
        for (Py_ssize_t j = essential; j < n; j++) {
            if ((double)score + s->rest[j] <= theta) {
                break;
            }
            int64_t p = gallop(pd, pos[j], end[j], cur);
            pos[j] = p;
            if (p < end[j] && pd[p] == cur) {
                score += pi[p] * s->weights[j];
                pos[j] = p + 1;
            }
        }
        if (size < k) {
            hs[size] = score;
            hd[size] = cur;
            sift_up(hs, hd, size);
            size++;
        } else if (score > hs[0]) {
            hs[0] = score;
            hd[0] = cur;
            sift_down(hs, hd, k, 0);
        }
        if (size == k && hs[0] > theta) {
            theta = hs[0];
            Py_ssize_t before = essential;
            while (essential > 0 && s->rest[essential - 1] <= theta) {
                essential--;
            }
            if (essential != before) {
                next = INT32_MAX;
                for (Py_ssize_t j = 0; j < essential; j++) {
                    if (pos[j] < end[j] && pd[pos[j]] < next) {
                        next = pd[pos[j]];
                    }
                }
            }
        }
        cur = next;
    }
    /* the heap, best first: by score descending, then document ascending */
    for (size_t m = size; m > 1; m--) {
        swap(hs, hd, 0, m - 1);
        sift_down(hs, hd, m - 1, 0);
    }
    for (size_t m = 0; m < size; m++) {
        s->out_doc[m] = hd[m];
        s->out_score[m] = hs[m];
    }
    result = (Py_ssize_t)size;
done:
    free(hs);
    free(hd);
    return result;
}

#define N_BUFS 8

PyDoc_STRVAR(top_k_doc,
"top_k(ptr, post_doc, post_imp, terms, weights, rest, n_docs, out_doc, out_score,\n"
"      allow=None, /)\n--\n\n"
"MaxScore top-k: terms (int64) and their weights (float32) in decreasing order of their\n"
"best contribution; rest (float64, len(terms) + 1) the bound of terms[j:] (rest[-1] == 0);\n"
"k is len(out_doc) (int64) == len(out_score) (float32). Postings: ptr (int64), post_doc\n"
"(int32, ascending per term, each < n_docs), post_imp (float32). Returns the number of\n"
"results written, best first (equal scores in document order). allow (bool or 0/1 uint8, n_docs), when\n"
"given, limits the search to the documents it flags.");

static PyObject *
maxscore_top_k(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *objs[N_BUFS];
    Py_ssize_t n_docs;
    PyObject *allow_obj = Py_None;
    if (!PyArg_ParseTuple(args, "OOOOOOnOO|O", &objs[0], &objs[1], &objs[2], &objs[3],
                          &objs[4], &objs[5], &n_docs, &objs[6], &objs[7], &allow_obj)) {
        return NULL;
    }
    Buf allow;
    memset(&allow, 0, sizeof(allow));
    int has_allow = allow_obj != Py_None;
    static const char *names[N_BUFS] = {"ptr",     "post_doc", "post_imp", "terms",
                                        "weights", "rest",     "out_doc",  "out_score"};
    static const Py_ssize_t items[N_BUFS] = {8, 4, 4, 8, 4, 8, 8, 4};
    static const int writable[N_BUFS] = {0, 0, 0, 0, 0, 0, 1, 1};
    Buf bufs[N_BUFS];
    memset(bufs, 0, sizeof(bufs));
    PyObject *out = NULL;
    for (int b = 0; b < N_BUFS; b++) {
        if (get_buf(objs[b], &bufs[b], items[b], writable[b], 1, names[b]) < 0) {
            goto done;
        }
    }
    if (has_allow) {
        if (get_buf(allow_obj, &allow, 1, 0, 1, "allow") < 0) {
            goto done;
        }
        if (allow.view.len != n_docs) {
            PyErr_SetString(PyExc_ValueError, "top_k: allow must have n_docs entries");
            goto done;
        }
    }
    Search s = {
        .ptr = bufs[0].view.buf,
        .post_doc = bufs[1].view.buf,
        .post_imp = bufs[2].view.buf,
        .terms = bufs[3].view.buf,
        .weights = bufs[4].view.buf,
        .rest = bufs[5].view.buf,
        .n_terms = bufs[3].view.len / 8,
        .k = bufs[6].view.len / 8,
        .n_docs = n_docs,
        .out_doc = bufs[6].view.buf,
        .out_score = bufs[7].view.buf,
        .allow = has_allow ? allow.view.buf : NULL,
    };
    if (s.n_terms > MAX_TERMS) {
        PyErr_Format(PyExc_ValueError, "top_k: at most %d terms", MAX_TERMS);
        goto done;
    }
    Py_ssize_t n_ptr = bufs[0].view.len / 8, n_post = bufs[1].view.len / 4;
    if (bufs[2].view.len / 4 != n_post || bufs[4].view.len / 4 != s.n_terms ||
        bufs[5].view.len / 8 != s.n_terms + 1 || bufs[7].view.len / 4 != s.k) {
        PyErr_SetString(PyExc_ValueError, "top_k: array lengths do not match");
        goto done;
    }
    /* Check every read stays inside its array before letting go of the GIL. */
    for (Py_ssize_t i = 0; i < s.n_terms; i++) {
        int64_t t = s.terms[i];
        if (t < 0 || t + 1 >= n_ptr || s.ptr[t] < 0 || s.ptr[t] > s.ptr[t + 1] ||
            s.ptr[t + 1] > n_post) {
            PyErr_SetString(PyExc_ValueError, "top_k: a term's postings fall outside the arrays");
            goto done;
        }
    }
    Py_ssize_t n = 0;
    if (s.k > 0 && s.n_terms > 0) {
        Py_BEGIN_ALLOW_THREADS
        n = run_search(&s);
        Py_END_ALLOW_THREADS
    }
    if (n == -1) {
        PyErr_NoMemory();
        goto done;
    }
    if (n == -2) {
        PyErr_SetString(PyExc_ValueError, "top_k: a posting names a document >= n_docs");
        goto done;
    }
    out = PyLong_FromSsize_t(n);
done:
    release_bufs(bufs, N_BUFS);
    if (has_allow) {
        release_bufs(&allow, 1);
    }
    return out;
}

static PyMethodDef module_methods[] = {
    {"top_k", (PyCFunction)maxscore_top_k, METH_VARARGS, top_k_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_maxscore",
    .m_doc = "The keyword phase's MaxScore top-k (rankers.maxscore), compiled.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__maxscore(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "MAX_TERMS", MAX_TERMS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
