/* Every UCX header kvxfer binds. */
#include <ucp/api/ucp.h>
#include <ucs/type/status.h>
#include <ucs/memory/memory_type.h>
