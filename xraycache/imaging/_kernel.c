/* The compiled kernel of the build's hot path: the exact-area resize of 8-bit images, and the histogram.
 *
 * Why C: the NumPy area resize costs ~40% of the JPEG decode per image (K gathers and multiply-adds,
 * each a full pass over memory with temporaries); one loop over the pixels costs a fraction of that.
 * The arithmetic is the fixed-point integer arithmetic of xraycache/imaging/resize.py, step for step,
 * so the two give the same bytes on every image: weights are integers summing to 1 << WEIGHT_BITS per
 * output cell (computed once, in Python, and passed in), the vertical pass rounds to 7 fractional bits
 * (int16), the horizontal pass rounds to uint8. Integer sums do not depend on the order of the adds.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define WEIGHT_BITS 14
#define FRACTION_BITS 7 /* of the intermediate, after the vertical pass: 255 << 7 fits int16 */
#define SHIFT1 (WEIGHT_BITS - FRACTION_BITS)
#define SHIFT2 (WEIGHT_BITS + FRACTION_BITS)

static int get_buffer(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t nbytes, const char *what) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) < 0) return -1;
    if (view->len != nbytes) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes, expected %zd", what, view->len, nbytes);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
/* AVX2 where the CPU has it, SSE2 otherwise (chosen at load time); integer results are the same. */
#define MULTIVERSION __attribute__((target_clones("avx2", "default")))
#else
#define MULTIVERSION
#endif

/* The two passes. Vertical: each output row i is a weighted sum of K source rows, rounded to
 * FRACTION_BITS, stored transposed (mid is width x out_h) so that the horizontal pass is again a sum of
 * K contiguous rows. Horizontal: each output column j, a weighted sum of K rows of mid, rounded to uint8.
 * Products are int16 x int16 -> int32 (weights <= 1 << 14, mid < 1 << 15): vectorised by the compiler. */
/* acc = w * line, or acc += w * line: int16 x int16 -> int32, vectorised by the compiler. */
#define TAP_LOOP(acc, line, w, n, first)                                             \
    do {                                                                             \
        if (first)                                                                   \
            for (Py_ssize_t x_ = 0; x_ < (n); x_++) (acc)[x_] = (int32_t)(w) * (line)[x_]; \
        else                                                                         \
            for (Py_ssize_t x_ = 0; x_ < (n); x_++) (acc)[x_] += (int32_t)(w) * (line)[x_]; \
    } while (0)

/* dst (cols x rows) = the transpose of src (rows x cols), int16, in 8 x 8 blocks (cache-friendly). */
static void transpose16(const int16_t *restrict src, int16_t *restrict dst, Py_ssize_t rows, Py_ssize_t cols) {
    Py_ssize_t i = 0;
#ifdef __SSE2__
    for (; i + 8 <= rows; i += 8) {
        Py_ssize_t j = 0;
        for (; j + 8 <= cols; j += 8) {
            __m128i r[8], a[8], b[8];
            for (int k = 0; k < 8; k++) r[k] = _mm_loadu_si128((const __m128i *)(src + (i + k) * cols + j));
            for (int k = 0; k < 4; k++) {
                a[2 * k] = _mm_unpacklo_epi16(r[2 * k], r[2 * k + 1]);
                a[2 * k + 1] = _mm_unpackhi_epi16(r[2 * k], r[2 * k + 1]);
            }
            for (int k = 0; k < 2; k++) {
                b[4 * k] = _mm_unpacklo_epi32(a[4 * k], a[4 * k + 2]);
                b[4 * k + 1] = _mm_unpackhi_epi32(a[4 * k], a[4 * k + 2]);
                b[4 * k + 2] = _mm_unpacklo_epi32(a[4 * k + 1], a[4 * k + 3]);
                b[4 * k + 3] = _mm_unpackhi_epi32(a[4 * k + 1], a[4 * k + 3]);
            }
            for (int k = 0; k < 4; k++) {
                _mm_storeu_si128((__m128i *)(dst + (j + 2 * k) * rows + i), _mm_unpacklo_epi64(b[k], b[k + 4]));
                _mm_storeu_si128((__m128i *)(dst + (j + 2 * k + 1) * rows + i), _mm_unpackhi_epi64(b[k], b[k + 4]));
            }
        }
        for (; j < cols; j++)
            for (Py_ssize_t k = 0; k < 8; k++) dst[j * rows + i + k] = src[(i + k) * cols + j];
    }
#endif
    for (; i < rows; i++)
        for (Py_ssize_t j = 0; j < cols; j++) dst[j * rows + i] = src[i * cols + j];
}

