/* Every libfabric header kvxfer binds. */
#include <rdma/fabric.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_rma.h>
#include <rdma/fi_tagged.h>
#include <rdma/fi_ext.h>

/* Values that are macros (or macro expressions) bindgen cannot evaluate. */
uint32_t kvxfer_fi_version(void);
uint64_t kvxfer_fi_addr_unspec(void);
uint64_t kvxfer_fi_key_notavail(void);

/* libfabric loaded on first use (shim.c): NULL once loaded, else why it could not be; the file
 * it was loaded from (loading it; "" where it could not be). */
const char *kvxfer_fabric_load(void);
const char *kvxfer_fabric_path(void);
