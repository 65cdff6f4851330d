/* Builds model blobs (docs/artifact.md) into caller buffers, for the C tests. No heap.
 * tb_addmul() describes the standard test model:  y = (x + c) * x,  x, c, y: f32[2,3]. */
#ifndef EDGEC_TESTS_BLOB_BUILDER_H_
#define EDGEC_TESTS_BLOB_BUILDER_H_

#include <stdint.h>
#include <string.h>

#include "../src/internal.h"

enum { TB_MAX_TENSORS = 16, TB_MAX_OPS = 8, TB_MAX_KERNELS = 8, TB_MAX_IO = 4 };

typedef struct tb_tensor_t {
  const char* name;
  uint8_t code, bits, ndim, storage;
  uint32_t flags;
  int64_t dims[8];
  uint64_t offset; /* arena offset; constants are placed by tb_build */
  uint64_t nbytes;
  const void* data; /* constants */
} tb_tensor_t;

typedef struct tb_op_t {
  uint32_t kernel;
  uint32_t num_args;
  uint32_t args[32];
  const char* name;
} tb_op_t;

typedef struct tb_model_t {
  tb_tensor_t tensors[TB_MAX_TENSORS];
  uint32_t num_tensors;
  tb_op_t ops[TB_MAX_OPS];
  uint32_t num_ops;
  const char* kernels[TB_MAX_KERNELS];
  uint32_t num_kernels;
  uint32_t inputs[TB_MAX_IO], num_inputs;
  uint32_t outputs[TB_MAX_IO], num_outputs;
  uint64_t arena_size, workspace_size;
} tb_model_t;

/* Where tb_build put each section. */
typedef struct tb_layout_t {
  uint64_t tensors, ops, args, kernels, io, shapes, strings, strings_size, consts, consts_size, total;
  uint64_t tensor_consts_offset[TB_MAX_TENSORS];
} tb_layout_t;

