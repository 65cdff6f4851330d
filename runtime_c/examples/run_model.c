/* run_model: runs an edgec artifact folder on .npy inputs with the hosted runtime.
 *
 *   run_model <artifact_dir> [input.npy ...] [-o outdir] [--threads N] [--bench N] [--profile]
 *
 * Inputs are given in the model's input order (no inputs: zero-filled). Each must be a
 * little-endian, C-order .npy (format v1, v2 or v3) whose dtype and shape match the
 * model input exactly. Writes one <outdir>/<output name>.npy per output (outdir defaults
 * to "."; characters other than [A-Za-z0-9._-] in names become '_') and prints its shape.
 * --bench N runs N more times and prints the median (p50) latency in microseconds;
 * --profile prints each op's time for one run. Exit status: 0 ok, 1 error, 2 usage.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "edgec/edgec.h"

enum { MAX_INPUTS = 256 };

static void log_to_stderr(void* user, edgec_status_t status, const char* message) {
  (void)user;
  fprintf(stderr, "edgec [%s]: %s\n", edgec_status_str(status), message);
}

static int usage(void) {
  fprintf(stderr,
          "usage: run_model <artifact_dir> [input.npy ...] [-o outdir] [--threads N] [--bench N] [--profile]\n");
  return 2;
}

/*===----------------------------------------------------------------------===*/
/* dtypes and shapes                                                          */
/*===----------------------------------------------------------------------===*/

static const char* dtype_name(int code, int bits) {
  switch (code * 100 + bits) {
    case 232: return "float32";
    case 264: return "float64";
    case 216: return "float16";
    case 8: return "int8";
    case 16: return "int16";
    case 32: return "int32";
    case 64: return "int64";
    case 108: return "uint8";
    case 116: return "uint16";
    case 132: return "uint32";
    case 164: return "uint64";
    case 608: return "bool";
    default: return "unknown";
  }
}

/* numpy descr ("<f4", "|u1", ...) of a dtype. */
static void dtype_descr(int code, int bits, char out[4]) {
  const char kind = code == 2 ? 'f' : code == 0 ? 'i' : code == 1 ? 'u' : 'b';
  out[0] = bits == 8 ? '|' : '<';
  out[1] = kind;
  out[2] = (char)('0' + bits / 8); /* 1, 2, 4 or 8 */
  out[3] = '\0';
}

static void format_shape(const edgec_tensor_info_t* info, char* out, size_t cap) {
  size_t len = 0;
  int d;
  out[0] = '\0';
  for (d = 0; d < info->ndim && len < cap; ++d) {
    len += (size_t)snprintf(out + len, cap - len, "%s%lld", d ? ", " : "", (long long)info->shape[d]);
  }
}

/*===----------------------------------------------------------------------===*/
/* .npy                                                                       */
/*===----------------------------------------------------------------------===*/

static int read_all(const char* path, char** out_data, size_t* out_size) {
  FILE* f = fopen(path, "rb");
  char* data = NULL;
  size_t size = 0, cap = 0, got;
  if (f == NULL) {
    fprintf(stderr, "run_model: cannot open %s: %s\n", path, strerror(errno));
    return 0;
  }
  do {
    if (size == cap) {
      char* bigger;
      cap = cap ? cap * 2 : 1 << 16;
      bigger = (char*)realloc(data, cap);
      if (bigger == NULL) {
        free(data);
        fclose(f);
        fprintf(stderr, "run_model: out of memory reading %s\n", path);
        return 0;
      }
      data = bigger;
    }
    got = fread(data + size, 1, cap - size, f);
    size += got;
  } while (got > 0);
  fclose(f);
  *out_data = data;
  *out_size = size;
  return 1;
}

/* Finds the value after "'<key>':" in the header dict; NULL if absent. */
static const char* dict_value(const char* header, const char* key) {
  char pattern[32];
  const char* p;
  snprintf(pattern, sizeof(pattern), "'%s':", key);
  p = strstr(header, pattern);
  if (p == NULL) return NULL;
  p += strlen(pattern);
  while (*p == ' ') ++p;
  return p;
}

