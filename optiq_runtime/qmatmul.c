/* Quantized matrix products for passes of a few tokens, on MLX's own packed layout.
 *
 * y[t, n] = sum_k x[t, k] * w[n, k], where w[n, k] = q[n, k] * scale[n, k / group] + bias[n, k / group]
 * and row n's q values are a little-endian bit stream of `bits`-bit integers in uint32 words
 * (value k at bits k*bits .. k*bits+bits-1 of the row), as mx.quantize writes them.
 *
 * Per group: scale * (q . x) + bias * sum(x), so the bias costs one product per group and
 * token. Each packed row is read once per call whatever the number of tokens: the unpacked
 * values of a block are multiplied into every token's accumulator.
 *
 * 2-, 4- and 8-bit weights: a block is 8 words, unpacked lane-wise by shifts (lane i holds
 * word i), against x permuted once per call into the same order. 3-, 5- and 6-bit weights:
 * a block is 32 values (exactly `bits` words), unpacked into a small buffer. Both paths
 * have a scalar form where AVX2/FMA is not compiled in.
 *
 * Threads (pthreads) share a product's rows in small chunks claimed from a counter; the calling
 * thread takes chunks too and never waits for a helper that has not started, so a helper that
 * another process keeps off its core costs nothing but its unfinished chunk (a fixed split, as
 * OpenMP's, made a product 10-30x slower on this busy machine).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <stdatomic.h>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define OPTIQ_AVX2 1
#endif

#define MAX_TOKENS 8
/* Inlined into a copy per token count, so that every token's accumulator stays in a register. */
#define INLINE static inline __attribute__((always_inline))

int optiq_qmm_version(void) { return 2; }

int optiq_qmm_vectorized(void) {
#ifdef OPTIQ_AVX2
    return 1;
#else
    return 0;
#endif
}

static int power_of_two_bits(int bits) { return bits == 2 || bits == 4 || bits == 8; }

/* Sums of x over each group, per token: [T][K / group]. */
static void group_sums(const float *x, int T, int K, int group, float *sums) {
    int groups = K / group;
    for (int t = 0; t < T; t++)
        for (int g = 0; g < groups; g++) {
            float s = 0.f;
            for (int k = 0; k < group; k++) s += x[(size_t)t * K + (size_t)g * group + k];
            sums[t * groups + g] = s;
        }
}

/* x reordered per 8-word block so that lane i of slice j is value j of word i:
 * xp[t][b * 8V + j * 8 + i] = x[t][b * 8V + i * V + j], V = 32 / bits values per word. */
static void permute_x(const float *x, int T, int K, int bits, float *xp) {
    int per_word = 32 / bits, block = 8 * per_word, blocks = K / block;
    for (int t = 0; t < T; t++) {
        const float *src = x + (size_t)t * K;
        float *dst = xp + (size_t)t * K;
        for (int b = 0; b < blocks; b++)
            for (int j = 0; j < per_word; j++)
                for (int i = 0; i < 8; i++) dst[b * block + j * 8 + i] = src[b * block + i * per_word + j];
        memcpy(dst + blocks * block, src + blocks * block, sizeof(float) * (K - blocks * block));
    }
}

static inline uint32_t value_at(const uint32_t *row, int k, int bits) {
    uint32_t p = (uint32_t)k * bits, word = p >> 5, off = p & 31;
    uint64_t v = row[word] >> off;
    if (off + bits > 32) v |= (uint64_t)row[word + 1] << (32 - off);
    return (uint32_t)(v & ((1u << bits) - 1));
}

/* q . x for values [k0, k1) of one row, each token, added scaled to acc (scalar, any width). */
static void scalar_span(const uint32_t *row, const float *x, int T, int K, int k0, int k1, int bits,
                        int group, const float *scales, float *acc) {
    for (int k = k0; k < k1; k++) {
        float w = (float)value_at(row, k, bits) * scales[k / group];
        for (int t = 0; t < T; t++) acc[t] += w * x[(size_t)t * K + k];
    }
}

#ifdef OPTIQ_AVX2
static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* Independent accumulators per token: with one, each block's products wait on the previous FMA's
 * latency (4-5 cycles), which held a one-token pass to a fraction of a core's arithmetic. */
