/* Constant shims for libfabric macros that bindgen does not emit. The static-inline calls are
 * wrapped by bindgen's generated extern.c, compiled beside this file. */
#include "wrapper.h"

uint32_t kvxfer_fi_version(void) { return FI_VERSION(FI_MAJOR_VERSION, FI_MINOR_VERSION); }
uint64_t kvxfer_fi_addr_unspec(void) { return FI_ADDR_UNSPEC; }
uint64_t kvxfer_fi_key_notavail(void) { return FI_KEY_NOTAVAIL; }
