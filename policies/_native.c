/*
 * policies._native: the compiled fast path of the text-model featurisation of the guardrails.
 *
 * Each function computes exactly what a numpy reference in the package computes (the reference
 * stays the definition; tests/policies/test_native_equivalence.py checks both on thousands of
 * texts):
 *
 *   injection_terms, injection_dot, weighted_dot
 *       policies/builtin/injection_hashed.py (_all_buckets, _weighted_dot) and
 *       policies/builtin/injection_features.py (char_ngram_hashes): character 3-5-gram
 *       polynomial hashes of " " + low + " ", crc32 word 1-2-gram hashes, Fibonacci bucketing,
 *       then the (1 + ln tf) * idf, L2-normalised dot with a weight table.
 *   content_columns, content_blocks
 *       policies/builtin/content_features.py (block_columns) and
 *       policies/builtin/content_safety_model.py (_blocks): word 1-2-grams and char_wb 2-5-grams
 *       hashed with a polynomial hash modulo 2**64, and the per-block sums of the model table.
 *   hand_token_stats
 *       policies/builtin/injection_features.py (_token_stats): the hand features' counts.
 *   gcg_features
 *       policies/builtin/injection_features.py (gcg_features): the adversarial-suffix features.
 *   tree_sum
 *       policies/builtin/injection_features.py (BoostedStage.decision): the leaf values reached
 *       by every tree of the packed second stage, summed.
 *   blob_candidate
 *       policies/decoding/blobs.py (_QUICK): whether a text may hold a binary blob.
 *   has_run
 *       policies/builtin/normalize.py (_has_run): the decoders' byte-level pre-check.
 *
 * Sums are taken in index order (numpy's pairwise summation orders them differently): results
 * agree with the reference to float rounding (|diff| ~1e-15), buckets and columns bit for bit.
 * The GIL is released around the loops over large texts.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define NATIVE_VERSION 2

/* ------------------------------------------------------------------------------------------ */
/* helpers                                                                                    */

/* The code points of ``s`` with ``front`` and ``back`` spaces around them, in a new buffer. */
static uint32_t *ucs4_padded(PyObject *s, Py_ssize_t front, Py_ssize_t back, Py_ssize_t *out_n)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    uint32_t *cps = PyMem_Malloc(sizeof(uint32_t) * (size_t)(n + front + back + 1));
    if (cps == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < front; i++) cps[i] = 32;
    if (kind == PyUnicode_1BYTE_KIND) {
        const Py_UCS1 *d = data;
        for (Py_ssize_t i = 0; i < n; i++) cps[front + i] = d[i];
    } else if (kind == PyUnicode_2BYTE_KIND) {
        const Py_UCS2 *d = data;
        for (Py_ssize_t i = 0; i < n; i++) cps[front + i] = d[i];
    } else {
        const Py_UCS4 *d = data;
        for (Py_ssize_t i = 0; i < n; i++) cps[front + i] = d[i];
    }
    for (Py_ssize_t i = 0; i < back; i++) cps[front + n + i] = 32;
    *out_n = n + front + back;
    return cps;
}

static inline int is_az09(uint32_t c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
static inline int is_az(uint32_t c) { return c >= 'a' && c <= 'z'; }

/* The words of ``[a-z0-9]+(?:'[a-z]+)?`` in cps[0:n], as re.findall finds them (left to right,
 * greedy, no overlap): their starts and ends in ``starts`` / ``ends`` (room for n / 2 + 1 each).
 * The pattern is ASCII: every other code point ends a word. Returns the number of words. */
static Py_ssize_t find_words(const uint32_t *cps, Py_ssize_t n, Py_ssize_t *starts, Py_ssize_t *ends)
{
    Py_ssize_t count = 0, i = 0;
    while (i < n) {
        if (!is_az09(cps[i])) {
            i++;
            continue;
        }
        Py_ssize_t a = i;
        while (i < n && is_az09(cps[i])) i++;
        if (i + 1 < n && cps[i] == '\'' && is_az(cps[i + 1])) {
            i += 2;
            while (i < n && is_az(cps[i])) i++;
        }
        starts[count] = a;
        ends[count] = i;
        count++;
    }
    return count;
}

/* A C-contiguous buffer of exactly ``nbytes`` bytes (``what`` names it in the error). */
static int get_buffer(PyObject *obj, Py_buffer *view, Py_ssize_t nbytes, const char *what)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS) < 0) return -1;
    if (nbytes >= 0 && view->len != nbytes) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd bytes, got %zd", what, nbytes, view->len);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* prompt_injection: hashed model                                                              */

static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

