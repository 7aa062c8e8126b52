/* The compiled kernel of the build's hot path: the exact-area resize of 8-bit images, and the histogram.
 *
 * Why C: the NumPy area resize makes K gathers and multiply-adds, each a full pass over memory with
 * temporaries, a large share of the JPEG decode per image; one loop over the pixels costs a fraction of
 * that (``python -m benchmarks.hotpath --sections per_image``, stage ``resize``).
 * The arithmetic is the fixed-point integer arithmetic of xraycache/imaging/resize.py, step for step,
 * so the two give the same bytes on every image: weights are integers summing to 1 << WEIGHT_BITS per
 * output cell (computed once, in Python, and passed in), the vertical pass rounds to 7 fractional bits
 * (int16), the horizontal pass rounds to uint8. Integer sums do not depend on the order of the adds, so
 * the AVX2 passes (two taps per multiply-add, chosen at run time where the CPU has AVX2) and the plain
 * loops give the same bytes too.
 *
 * The source is any contiguous buffer, or a Pillow image's own memory through the Arrow C data interface
 * (``Image.__arrow_c_array__``): then the decoded image is read in place, without the copy that
 * ``numpy.asarray(image)`` makes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define HAVE_AVX2_PASSES 1
#endif

#define WEIGHT_BITS 14
#define FRACTION_BITS 7 /* of the intermediate, after the vertical pass: 255 << 7 fits int16 */
#define SHIFT1 (WEIGHT_BITS - FRACTION_BITS)
#define MAX_SIDE ((Py_ssize_t)1 << 30) /* any size argument: products of two stay far from overflow */
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

/* The Arrow C data interface structs (https://arrow.apache.org/docs/format/CDataInterface.html), a
 * stable ABI: what Pillow's ``__arrow_c_array__`` hands out as two capsules. */
struct ArrowSchema {
    const char *format;
    const char *name;
    const char *metadata;
    int64_t flags;
    int64_t n_children;
    struct ArrowSchema **children;
    struct ArrowSchema *dictionary;
    void (*release)(struct ArrowSchema *);
    void *private_data;
};

struct ArrowArray {
    int64_t length;
    int64_t null_count;
    int64_t offset;
    int64_t n_buffers;
    int64_t n_children;
    const void **buffers;
    struct ArrowArray **children;
    struct ArrowArray *dictionary;
    void (*release)(struct ArrowArray *);
    void *private_data;
};

/* The source pixels: a (schema, array) pair of Arrow capsules holding nbytes uint8 values without nulls
 * (read in place; the capsules keep the memory alive), or a contiguous buffer (then *view is filled and
 * must be released). Returns NULL with an exception set when neither fits. */