/* dst (cols x rows) = the transpose of src (rows x cols), bytes, in 16 x 16 tiles. */
static void transpose8(const uint8_t *restrict src, uint8_t *restrict dst, Py_ssize_t rows, Py_ssize_t cols) {
    for (Py_ssize_t i0 = 0; i0 < rows; i0 += 16)
        for (Py_ssize_t j0 = 0; j0 < cols; j0 += 16) {
            const Py_ssize_t i1 = i0 + 16 < rows ? i0 + 16 : rows, j1 = j0 + 16 < cols ? j0 + 16 : cols;
            for (Py_ssize_t j = j0; j < j1; j++)
                for (Py_ssize_t i = i0; i < i1; i++) dst[j * rows + i] = src[i * cols + j];
        }
}

/* The two passes. Vertical: each output row i is a weighted sum of K source rows, rounded to
 * FRACTION_BITS (row_mid, out_h x width), then transposed (mid, width x out_h) so that the horizontal
 * pass is again a weighted sum of K contiguous rows, rounded to uint8. Products are int16 x int16 ->
 * int32 (weights <= 1 << 14, intermediate < 1 << 15). */
MULTIVERSION
static void area_passes(const uint8_t *restrict pixels, Py_ssize_t width, const int32_t *restrict rows,
                        const int32_t *restrict rweights, Py_ssize_t kr, const int32_t *restrict cols,
                        const int32_t *restrict cweights, Py_ssize_t kc, uint8_t *restrict dst, Py_ssize_t out_h,
                        Py_ssize_t out_w, int16_t *restrict row_mid, int16_t *restrict mid, int32_t *restrict acc,
                        int16_t *restrict out_t, int16_t *restrict out16) {
    for (Py_ssize_t i = 0; i < out_h; i++) {
        int first = 1;
        for (Py_ssize_t k = 0; k < kr; k++) {
            const int16_t w = (int16_t)rweights[k * out_h + i];
            if (w == 0) continue;
            const uint8_t *restrict line = pixels + (Py_ssize_t)rows[k * out_h + i] * width;
            TAP_LOOP(acc, line, w, width, first);
            first = 0;
        }
        int16_t *restrict m = row_mid + i * width;
        for (Py_ssize_t x = 0; x < width; x++) m[x] = (int16_t)((acc[x] + (1 << (SHIFT1 - 1))) >> SHIFT1);
    }
    transpose16(row_mid, mid, out_h, width);
    for (Py_ssize_t j = 0; j < out_w; j++) {
        int first = 1;
        for (Py_ssize_t k = 0; k < kc; k++) {
            const int16_t w = (int16_t)cweights[k * out_w + j];
            if (w == 0) continue;
            const int16_t *restrict line = mid + (Py_ssize_t)cols[k * out_w + j] * out_h;
            TAP_LOOP(acc, line, w, out_h, first);
            first = 0;
        }
        int16_t *restrict column = out_t + j * out_h; /* the output, transposed */
        for (Py_ssize_t i = 0; i < out_h; i++) {
            const int32_t v = (acc[i] + (1 << (SHIFT2 - 1))) >> SHIFT2;
            column[i] = (int16_t)(v > 255 ? 255 : v);
        }
    }
    transpose16(out_t, out16, out_w, out_h);
    for (Py_ssize_t i = 0; i < out_h * out_w; i++) dst[i] = (uint8_t)out16[i];
}

/* area_u8(src, height, width, row_index, row_weight, row_taps, col_index, col_weight, col_taps, out, out_h, out_w)
 * src: height*width uint8; row_*: (row_taps, out_h) int32; col_*: (col_taps, out_w) int32;
 * out: out_h*out_w uint8, written. Indices and weights are checked. */