static void tb_w16(uint8_t* p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void tb_w32(uint8_t* p, uint32_t v) { tb_w16(p, (uint16_t)v); tb_w16(p + 2, (uint16_t)(v >> 16)); }
static void tb_w64(uint8_t* p, uint64_t v) { tb_w32(p, (uint32_t)v); tb_w32(p + 4, (uint32_t)(v >> 32)); }
static uint64_t tb_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

/* Returns |p| rounded up to 64 bytes (for static buffers of size + 64). */
static uint8_t* tb_align64(uint8_t* p) {
  return p + ((64 - ((uintptr_t)p % 64)) % 64);
}

/* Recomputes the header checksum after a patch. */
static void tb_fix_crc(uint8_t* blob, size_t size) {
  tb_w32(blob + 8, edgec_crc32(0, blob + 16, size - 16));
}

/* A tensor of |ndim| dims with nbytes computed from the shape. */
static tb_tensor_t tb_tensor(const char* name, uint8_t code, uint8_t bits, uint8_t ndim, const int64_t* dims,
                             uint8_t storage, uint32_t flags, uint64_t offset, const void* data) {
  tb_tensor_t t;
  uint64_t n = 1;
  uint8_t i;
  memset(&t, 0, sizeof(t));
  t.name = name;
  t.code = code;
  t.bits = bits;
  t.ndim = ndim;
  t.storage = storage;
  t.flags = flags;
  t.offset = offset;
  t.data = data;
  for (i = 0; i < ndim && i < 8; ++i) {
    t.dims[i] = dims[i];
    n *= (uint64_t)dims[i];
  }
  t.nbytes = n * (bits / 8u);
  return t;
}

/* Writes the blob of |m| into |out| (|cap| bytes); returns its size, 0 if it does not fit. */
static size_t tb_build(const tb_model_t* m, uint8_t* out, size_t cap, tb_layout_t* l) {
  uint64_t cursor = 160, num_dims = 0, num_args = 0, i, j;
  uint8_t* p;
  memset(l, 0, sizeof(*l));
  for (i = 0; i < m->num_tensors; ++i) num_dims += m->tensors[i].ndim;
  for (i = 0; i < m->num_ops; ++i) num_args += m->ops[i].num_args;
  l->tensors = cursor; cursor += 48u * m->num_tensors;
  l->ops = cursor; cursor += 24u * m->num_ops;
  l->args = cursor; cursor += 4u * num_args;
  l->kernels = cursor; cursor += 8u * m->num_kernels;
  l->io = cursor; cursor += 4u * (m->num_inputs + m->num_outputs);
  cursor = tb_up(cursor, 8);
  l->shapes = cursor; cursor += 8u * num_dims;
  l->strings = cursor;
  for (i = 0; i < m->num_tensors; ++i) cursor += strlen(m->tensors[i].name) + 1;
  for (i = 0; i < m->num_ops; ++i) cursor += strlen(m->ops[i].name) + 1;
  for (i = 0; i < m->num_kernels; ++i) cursor += strlen(m->kernels[i]) + 1;
  l->strings_size = cursor - l->strings;
  cursor = tb_up(cursor, 64);
  l->consts = cursor;
  for (i = 0; i < m->num_tensors; ++i) {
    if (m->tensors[i].storage == 1) {
      l->tensor_consts_offset[i] = tb_up(cursor - l->consts, 64);
      cursor = l->consts + l->tensor_consts_offset[i] + m->tensors[i].nbytes;
    }
  }
  l->consts_size = cursor - l->consts;
  l->total = cursor;
  if (cursor > cap) return 0;
  memset(out, 0, (size_t)cursor);

  {
    uint64_t str = 0, dim = 0, arg = 0;
    char* strings = (char*)out + l->strings;
    memcpy(out, "EDGECMDL", 8);
    tb_w16(out + 16, 1);
    tb_w16(out + 18, 0);
    tb_w32(out + 20, 160);
    tb_w64(out + 24, l->total);
    tb_w64(out + 32, m->arena_size);
    tb_w64(out + 40, m->workspace_size);
    tb_w32(out + 48, m->num_tensors);
    tb_w32(out + 52, m->num_ops);
    tb_w32(out + 56, (uint32_t)num_args);
    tb_w32(out + 60, m->num_kernels);
    tb_w32(out + 64, m->num_inputs);
    tb_w32(out + 68, m->num_outputs);
    tb_w32(out + 72, (uint32_t)num_dims);
    tb_w64(out + 80, l->tensors);
    tb_w64(out + 88, l->ops);
    tb_w64(out + 96, l->args);
    tb_w64(out + 104, l->kernels);
    tb_w64(out + 112, l->io);
    tb_w64(out + 120, l->shapes);
    tb_w64(out + 128, l->strings);
    tb_w64(out + 136, l->strings_size);
    tb_w64(out + 144, l->consts);
    tb_w64(out + 152, l->consts_size);
    for (i = 0; i < m->num_tensors; ++i) {
      const tb_tensor_t* t = &m->tensors[i];
      p = out + l->tensors + 48 * i;
      tb_w32(p, (uint32_t)str);
      strcpy(strings + str, t->name);
      str += strlen(t->name) + 1;
      p[4] = t->code;
      p[5] = t->bits;
      p[6] = t->ndim;
      p[7] = t->storage;
      tb_w32(p + 8, t->flags);
      tb_w32(p + 12, (uint32_t)dim);
      for (j = 0; j < t->ndim; ++j) tb_w64(out + l->shapes + 8 * (dim + j), (uint64_t)t->dims[j]);
      dim += t->ndim;
      tb_w64(p + 16, t->storage == 1 ? l->tensor_consts_offset[i] : t->offset);
      tb_w64(p + 24, t->nbytes);
      tb_w32(p + 32, 0xFFFFFFFFu);
      if (t->storage == 1 && t->data != NULL) {
        memcpy(out + l->consts + l->tensor_consts_offset[i], t->data, (size_t)t->nbytes);
      }
    }
    for (i = 0; i < m->num_ops; ++i) {
      const tb_op_t* op = &m->ops[i];
      p = out + l->ops + 24 * i;
      tb_w32(p, op->kernel);
      tb_w32(p + 4, (uint32_t)arg);
      tb_w32(p + 8, op->num_args);
      tb_w32(p + 12, (uint32_t)str);
      strcpy(strings + str, op->name);
      str += strlen(op->name) + 1;
      for (j = 0; j < op->num_args; ++j) tb_w32(out + l->args + 4 * (arg + j), op->args[j]);
      arg += op->num_args;
    }
    for (i = 0; i < m->num_kernels; ++i) {
      tb_w32(out + l->kernels + 8 * i, (uint32_t)str);
      strcpy(strings + str, m->kernels[i]);
      str += strlen(m->kernels[i]) + 1;
    }
    for (i = 0; i < m->num_inputs; ++i) tb_w32(out + l->io + 4 * i, m->inputs[i]);
    for (i = 0; i < m->num_outputs; ++i) tb_w32(out + l->io + 4 * (m->num_inputs + i), m->outputs[i]);
  }
  tb_fix_crc(out, (size_t)l->total);
  return (size_t)l->total;
}

/* c = [0.5, 1, 1.5, 2, 2.5, 3] */
static const float tb_addmul_c[6] = {0.5f, 1.0f, 1.5f, 2.0f, 2.5f, 3.0f};

/* The standard model: tensors x (input, arena 0), c (const), t (arena 64), y (output,
 * arena 128); op "add" = add_f32(x, c, t), op "mul" = mul_f32(t, x, y). */
static void tb_addmul(tb_model_t* m) {
  static const int64_t dims[2] = {2, 3};
  memset(m, 0, sizeof(*m));
  m->tensors[0] = tb_tensor("x", 2, 32, 2, dims, 0, 1, 0, NULL);
  m->tensors[1] = tb_tensor("c", 2, 32, 2, dims, 1, 0, 0, tb_addmul_c);
  m->tensors[2] = tb_tensor("t", 2, 32, 2, dims, 0, 0, 64, NULL);
  m->tensors[3] = tb_tensor("y", 2, 32, 2, dims, 0, 2, 128, NULL);
  m->num_tensors = 4;
  m->kernels[0] = "add_f32";
  m->kernels[1] = "mul_f32";
  m->num_kernels = 2;
  m->ops[0].kernel = 0;
  m->ops[0].num_args = 3;
  m->ops[0].args[0] = 0;
  m->ops[0].args[1] = 1;
  m->ops[0].args[2] = 2;
  m->ops[0].name = "add";
  m->ops[1].kernel = 1;
  m->ops[1].num_args = 3;
  m->ops[1].args[0] = 2;
  m->ops[1].args[1] = 0;
  m->ops[1].args[2] = 3;
  m->ops[1].name = "mul";
  m->num_ops = 2;
  m->inputs[0] = 0;
  m->num_inputs = 1;
  m->outputs[0] = 3;
  m->num_outputs = 1;
  m->arena_size = 192;
  m->workspace_size = 256;
}

#endif /* EDGEC_TESTS_BLOB_BUILDER_H_ */