/* zlib.crc32 of the ASCII word cps[a:b]. */
static uint32_t crc32_word(const uint32_t *cps, Py_ssize_t a, Py_ssize_t b)
{
    uint32_t c = 0xFFFFFFFFu;
    for (Py_ssize_t i = a; i < b; i++) c = crc_table[(c ^ cps[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

#define INJ_MULT 1000003ULL
#define FIB 0x9E3779B97F4A7C15ULL
#define WORD_TAG (1ULL << 40)
#define BIGRAM_MULT 0x100000001B3ULL
#define BIGRAM_TAG 7ULL

/* The buckets of _all_buckets(low, bits): character n-gram buckets (3-grams, 4-grams, 5-grams of
 * " " + low + " ") then word buckets (unigrams then bigrams). Returns the count of all buckets
 * (``*n_chars`` of them character buckets) in a new buffer ``*out``, or -1 (error set). */
static Py_ssize_t injection_buckets(PyObject *low, int bits, uint32_t **out, Py_ssize_t *n_chars)
{
    Py_ssize_t m;
    uint32_t *cps = ucs4_padded(low, 1, 1, &m);
    if (cps == NULL) return -1;
    Py_ssize_t n_low = m - 2;
    Py_ssize_t cap_words = n_low / 2 + 1;
    Py_ssize_t sizes[3] = {0, 0, 0}, total_chars = 0;
    for (int k = 0; k < 3; k++) {
        sizes[k] = m >= 3 + k ? m - (3 + k) + 1 : 0;
        total_chars += sizes[k];
    }
    uint32_t *res = PyMem_Malloc(sizeof(uint32_t) * (size_t)(total_chars + 2 * cap_words + 1));
    Py_ssize_t *starts = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(2 * cap_words + 1));
    if (res == NULL || starts == NULL) {
        PyMem_Free(cps);
        PyMem_Free(res);
        PyMem_Free(starts);
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t *ends = starts + cap_words;
    const unsigned shift = 64u - (unsigned)bits;
    Py_ssize_t w = 0;
    Py_BEGIN_ALLOW_THREADS
    /* the (n+1)-gram's raw hash is the n-gram's times the multiplier plus the next code point;
     * the n-gram's hash is its raw hash times the multiplier plus n */
    Py_ssize_t pos = 0;
    for (int k = 0; k < 3; k++) {
        const uint64_t n = 3 + (uint64_t)k;
        for (Py_ssize_t a = 0; a < sizes[k]; a++) {
            uint64_t h = 0;
            for (uint64_t j = 0; j < n; j++) h = h * INJ_MULT + cps[a + (Py_ssize_t)j];
            h = h * INJ_MULT + n;
            res[pos++] = (uint32_t)((h * FIB) >> shift);
        }
    }
    w = find_words(cps + 1, n_low, starts, ends);
    uint64_t prev = 0;
    for (Py_ssize_t i = 0; i < w; i++) {
        uint64_t h = (uint64_t)crc32_word(cps + 1, starts[i], ends[i]) + WORD_TAG;
        res[pos + i] = (uint32_t)((h * FIB) >> shift);
        if (i > 0) {
            uint64_t b = prev * BIGRAM_MULT + h + BIGRAM_TAG;
            res[pos + w + i - 1] = (uint32_t)((b * FIB) >> shift);
        }
        prev = h;
    }
    Py_END_ALLOW_THREADS
    PyMem_Free(cps);
    PyMem_Free(starts);
    *out = res;
    *n_chars = total_chars;
    return total_chars + (w > 0 ? 2 * w - 1 : 0);
}

static double sublinear[64]; /* 1 + ln(tf) for tf < 64 (libm's log, as for larger tf) */

/* Sort ``a[0:n]`` (values < 2**bits) in place; ``tmp`` has room for n values. LSD radix sort,
 * 11-bit digits (insertion sort for a few values). */
static void sort_u32(uint32_t *a, uint32_t *tmp, Py_ssize_t n, int bits)
{
    if (n < 64) {
        for (Py_ssize_t i = 1; i < n; i++) {
            uint32_t v = a[i];
            Py_ssize_t j = i;
            while (j > 0 && a[j - 1] > v) {
                a[j] = a[j - 1];
                j--;
            }
            a[j] = v;
        }
        return;
    }
    /* digits of ceil(bits / passes) bits, passes = ceil(bits / 11): two 10-bit digits for the
     * shipped 20-bit buckets; both histograms in one read */
    const int passes = (bits + 10) / 11, digit = (bits + passes - 1) / passes;
    const uint32_t mask = (1u << digit) - 1;
    Py_ssize_t count[3][2048];
    memset(count, 0, sizeof(count));
    for (Py_ssize_t i = 0; i < n; i++)
        for (int p = 0; p < passes; p++) count[p][(a[i] >> (p * digit)) & mask]++;
    uint32_t *src = a, *dst = tmp;
    for (int p = 0; p < passes; p++) {
        Py_ssize_t s = 0, *c = count[p];
        for (uint32_t d = 0; d <= mask; d++) {
            Py_ssize_t v = c[d];
            c[d] = s;
            s += v;
        }
        const int shift = p * digit;
        for (Py_ssize_t i = 0; i < n; i++) dst[c[(src[i] >> shift) & mask]++] = src[i];
        uint32_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != a) memcpy(a, src, sizeof(uint32_t) * (size_t)n);
}

/* Bytes of work space ``weighted_dot_core`` needs for n terms. */
static size_t work_size(Py_ssize_t n)
{
    return (sizeof(uint32_t) * 3 + sizeof(double)) * (size_t)(n + 1);
}

/* _weighted_dot: the distinct buckets u of terms[0:n] (< 2**bits) with their counts tf, w =
 * (1 + ln tf) * idf[u] L2-normalised, dot weight[u]. ``pairs``: per bucket (idf, weight) as two
 * float32; ``weights``: other weights (float32 per bucket) or NULL; ``work``: ``work_size(n)``
 * bytes. The buckets are sorted as the reference sorts them (np.unique), and the sums run in
 * that order (numpy's dot may group them otherwise: the same to float rounding). A radix sort
 * measured faster here than counting the distinct buckets in a hash table (58 vs 101 us for the
 * 6,450 terms of a 2,000-character text). */
static double weighted_dot_core(const uint32_t *terms, Py_ssize_t n, int bits, const float *pairs,
                                const float *weights, void *work)
{
    if (n == 0) return 0.0;
    double *wbuf = work;
    uint32_t *sorted = (uint32_t *)(wbuf + n + 1), *tmp = sorted + n + 1, *ubuf = tmp + n + 1;
    memcpy(sorted, terms, sizeof(uint32_t) * (size_t)n);
    sort_u32(sorted, tmp, n, bits);
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < n;) {
        uint32_t u = sorted[i];
        Py_ssize_t j = i + 1;
        while (j < n && sorted[j] == u) j++;
        Py_ssize_t tf = j - i;
        wbuf[k] = tf < 64 ? sublinear[tf] : 1.0 + log((double)tf);
        ubuf[k] = u;
        k++;
        i = j;
    }
    double sq = 0.0;
    for (Py_ssize_t i = 0; i < k; i++) {
        double w = wbuf[i] * (double)pairs[2 * (size_t)ubuf[i]];
        wbuf[i] = w;
        sq += w * w;
    }
    double norm = sqrt(sq), dot = 0.0;
    for (Py_ssize_t i = 0; i < k; i++) {
        double w = norm > 0.0 ? wbuf[i] / norm : wbuf[i];
        size_t u = ubuf[i];
        dot += w * (double)(weights == NULL ? pairs[2 * u + 1] : weights[u]);
    }
    return dot;
}

static int check_bits(int bits)
{
    if (bits < 1 || bits > 32) {
        PyErr_Format(PyExc_ValueError, "bits must be in 1..32, got %d", bits);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(injection_terms_doc,
             "injection_terms(low, bits) -> (buckets, n_chars)\n\n"
             "The buckets of injection_hashed._all_buckets(low, bits) as bytes of native uint32\n"
             "(character n-gram buckets first, n_chars of them, then word buckets).");

static PyObject *injection_terms(PyObject *self, PyObject *args)
{
    PyObject *low;
    int bits;
    if (!PyArg_ParseTuple(args, "Ui", &low, &bits) || check_bits(bits) < 0) return NULL;
    uint32_t *res;
    Py_ssize_t n_chars;
    Py_ssize_t n = injection_buckets(low, bits, &res, &n_chars);
    if (n < 0) return NULL;
    PyObject *b = PyBytes_FromStringAndSize((const char *)res, (Py_ssize_t)sizeof(uint32_t) * n);
    PyMem_Free(res);
    if (b == NULL) return NULL;
    return Py_BuildValue("Nn", b, n_chars);
}

PyDoc_STRVAR(injection_dot_doc,
             "injection_dot(low, bits, pairs) -> (dot, word_buckets)\n\n"
             "_weighted_dot(_all_buckets(low, bits), pairs, None) and the word buckets (bytes of\n"
             "native uint32, in the reference's order). pairs: a buffer of 2**bits (idf, weight)\n"
             "float32 pairs.");

static PyObject *injection_dot(PyObject *self, PyObject *args)
{
    PyObject *low, *pairs_obj;
    int bits;
    if (!PyArg_ParseTuple(args, "UiO", &low, &bits, &pairs_obj) || check_bits(bits) < 0) return NULL;
    Py_buffer pairs;
    if (get_buffer(pairs_obj, &pairs, (Py_ssize_t)8 << bits, "pairs") < 0) return NULL;
    uint32_t *res;
    Py_ssize_t n_chars;
    Py_ssize_t n = injection_buckets(low, bits, &res, &n_chars);
    if (n < 0) {
        PyBuffer_Release(&pairs);
        return NULL;
    }
    PyObject *words = PyBytes_FromStringAndSize((const char *)(res + n_chars),
                                                (Py_ssize_t)sizeof(uint32_t) * (n - n_chars));
    void *scratch = PyMem_Malloc(work_size(n));
    if (words == NULL || scratch == NULL) {
        Py_XDECREF(words);
        PyMem_Free(res);
        PyMem_Free(scratch);
        PyBuffer_Release(&pairs);
        return scratch == NULL ? PyErr_NoMemory() : NULL;
    }
    double dot;
    Py_BEGIN_ALLOW_THREADS
    dot = weighted_dot_core(res, n, bits, pairs.buf, NULL, scratch);
    Py_END_ALLOW_THREADS
    PyMem_Free(res);
    PyMem_Free(scratch);
    PyBuffer_Release(&pairs);
    return Py_BuildValue("dN", dot, words);
}

PyDoc_STRVAR(weighted_dot_doc,
             "weighted_dot(terms, bits, pairs, weights) -> float\n\n"
             "injection_hashed._weighted_dot(terms, pairs, weights): terms a buffer of native\n"
             "uint32 buckets < 2**bits, pairs 2**bits (idf, weight) float32 pairs, weights None or\n"
             "2**bits float32.");

static PyObject *weighted_dot(PyObject *self, PyObject *args)
{
    PyObject *terms_obj, *pairs_obj, *weights_obj;
    int bits;
    if (!PyArg_ParseTuple(args, "OiOO", &terms_obj, &bits, &pairs_obj, &weights_obj) ||
        check_bits(bits) < 0)
        return NULL;
    Py_buffer terms, pairs, weights = {0};
    if (get_buffer(terms_obj, &terms, -1, "terms") < 0) return NULL;
    if (terms.len % 4 != 0) {
        PyBuffer_Release(&terms);
        return PyErr_Format(PyExc_ValueError, "terms: not a uint32 buffer");
    }
    if (get_buffer(pairs_obj, &pairs, (Py_ssize_t)8 << bits, "pairs") < 0) {
        PyBuffer_Release(&terms);
        return NULL;
    }
    int have_weights = weights_obj != Py_None;
    if (have_weights && get_buffer(weights_obj, &weights, (Py_ssize_t)4 << bits, "weights") < 0) {
        PyBuffer_Release(&terms);
        PyBuffer_Release(&pairs);
        return NULL;
    }
    Py_ssize_t n = terms.len / 4;
    const uint32_t *in = terms.buf;
    uint32_t limit_ok = 1;
    for (Py_ssize_t i = 0; i < n; i++)
        if (bits < 32 && (in[i] >> bits) != 0) limit_ok = 0;
    void *scratch = limit_ok ? PyMem_Malloc(work_size(n)) : NULL;
    double dot = 0.0;
    if (scratch != NULL) {
        Py_BEGIN_ALLOW_THREADS
        dot = weighted_dot_core(in, n, bits, pairs.buf, have_weights ? weights.buf : NULL, scratch);
        Py_END_ALLOW_THREADS
    }
    PyMem_Free(scratch);
    PyBuffer_Release(&terms);
    PyBuffer_Release(&pairs);
    if (have_weights) PyBuffer_Release(&weights);
    if (!limit_ok) return PyErr_Format(PyExc_ValueError, "terms: a bucket is not below 2**%d", bits);
    if (scratch == NULL) return PyErr_NoMemory();
    return PyFloat_FromDouble(dot);
}

/* ------------------------------------------------------------------------------------------ */
/* content_safety: hashed word 1-2-grams and char_wb 2-5-grams                                 */

#define C_P 0x100000001B3ULL
#define C_MIX 0x9E3779B97F4A7C15ULL
#define C_SALT 0xD6E8FEB86659FD93ULL

typedef struct {
    int64_t *words, *chars;
    Py_ssize_t n_words, n_chars;
} content_cols;

/* block_columns(text) of content_features for ``low`` (already clipped and lower-cased as
 * block_columns does): the word block's columns (unigrams, then bigrams) and the character
 * block's (2-grams, 3-grams, 4-grams, 5-grams of " " + body + " ", no space inside). */
static int content_columns_core(PyObject *low, int bits, content_cols *out)
{
    Py_ssize_t n;
    uint32_t *cps = ucs4_padded(low, 0, 0, &n);
    if (cps == NULL) return -1;
    Py_ssize_t cap = n / 2 + 1;
    Py_ssize_t *starts = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(2 * cap));
    uint32_t *body = PyMem_Malloc(sizeof(uint32_t) * (size_t)(n + 2));
    int64_t *words = PyMem_Malloc(sizeof(int64_t) * (size_t)(2 * cap));
    int64_t *chars = PyMem_Malloc(sizeof(int64_t) * (size_t)(4 * (n + 2)));
    if (!starts || !body || !words || !chars) {
        PyMem_Free(cps);
        PyMem_Free(starts);
        PyMem_Free(body);
        PyMem_Free(words);
        PyMem_Free(chars);
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t *ends = starts + cap;
    /* " " + " ".join(low.split()) + " ": str.split() splits at Py_UNICODE_ISSPACE runs */
    Py_ssize_t t = 0;
    body[t++] = 32;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (Py_UNICODE_ISSPACE(cps[i])) {
            if (body[t - 1] != 32) body[t++] = 32;
        } else {
            body[t++] = cps[i];
        }
    }
    if (body[t - 1] != 32) body[t++] = 32;
    Py_ssize_t nw = 0, nc = 0;
    if (t > 1) { /* a body (no body: no word either, both blocks empty) */
        const unsigned shift = 64u - (unsigned)bits;
        Py_ssize_t w = find_words(cps, n, starts, ends);
        uint64_t prev = 0;
        for (Py_ssize_t i = 0; i < w; i++) {
            uint64_t h = 0;
            for (Py_ssize_t j = starts[i]; j < ends[i]; j++) h = h * C_P + cps[j];
            words[i] = (int64_t)(((h + C_SALT) * C_MIX) >> shift);
            if (i > 0) {
                /* the bigram "a b": its hash continues the first word's over " " and the second */
                uint64_t b = prev * C_P + 32;
                for (Py_ssize_t j = starts[i]; j < ends[i]; j++) b = b * C_P + cps[j];
                words[w + i - 1] = (int64_t)(((b + 2 * C_SALT) * C_MIX) >> shift);
            }
            prev = h;
        }
        nw = w > 0 ? 2 * w - 1 : 0;
        for (Py_ssize_t k = 2; k <= 5; k++) {
            const uint64_t salt = (uint64_t)k + 10 * C_SALT;
            for (Py_ssize_t a = 0; a + k <= t; a++) {
                int inner_space = 0;
                for (Py_ssize_t j = a + 1; j < a + k - 1; j++) inner_space |= body[j] == 32;
                if (inner_space) continue;
                uint64_t h = 0;
                for (Py_ssize_t j = a; j < a + k; j++) h = h * C_P + body[j];
                chars[nc++] = (int64_t)(((h + salt) * C_MIX) >> shift);
            }
        }
    }
    PyMem_Free(cps);
    PyMem_Free(starts);
    PyMem_Free(body);
    out->words = words;
    out->chars = chars;
    out->n_words = nw;
    out->n_chars = nc;
    return 0;
}

static void content_cols_free(content_cols *c)
{
    PyMem_Free(c->words);
    PyMem_Free(c->chars);
}

static PyObject *cols_bytes(const int64_t *a, Py_ssize_t n)
{
    return PyBytes_FromStringAndSize((const char *)a, (Py_ssize_t)sizeof(int64_t) * n);
}

PyDoc_STRVAR(content_columns_doc,
             "content_columns(low, bits) -> (words, chars)\n\n"
             "content_features.block_columns for a text already clipped and lower-cased as it does\n"
             "(low = _clip(_clip(text).lower())): bytes of native int64 columns < 2**bits.");

static PyObject *content_columns(PyObject *self, PyObject *args)
{
    PyObject *low;
    int bits;
    if (!PyArg_ParseTuple(args, "Ui", &low, &bits) || check_bits(bits) < 0) return NULL;
    content_cols c;
    if (content_columns_core(low, bits, &c) < 0) return NULL;
    PyObject *res = Py_BuildValue("NN", cols_bytes(c.words, c.n_words), cols_bytes(c.chars, c.n_chars));
    content_cols_free(&c);
    return res;
}

PyDoc_STRVAR(content_blocks_doc,
             "content_blocks(low, bits, table) -> (words, chars, word_sums, char_sums)\n\n"
             "content_columns(low, bits) and, per block, the sums over its occurrences of the\n"
             "first three columns of ``table`` (float64, 2 * 2**bits rows of 4: the word block's\n"
             "rows first, then the character block's): (idf**2, request, output) each.");

static PyObject *content_blocks(PyObject *self, PyObject *args)
{
    PyObject *low, *table_obj;
    int bits;
    if (!PyArg_ParseTuple(args, "UiO", &low, &bits, &table_obj) || check_bits(bits) < 0) return NULL;
    if (bits > 30) return PyErr_Format(PyExc_ValueError, "bits must be at most 30, got %d", bits);
    Py_buffer table;
    if (get_buffer(table_obj, &table, (Py_ssize_t)(2 * 4 * 8) << bits, "table") < 0) return NULL;
    content_cols c;
    if (content_columns_core(low, bits, &c) < 0) {
        PyBuffer_Release(&table);
        return NULL;
    }
    double s[2][3] = {{0, 0, 0}, {0, 0, 0}};
    Py_BEGIN_ALLOW_THREADS
    const double *rows = table.buf;
    for (Py_ssize_t i = 0; i < c.n_words; i++) {
        const double *r = rows + 4 * (size_t)c.words[i];
        s[0][0] += r[0];
        s[0][1] += r[1];
        s[0][2] += r[2];
    }
    const double *crows = rows + ((size_t)4 << bits);
    for (Py_ssize_t i = 0; i < c.n_chars; i++) {
        const double *r = crows + 4 * (size_t)c.chars[i];
        s[1][0] += r[0];
        s[1][1] += r[1];
        s[1][2] += r[2];
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&table);
    PyObject *res = Py_BuildValue("NN(ddd)(ddd)", cols_bytes(c.words, c.n_words),
                                  cols_bytes(c.chars, c.n_chars), s[0][0], s[0][1], s[0][2], s[1][0],
                                  s[1][1], s[1][2]);
    content_cols_free(&c);
    return res;
}

/* ------------------------------------------------------------------------------------------ */
/* second stage and blobs                                                                      */

PyDoc_STRVAR(tree_sum_doc,
             "tree_sum(x, feature, threshold, next_flat, roots, value_flat, depth) -> float\n\n"
             "BoostedStage.decision without the baseline: the sum over trees of the leaf value\n"
             "reached from each root (``roots``, flat node indices) by ``depth`` steps, right\n"
             "(``next_flat[span + node]``) when x[feature[node]] > threshold[node], else left\n"
             "(``next_flat[node]``). Arrays: intp / float64 of ``span`` nodes (next_flat 2 * span).");

static PyObject *tree_sum(PyObject *self, PyObject *args)
{
    PyObject *x_obj, *objs[5];
    int depth;
    if (!PyArg_ParseTuple(args, "OOOOOOi", &x_obj, &objs[0], &objs[1], &objs[2], &objs[3], &objs[4],
                          &depth))
        return NULL;
    PyObject *xs = PySequence_Fast(x_obj, "x must be a sequence of floats");
    if (xs == NULL) return NULL;
    Py_ssize_t nx = PySequence_Fast_GET_SIZE(xs);
    double xv[64];
    if (nx > 64) {
        Py_DECREF(xs);
        return PyErr_Format(PyExc_ValueError, "x: at most 64 features");
    }
    for (Py_ssize_t i = 0; i < nx; i++) {
        xv[i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(xs, i));
        if (xv[i] == -1.0 && PyErr_Occurred()) {
            Py_DECREF(xs);
            return NULL;
        }
    }
    Py_DECREF(xs);
    Py_buffer b[5];
    int got = 0;
    for (; got < 5; got++)
        if (get_buffer(objs[got], &b[got], -1, "tree array") < 0) break;
    PyObject *res = NULL;
    if (got == 5) {
        const Py_ssize_t span = b[0].len / (Py_ssize_t)sizeof(Py_ssize_t);
        const Py_ssize_t *feature = b[0].buf, *next = b[2].buf, *roots = b[3].buf;
        const double *threshold = b[1].buf, *value = b[4].buf;
        Py_ssize_t count = b[3].len / (Py_ssize_t)sizeof(Py_ssize_t);
        if (b[1].len != span * 8 || b[2].len != 2 * span * 8 || b[4].len != span * 8) {
            PyErr_SetString(PyExc_ValueError, "tree arrays: inconsistent sizes");
        } else {
            double total = 0.0;
            int bad = 0;
            for (Py_ssize_t t = 0; t < count && !bad; t++) {
                Py_ssize_t node = roots[t];
                for (int d = 0; d < depth && !bad; d++) {
                    if (node < 0 || node >= span || feature[node] < 0 || feature[node] >= nx) {
                        bad = 1;
                        break;
                    }
                    node = next[(xv[feature[node]] > threshold[node] ? span : 0) + node];
                }
                if (node < 0 || node >= span) bad = 1;
                else total += value[node];
            }
            if (bad) PyErr_SetString(PyExc_ValueError, "tree arrays: a node index out of range");
            else res = PyFloat_FromDouble(total);
        }
    }
    for (int i = 0; i < got; i++) PyBuffer_Release(&b[i]);
    return res;
}

PyDoc_STRVAR(blob_candidate_doc,
             "blob_candidate(text) -> bool\n\n"
             "Whether re.search(r\"[A-Za-z0-9+/_=-]{64,}|;base64,\", text) finds a match\n"
             "(policies.decoding.blobs._QUICK).");

static inline int is_b64(Py_UCS4 c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/' || c == '_' || c == '=' || c == '-';
}

static PyObject *blob_candidate(PyObject *self, PyObject *arg)
{
    if (!PyUnicode_Check(arg)) return PyErr_Format(PyExc_TypeError, "text must be a str");
    Py_ssize_t n = PyUnicode_GET_LENGTH(arg);
    int kind = PyUnicode_KIND(arg);
    const void *data = PyUnicode_DATA(arg);
    static const char marker[] = ";base64,";
    Py_ssize_t run = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (is_b64(c)) {
            if (++run >= 64) Py_RETURN_TRUE;
        } else {
            run = 0;
            if (c == ';' && i + 8 <= n) {
                int j = 1;
                while (j < 8 && PyUnicode_READ(kind, data, i + j) == (Py_UCS4)marker[j]) j++;
                if (j == 8) Py_RETURN_TRUE;
            }
        }
    }
    Py_RETURN_FALSE;
}

static inline int ascii_punct(Py_UCS4 c)
{
    return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126);
}

static inline int ascii_letter(Py_UCS4 c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }

PyDoc_STRVAR(hand_token_stats_doc,
             "hand_token_stats(text) -> (letters, upper, symbols, tokens, noisy, noisy_tail, inner,\n"
             "last_punct, last_len)\n\n"
             "injection_features._token_stats: the character and token counts of the hand\n"
             "features (ASCII letters, capitals and symbols; str.split() tokens and the noisy,\n"
             "tail and last-20 token statistics).");

static PyObject *hand_token_stats(PyObject *self, PyObject *arg)
{
    if (!PyUnicode_Check(arg)) return PyErr_Format(PyExc_TypeError, "text must be a str");
    const Py_ssize_t n = PyUnicode_GET_LENGTH(arg);
    const int kind = PyUnicode_KIND(arg);
    const void *data = PyUnicode_DATA(arg);
    Py_ssize_t letters = 0, upper = 0, symbols = 0, count = 0;
    for (Py_ssize_t i = 0, in_token = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (c < 128) {
            letters += ascii_letter(c);
            upper += c >= 'A' && c <= 'Z';
            symbols += ascii_punct(c) && c != '.' && c != ',' && c != '\'';
        }
        int space = Py_UNICODE_ISSPACE(c);
        if (!space && !in_token) count++;
        in_token = !space;
    }
    const Py_ssize_t tail_start = count >= 4 ? count - count / 4 : count;
    const Py_ssize_t last_start = count > 20 ? count - 20 : 0;
    Py_ssize_t noisy = 0, noisy_tail = 0, inner = 0, last_punct = 0, last_len = 0, t = 0;
    for (Py_ssize_t i = 0; i < n;) {
        if (Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, i))) {
            i++;
            continue;
        }
        Py_ssize_t s = i, alen = 0, p = 0, first_p = 0, last_p = 0;
        int alnum = 1, has_letter = 0;
        for (; i < n; i++) {
            Py_UCS4 c = PyUnicode_READ(kind, data, i);
            if (Py_UNICODE_ISSPACE(c)) break;
            alnum &= Py_UNICODE_ISALNUM(c) ? 1 : 0;
            if (c < 128) {
                int q = ascii_punct(c);
                if (alen == 0) first_p = q;
                last_p = q;
                p += q;
                has_letter |= ascii_letter(c);
                alen++;
            }
        }
        const Py_ssize_t len = i - s;
        if (t >= last_start) last_len += len;
        if (!alnum) {
            if (len > 2 && p >= 2 && (alen < len || has_letter)) {
                noisy++;
                noisy_tail += t >= tail_start;
            }
            if (t >= last_start) {
                last_punct += p;
                inner += alen > 2 && p - first_p - last_p > 0;
            }
        }
        t++;
    }
    last_len += (count - last_start) - 1;
    return Py_BuildValue("nnnnnnnnn", letters, upper, symbols, count, noisy, noisy_tail, inner, last_punct,
                         last_len);
}