static PyObject *area_u8(PyObject *self, PyObject *args) {
    PyObject *o_src, *o_ri, *o_rw, *o_ci, *o_cw, *o_out;
    Py_ssize_t height, width, kr, kc, out_h, out_w;
    if (!PyArg_ParseTuple(args, "OnnOOnOOnOnn", &o_src, &height, &width, &o_ri, &o_rw, &kr, &o_ci, &o_cw, &kc,
                          &o_out, &out_h, &out_w))
        return NULL;
    if (height <= 0 || width <= 0 || kr <= 0 || kc <= 0 || out_h <= 0 || out_w <= 0) {
        PyErr_SetString(PyExc_ValueError, "area_u8: sizes must be positive");
        return NULL;
    }
    Py_buffer views[6];
    PyObject *objects[6] = {o_src, o_ri, o_rw, o_ci, o_cw, o_out};
    const Py_ssize_t sizes[6] = {height * width, kr * out_h * 4, kr * out_h * 4, kc * out_w * 4, kc * out_w * 4,
                                 out_h * out_w};
    const char *names[6] = {"source", "row index", "row weights", "column index", "column weights", "output"};
    int got = 0;
    PyObject *result = NULL;
    for (; got < 6; got++)
        if (get_buffer(objects[got], &views[got], got == 5, sizes[got], names[got]) < 0) goto done;
    const int32_t *rows = views[1].buf, *rweights = views[2].buf, *cols = views[3].buf, *cweights = views[4].buf;
    for (Py_ssize_t i = 0; i < kr * out_h; i++)
        if (rows[i] < 0 || rows[i] >= height || rweights[i] < 0 || rweights[i] > (1 << WEIGHT_BITS)) {
            PyErr_SetString(PyExc_ValueError, "area_u8: row index or weight out of range");
            goto done;
        }
    for (Py_ssize_t i = 0; i < kc * out_w; i++)
        if (cols[i] < 0 || cols[i] >= width || cweights[i] < 0 || cweights[i] > (1 << WEIGHT_BITS)) {
            PyErr_SetString(PyExc_ValueError, "area_u8: column index or weight out of range");
            goto done;
        }
    const size_t cells = (size_t)out_h * (size_t)width + (size_t)(width > out_h ? width : out_h);
    int16_t *row_mid = PyMem_RawMalloc(cells * sizeof(int16_t));
    int16_t *mid = PyMem_RawMalloc(cells * sizeof(int16_t));
    int32_t *acc = PyMem_RawMalloc((size_t)(width > out_h ? width : out_h) * sizeof(int32_t));
    int16_t *out_t = PyMem_RawMalloc(2 * (size_t)out_h * (size_t)out_w * sizeof(int16_t));
    if (row_mid == NULL || mid == NULL || acc == NULL || out_t == NULL) {
        PyMem_RawFree(out_t);
        PyMem_RawFree(row_mid);
        PyMem_RawFree(mid);
        PyMem_RawFree(acc);
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS;
    area_passes(views[0].buf, width, rows, rweights, kr, cols, cweights, kc, views[5].buf, out_h, out_w, row_mid, mid,
                acc, out_t, out_t + out_h * out_w);
    Py_END_ALLOW_THREADS;
    PyMem_RawFree(out_t);
    PyMem_RawFree(row_mid);
    PyMem_RawFree(mid);
    PyMem_RawFree(acc);
    Py_INCREF(Py_None);
    result = Py_None;
done:
    while (got > 0) PyBuffer_Release(&views[--got]);
    return result;
}

/* hist_u8(src, out): out (256 int64) = the counts of each byte value of src (any contiguous buffer). */
static PyObject *hist_u8(PyObject *self, PyObject *args) {
    PyObject *o_src, *o_out;
    if (!PyArg_ParseTuple(args, "OO", &o_src, &o_out)) return NULL;
    Py_buffer src, out;
    if (PyObject_GetBuffer(o_src, &src, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    if (get_buffer(o_out, &out, 1, 256 * 8, "histogram") < 0) {
        PyBuffer_Release(&src);
        return NULL;
    }
    const uint8_t *p = src.buf;
    const Py_ssize_t n = src.len;
    int64_t *h = out.buf;
    Py_BEGIN_ALLOW_THREADS;
    /* four partial histograms: consecutive equal pixels (common) do not wait on one counter */
    uint32_t part[4][256];
    memset(part, 0, sizeof(part));
    Py_ssize_t i = 0;
    int64_t total[256];
    memset(total, 0, sizeof(total));
    while (i < n) {
        Py_ssize_t stop = n - i > (1 << 30) ? i + (1 << 30) : n; /* no uint32 overflow */
        for (; i + 4 <= stop; i += 4) {
            part[0][p[i]]++;
            part[1][p[i + 1]]++;
            part[2][p[i + 2]]++;
            part[3][p[i + 3]]++;
        }
        for (; i < stop; i++) part[0][p[i]]++;
        for (int v = 0; v < 256; v++) {
            total[v] += (int64_t)part[0][v] + part[1][v] + part[2][v] + part[3][v];
            part[0][v] = part[1][v] = part[2][v] = part[3][v] = 0;
        }
    }
    memcpy(h, total, sizeof(total));
    Py_END_ALLOW_THREADS;
    PyBuffer_Release(&src);
    PyBuffer_Release(&out);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"area_u8", area_u8, METH_VARARGS, "Fixed-point exact-area resize of a uint8 image (see resize.py)."},
    {"hist_u8", hist_u8, METH_VARARGS, "256-bin histogram of a buffer of bytes, into an int64 buffer."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernel", "The compiled kernel of xraycache's resize.",
                                    -1, methods};

PyMODINIT_FUNC PyInit__kernel(void) { return PyModule_Create(&module); }
