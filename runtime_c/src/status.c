/* Status names and the fixed-size log message builder (no heap, no printf). */
#include "internal.h"

const char* edgec_status_str(edgec_status_t status) {
#if EDGEC_LOG_ENABLED
  switch (status) {
    case EDGEC_OK: return "EDGEC_OK";
    case EDGEC_ERR_INVALID_ARGUMENT: return "EDGEC_ERR_INVALID_ARGUMENT";
    case EDGEC_ERR_BAD_MODEL: return "EDGEC_ERR_BAD_MODEL";
    case EDGEC_ERR_UNSUPPORTED: return "EDGEC_ERR_UNSUPPORTED";
    case EDGEC_ERR_ARENA_TOO_SMALL: return "EDGEC_ERR_ARENA_TOO_SMALL";
    case EDGEC_ERR_FAILED_PRECONDITION: return "EDGEC_ERR_FAILED_PRECONDITION";
    case EDGEC_ERR_KERNEL: return "EDGEC_ERR_KERNEL";
    case EDGEC_ERR_IO: return "EDGEC_ERR_IO";
    case EDGEC_ERR_INTERNAL: return "EDGEC_ERR_INTERNAL";
  }
  return "EDGEC_ERR_UNKNOWN";
#else
  (void)status;
  return "";
#endif
}

void edgec_msg_init(edgec_msg_t* msg) {
  msg->len = 0;
  msg->text[0] = '\0';
}

void edgec_msg_str(edgec_msg_t* msg, const char* s) {
  static const char kCut[] = "...";
  const size_t cap = sizeof(msg->text) - 1;
  if (s == NULL) s = "(null)";
  while (*s != '\0') {
    if (msg->len == cap) {
      memcpy(msg->text + cap - (sizeof(kCut) - 1), kCut, sizeof(kCut) - 1);
      break;
    }
    msg->text[msg->len++] = *s++;
  }
  msg->text[msg->len] = '\0';
}

void edgec_msg_u64(edgec_msg_t* msg, uint64_t v) {
  char digits[21];
  size_t i = sizeof(digits) - 1;
  digits[i] = '\0';
  do {
    digits[--i] = (char)('0' + (v % 10));
    v /= 10;
  } while (v != 0);
  edgec_msg_str(msg, digits + i);
}

void edgec_msg_i64(edgec_msg_t* msg, int64_t v) {
  if (v < 0) {
    edgec_msg_str(msg, "-");
    edgec_msg_u64(msg, (uint64_t)0 - (uint64_t)v);
  } else {
    edgec_msg_u64(msg, (uint64_t)v);
  }
}

void edgec_msg_emit(const edgec_msg_t* msg, edgec_log_fn_t log, void* user, edgec_status_t status) {
  if (log != NULL) log(user, status, msg->text);
}
