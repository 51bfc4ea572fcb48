/* Contiguous buffers handed to progsearch's C extensions by numpy (one header, shared by
   index/_wordcount.c and rankers/_maxscore.c). */
#ifndef PROGSEARCH_INDEX_BUFFERS_H
#define PROGSEARCH_INDEX_BUFFERS_H

#include <Python.h>

typedef struct {
    Py_buffer view;
    int ok;
} Buf;

/* Get a C-contiguous view of obj whose length is a whole number of items of `item` bytes
   (`strict`: and whose items are of that size); sets a ValueError naming `name` if not. The
   view must be released with release_bufs, even when this fails. */
static int
get_buf(PyObject *obj, Buf *b, Py_ssize_t item, int writable, int strict, const char *name)
{
    if (PyObject_GetBuffer(obj, &b->view, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) <
        0) {
        return -1;
    }
    b->ok = 1;
    if (b->view.len % item != 0 || (strict && b->view.itemsize != item)) {
        PyErr_Format(PyExc_ValueError, "%s: expected items of %zd bytes", name, item);
        return -1;
    }
    return 0;
}

static void
release_bufs(Buf *bufs, int n)
{
    for (int i = 0; i < n; i++) {
        if (bufs[i].ok) {
            PyBuffer_Release(&bufs[i].view);
            bufs[i].ok = 0;
        }
    }
}

#endif