#define CHAINS(T) ((T) >= 4 ? 1 : (T) >= 2 ? 2 : 4)

/* One row of 2/4/8-bit weights over the permuted x: every full block, scaled per lane.
 * Called with a literal `bits`, so that the loop over a word's values unrolls. */
INLINE int shifted_blocks(const uint32_t *row, const float *xp, int T, int K, int bits, int group,
                          const float *scales, float *acc) {
    const int per_word = 32 / bits, block = 8 * per_word, blocks = K / block, words_per_group = group / per_word;
    const int chains = CHAINS(T);
    const __m256i mask = _mm256_set1_epi32((1 << bits) - 1);
    __m256 total[MAX_TOKENS];
    for (int t = 0; t < T; t++) total[t] = _mm256_setzero_ps();
    for (int b = 0; b < blocks; b++) {
        __m256i words = _mm256_loadu_si256((const __m256i *)(row + b * 8));
        __m256 chain[MAX_TOKENS][4], part[MAX_TOKENS];
        for (int t = 0; t < T; t++)
            for (int c = 0; c < chains; c++) chain[t][c] = _mm256_setzero_ps();
        for (int j = 0; j < per_word; j++) {
            __m256 q = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(words, j * bits), mask));
            const float *xj = xp + b * block + j * 8;
            for (int t = 0; t < T; t++)
                chain[t][j % chains] = _mm256_fmadd_ps(q, _mm256_loadu_ps(xj + (size_t)t * K), chain[t][j % chains]);
        }
        for (int t = 0; t < T; t++) {
            part[t] = chain[t][0];
            for (int c = 1; c < chains; c++) part[t] = _mm256_add_ps(part[t], chain[t][c]);
        }
        __m256 scale;
        if (words_per_group >= 8) {
            scale = _mm256_set1_ps(scales[b * 8 / words_per_group]);
        } else {
            float lanes[8];
            for (int i = 0; i < 8; i++) lanes[i] = scales[(b * 8 + i) / words_per_group];
            scale = _mm256_loadu_ps(lanes);
        }
        for (int t = 0; t < T; t++) total[t] = _mm256_fmadd_ps(part[t], scale, total[t]);
    }
    for (int t = 0; t < T; t++) acc[t] += hsum(total[t]);
    return blocks * block;
}

/* One row of any width, 32 values (= `bits` words) at a time, unpacked into a buffer. */
INLINE int buffered_blocks(const uint32_t *row, const float *x, int T, int K, int bits, int group,
                           const float *scales, float *acc) {
    const int blocks = K / 32;
    __m256 total[MAX_TOKENS];
    for (int t = 0; t < T; t++) total[t] = _mm256_setzero_ps();
    float q[32];
    for (int b = 0; b < blocks; b++) {
        const uint32_t *w = row + b * bits;
        uint64_t window = 0;
        int have = 0, next = 0;
        for (int i = 0; i < 32; i++) {
            if (have < bits) { window |= (uint64_t)w[next++] << have; have += 32; }
            q[i] = (float)(uint32_t)(window & ((1u << bits) - 1));
            window >>= bits;
            have -= bits;
        }
        __m256 scale = _mm256_set1_ps(scales[b * 32 / group]);
        for (int c = 0; c < 4; c++) {
            __m256 qs = _mm256_mul_ps(_mm256_loadu_ps(q + 8 * c), scale);
            for (int t = 0; t < T; t++)
                total[t] = _mm256_fmadd_ps(qs, _mm256_loadu_ps(x + (size_t)t * K + b * 32 + 8 * c), total[t]);
        }
    }
    for (int t = 0; t < T; t++) acc[t] += hsum(total[t]);
    return blocks * 32;
}
#endif

/* Rows are read ahead of use: one core's sequential stream alone leaves DRAM's bandwidth mostly idle.
 * Into every cache level (locality 3): the non-temporal hint (0) made a one-token pass over
 * 0.8B-shaped layers 1.5x slower on this machine's Xeon, two-token passes 1.3x. */
#define PREFETCH_ROWS 4

INLINE void prefetch_row(const uint32_t *row, int words, int wanted) {
    if (!wanted) return;
    for (int i = 0; i < words; i += 16) __builtin_prefetch(row + i, 0, 3);
}

