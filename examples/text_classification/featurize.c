/* The example's tokenizer in C99, bit-identical to tokenizer.py (see its docstring and
 * docs/distillation.md): hashed word unigrams, bigrams and character 3/4/5-grams, FNV-1a 32.
 *
 *   float features[EDGEC_TC_BUCKETS];
 *   edgec_tc_features("What city is the Eiffel tower in ?", features);   // 1.0 where a feature hashes
 *
 *   int64_t ids[EDGEC_TC_IDS];
 *   edgec_tc_token_ids("What city is the Eiffel tower in ?", ids);       // the student's token ids, 0-padded
 *
 * Build the self-test driver: cc -std=c99 -DEDGEC_TC_MAIN featurize.c -o featurize
 * (reads one text per line on stdin, prints the sorted indices set to 1.0, one line per text;
 * with the argument --ids it prints the EDGEC_TC_IDS token ids instead).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define EDGEC_TC_BUCKETS 16384u    /* power of two, = tokenizer.STUDENT_BUCKETS */
#define EDGEC_TC_MAX_TEXT 1024     /* longer texts are truncated */
#define EDGEC_TC_MAX_TOKENS 256
#define EDGEC_TC_IDS 32            /* token ids per text, = tokenizer.MAX_TOKENS */
#define EDGEC_TC_VOCAB 32768u      /* = tokenizer.TEACHER_VOCAB; ids are 1 .. VOCAB-1, 0 pads */

static uint32_t fnv1a(uint32_t h, const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
    return h;
}

static int word_byte(uint8_t b) { return (b >= 'a' && b <= 'z') || (b >= '0' && b <= '9') || b >= 0x80; }

static void set(float *out, uint32_t h) { out[h & (EDGEC_TC_BUCKETS - 1u)] = 1.0f; }

/* lower-cases A-Z into s and splits it into tokens (start, len); returns the token count */
static size_t tokenize(const char *text, uint8_t *s, size_t *start, size_t *len) {
    size_t n = 0, nt = 0;
    for (const uint8_t *p = (const uint8_t *)text; *p && n < EDGEC_TC_MAX_TEXT; p++)
        s[n++] = (*p >= 'A' && *p <= 'Z') ? (uint8_t)(*p + 32) : *p;
    for (size_t i = 0; i < n && nt < EDGEC_TC_MAX_TOKENS;) {
        if (word_byte(s[i])) {
            size_t j = i;
            while (j < n && word_byte(s[j])) j++;
            start[nt] = i; len[nt++] = j - i; i = j;
        } else {
            if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') { start[nt] = i; len[nt++] = 1; }
            i++;
        }
    }
    return nt;
}

void edgec_tc_token_ids(const char *text, int64_t *ids) {
    uint8_t s[EDGEC_TC_MAX_TEXT];
    size_t start[EDGEC_TC_MAX_TOKENS], len[EDGEC_TC_MAX_TOKENS];
    size_t nt = tokenize(text, s, start, len);
    for (size_t t = 0; t < EDGEC_TC_IDS; t++)
        ids[t] = t < nt ? 1 + (int64_t)(fnv1a(fnv1a(2166136261u, (const uint8_t *)"w", 1), s + start[t], len[t])
                                         % (EDGEC_TC_VOCAB - 1u)) : 0;
}

void edgec_tc_features(const char *text, float *out) {
    uint8_t s[EDGEC_TC_MAX_TEXT];
    size_t start[EDGEC_TC_MAX_TOKENS], len[EDGEC_TC_MAX_TOKENS];
    size_t nt = tokenize(text, s, start, len);
    memset(out, 0, EDGEC_TC_BUCKETS * sizeof(float));
    const uint32_t off = 2166136261u;
    for (size_t t = 0; t < nt; t++) {
        set(out, fnv1a(fnv1a(off, (const uint8_t *)"w", 1), s + start[t], len[t]));      /* unigram */
        if (t + 1 < nt) {                                                                  /* bigram */
            uint32_t h = fnv1a(fnv1a(off, (const uint8_t *)"b", 1), s + start[t], len[t]);
            h = fnv1a(h, (const uint8_t *)" ", 1);
            set(out, fnv1a(h, s + start[t + 1], len[t + 1]));
        }
        if (!word_byte(s[start[t]])) continue;
        uint8_t padded[EDGEC_TC_MAX_TEXT + 2];                                             /* "<token>" */
        size_t m = len[t] + 2;
        padded[0] = '<'; memcpy(padded + 1, s + start[t], len[t]); padded[m - 1] = '>';
        for (size_t g = 3; g <= 5; g++)                                                    /* char n-grams */
            for (size_t i = 0; i + g <= m; i++)
                set(out, fnv1a(fnv1a(off, (const uint8_t *)"c", 1), padded + i, g));
    }
}

#ifdef EDGEC_TC_MAIN
#include <stdio.h>
int main(int argc, char **argv) {
    static char line[EDGEC_TC_MAX_TEXT + 2];
    static float f[EDGEC_TC_BUCKETS];
    int ids_mode = argc > 1 && strcmp(argv[1], "--ids") == 0;
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        if (ids_mode) {
            int64_t ids[EDGEC_TC_IDS];
            edgec_tc_token_ids(line, ids);
            for (int t = 0; t < EDGEC_TC_IDS; t++) printf(t ? " %lld" : "%lld", (long long)ids[t]);
            printf("\n");
            continue;
        }
        edgec_tc_features(line, f);
        int first = 1;
        for (unsigned i = 0; i < EDGEC_TC_BUCKETS; i++)
            if (f[i] != 0.0f) { printf(first ? "%u" : " %u", i); first = 0; }
        printf("\n");
    }
    return 0;
}
#endif