/* re's classes on str (_sre): \w is Py_UNICODE_ISALNUM or "_", \s is Py_UNICODE_ISSPACE */
static inline int re_not_word_space(Py_UCS4 c)
{
    return !(Py_UNICODE_ISALNUM(c) || c == '_') && !Py_UNICODE_ISSPACE(c);
}

static inline int ascii_digit(Py_UCS4 c) { return c >= '0' && c <= '9'; }

/* len(_SYMBOL.findall(s)) for _SYMBOL = [^\w\s.,'] */
static Py_ssize_t gcg_symbols(const Py_UCS4 *s, Py_ssize_t n)
{
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < n; i++) k += re_not_word_space(s[i]) && s[i] != '.' && s[i] != ',' && s[i] != '\'';
    return k;
}

/* " ".join(tokens[a:b]) of the str.split() tokens whose (start, end) are in ``bounds``. */
static Py_ssize_t join_tokens(int kind, const void *data, const Py_ssize_t *bounds, Py_ssize_t a,
                              Py_ssize_t b, Py_UCS4 *out)
{
    Py_ssize_t m = 0;
    for (Py_ssize_t t = a; t < b; t++) {
        if (t > a) out[m++] = 32;
        for (Py_ssize_t i = bounds[2 * t]; i < bounds[2 * t + 1]; i++) out[m++] = PyUnicode_READ(kind, data, i);
    }
    return m;
}