static const uint8_t *get_source(PyObject *obj, Py_buffer *view, int *has_view, Py_ssize_t nbytes) {
    *has_view = 0;
    if (PyTuple_Check(obj) && PyTuple_GET_SIZE(obj) == 2) {
        struct ArrowSchema *schema = PyCapsule_GetPointer(PyTuple_GET_ITEM(obj, 0), "arrow_schema");
        if (schema == NULL) return NULL;
        struct ArrowArray *array = PyCapsule_GetPointer(PyTuple_GET_ITEM(obj, 1), "arrow_array");
        if (array == NULL) return NULL;
        if (schema->release == NULL || array->release == NULL || schema->format == NULL ||
            strcmp(schema->format, "C") != 0 || schema->n_children != 0 || schema->dictionary != NULL) {
            PyErr_SetString(PyExc_ValueError, "source: not a live Arrow array of uint8");
            return NULL;
        }
        if (array->n_buffers != 2 || array->n_children != 0 || array->null_count != 0 || array->offset < 0 ||
            array->length != nbytes || array->buffers == NULL || array->buffers[1] == NULL) {
            PyErr_Format(PyExc_ValueError, "source: an Arrow array of %lld values, expected %zd without nulls",
                         (long long)array->length, nbytes);
            return NULL;
        }
        return (const uint8_t *)array->buffers[1] + array->offset;
    }
    if (get_buffer(obj, view, 0, nbytes, "source") < 0) return NULL;
    *has_view = 1;
    return view->buf;
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
/* AVX2 where the CPU has it, SSE2 otherwise (chosen at load time); integer results are the same. */
#define MULTIVERSION __attribute__((target_clones("avx2", "default")))
#else
#define MULTIVERSION
#endif

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

#ifdef HAVE_AVX2_PASSES
/* The two passes with AVX2: 16 values at a time, two taps per _mm256_madd_epi16 (w0 * a + w1 * b in
 * int32; both products and their sum stay below 1 << 30), accumulators in registers. unpacklo/hi
 * interleave the two taps' values within each 128-bit lane and packs_epi32 undoes that order, so each
 * output lands where the plain loop puts it. The ends of rows that do not fill 16 lanes take the plain
 * loop's arithmetic. */
#define MAX_PAIRS 32 /* taps per output cell the AVX2 passes take (64); more go through the plain loops */

/* w0 and w1 side by side in each int32 lane: the multiplier of _mm256_madd_epi16 for one pair of taps. */
static inline __attribute__((target("avx2"))) __m256i pair_weights(int32_t w0, int32_t w1) {
    return _mm256_set1_epi32((int32_t)(((uint32_t)w1 << 16) | (uint16_t)w0));
}

/* line_a[p], line_b[p], weight[p]: the lines (base + index * stride) and weights of taps 2p and 2p + 1 of
 * output cell `cell` of a (taps x n) table; an odd last tap is paired with itself at weight 0. */
#define PAIR_TAPS(pairs, line_a, line_b, weight, base, stride, index, weights, taps, n, cell)                \
    do {                                                                                                   \
        (pairs) = 0;                                                                                       \
        for (Py_ssize_t k_ = 0; k_ < (taps); k_ += 2, (pairs)++) {                                         \
            const int last_ = k_ + 1 >= (taps);                                                            \
            (line_a)[pairs] = (base) + (Py_ssize_t)(index)[k_ * (n) + (cell)] * (stride);                  \
            (line_b)[pairs] =                                                                              \
                last_ ? (line_a)[pairs] : (base) + (Py_ssize_t)(index)[(k_ + 1) * (n) + (cell)] * (stride); \
            (weight)[pairs] =                                                                              \
                pair_weights((weights)[k_ * (n) + (cell)], last_ ? 0 : (weights)[(k_ + 1) * (n) + (cell)]); \
        }                                                                                                  \
    } while (0)

/* lo, hi += the pair's weights times its two rows of 16 int16 values (lo: lanes 0-3 and 8-11, hi: 4-7, 12-15). */
#define MADD_PAIR(lo, hi, va, vb, w)                                                      \
    do {                                                                                  \
        (lo) = _mm256_add_epi32((lo), _mm256_madd_epi16(_mm256_unpacklo_epi16((va), (vb)), (w))); \
        (hi) = _mm256_add_epi32((hi), _mm256_madd_epi16(_mm256_unpackhi_epi16((va), (vb)), (w))); \
    } while (0)

/* Output row i of the vertical pass into m (width int16 values): 16 at a time, the ends by the plain loop. */
static inline __attribute__((target("avx2"))) void vertical_row_avx2(const uint8_t *restrict pixels,
                                                                     Py_ssize_t width, const int32_t *restrict rows,
                                                                     const int32_t *restrict rweights, Py_ssize_t kr,
                                                                     Py_ssize_t out_h, Py_ssize_t i,
                                                                     int16_t *restrict m) {
    const __m256i round = _mm256_set1_epi32(1 << (SHIFT1 - 1));
    const uint8_t *line_a[MAX_PAIRS], *line_b[MAX_PAIRS];
    __m256i weight[MAX_PAIRS];
    int pairs;
    PAIR_TAPS(pairs, line_a, line_b, weight, pixels, width, rows, rweights, kr, out_h, i);
    Py_ssize_t x = 0;
    for (; x + 16 <= width; x += 16) {
        __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
        for (int p = 0; p < pairs; p++) {
            const __m256i va = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(line_a[p] + x)));
            const __m256i vb = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(line_b[p] + x)));
            MADD_PAIR(lo, hi, va, vb, weight[p]);
        }
        lo = _mm256_srai_epi32(_mm256_add_epi32(lo, round), SHIFT1);
        hi = _mm256_srai_epi32(_mm256_add_epi32(hi, round), SHIFT1);
        _mm256_storeu_si256((__m256i *)(m + x), _mm256_packs_epi32(lo, hi));
    }
    for (; x < width; x++) {
        int32_t acc = 0;
        for (Py_ssize_t k = 0; k < kr; k++)
            acc += rweights[k * out_h + i] * pixels[(Py_ssize_t)rows[k * out_h + i] * width + x];
        m[x] = (int16_t)((acc + (1 << (SHIFT1 - 1))) >> SHIFT1);
    }
}

