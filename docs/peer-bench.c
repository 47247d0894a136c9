/* peer-bench.c - tiny llama.cpp harness used by peer-bench.sh to measure
 * llama.cpp on the same machine as ttq, so ttq speed can be stated as a
 * ratio against llama.cpp measured in the same window.
 *
 * It links against a prebuilt libllama / libggml and does what llama-bench
 * does for one test at a time: random tokens, a warmup run, then N timed
 * repetitions on a cleared KV cache, with a spin-polling ggml threadpool of
 * the requested size attached for both prefill and decode.
 *
 *   peer-bench quantize IN.gguf OUT.gguf FTYPE [THREADS]
 *       FTYPE is a llama_ftype number (1 = F16, 2 = Q4_0, 7 = Q8_0).
 *   peer-bench bench MODEL.gguf [-t THREADS] [-p N_PROMPT] [-n N_GEN]
 *                               [-r REPS] [--label NAME] [--no-mmap] [-v]
 *                               [--extra '"key":"value",...']
 *       prints one JSON line per test (pp N_PROMPT and tg N_GEN); --extra
 *       is appended verbatim to each line's fields.
 *   peer-bench info
 *       prints the CPU backend variant that ggml picked and its features.
 *
 * The directory holding libggml-cpu-*.so is taken from $PEER_BACKEND_DIR
 * (ggml then picks the best variant for this CPU); $PEER_CPU_BACKEND, the
 * path of one libggml-cpu-*.so, forces that variant instead.
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "ggml.h"
#include "llama.h"

static int g_verbose = 0;

static bool no_progress(float progress, void *ud) {
    (void)progress;
    (void)ud;
    return true;
}

static void quiet_log(enum ggml_log_level level, const char *text, void *ud) {
    (void)ud;
    if (g_verbose || level >= GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Small deterministic PRNG so every run feeds the same token ids. */
static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static int32_t rand_token(int32_t n_vocab) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (int32_t)(g_rng % (uint64_t)n_vocab);
}

/* Name of the libggml-cpu-*.so mapped into this process, from /proc/self/maps. */
static void loaded_cpu_variant(char *out, size_t cap) {
    snprintf(out, cap, "unknown");
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        char *p = strstr(line, "libggml-cpu-");
        if (p) {
            p[strcspn(p, "\n")] = 0;
            snprintf(out, cap, "%s", p);
            break;
        }
    }
    fclose(f);
}

static ggml_backend_reg_t load_backends(void) {
    const char *dir = getenv("PEER_BACKEND_DIR");
    const char *one = getenv("PEER_CPU_BACKEND");
    llama_log_set(quiet_log, NULL);
    if (one && *one) {
        if (!ggml_backend_load(one)) {
            fprintf(stderr, "peer-bench: cannot load %s\n", one);
            exit(1);
        }
    } else if (dir && *dir)
        ggml_backend_load_all_from_path(dir);
    else
        ggml_backend_load_all();
    ggml_backend_dev_t dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    if (!dev) {
        fprintf(stderr, "peer-bench: no CPU backend could be loaded\n");
        exit(1);
    }
    return ggml_backend_dev_backend_reg(dev);
}

/* Comma-separated list of the CPU backend's compiled-in features. */
static void cpu_features(ggml_backend_reg_t reg, char *out, size_t cap) {
    out[0] = 0;
    ggml_backend_get_features_t get =
        (ggml_backend_get_features_t)ggml_backend_reg_get_proc_address(reg, "ggml_backend_get_features");
    if (!get) return;
    size_t len = 0;
    for (struct ggml_backend_feature *f = get(reg); f && f->name; f++) {
        int w = snprintf(out + len, cap - len, "%s%s=%s", len ? "," : "", f->name, f->value);
        if (w < 0 || (size_t)w >= cap - len) break;
        len += (size_t)w;
    }
}

static int cmd_info(void) {
    ggml_backend_reg_t reg = load_backends();
    char variant[512], feats[2048];
    loaded_cpu_variant(variant, sizeof variant);
    cpu_features(reg, feats, sizeof feats);
    printf("{\"llama_system_info\":\"%s\",\"cpu_backend\":\"%s\",\"features\":\"%s\"}\n",
           llama_print_system_info(), variant, feats);
    return 0;
}