PyDoc_STRVAR(gcg_features_doc,
             "gcg_features(text) -> list of 6 floats\n\n"
             "injection_features.gcg_features: the adversarial-suffix features of the last 25\n"
             "str.split() tokens (the same regular-expression semantics, computed in one pass).");

static PyObject *gcg_features(PyObject *self, PyObject *arg)
{
    if (!PyUnicode_Check(arg)) return PyErr_Format(PyExc_TypeError, "text must be a str");
    const Py_ssize_t n = PyUnicode_GET_LENGTH(arg);
    const int kind = PyUnicode_KIND(arg);
    const void *data = PyUnicode_DATA(arg);
    Py_ssize_t *bounds = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(n + 4));
    Py_UCS4 *buf = PyMem_Malloc(sizeof(Py_UCS4) * (size_t)(n + 1));
    if (bounds == NULL || buf == NULL) {
        PyMem_Free(bounds);
        PyMem_Free(buf);
        return PyErr_NoMemory();
    }
    Py_ssize_t count = 0;
    for (Py_ssize_t i = 0; i < n;) {
        if (Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, i))) {
            i++;
            continue;
        }
        bounds[2 * count] = i;
        while (i < n && !Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, i))) i++;
        bounds[2 * count + 1] = i;
        count++;
    }
    double f[6] = {0, 0, 0, 0, 0, 0};
    if (count > 0) {
        const Py_ssize_t first = count > 25 ? count - 25 : 0, n_tokens = count - first;
        double contrast_head = 0.0;
        int has_head = first > 0;
        if (has_head) {
            Py_ssize_t h = join_tokens(kind, data, bounds, 0, first, buf);
            contrast_head = (double)gcg_symbols(buf, h) / (double)h;
        }
        const Py_ssize_t m = join_tokens(kind, data, bounds, first, count, buf);
        const Py_UCS4 *s = buf;
        const double n_tail = (double)(m > 1 ? m : 1);
        /* camel: tokens with [a-z][A-Z] inside (the joined tail has one iff a token has) */
        Py_ssize_t camel = 0, alternation = 0, changes = 0, capitals = 0;
        for (Py_ssize_t t = first, at = 0; t < count; t++) {
            Py_ssize_t len = bounds[2 * t + 1] - bounds[2 * t];
            for (Py_ssize_t i = at; i + 1 < at + len; i++) {
                if (s[i] >= 'a' && s[i] <= 'z' && s[i + 1] >= 'A' && s[i + 1] <= 'Z') {
                    camel++;
                    break;
                }
            }
            if (t > first) {
                Py_UCS4 prev_last = s[at - 2], head = s[at];
                capitals += Py_UNICODE_ISUPPER(head) && prev_last != '.' && prev_last != '!' &&
                            prev_last != '?' && prev_last != ':';
            }
            at += len + 1;
        }
        /* _LETTER_SYMBOL findall: [A-Za-z][^A-Za-z0-9\s] | [^A-Za-z0-9\s][A-Za-z], 2 characters each */
        for (Py_ssize_t i = 0; i + 1 < m;) {
            int x0 = !ascii_letter(s[i]) && !ascii_digit(s[i]) && !Py_UNICODE_ISSPACE(s[i]);
            int x1 = !ascii_letter(s[i + 1]) && !ascii_digit(s[i + 1]) && !Py_UNICODE_ISSPACE(s[i + 1]);
            if ((ascii_letter(s[i]) && x1) || (x0 && ascii_letter(s[i + 1]))) {
                alternation++;
                i += 2;
            } else {
                i++;
            }
        }
        /* _CLASS_CHANGE findall: one character each, with a lookahead */
        for (Py_ssize_t i = 0; i + 1 < m; i++) {
            Py_UCS4 a = s[i], b = s[i + 1];
            if ((ascii_letter(a) && (ascii_digit(b) || re_not_word_space(b))) ||
                (ascii_digit(a) && (ascii_letter(b) || re_not_word_space(b))) ||
                (re_not_word_space(a) && (ascii_letter(b) || ascii_digit(b))))
                changes++;
        }
        Py_ssize_t opens[4] = {0, 0, 0, 0}, closes[3] = {0, 0, 0};
        for (Py_ssize_t i = 0; i < m; i++) {
            Py_UCS4 c = s[i];
            opens[0] += c == '(';
            closes[0] += c == ')';
            opens[1] += c == '[';
            closes[1] += c == ']';
            opens[2] += c == '{';
            closes[2] += c == '}';
            opens[3] += c == '"';
        }
        Py_ssize_t unbalanced = opens[3] % 2;
        for (int k = 0; k < 3; k++) unbalanced += opens[k] > closes[k] ? opens[k] - closes[k] : closes[k] - opens[k];
        f[0] = camel > 0 ? (double)camel / (double)n_tokens : 0.0;
        f[1] = (double)alternation / n_tail;
        f[2] = has_head ? (double)gcg_symbols(s, m) / n_tail - contrast_head : 0.0;
        f[3] = log1p((double)unbalanced);
        f[4] = (double)changes / n_tail;
        f[5] = (double)capitals / (double)n_tokens;
    }
    PyMem_Free(bounds);
    PyMem_Free(buf);
    return Py_BuildValue("[dddddd]", f[0], f[1], f[2], f[3], f[4], f[5]);
}