__attribute__((target("avx2"))) static void vertical_avx2(const uint8_t *restrict pixels, Py_ssize_t width,
                                                          const int32_t *restrict rows,
                                                          const int32_t *restrict rweights, Py_ssize_t kr,
                                                          Py_ssize_t out_h, int16_t *restrict row_mid) {
    for (Py_ssize_t i = 0; i < out_h; i++) vertical_row_avx2(pixels, width, rows, rweights, kr, out_h, i, row_mid + i * width);
}

#define FUSED_TAPS 16 /* the fused passes take output columns of at most this many taps */

/* Both passes fused, for output columns of <= 16 contiguous taps (every resize by up to ~15x): each output
 * row's vertical sums go into one row of int16 (in L1), and each output pixel of it is one 16-wide
 * multiply-add of that row against its column's weights, eight pixels reduced together; no intermediate
 * image, no transposes. Returns 0 (nothing written) when a column's taps are not contiguous, or on no memory. */
__attribute__((target("avx2"))) static int fused_avx2(const uint8_t *restrict pixels, Py_ssize_t width,
                                                      const int32_t *restrict rows, const int32_t *restrict rweights,
                                                      Py_ssize_t kr, const int32_t *restrict cols,
                                                      const int32_t *restrict cweights, Py_ssize_t kc,
                                                      uint8_t *restrict dst, Py_ssize_t out_h, Py_ssize_t out_w) {
    if (kc > FUSED_TAPS) return 0;
    for (Py_ssize_t j = 0; j < out_w; j++)
        for (Py_ssize_t k = 1; k < kc; k++)
            if (cweights[k * out_w + j] != 0 && cols[k * out_w + j] != cols[j] + k) return 0;
    int16_t *line = PyMem_RawCalloc((size_t)width + FUSED_TAPS, sizeof(int16_t)); /* the tail stays 0 */
    int16_t *table = PyMem_RawCalloc((size_t)out_w * FUSED_TAPS, sizeof(int16_t));
    if (line == NULL || table == NULL) {
        PyMem_RawFree(line);
        PyMem_RawFree(table);
        return 0;
    }
    for (Py_ssize_t j = 0; j < out_w; j++)
        for (Py_ssize_t k = 0; k < kc; k++) table[j * FUSED_TAPS + k] = (int16_t)cweights[k * out_w + j];
    const __m256i round = _mm256_set1_epi32(1 << (SHIFT2 - 1)), top = _mm256_set1_epi32(255);
    for (Py_ssize_t i = 0; i < out_h; i++) {
        vertical_row_avx2(pixels, width, rows, rweights, kr, out_h, i, line);
        uint8_t *restrict out = dst + i * out_w;
        Py_ssize_t j = 0;
        for (; j + 8 <= out_w; j += 8) {
            __m256i p[8];
            for (int q = 0; q < 8; q++)
                p[q] = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(line + cols[j + q])),
                                         _mm256_loadu_si256((const __m256i *)(table + (j + q) * FUSED_TAPS)));
            /* eight sums of eight int32 each, in order: hadd within lanes, then the two lanes added */
            const __m256i h0123 = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
            const __m256i h4567 = _mm256_hadd_epi32(_mm256_hadd_epi32(p[4], p[5]), _mm256_hadd_epi32(p[6], p[7]));
            __m256i sum = _mm256_add_epi32(_mm256_permute2x128_si256(h0123, h4567, 0x20),
                                           _mm256_permute2x128_si256(h0123, h4567, 0x31));
            sum = _mm256_min_epi32(_mm256_srai_epi32(_mm256_add_epi32(sum, round), SHIFT2), top);
            const __m128i words = _mm_packs_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
            _mm_storel_epi64((__m128i *)(out + j), _mm_packus_epi16(words, words));
        }
        for (; j < out_w; j++) {
            int32_t acc = 0;
            for (Py_ssize_t k = 0; k < kc; k++) acc += table[j * FUSED_TAPS + k] * line[cols[j] + k];
            const int32_t v = (acc + (1 << (SHIFT2 - 1))) >> SHIFT2;
            out[j] = (uint8_t)(v > 255 ? 255 : v);
        }
    }
    PyMem_RawFree(line);
    PyMem_RawFree(table);
    return 1;
}

