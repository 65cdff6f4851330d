/* The firmware's input tensors: model_input.c, generated from .npy files by
 * edgec.artifact.firmware (render_input_source) or by build.py in this folder. */
#ifndef EDGEC_FW_MODEL_INPUT_H_
#define EDGEC_FW_MODEL_INPUT_H_
#include <stdint.h>

typedef struct edgec_fw_input_t {
  const uint8_t* data; /* the tensor's bytes, C order, little-endian */
  uint32_t nbytes;
} edgec_fw_input_t;

extern const edgec_fw_input_t edgec_fw_inputs[];
extern const uint32_t edgec_fw_num_inputs;

#endif