static int cmd_quantize(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: peer-bench quantize IN OUT FTYPE [THREADS]\n");
        return 2;
    }
    load_backends();
    llama_backend_init();
    llama_model_quantize_params qp = llama_model_quantize_default_params();
    qp.ftype = (enum llama_ftype)atoi(argv[4]);
    qp.nthread = argc > 5 ? atoi(argv[5]) : 2;
    uint64_t t0 = now_ns();
    uint32_t rc = llama_model_quantize(argv[2], argv[3], &qp);
    if (rc != 0) {
        fprintf(stderr, "peer-bench: llama_model_quantize failed (%u)\n", rc);
        return 1;
    }
    fprintf(stderr, "peer-bench: quantized %s -> %s (ftype %d) in %.1f s\n", argv[2], argv[3],
            (int)qp.ftype, (now_ns() - t0) / 1e9);
    return 0;
}

/* One prefill of n_prompt random tokens, submitted as a single batch. */
static int run_prompt(struct llama_context *ctx, int32_t n_vocab, int n_prompt, int32_t bos) {
    llama_token *toks = malloc(sizeof(llama_token) * (size_t)n_prompt);
    for (int i = 0; i < n_prompt; i++) toks[i] = rand_token(n_vocab);
    if (bos >= 0) toks[0] = bos;
    int rc = llama_decode(ctx, llama_batch_get_one(toks, n_prompt));
    llama_synchronize(ctx);
    free(toks);
    return rc;
}

/* n_gen single-token decode steps starting from an empty cache. */
static int run_gen(struct llama_context *ctx, int32_t n_vocab, int n_gen, int32_t bos) {
    llama_token tok = bos >= 0 ? bos : rand_token(n_vocab);
    for (int i = 0; i < n_gen; i++) {
        int rc = llama_decode(ctx, llama_batch_get_one(&tok, 1));
        if (rc != 0) return rc;
        llama_synchronize(ctx);
        tok = rand_token(n_vocab);
    }
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int n) {
    double *c = malloc(sizeof(double) * (size_t)n);
    memcpy(c, v, sizeof(double) * (size_t)n);
    qsort(c, (size_t)n, sizeof(double), cmp_double);
    double m = n % 2 ? c[n / 2] : 0.5 * (c[n / 2 - 1] + c[n / 2]);
    free(c);
    return m;
}

/* 1-minute load average: shows when something else was using the CPU. */
static double loadavg1(void) {
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1;
        fclose(f);
    }
    return l;
}

static void stats(const double *v, int n, double *mean, double *sd, double *mn, double *mx) {
    double s = 0, q = 0;
    *mn = v[0];
    *mx = v[0];
    for (int i = 0; i < n; i++) {
        s += v[i];
        if (v[i] < *mn) *mn = v[i];
        if (v[i] > *mx) *mx = v[i];
    }
    *mean = s / n;
    for (int i = 0; i < n; i++) q += (v[i] - *mean) * (v[i] - *mean);
    *sd = n > 1 ? sqrt(q / (n - 1)) : 0.0;
}