/* One output row for T tokens: y[t * N + n]. */
INLINE void row_product(const uint32_t *row, const float *scales, const float *biases, const float *x,
                        const float *xp, const float *sums, int T, int K, int N, int n, int bits, int group,
                        float *y) {
    float acc[MAX_TOKENS] = {0};
    int done = 0;
#ifdef OPTIQ_AVX2
    if (bits == 4) done = shifted_blocks(row, xp, T, K, 4, group, scales, acc);
    else if (bits == 2) done = shifted_blocks(row, xp, T, K, 2, group, scales, acc);
    else if (bits == 8) done = shifted_blocks(row, xp, T, K, 8, group, scales, acc);
    else done = buffered_blocks(row, x, T, K, bits, group, scales, acc);
#endif
    (void)xp;
    scalar_span(row, x, T, K, done, K, bits, group, scales, acc);
    int groups = K / group;
    if (biases)
        for (int t = 0; t < T; t++) {
            float b = 0.f;
            for (int g = 0; g < groups; g++) b += biases[g] * sums[t * groups + g];
            acc[t] += b;
        }
    for (int t = 0; t < T; t++) y[(size_t)t * N + n] = acc[t];
}

INLINE void rows(const float *x, const float *xp, const float *sums, int T, int K, const uint32_t *w,
                 const float *scales, const float *biases, int N, int n0, int n1, int bits, int group, float *y) {
    const int words = K * bits / 32, groups = K / group;
    for (int n = n0; n < n1; n++) {
        prefetch_row(w + (size_t)(n + PREFETCH_ROWS) * words, words, n + PREFETCH_ROWS < n1);
        row_product(w + (size_t)n * words, scales + (size_t)n * groups, biases ? biases + (size_t)n * groups : NULL,
                    x, xp, sums, T, K, N, n, bits, group, y);
    }
}

#define ROWS_FOR(count) \
    static void rows_##count(const float *x, const float *xp, const float *sums, int K, const uint32_t *w, \
                             const float *scales, const float *biases, int N, int n0, int n1, int bits, int group, \
                             float *y) { rows(x, xp, sums, count, K, w, scales, biases, N, n0, n1, bits, group, y); }
ROWS_FOR(1) ROWS_FOR(2) ROWS_FOR(3) ROWS_FOR(4) ROWS_FOR(5) ROWS_FOR(6) ROWS_FOR(7) ROWS_FOR(8)

typedef void (*rows_fn)(const float *, const float *, const float *, int, const uint32_t *, const float *,
                        const float *, int, int, int, int, int, float *);
static const rows_fn ROWS[MAX_TOKENS + 1] = {0, rows_1, rows_2, rows_3, rows_4, rows_5, rows_6, rows_7, rows_8};

/* One product's rows, as the pool shares them. */
typedef struct {
    const float *x, *xp, *sums, *scales, *biases;
    const uint32_t *w;
    float *y;
    int T, K, N, bits, group, rows_per_chunk, chunks;
} Job;

#define MAX_HELPERS 7
#define CHUNKS_PER_THREAD 8
#define SPINS 2000

/* Two job slots: a helper reading last job's slot while the next is written fails its claim. */
static Job jobs[2];
/* (generation << 32) | next chunk: a claim succeeds only within the generation it read. */
static _Atomic uint64_t claim;
static _Atomic int finished[2];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t posted = PTHREAD_COND_INITIALIZER;
static int helpers;
static uint32_t generation;

static void run_chunk(const Job *job, int c) {
    int n0 = c * job->rows_per_chunk, n1 = n0 + job->rows_per_chunk;
    if (n1 > job->N) n1 = job->N;
    ROWS[job->T](job->x, job->xp, job->sums, job->K, job->w, job->scales, job->biases, job->N, n0, n1, job->bits,
                 job->group, job->y);
}

