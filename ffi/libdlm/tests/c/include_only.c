/*
 * The committed header on its own, compiled (not linked) as C11 and as
 * C++17 with every warning an error: it must stand alone, survive being
 * included twice, and give its enums the 32-bit size the ABI promises.
 */
#include "dlm.h"
#include "dlm.h"

#ifdef __cplusplus
#define DLM_STATIC_ASSERT static_assert
#else
#define DLM_STATIC_ASSERT _Static_assert
#endif

DLM_STATIC_ASSERT(sizeof(dlm_status) == 4, "dlm_status is 32 bits");
DLM_STATIC_ASSERT(sizeof(dlm_lock_state) == 4, "dlm_lock_state is 32 bits");
DLM_STATIC_ASSERT(DLM_OK == 0, "DLM_OK is 0");
DLM_STATIC_ASSERT(DLM_LOCK_AUTO_RENEW == 1, "the auto-renew flag");

/* Every function pointer type is usable as declared. */
typedef struct {
  dlm_lost_fn lost;
  dlm_encode_fn encode;
  dlm_decode_fn decode;
  const char *(*status_string)(uint32_t);
} dlm_callbacks;

const dlm_callbacks *dlm_include_only_check(void);
const dlm_callbacks *dlm_include_only_check(void) {
  static const dlm_callbacks callbacks = {NULL, NULL, NULL, dlm_status_string};
  return &callbacks;
}