/* mid is width x out_h (the vertical result, transposed); out_t (out_w x out_h) gets the output, transposed. */
__attribute__((target("avx2"))) static void horizontal_avx2(const int16_t *restrict mid, Py_ssize_t out_h,
                                                            const int32_t *restrict cols,
                                                            const int32_t *restrict cweights, Py_ssize_t kc,
                                                            Py_ssize_t out_w, int16_t *restrict out_t) {
    const __m256i round = _mm256_set1_epi32(1 << (SHIFT2 - 1)), top = _mm256_set1_epi32(255);
    const int16_t *line_a[MAX_PAIRS], *line_b[MAX_PAIRS];
    __m256i weight[MAX_PAIRS];
    for (Py_ssize_t j = 0; j < out_w; j++) {
        int pairs;
        PAIR_TAPS(pairs, line_a, line_b, weight, mid, out_h, cols, cweights, kc, out_w, j);
        int16_t *restrict column = out_t + j * out_h;
        Py_ssize_t y = 0;
        for (; y + 16 <= out_h; y += 16) {
            __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
            for (int p = 0; p < pairs; p++) {
                const __m256i va = _mm256_loadu_si256((const __m256i *)(line_a[p] + y));
                const __m256i vb = _mm256_loadu_si256((const __m256i *)(line_b[p] + y));
                MADD_PAIR(lo, hi, va, vb, weight[p]);
            }
            lo = _mm256_min_epi32(_mm256_srai_epi32(_mm256_add_epi32(lo, round), SHIFT2), top);
            hi = _mm256_min_epi32(_mm256_srai_epi32(_mm256_add_epi32(hi, round), SHIFT2), top);
            _mm256_storeu_si256((__m256i *)(column + y), _mm256_packs_epi32(lo, hi));
        }
        for (; y < out_h; y++) {
            int32_t acc = 0;
            for (Py_ssize_t k = 0; k < kc; k++)
                acc += cweights[k * out_w + j] * mid[(Py_ssize_t)cols[k * out_w + j] * out_h + y];
            const int32_t v = (acc + (1 << (SHIFT2 - 1))) >> SHIFT2;
            column[y] = (int16_t)(v > 255 ? 255 : v);
        }
    }
}

static int avx2_enabled = -1; /* -1: not yet asked; set_simd(False) turns the AVX2 passes off (tests) */

static int use_avx2(void) {
    if (avx2_enabled < 0) {
        __builtin_cpu_init();
        avx2_enabled = __builtin_cpu_supports("avx2") ? 1 : 0;
    }
    return avx2_enabled;
}
#else
static int use_avx2(void) { return 0; }
#endif

/* Both passes in two steps (the fused ones did not apply), with AVX2 where available, else the plain loops. */
static void area_resize_u8(const uint8_t *restrict pixels, Py_ssize_t width, const int32_t *restrict rows,
                           const int32_t *restrict rweights, Py_ssize_t kr, const int32_t *restrict cols,
                           const int32_t *restrict cweights, Py_ssize_t kc, uint8_t *restrict dst, Py_ssize_t out_h,
                           Py_ssize_t out_w, int16_t *restrict row_mid, int16_t *restrict mid, int32_t *restrict acc,
                           int16_t *restrict out_t, int16_t *restrict out16) {
#ifdef HAVE_AVX2_PASSES
    if (use_avx2() && kr <= 2 * MAX_PAIRS && kc <= 2 * MAX_PAIRS) {
        vertical_avx2(pixels, width, rows, rweights, kr, out_h, row_mid);
        transpose16(row_mid, mid, out_h, width);
        horizontal_avx2(mid, out_h, cols, cweights, kc, out_w, out_t);
        transpose16(out_t, out16, out_w, out_h);
        for (Py_ssize_t i = 0; i < out_h * out_w; i++) dst[i] = (uint8_t)out16[i];
        return;
    }
#endif
    area_passes(pixels, width, rows, rweights, kr, cols, cweights, kc, dst, out_h, out_w, row_mid, mid, acc, out_t,
                out16);
}

