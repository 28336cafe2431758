/* BM25's exact top-k by document-at-a-time MaxScore, and the scores of given rows.
 *
 * Plain C called through ctypes (qa.index.maxscore): ctypes releases the interpreter during
 * each call, so a search runs beside the question's embedding for real, and loading this
 * library costs no compiler runtime. Every function exists twice, for uint16 and uint32 term
 * frequencies (the two types qa.index.lexical stores).
 *
 * A term's contribution to a row is weight * tf / (tf + norm), in double; a fully scored row's
 * score is its contributions added in the query's term order, starting from 0.0, rounded to
 * float once: bit for bit what LexicalIndex.scores computes with NumPy. Bounds only decide
 * what to skip, with a relative slack far above their rounding error.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define EXHAUSTED INT64_MAX

/* Whether (score, row) ranks before (other_score, other_row): higher score, then earlier row. */
static int better(float score, int64_t row, float other_score, int64_t other_row) {
    return score > other_score || (score == other_score && row < other_row);
}

/* The heap of the best rows found so far; its root is its worst entry. */
typedef struct {
    int64_t *rows;
    float *scores;
    int64_t size;
    int64_t capacity;
} Heap;

static void sift_down(Heap *heap, int64_t start, int64_t size) {
    int64_t row = heap->rows[start];
    float score = heap->scores[start];
    int64_t parent = start;
    for (;;) {
        int64_t child = 2 * parent + 1;
        if (child >= size) break;
        if (child + 1 < size && better(heap->scores[child], heap->rows[child], heap->scores[child + 1], heap->rows[child + 1]))
            child += 1; /* the worse child */
        if (!better(score, row, heap->scores[child], heap->rows[child])) break;
        heap->rows[parent] = heap->rows[child];
        heap->scores[parent] = heap->scores[child];
        parent = child;
    }
    heap->rows[parent] = row;
    heap->scores[parent] = score;
}

/* Put (row, score) in the heap if it is not full or ranks above its worst entry. */
static void offer(Heap *heap, int64_t row, float score) {
    if (heap->size < heap->capacity) {
        int64_t child = heap->size++;
        while (child > 0) {
            int64_t parent = (child - 1) / 2;
            if (!better(heap->scores[parent], heap->rows[parent], score, row)) break;
            heap->rows[child] = heap->rows[parent];
            heap->scores[child] = heap->scores[parent];
            child = parent;
        }
        heap->rows[child] = row;
        heap->scores[child] = score;
    } else if (better(score, row, heap->scores[0], heap->rows[0])) {
        heap->rows[0] = row;
        heap->scores[0] = score;
        sift_down(heap, 0, heap->size);
    }
}

/* Below this bound a row cannot reach the heap: its worst score less the slack, or 0 until it is full. */
static double floor_of(const Heap *heap, double slack) {
    return heap->size == heap->capacity ? (double)heap->scores[0] * (1.0 - slack) : 0.0;
}

/* The first term (by bound) that the terms before it cannot make up for: below it, only probe. */
static int64_t first_essential(const double *below, int64_t count, double floor, int64_t essential) {
    while (essential < count && below[essential] < floor) essential += 1;
    return essential;
}

/* The first position in low:high holding row or a later one (high if none): gallop, then bisect. */
static int64_t first_at_or_after(const int32_t *postings, int64_t low, int64_t high, int64_t row) {
    if (low >= high || postings[low] >= row) return low;
    int64_t step = 1;
    int64_t probe = low + step;
    while (probe < high && postings[probe] < row) { /* postings[low] < row throughout */
        low = probe;
        step *= 2;
        probe = low + step;
    }
    if (probe < high) high = probe;
    low += 1;
    while (low < high) {
        int64_t middle = low + (high - low) / 2;
        if (postings[middle] < row) low = middle + 1;
        else high = middle;
    }
    return low;
}