PyDoc_STRVAR(has_run_doc,
             "has_run(text, table, length, ignore) -> bool\n\n"
             "policies.builtin.normalize._has_run: whether text.encode(\"ascii\", \"replace\")\n"
             ".translate(table) has a run without NUL of at least ``length`` bytes outside\n"
             "``ignore`` (bytes: the translated values not counted). table: 256 bytes.");

static PyObject *has_run(PyObject *self, PyObject *args)
{
    PyObject *text;
    Py_buffer table, ignore;
    Py_ssize_t length;
    if (!PyArg_ParseTuple(args, "Uy*ny*", &text, &table, &length, &ignore)) return NULL;
    int found = 0;
    if (table.len != 256) {
        PyErr_SetString(PyExc_ValueError, "table: expected 256 bytes");
    } else {
        const unsigned char *tab = table.buf, *ign = ignore.buf;
        unsigned char skip[256] = {0};
        for (Py_ssize_t i = 0; i < ignore.len; i++) skip[ign[i]] = 1;
        Py_ssize_t n = PyUnicode_GET_LENGTH(text), run = 0, counted = 0;
        int kind = PyUnicode_KIND(text);
        const void *data = PyUnicode_DATA(text);
        for (Py_ssize_t i = 0; i <= n && !found; i++) {
            unsigned char v = 0;
            if (i < n) {
                Py_UCS4 c = PyUnicode_READ(kind, data, i);
                v = tab[c < 128 ? c : '?']; /* "replace" encodes a non-ASCII character as "?" */
            }
            if (v == 0) {
                found = run >= length && counted >= length;
                run = counted = 0;
            } else {
                run++;
                counted += !skip[v];
            }
        }
    }
    PyBuffer_Release(&table);
    PyBuffer_Release(&ignore);
    if (PyErr_Occurred()) return NULL;
    return PyBool_FromLong(found);
}