/* A resize table (k taps for each of n cells, tap-major): indices in [0, n_in), weights in [0, 1 << 14]
 * summing to exactly 1 << 14 per cell (what keeps every sum within int16 and int32). ValueError if not. */
static int check_table(const int32_t *index, const int32_t *weight, Py_ssize_t k, Py_ssize_t n, Py_ssize_t n_in) {
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t sum = 0;
        for (Py_ssize_t j = 0; j < k; j++) {
            const int32_t at = index[j * n + i], w = weight[j * n + i];
            if (at < 0 || at >= n_in || w < 0 || w > (1 << WEIGHT_BITS)) {
                PyErr_SetString(PyExc_ValueError, "area_u8: table index or weight out of range");
                return -1;
            }
            sum += w;
        }
        if (sum != (1 << WEIGHT_BITS)) {
            PyErr_SetString(PyExc_ValueError, "area_u8: a cell's weights do not sum to 1 << 14");
            return -1;
        }
    }
    return 0;
}

/* area_u8(src, height, width, row_index, row_weight, row_taps, col_index, col_weight, col_taps, out, out_h, out_w)
 * src: height*width uint8 (a buffer, or Arrow (schema, array) capsules: see get_source); row_*: (row_taps, out_h) int32; col_*: (col_taps, out_w) int32;
 * out: out_h*out_w uint8, written. Indices and weights are checked. */