/* Claim and run chunks of the current job until none is left; whether any was run. */
static int take_chunks(void) {
    int ran = 0;
    for (;;) {
        uint64_t seen = atomic_load_explicit(&claim, memory_order_acquire);
        uint32_t gen = (uint32_t)(seen >> 32), c = (uint32_t)seen;
        Job job = jobs[gen & 1];
        if ((int)c >= job.chunks) return ran;
        if (!atomic_compare_exchange_weak_explicit(&claim, &seen, seen + 1, memory_order_acq_rel, memory_order_acquire))
            continue;
        run_chunk(&job, (int)c);
        atomic_fetch_add_explicit(&finished[gen & 1], 1, memory_order_release);
        ran = 1;
    }
}

static void *helper(void *unused) {
    (void)unused;
    uint32_t seen = 0;
    for (;;) {
        for (int spin = 0; spin < SPINS && (uint32_t)(atomic_load(&claim) >> 32) == seen; spin++) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        }
        pthread_mutex_lock(&lock);
        while ((uint32_t)(atomic_load(&claim) >> 32) == seen) pthread_cond_wait(&posted, &lock);
        seen = (uint32_t)(atomic_load(&claim) >> 32);
        pthread_mutex_unlock(&lock);
        take_chunks();
    }
    return NULL;
}

static void start_helpers(int wanted) {
    while (helpers < wanted && helpers < MAX_HELPERS) {
        pthread_t thread;
        if (pthread_create(&thread, NULL, helper, NULL)) return;
        pthread_detach(thread);
        helpers++;
    }
}

static pthread_mutex_t pool_owner = PTHREAD_MUTEX_INITIALIZER;

static void shared(const Job *job, int threads) {
    /* One product at a time owns the pool; a concurrent caller (another Python thread) runs alone. */
    if (threads <= 1 || job->chunks <= 1 || pthread_mutex_trylock(&pool_owner)) {
        for (int c = 0; c < job->chunks; c++) run_chunk(job, c);
        return;
    }
    start_helpers(threads - 1);
    uint32_t gen = generation + 1;
    jobs[gen & 1] = *job;
    atomic_store(&finished[gen & 1], 0);
    pthread_mutex_lock(&lock);
    generation = gen;
    atomic_store_explicit(&claim, (uint64_t)gen << 32, memory_order_release);
    pthread_cond_broadcast(&posted);
    pthread_mutex_unlock(&lock);
    take_chunks();
    while (atomic_load_explicit(&finished[gen & 1], memory_order_acquire) < job->chunks) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
    pthread_mutex_unlock(&pool_owner);
}

static void chunk(const float *x, int T, int K, const uint32_t *w, const float *scales, const float *biases,
                  int N, int bits, int group, float *y, int threads, float *xp, float *sums) {
    group_sums(x, T, K, group, sums);
#ifdef OPTIQ_AVX2
    if (power_of_two_bits(bits)) permute_x(x, T, K, bits, xp);
#endif
    /* Small layers on one thread: waking the others costs more than the rows. */
    int team = (long)N * K < (1L << 18) ? 1 : threads;
    int chunks = team <= 1 ? 1 : team * CHUNKS_PER_THREAD;
    Job job = {x, xp, sums, scales, biases, w, y, T, K, N, bits, group, (N + chunks - 1) / chunks, 0};
    job.chunks = (N + job.rows_per_chunk - 1) / job.rows_per_chunk;
    shared(&job, team);
}

/* y [T, N] = x [T, K] times the quantized [N, K]^T; 0 on success, 1 for a shape or width it does not take. */
int optiq_qmm(const float *x, int T, int K, const uint32_t *w, const float *scales, const float *biases, int N,
              int bits, int group, float *y, int threads) {
    if (T < 1 || K < 1 || N < 1 || group < 32 || K % group || group % 32) return 1;
    if (bits < 2 || bits > 8 || bits == 7) return 1;
    float *xp = malloc(sizeof(float) * (size_t)MAX_TOKENS * K);
    float *sums = malloc(sizeof(float) * (size_t)MAX_TOKENS * (K / group));
    if (!xp || !sums) { free(xp); free(sums); return 2; }
    for (int t0 = 0; t0 < T; t0 += MAX_TOKENS) {
        int count = T - t0 < MAX_TOKENS ? T - t0 : MAX_TOKENS;
        chunk(x + (size_t)t0 * K, count, K, w, scales, biases, N, bits, group, y + (size_t)t0 * N, threads, xp, sums);
    }
    free(xp);
    free(sums);
    return 0;
}