/* ------------------------------------------------------------------------------------------ */

static PyMethodDef native_methods[] = {
    {"injection_terms", injection_terms, METH_VARARGS, injection_terms_doc},
    {"injection_dot", injection_dot, METH_VARARGS, injection_dot_doc},
    {"weighted_dot", weighted_dot, METH_VARARGS, weighted_dot_doc},
    {"content_columns", content_columns, METH_VARARGS, content_columns_doc},
    {"content_blocks", content_blocks, METH_VARARGS, content_blocks_doc},
    {"tree_sum", tree_sum, METH_VARARGS, tree_sum_doc},
    {"blob_candidate", blob_candidate, METH_O, blob_candidate_doc},
    {"has_run", has_run, METH_VARARGS, has_run_doc},
    {"hand_token_stats", hand_token_stats, METH_O, hand_token_stats_doc},
    {"gcg_features", gcg_features, METH_O, gcg_features_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT, "policies._native",
    "Compiled fast path of the guardrail models' featurisation (see policies/native.py).",
    -1, native_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void)
{
    crc_init();
    for (int tf = 1; tf < 64; tf++) sublinear[tf] = 1.0 + log((double)tf);
    PyObject *m = PyModule_Create(&native_module);
    if (m == NULL) return NULL;
    if (PyModule_AddIntConstant(m, "VERSION", NATIVE_VERSION) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