static PyObject *area_u8(PyObject *self, PyObject *args) {
    PyObject *o_src, *o_ri, *o_rw, *o_ci, *o_cw, *o_out;
    Py_ssize_t height, width, kr, kc, out_h, out_w;
    if (!PyArg_ParseTuple(args, "OnnOOnOOnOnn", &o_src, &height, &width, &o_ri, &o_rw, &kr, &o_ci, &o_cw, &kc,
                          &o_out, &out_h, &out_w))
        return NULL;
    if (height <= 0 || width <= 0 || kr <= 0 || kc <= 0 || out_h <= 0 || out_w <= 0 || height > MAX_SIDE ||
        width > MAX_SIDE || kr > MAX_SIDE || kc > MAX_SIDE || out_h > MAX_SIDE || out_w > MAX_SIDE) {
        PyErr_SetString(PyExc_ValueError, "area_u8: sizes must be positive and below 2**30");
        return NULL;
    }
    Py_buffer source_view, views[6];
    int has_source_view = 0;
    PyObject *objects[6] = {NULL, o_ri, o_rw, o_ci, o_cw, o_out};
    const Py_ssize_t sizes[6] = {0, kr * out_h * 4, kr * out_h * 4, kc * out_w * 4, kc * out_w * 4, out_h * out_w};
    const char *names[6] = {"", "row index", "row weights", "column index", "column weights", "output"};
    int got = 1, fused = 0;
    PyObject *result = NULL;
    const uint8_t *source = get_source(o_src, &source_view, &has_source_view, height * width);
    if (source == NULL) return NULL;
    for (; got < 6; got++)
        if (get_buffer(objects[got], &views[got], got == 5, sizes[got], names[got]) < 0) goto done;
    const int32_t *rows = views[1].buf, *rweights = views[2].buf, *cols = views[3].buf, *cweights = views[4].buf;
    if (check_table(rows, rweights, kr, out_h, height) < 0 || check_table(cols, cweights, kc, out_w, width) < 0)
        goto done;
#ifdef HAVE_AVX2_PASSES
    Py_BEGIN_ALLOW_THREADS;
    fused = use_avx2() && kr <= 2 * MAX_PAIRS &&
            fused_avx2(source, width, rows, rweights, kr, cols, cweights, kc, views[5].buf, out_h, out_w);
    Py_END_ALLOW_THREADS;
#endif
    if (fused) {
        Py_INCREF(Py_None);
        result = Py_None;
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
    area_resize_u8(source, width, rows, rweights, kr, cols, cweights, kc, views[5].buf, out_h, out_w, row_mid, mid,
                   acc, out_t, out_t + out_h * out_w);
    Py_END_ALLOW_THREADS;
    PyMem_RawFree(out_t);
    PyMem_RawFree(row_mid);
    PyMem_RawFree(mid);
    PyMem_RawFree(acc);
    Py_INCREF(Py_None);
    result = Py_None;
done:
    while (got > 1) PyBuffer_Release(&views[--got]);
    if (has_source_view) PyBuffer_Release(&source_view);
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

/* descriptor_u8(src, height, width, out): out (32 x 32 uint8) = the rounded mean of each of the 32 x 32
 * equal blocks of src (height and width multiples of 32), as core/pixels.py's pixel_descriptor. */
static PyObject *descriptor_u8(PyObject *self, PyObject *args) {
    PyObject *o_src, *o_out;
    Py_ssize_t height, width;
    if (!PyArg_ParseTuple(args, "OnnO", &o_src, &height, &width, &o_out)) return NULL;
    if (height <= 0 || width <= 0 || height > MAX_SIDE || width > MAX_SIDE || height % 32 || width % 32) {
        PyErr_SetString(PyExc_ValueError, "descriptor_u8: sides must be positive multiples of 32, below 2**30");
        return NULL;
    }
    Py_buffer src, out;
    if (get_buffer(o_src, &src, 0, height * width, "source") < 0) return NULL;
    if (get_buffer(o_out, &out, 1, 32 * 32, "descriptor") < 0) {
        PyBuffer_Release(&src);
        return NULL;
    }
    const uint8_t *p = src.buf;
    uint8_t *d = out.buf;
    const Py_ssize_t kh = height / 32, kw = width / 32;
    const uint64_t count = (uint64_t)kh * (uint64_t)kw;
    uint32_t *column = PyMem_RawMalloc((size_t)width * sizeof(uint32_t));
    if (column == NULL) {
        PyBuffer_Release(&src);
        PyBuffer_Release(&out);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS;
    for (int by = 0; by < 32; by++) {
        /* column sums over the block's rows (a vectorised add per row), then kw of them per block */
        memset(column, 0, (size_t)width * sizeof(uint32_t));
        for (Py_ssize_t y = by * kh; y < (by + 1) * kh; y++) {
            const uint8_t *row = p + y * width;
            for (Py_ssize_t x = 0; x < width; x++) column[x] += row[x];
        }
        for (int bx = 0; bx < 32; bx++) {
            uint64_t sum = 0;
            for (Py_ssize_t x = bx * kw; x < (bx + 1) * kw; x++) sum += column[x];
            d[by * 32 + bx] = (uint8_t)((sum + count / 2) / count);
        }
    }
    Py_END_ALLOW_THREADS;
    PyMem_RawFree(column);
    PyBuffer_Release(&src);
    PyBuffer_Release(&out);
    Py_RETURN_NONE;
}

/* set_simd(enabled) -> the vector level now used, "AVX2" or "none": the tests run both paths. */
static PyObject *set_simd(PyObject *self, PyObject *args) {
    int enabled;
    if (!PyArg_ParseTuple(args, "p", &enabled)) return NULL;
#ifdef HAVE_AVX2_PASSES
    avx2_enabled = -1;
    if (!enabled || !use_avx2()) avx2_enabled = 0;
#endif
    return PyUnicode_FromString(use_avx2() ? "AVX2" : "none");
}

static PyObject *simd(PyObject *self, PyObject *unused) { return PyUnicode_FromString(use_avx2() ? "AVX2" : "none"); }

/* fixed_taps(n_in, n_out, start, stop) -> (k, index bytes, weight bytes): resize.py's _fixed_taps, the
 * row or column table of one resize, (k, n_out) int32 each, C order. The same float64 operations in the
 * same order as the NumPy code (setup.py compiles this file with -ffp-contract=off, so no multiply-add is
 * fused), so the same integers: the tests compare the two on many shapes and crops. Computed per image
 * (radiographs come in hundreds of sizes, so a cache of tables rarely hits). */
static PyObject *fixed_taps(PyObject *self, PyObject *args) {
    Py_ssize_t n_in, n_out;
    double start, stop;
    if (!PyArg_ParseTuple(args, "nndd", &n_in, &n_out, &start, &stop)) return NULL;
    if (n_in <= 0 || n_out <= 0 || n_in > MAX_SIDE || n_out > (1 << 24) || !(stop > start) || !isfinite(start) || !isfinite(stop) ||
        start < 0 || stop > (double)n_in + 1.0) {
        PyErr_SetString(PyExc_ValueError, "fixed_taps: need 0 <= start < stop <= n_in + 1, n_in < 2**30, 1 <= n_out <= 2**24");
        return NULL;
    }
    double *edges = PyMem_RawMalloc((size_t)(n_out + 1) * sizeof(double));
    Py_ssize_t *first = PyMem_RawMalloc((size_t)n_out * sizeof(Py_ssize_t));
    if (edges == NULL || first == NULL) {
        PyMem_RawFree(edges);
        PyMem_RawFree(first);
        return PyErr_NoMemory();
    }
    const double step = (stop - start) / (double)n_out;
    for (Py_ssize_t i = 0; i <= n_out; i++) edges[i] = start + (double)i * step;
    Py_ssize_t k = 1;
    for (Py_ssize_t i = 0; i < n_out; i++) {
        first[i] = (Py_ssize_t)floor(edges[i]);
        const Py_ssize_t span = (Py_ssize_t)(ceil(edges[i + 1]) - (double)first[i]);
        if (span > k) k = span;
    }
    PyObject *o_index = PyBytes_FromStringAndSize(NULL, k * n_out * 4);
    PyObject *o_weight = PyBytes_FromStringAndSize(NULL, k * n_out * 4);
    double *running = PyMem_RawMalloc((size_t)k * sizeof(double));
    if (o_index == NULL || o_weight == NULL || running == NULL) {
        Py_XDECREF(o_index);
        Py_XDECREF(o_weight);
        PyMem_RawFree(running);
        PyMem_RawFree(edges);
        PyMem_RawFree(first);
        return running == NULL ? PyErr_NoMemory() : NULL;
    }
    int32_t *index = (int32_t *)PyBytes_AS_STRING(o_index), *weight = (int32_t *)PyBytes_AS_STRING(o_weight);
    for (Py_ssize_t i = 0; i < n_out; i++) {
        const double lo = edges[i], hi = edges[i + 1], width = hi - lo;
        double sum = 0.0;
        for (Py_ssize_t j = 0; j < k; j++) {
            const Py_ssize_t at = first[i] + j;
            const double a = (double)(at + 1) < hi ? (double)(at + 1) : hi;  /* np.minimum(index + 1, edge) */
            const double b = (double)at > lo ? (double)at : lo;              /* np.maximum(index, edge) */
            const double cover = a - b;
            sum += (cover > 0.0 ? cover : 0.0) / width; /* np.clip(cover, 0) / width, then np.cumsum */
            running[j] = sum;
        }
        const double total = running[k - 1];
        int32_t previous = 0;
        for (Py_ssize_t j = 0; j < k; j++) {
            const int32_t now = (int32_t)floor(running[j] / total * (double)(1 << WEIGHT_BITS) + 0.5);
            const Py_ssize_t at = first[i] + j;
            index[j * n_out + i] = (int32_t)(at < 0 ? 0 : at > n_in - 1 ? n_in - 1 : at);
            weight[j * n_out + i] = now - previous;
            previous = now;
        }
    }
    PyMem_RawFree(running);
    PyMem_RawFree(edges);
    PyMem_RawFree(first);
    return Py_BuildValue("nNN", k, o_index, o_weight);
}

static PyMethodDef methods[] = {
    {"fixed_taps", fixed_taps, METH_VARARGS, "The fixed-point table of one resize axis (resize.py _fixed_taps)."},
    {"descriptor_u8", descriptor_u8, METH_VARARGS, "32x32 block means of a uint8 image (core/pixels.py)."},
    {"set_simd", set_simd, METH_VARARGS, "Use the AVX2 passes where the CPU has them (True), or not (False)."},
    {"simd", simd, METH_NOARGS, "The vector level of the resize passes: AVX2 or none."},
    {"area_u8", area_u8, METH_VARARGS, "Fixed-point exact-area resize of a uint8 image (see resize.py)."},
    {"hist_u8", hist_u8, METH_VARARGS, "256-bin histogram of a buffer of bytes, into an int64 buffer."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernel", "The compiled kernel of xraycache's resize.",
                                    -1, methods};

PyMODINIT_FUNC PyInit__kernel(void) { return PyModule_Create(&module); }