/* Reads |path| into the input |info| at |dst|. Returns 1 on success. */
static int load_npy(const char* path, const edgec_tensor_info_t* info, void* dst) {
  char *data = NULL, *header = NULL;
  size_t size = 0, header_len, start;
  const char *descr, *fortran, *shape;
  char want[4];
  int ok = 0, ndim = 0;
  long long dims[EDGEC_MAX_NDIM + 1];
  if (!read_all(path, &data, &size)) return 0;
  if (size < 10 || memcmp(data, "\x93NUMPY", 6) != 0 || data[6] < 1 || data[6] > 3) {
    fprintf(stderr, "run_model: %s is not a .npy file\n", path);
    goto done;
  }
  if (data[6] == 1) {
    header_len = (size_t)(unsigned char)data[8] | ((size_t)(unsigned char)data[9] << 8);
    start = 10;
  } else {
    if (size < 12) goto bad_header;
    header_len = (size_t)(unsigned char)data[8] | ((size_t)(unsigned char)data[9] << 8) |
                 ((size_t)(unsigned char)data[10] << 16) | ((size_t)(unsigned char)data[11] << 24);
    start = 12;
  }
  if (header_len > size - start) goto bad_header;
  header = (char*)malloc(header_len + 1);
  if (header == NULL) goto done;
  memcpy(header, data + start, header_len);
  header[header_len] = '\0';
  descr = dict_value(header, "descr");
  fortran = dict_value(header, "fortran_order");
  shape = dict_value(header, "shape");
  if (descr == NULL || fortran == NULL || shape == NULL || *shape != '(') goto bad_header;
  dtype_descr(info->dtype_code, info->dtype_bits, want);
  /* '=' is native order: little-endian on every target this example runs on */
  if (!(descr[0] == '\'' && descr[1] != '\0' && strchr("<=|>", descr[1]) != NULL && descr[2] != '\0' &&
        descr[3] != '\0' && descr[4] == '\'' && (descr[1] != '>' || want[2] == '1') &&
        strncmp(descr + 2, want + 1, 2) == 0)) {
    fprintf(stderr, "run_model: %s: dtype %.6s, but input '%s' is %s ('%s')\n", path, descr, info->name,
            dtype_name(info->dtype_code, info->dtype_bits), want);
    goto done;
  }
  for (++shape; *shape != ')' && *shape != '\0';) {
    char* end;
    if (ndim > EDGEC_MAX_NDIM) goto bad_header;
    dims[ndim++] = strtoll(shape, &end, 10);
    if (end == shape) goto bad_header;
    shape = end;
    while (*shape == ',' || *shape == ' ' || *shape == 'L') ++shape;
  }
  if (strncmp(fortran, "True", 4) == 0 && ndim > 1) {
    fprintf(stderr, "run_model: %s is Fortran-ordered; save it C-ordered\n", path);
    goto done;
  }
  {
    int same = ndim == info->ndim, d;
    char expected[160];
    for (d = 0; same && d < ndim; ++d) same = dims[d] == info->shape[d];
    if (!same) {
      format_shape(info, expected, sizeof(expected));
      fprintf(stderr, "run_model: %s: shape does not match input '%s' [%s]\n", path, info->name, expected);
      goto done;
    }
  }
  if (size - start - header_len != info->nbytes) {
    fprintf(stderr, "run_model: %s: %zu data bytes, expected %llu\n", path, size - start - header_len,
            (unsigned long long)info->nbytes);
    goto done;
  }
  memcpy(dst, data + start + header_len, (size_t)info->nbytes);
  ok = 1;
  goto done;
bad_header:
  fprintf(stderr, "run_model: %s: malformed .npy header\n", path);
done:
  free(header);
  free(data);
  return ok;
}