static int cmd_bench(int argc, char **argv) {
    const char *path = NULL, *label = NULL, *extra = NULL;
    int n_threads = 2, n_prompt = 128, n_gen = 32, reps = 5, no_mmap = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-t") && i + 1 < argc) n_threads = atoi(argv[++i]);
        else if (!strcmp(a, "-p") && i + 1 < argc) n_prompt = atoi(argv[++i]);
        else if (!strcmp(a, "-n") && i + 1 < argc) n_gen = atoi(argv[++i]);
        else if (!strcmp(a, "-r") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(a, "--label") && i + 1 < argc) label = argv[++i];
        else if (!strcmp(a, "--extra") && i + 1 < argc) extra = argv[++i];
        else if (!strcmp(a, "-v")) g_verbose = 1;
        else if (!strcmp(a, "--no-mmap")) no_mmap = 1;
        else if (!path) path = a;
        else {
            fprintf(stderr, "peer-bench: unknown argument %s\n", a);
            return 2;
        }
    }
    if (!path || reps < 1 || n_threads < 1) {
        fprintf(stderr, "usage: peer-bench bench MODEL [-t N] [-p N] [-n N] [-r N] [--label S] [--no-mmap] [--extra JSON] [-v]\n");
        return 2;
    }
    if (!label) label = path;

    ggml_backend_reg_t cpu_reg = load_backends();
    llama_backend_init();

    typedef struct ggml_threadpool *(*tp_new_fn)(struct ggml_threadpool_params *);
    typedef void (*tp_free_fn)(struct ggml_threadpool *);
    tp_new_fn tp_new = (tp_new_fn)ggml_backend_reg_get_proc_address(cpu_reg, "ggml_threadpool_new");
    tp_free_fn tp_free = (tp_free_fn)ggml_backend_reg_get_proc_address(cpu_reg, "ggml_threadpool_free");
    if (!tp_new || !tp_free) {
        fprintf(stderr, "peer-bench: CPU backend exports no threadpool API\n");
        return 1;
    }

    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    if (!g_verbose) mp.progress_callback = no_progress;
    if (no_mmap) mp.load_mode = LLAMA_LOAD_MODE_NONE;
    struct llama_model *model = llama_model_load_from_file(path, mp);
    if (!model) {
        fprintf(stderr, "peer-bench: cannot load %s\n", path);
        return 1;
    }
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    int32_t n_vocab = llama_vocab_n_tokens(vocab);
    int32_t bos = llama_vocab_get_add_bos(vocab) ? llama_vocab_bos(vocab) : -1;
    char desc[256];
    llama_model_desc(model, desc, sizeof desc);

    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)(n_prompt + n_gen);
    cp.n_batch = 2048; /* llama-bench defaults */
    cp.n_ubatch = 512;
    cp.n_threads = n_threads;
    cp.n_threads_batch = n_threads;
    cp.no_perf = true;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        fprintf(stderr, "peer-bench: cannot create context\n");
        return 1;
    }

    struct ggml_threadpool_params tpp = ggml_threadpool_params_default(n_threads);
    tpp.poll = 50; /* llama-bench default */
    struct ggml_threadpool *tp = tp_new(&tpp);
    if (!tp) {
        fprintf(stderr, "peer-bench: threadpool creation failed\n");
        return 1;
    }
    llama_attach_threadpool(ctx, tp, NULL);
    llama_set_n_threads(ctx, n_threads, n_threads);

    char variant[512];
    loaded_cpu_variant(variant, sizeof variant);
    double *ts = malloc(sizeof(double) * (size_t)reps);

    for (int test = 0; test < 2; test++) {
        int n = test == 0 ? n_prompt : n_gen;
        if (n <= 0) continue;
        double load0 = loadavg1();
        llama_memory_clear(llama_get_memory(ctx), false); /* warmup, as llama-bench */
        int rc = test == 0 ? run_prompt(ctx, n_vocab, n, bos) : run_gen(ctx, n_vocab, 1, bos);
        if (rc != 0) {
            fprintf(stderr, "peer-bench: warmup decode failed (%d)\n", rc);
            return 1;
        }
        for (int r = 0; r < reps; r++) {
            llama_memory_clear(llama_get_memory(ctx), false);
            uint64_t t0 = now_ns();
            rc = test == 0 ? run_prompt(ctx, n_vocab, n, bos) : run_gen(ctx, n_vocab, n, bos);
            uint64_t dt = now_ns() - t0;
            if (rc != 0) {
                fprintf(stderr, "peer-bench: decode failed (%d)\n", rc);
                return 1;
            }
            ts[r] = n / (dt / 1e9);
        }
        double mean, sd, mn, mx;
        stats(ts, reps, &mean, &sd, &mn, &mx);
        printf("{\"engine\":\"llama.cpp\",\"weights\":\"%s\",\"model\":\"%s\",\"model_bytes\":%llu,"
               "\"test\":\"%s%d\",\"threads\":%d,\"reps\":%d,\"tok_s\":%.2f,\"tok_s_sd\":%.2f,"
               "\"tok_s_median\":%.2f,\"tok_s_min\":%.2f,\"tok_s_max\":%.2f,\"loadavg1\":%.2f,\"samples\":[",
               label, desc, (unsigned long long)llama_model_size(model), test == 0 ? "pp" : "tg", n,
               n_threads, reps, mean, sd, median(ts, reps), mn, mx, load0);
        for (int r = 0; r < reps; r++) printf("%s%.2f", r ? "," : "", ts[r]);
        printf("],\"cpu_backend\":\"%s\"%s%s}\n", variant, extra ? "," : "", extra ? extra : "");
        fflush(stdout);
    }

    free(ts);
    llama_free(ctx);
    tp_free(tp);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "bench")) return cmd_bench(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "quantize")) return cmd_quantize(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "info")) return cmd_info();
    fprintf(stderr, "usage: peer-bench {bench|quantize|info} ...\n");
    return 2;
}