/* Ascending order of the bounds, ties in query order (a stable insertion sort: queries are short). */
static void order_by_bound(const double *bounds, int64_t count, int64_t *order) {
    for (int64_t i = 0; i < count; i++) {
        int64_t j = i;
        while (j > 0 && bounds[order[j - 1]] > bounds[i]) {
            order[j] = order[j - 1];
            j -= 1;
        }
        order[j] = i;
    }
}

#define DEFINE_KERNELS(FREQUENCY, SUFFIX)                                                                     \
    typedef struct {                                                                                          \
        const int32_t *postings;                                                                              \
        const FREQUENCY *frequencies;                                                                         \
        const double *norms;                                                                                  \
        const int64_t *order; /* terms by bound, lowest first */                                             \
        const int64_t *end;   /* by bound */                                                                  \
        const double *weight; /* by bound */                                                                  \
        const double *below;  /* [i]: the most terms 0..i (by bound) add together */                         \
        double *contributions; /* by query order */                                                           \
        int64_t *cursor;                                                                                      \
        int64_t *current;                                                                                     \
        int64_t count;                                                                                        \
        double slack;                                                                                         \
        Heap heap;                                                                                            \
    } Walk_##SUFFIX;                                                                                          \
                                                                                                              \
    static double impact_##SUFFIX(double weight, FREQUENCY frequency, double norm) {                         \
        double tf = (double)frequency;                                                                        \
        return weight * tf / (tf + norm);                                                                     \
    }                                                                                                         \
                                                                                                              \
    /* Walk the rows of terms essential.. (by bound), probing the terms before, offering rows to the heap.   \
       Rows holding a term from skip_from on are passed over (the first walk scored them). If there are     \
       such terms (the main walk), terms stop being walked as the heap's worst score rises. Returns the     \
       rows scored in full. */                                                                              \
    static int64_t walk_rows_##SUFFIX(Walk_##SUFFIX *walk, const int64_t *starts_by_bound, int64_t essential, \
                                      int64_t skip_from) {                                                    \
        const int32_t *postings = walk->postings;                                                             \
        int64_t count = walk->count;                                                                          \
        int adapt = skip_from < count;                                                                        \
        int64_t fully_scored = 0;                                                                             \
        for (int64_t i = 0; i < count; i++) {                                                                 \
            walk->cursor[i] = starts_by_bound[i];                                                             \
            walk->current[i] = walk->cursor[i] < walk->end[i] ? postings[walk->cursor[i]] : EXHAUSTED;        \
        }                                                                                                     \
        double floor = floor_of(&walk->heap, walk->slack);                                                    \
        while (essential < skip_from || (!adapt && essential < count)) {                                      \
            int64_t row = EXHAUSTED;                                                                          \
            for (int64_t i = essential; i < count; i++)                                                       \
                if (walk->current[i] < row) row = walk->current[i];                                           \
            if (row == EXHAUSTED) break;                                                                      \
            int passed = 0;                                                                                   \
            double partial = 0.0;                                                                             \
            for (int64_t i = essential; i < count; i++) {                                                     \
                if (walk->current[i] != row) continue;                                                        \
                passed = passed || i >= skip_from;                                                            \
                double value = impact_##SUFFIX(walk->weight[i], walk->frequencies[walk->cursor[i]],           \
                                               walk->norms[row]);                                             \
                walk->contributions[walk->order[i]] = value;                                                  \
                partial += value;                                                                             \
                walk->cursor[i] += 1;                                                                         \
                walk->current[i] = walk->cursor[i] < walk->end[i] ? postings[walk->cursor[i]] : EXHAUSTED;    \
            }                                                                                                 \
            int reachable = !passed;                                                                          \
            for (int64_t i = essential - 1; i >= 0; i--) { /* highest bound first: likeliest to rule it out */ \
                if (!reachable || partial + walk->below[i] < floor) {                                         \
                    reachable = 0;                                                                            \
                    break;                                                                                    \
                }                                                                                             \
                walk->cursor[i] = first_at_or_after(postings, walk->cursor[i], walk->end[i], row);           \
                if (walk->cursor[i] < walk->end[i] && postings[walk->cursor[i]] == row) {                     \
                    double value = impact_##SUFFIX(walk->weight[i], walk->frequencies[walk->cursor[i]],       \
                                                   walk->norms[row]);                                         \
                    walk->contributions[walk->order[i]] = value;                                              \
                    partial += value;                                                                         \
                }                                                                                             \
            }                                                                                                 \
            if (reachable) {                                                                                  \
                double total = 0.0; /* in query order, as LexicalIndex.scores adds them */                   \
                for (int64_t t = 0; t < count; t++) total += walk->contributions[t];                          \
                fully_scored += 1;                                                                            \
                offer(&walk->heap, row, (float)total);                                                        \
                floor = floor_of(&walk->heap, walk->slack);                                                   \
                if (adapt) essential = first_essential(walk->below, count, floor, essential);                 \
            }                                                                                                 \
            memset(walk->contributions, 0, (size_t)count * sizeof(double));                                   \
        }                                                                                                     \
        return fully_scored;                                                                                  \
    }                                                                                                         \
                                                                                                              \
    /* The depth best rows holding a term, best first, into out_rows and out_scores; their number into      \
       out_size. Returns the rows scored in full, or -1 if memory ran out. Two walks: first the rows of the  \
       rarest terms (of highest bound, up to seed_postings postings together), each scored in full, which   \
       sets a threshold near the final one; then every row from the start with MaxScore, skipping the rows  \
       the first walk scored already. */                                                                    \
    int64_t qa_maxscore_top_##SUFFIX(const int32_t *postings, const FREQUENCY *frequencies, const double *norms, \
                                     const int64_t *starts, const int64_t *ends, const double *weights,       \
                                     const double *bounds, int64_t count, int64_t depth, double slack,        \
                                     int64_t seed_postings, int64_t *out_rows, float *out_scores,             \
                                     int64_t *out_size) {                                                     \
        int64_t *order = malloc((size_t)count * sizeof(int64_t));                                             \
        int64_t *end = malloc((size_t)count * sizeof(int64_t));                                               \
        int64_t *starts_by_bound = malloc((size_t)count * sizeof(int64_t));                                   \
        int64_t *cursor = malloc((size_t)count * sizeof(int64_t));                                            \
        int64_t *current = malloc((size_t)count * sizeof(int64_t));                                           \
        double *weight = malloc((size_t)count * sizeof(double));                                              \
        double *below = malloc((size_t)count * sizeof(double));                                               \
        double *contributions = calloc((size_t)count, sizeof(double));                                        \
        int64_t fully_scored = -1;                                                                            \
        *out_size = 0;                                                                                        \
        if (!order || !end || !starts_by_bound || !cursor || !current || !weight || !below || !contributions) \
            goto done;                                                                                        \
        order_by_bound(bounds, count, order);                                                                 \
        double running = 0.0;                                                                                 \
        for (int64_t i = 0; i < count; i++) {                                                                 \
            end[i] = ends[order[i]];                                                                          \
            starts_by_bound[i] = starts[order[i]];                                                            \
            weight[i] = weights[order[i]];                                                                    \
            running += bounds[order[i]];                                                                      \
            below[i] = running;                                                                               \
        }                                                                                                     \
        Walk_##SUFFIX walk = {postings, frequencies, norms, order, end, weight, below, contributions,          \
                              cursor, current, count, slack, {out_rows, out_scores, 0, depth}};               \
        int64_t seed_first = count - 1;                                                                       \
        int64_t held = end[seed_first] - starts_by_bound[seed_first];                                         \
        while (seed_first > 0 && held + end[seed_first - 1] - starts_by_bound[seed_first - 1] <= seed_postings) { \
            seed_first -= 1;                                                                                  \
            held += end[seed_first] - starts_by_bound[seed_first];                                            \
        }                                                                                                     \
        fully_scored = walk_rows_##SUFFIX(&walk, starts_by_bound, seed_first, count);                         \
        int64_t essential = first_essential(below, count, floor_of(&walk.heap, slack), 0);                    \
        if (essential < seed_first) /* else every row that may still reach the heap was scored already */    \
            fully_scored += walk_rows_##SUFFIX(&walk, starts_by_bound, essential, seed_first);                \
        /* Best first: the worst is taken off the root and put last, repeatedly. */                          \
        for (int64_t last = walk.heap.size - 1; last > 0; last--) {                                           \
            int64_t worst_row = out_rows[0];                                                                  \
            float worst_score = out_scores[0];                                                                \
            out_rows[0] = out_rows[last];                                                                     \
            out_scores[0] = out_scores[last];                                                                 \
            sift_down(&walk.heap, 0, last);                                                                   \
            out_rows[last] = worst_row;                                                                       \
            out_scores[last] = worst_score;                                                                   \
        }                                                                                                     \
        *out_size = walk.heap.size;                                                                           \
    done:                                                                                                     \
        free(order);                                                                                          \
        free(end);                                                                                            \
        free(starts_by_bound);                                                                                \
        free(cursor);                                                                                         \
        free(current);                                                                                        \
        free(weight);                                                                                         \
        free(below);                                                                                          \
        free(contributions);                                                                                  \
        return fully_scored;                                                                                  \
    }                                                                                                         \
                                                                                                              \
    /* The terms' postings and frequencies at allowed rows, into kept_rows and kept_frequencies (room for    \
       all of them), and where each term now starts and ends. Returns how many were kept. */                \
    int64_t qa_allowed_postings_##SUFFIX(const int32_t *postings, const FREQUENCY *frequencies,              \
                                         const uint8_t *allowed, const int64_t *starts, const int64_t *ends,  \
                                         int64_t count, int32_t *kept_rows, FREQUENCY *kept_frequencies,      \
                                         int64_t *kept_starts, int64_t *kept_ends) {                          \
        int64_t size = 0;                                                                                     \
        for (int64_t term = 0; term < count; term++) {                                                        \
            kept_starts[term] = size;                                                                         \
            for (int64_t position = starts[term]; position < ends[term]; position++) {                        \
                if (allowed[postings[position]]) {                                                            \
                    kept_rows[size] = postings[position];                                                     \
                    kept_frequencies[size] = frequencies[position];                                           \
                    size += 1;                                                                                \
                }                                                                                             \
            }                                                                                                 \
            kept_ends[term] = size;                                                                           \
        }                                                                                                     \
        return size;                                                                                          \
    }                                                                                                         \
                                                                                                              \
    /* The scores of rows (any order, repeats allowed) into out_scores. ascending: the positions of rows in  \
       ascending order, so that each term's search goes on from where the last one stopped. */              \
    void qa_scores_at_##SUFFIX(const int32_t *postings, const FREQUENCY *frequencies, const double *norms,   \
                               const int64_t *starts, const int64_t *ends, const double *weights, int64_t count, \
                               const int64_t *rows, const int64_t *ascending, int64_t size, double *totals,   \
                               float *out_scores) {                                                           \
        memset(totals, 0, (size_t)size * sizeof(double));                                                     \
        for (int64_t term = 0; term < count; term++) {                                                        \
            int64_t position = starts[term];                                                                  \
            for (int64_t k = 0; k < size; k++) {                                                              \
                int64_t i = ascending[k];                                                                     \
                position = first_at_or_after(postings, position, ends[term], rows[i]);                        \
                if (position < ends[term] && postings[position] == rows[i])                                   \
                    totals[i] += impact_##SUFFIX(weights[term], frequencies[position], norms[rows[i]]);       \
            }                                                                                                 \
        }                                                                                                     \
        for (int64_t i = 0; i < size; i++) out_scores[i] = (float)totals[i];                                  \
    }

DEFINE_KERNELS(uint16_t, u16)
DEFINE_KERNELS(uint32_t, u32)