static int save_npy(const char* path, const edgec_tensor_info_t* info, const void* data) {
  char header[512], shape[200], descr[4];
  size_t len, total;
  FILE* f;
  format_shape(info, shape, sizeof(shape));
  dtype_descr(info->dtype_code, info->dtype_bits, descr);
  len = (size_t)snprintf(header, sizeof(header), "{'descr': '%s', 'fortran_order': False, 'shape': (%s%s), }",
                         descr, shape, info->ndim == 1 ? "," : "");
  total = (10 + len + 1 + 63) / 64 * 64; /* magic + len + header + '\n', 64-aligned */
  while (10 + len + 1 < total && len < sizeof(header) - 2) header[len++] = ' ';
  header[len++] = '\n';
  f = fopen(path, "wb");
  if (f == NULL) {
    fprintf(stderr, "run_model: cannot write %s: %s\n", path, strerror(errno));
    return 0;
  }
  fwrite("\x93NUMPY\x01\x00", 1, 8, f);
  fputc((int)(len & 0xff), f);
  fputc((int)(len >> 8), f);
  fwrite(header, 1, len, f);
  fwrite(data, 1, (size_t)info->nbytes, f);
  if (fclose(f) != 0) {
    fprintf(stderr, "run_model: cannot write %s\n", path);
    return 0;
  }
  return 1;
}

/*===----------------------------------------------------------------------===*/
/* main                                                                       */
/*===----------------------------------------------------------------------===*/

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

static int parse_count(const char* s, long* out) {
  char* end;
  long v = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || v < 1 || v > 100000000) return 0;
  *out = v;
  return 1;
}

/* the session's input buffers to ``saved`` (to_saved) or back from it; ``saved[k]`` NULL: allocated
 * here (to_saved). Returns 0 when an allocation fails. */
static int copy_inputs(const edgec_model_t* model, edgec_session_t* session, void** saved, uint32_t n, int to_saved) {
  uint32_t k;
  for (k = 0; k < n; ++k) {
    edgec_tensor_info_t info;
    void* data = NULL;
    edgec_model_input_info(model, k, &info);
    edgec_session_input_data(session, k, &data);
    if (to_saved) {
      if (saved[k] == NULL && (saved[k] = malloc((size_t)info.nbytes + 1)) == NULL) return 0;
      memcpy(saved[k], data, (size_t)info.nbytes);
    } else {
      memcpy(data, saved[k], (size_t)info.nbytes);
    }
  }
  return 1;
}

int main(int argc, char** argv) {
  const char* dir = NULL;
  const char* outdir = ".";
  const char* inputs[MAX_INPUTS];
  int num_files = 0, i, profile = 0, rc = 1;
  long threads = 1, bench = 0;
  edgec_hosted_options_t options;
  edgec_hosted_t* hosted = NULL;
  const edgec_model_t* model = NULL;
  edgec_session_t* session = NULL;
  edgec_status_t st;
  uint32_t num_inputs = 0, num_outputs = 0, num_ops = 0, k;
  void** saved = NULL;

  for (i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
      outdir = argv[++i];
    } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
      if (!parse_count(argv[++i], &threads) || threads > EDGEC_MAX_THREADS) return usage();
    } else if (strcmp(argv[i], "--bench") == 0 && i + 1 < argc) {
      if (!parse_count(argv[++i], &bench)) return usage();
    } else if (strcmp(argv[i], "--profile") == 0) {
      profile = 1;
    } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
      return usage();
    } else if (dir == NULL) {
      dir = argv[i];
    } else if (num_files < MAX_INPUTS) {
      inputs[num_files++] = argv[i];
    } else {
      return usage();
    }
  }
  if (dir == NULL) return usage();

  edgec_hosted_options_init(&options);
  options.num_threads = (uint32_t)threads;
  options.log = log_to_stderr;
  st = edgec_hosted_load_with_options(dir, &options, &hosted);
  if (st != EDGEC_OK) {
    fprintf(stderr, "run_model: cannot load %s: %s\n", dir, edgec_status_str(st));
    return 1;
  }
  edgec_hosted_model(hosted, &model);
  edgec_hosted_session(hosted, &session);
  edgec_model_input_count(model, &num_inputs);
  edgec_model_output_count(model, &num_outputs);
  edgec_model_op_count(model, &num_ops);

  if (num_files != 0 && (uint32_t)num_files != num_inputs) {
    fprintf(stderr, "run_model: the model has %u input(s), %d file(s) given\n", num_inputs, num_files);
    goto out;
  }
  for (k = 0; k < num_inputs; ++k) {
    edgec_tensor_info_t info;
    void* data = NULL;
    edgec_model_input_info(model, k, &info);
    edgec_session_input_data(session, k, &data);
    if (num_files == 0) {
      memset(data, 0, (size_t)info.nbytes);
    } else if (!load_npy(inputs[k], &info, data)) {
      goto out;
    }
  }
  if (num_files == 0 && num_inputs > 0) fprintf(stderr, "run_model: no inputs given, using zeros\n");
  /* a run may reuse an input's arena bytes for later values (the memory plan frees an input after
   * its last reader), so the inputs are kept and written back before every further run */
  saved = (void**)calloc(num_inputs + 1, sizeof(void*));
  if (saved == NULL || !copy_inputs(model, session, saved, num_inputs, 1)) {
    fprintf(stderr, "run_model: out of memory\n");
    goto out;
  }

  st = edgec_hosted_run(hosted);
  if (st != EDGEC_OK) {
    fprintf(stderr, "run_model: run failed: %s\n", edgec_status_str(st));
    goto out;
  }
  if (num_outputs > 0 && mkdir(outdir, 0777) != 0 && errno != EEXIST) {
    fprintf(stderr, "run_model: cannot create %s: %s\n", outdir, strerror(errno));
    goto out;
  }
  for (k = 0; k < num_outputs; ++k) {
    edgec_tensor_info_t info;
    void* data = NULL;
    char shape[200], path[4096], safe[256];
    size_t j;
    edgec_model_output_info(model, k, &info);
    edgec_session_output_data(session, k, &data);
    for (j = 0; info.name[j] != '\0' && j + 1 < sizeof(safe); ++j) {
      const char c = info.name[j];
      const int keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                       c == '_' || c == '-';
      safe[j] = keep ? c : '_';
    }
    safe[j] = '\0';
    if (safe[0] == '\0') {
      safe[0] = '_';
      safe[1] = '\0';
    } else if (strcmp(safe, ".") == 0 || strcmp(safe, "..") == 0) {
      safe[0] = '_';
    }
    snprintf(path, sizeof(path), "%s/%s.npy", outdir, safe);
    format_shape(&info, shape, sizeof(shape));
    if (!save_npy(path, &info, data)) goto out;
    printf("output %s: %s[%s] -> %s\n", info.name, dtype_name(info.dtype_code, info.dtype_bits), shape, path);
  }

  if (profile) {
    uint64_t* ns = (uint64_t*)calloc(num_ops + 1, sizeof(uint64_t));
    copy_inputs(model, session, saved, num_inputs, 0);
    if (ns == NULL || edgec_hosted_run_profiled(hosted, ns, num_ops) != EDGEC_OK) {
      fprintf(stderr, "run_model: profiled run failed\n");
      free(ns);
      goto out;
    }
    for (k = 0; k < num_ops; ++k) {
      const char *name = NULL, *kernel = NULL;
      edgec_model_op_name(model, k, &name, &kernel);
      printf("op %u %s (%s): %.1f us\n", k, name, kernel, (double)ns[k] / 1e3);
    }
    free(ns);
  }
  if (bench > 0) {
    double* us = (double*)malloc((size_t)bench * sizeof(double));
    long r;
    if (us == NULL) goto out;
    for (r = 0; r < bench; ++r) {
      double t0;
      copy_inputs(model, session, saved, num_inputs, 0); /* untimed */
      t0 = now_us();
      st = edgec_hosted_run(hosted);
      us[r] = now_us() - t0;
      if (st != EDGEC_OK) {
        fprintf(stderr, "run_model: run failed: %s\n", edgec_status_str(st));
        free(us);
        goto out;
      }
    }
    qsort(us, (size_t)bench, sizeof(double), cmp_double);
    printf("bench: %ld runs, %ld thread(s): p50 %.1f us, min %.1f us, max %.1f us\n", bench, threads,
           bench % 2 ? us[bench / 2] : 0.5 * (us[bench / 2 - 1] + us[bench / 2]), us[0], us[bench - 1]);
    free(us);
  }
  rc = 0;
out:
  if (saved != NULL) {
    for (k = 0; k < num_inputs; ++k) free(saved[k]);
    free(saved);
  }
  edgec_hosted_free(hosted);
  return rc;
}
