/* Constant shims for libfabric macros that bindgen does not emit, and libfabric itself loaded on
 * first use. The static-inline calls are wrapped by bindgen's generated extern.c, compiled beside
 * this file; they reach the library through the function tables of the objects it returns.
 *
 * libfabric is not linked: loading it runs the constructors of every library it links, and a
 * distribution's libfabric links PSM libraries whose constructors sleep 0.2 s in all. A kvxfer
 * command that opens no fabric (UCX runs, plans, analysis, --help) should not pay that. The few
 * functions libfabric exports are defined here instead, each loading the library once and
 * calling its own (compiled with hidden visibility: nothing outside this executable sees them). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "wrapper.h"

uint32_t kvxfer_fi_version(void) { return FI_VERSION(FI_MAJOR_VERSION, FI_MINOR_VERSION); }
uint64_t kvxfer_fi_addr_unspec(void) { return FI_ADDR_UNSPEC; }
uint64_t kvxfer_fi_key_notavail(void) { return FI_KEY_NOTAVAIL; }

/* libfabric's ABI 1 name, which every release since 1.0 keeps. */
#define KVXFER_FABRIC_SONAME "libfabric.so.1"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static void *lib;
static char load_error[512];
static char lib_path[4096];

static int (*p_getinfo)(uint32_t, const char *, const char *, uint64_t, const struct fi_info *,
                        struct fi_info **);
static void (*p_freeinfo)(struct fi_info *);
static struct fi_info *(*p_dupinfo)(const struct fi_info *);
static int (*p_fabric)(struct fi_fabric_attr *, struct fid_fabric **, void *);
static int (*p_open)(uint32_t, const char *, void *, size_t, uint64_t, struct fid **, void *);
static const char *(*p_strerror)(int);
static char *(*p_tostr)(const void *, enum fi_type);
static uint32_t (*p_version)(void);

/* The version of each function that the libfabric the build found gives by default (build.rs
 * reads them; fi_getinfo@@FABRIC_1.3 in 1.17): the layout of struct fi_info these headers
 * describe, which a link would have bound. A newer libfabric keeps it beside its own default.
 * NULL where the build could not read them: the loaded library's default. */
#ifndef KVXFER_VER_fi_getinfo
#define KVXFER_VER_fi_getinfo NULL
#define KVXFER_VER_fi_freeinfo NULL
#define KVXFER_VER_fi_dupinfo NULL
#define KVXFER_VER_fi_fabric NULL
#define KVXFER_VER_fi_open NULL
#define KVXFER_VER_fi_strerror NULL
#define KVXFER_VER_fi_tostr NULL
#define KVXFER_VER_fi_version NULL
#endif

/* Finds `name` at `version` in the loaded library; false (with the reason kept) when it is
 * missing. */
static int find_symbol(void **slot, const char *name, const char *version) {
    *slot = version != NULL ? dlvsym(lib, name, version) : dlsym(lib, name);
    if (*slot == NULL) {
        snprintf(load_error, sizeof load_error, "%s has no %s%s%s%s", KVXFER_FABRIC_SONAME, name,
                 version != NULL ? "@" : "", version != NULL ? version : "",
                 version != NULL ? " (an older libfabric than kvxfer was built against)" : "");
        return 0;
    }
    return 1;
}

#define FIND(slot, name) find_symbol((void **)&(slot), #name, KVXFER_VER_##name)

static void load(void) {
    /* The initialisers of libraries libfabric links may take signals over (Debian's PSM
     * libraries install handlers for SIGINT, SIGTERM, SIGSEGV and more, which exit with 1):
     * loaded at start they ran before kvxfer installed its own, loaded now they would replace
     * them. Every signal's handling is as it was before. */
    struct sigaction before[NSIG];
    int kept[NSIG] = {0};
    for (int sig = 1; sig < NSIG; sig++) kept[sig] = sigaction(sig, NULL, &before[sig]) == 0;
    /* The soname, as the linker would have looked it up (LD_LIBRARY_PATH, this executable's
     * run path, which names the folder the build found it in, the loader's cache). */
    lib = dlopen(KVXFER_FABRIC_SONAME, RTLD_NOW | RTLD_GLOBAL);
    for (int sig = 1; sig < NSIG; sig++) {
        if (kept[sig]) sigaction(sig, &before[sig], NULL);
    }
    if (lib == NULL) {
        const char *why = dlerror();
        snprintf(load_error, sizeof load_error, "%s", why ? why : "dlopen failed");
        return;
    }
    if (!(FIND(p_getinfo, fi_getinfo) && FIND(p_freeinfo, fi_freeinfo) &&
          FIND(p_dupinfo, fi_dupinfo) && FIND(p_fabric, fi_fabric) && FIND(p_open, fi_open) &&
          FIND(p_strerror, fi_strerror) && FIND(p_tostr, fi_tostr) &&
          FIND(p_version, fi_version))) {
        lib = NULL;
        return;
    }
    struct link_map *map = NULL;
    if (dlinfo(lib, RTLD_DI_LINKMAP, &map) == 0 && map != NULL && map->l_name != NULL) {
        snprintf(lib_path, sizeof lib_path, "%s", map->l_name);
    }
}

/* NULL once libfabric is loaded (loading it on the first call), else why it could not be. */
const char *kvxfer_fabric_load(void) {
    pthread_once(&once, load);
    return lib != NULL ? NULL : load_error;
}

/* The file libfabric was loaded from, loading it ("" where it could not be, or where the loader
 * does not say). */
const char *kvxfer_fabric_path(void) {
    pthread_once(&once, load);
    return lib_path;
}

int fi_getinfo(uint32_t version, const char *node, const char *service, uint64_t flags,
                      const struct fi_info *hints, struct fi_info **info) {
    if (kvxfer_fabric_load() != NULL) return -FI_ENOSYS;
    return p_getinfo(version, node, service, flags, hints, info);
}

void fi_freeinfo(struct fi_info *info) {
    if (kvxfer_fabric_load() == NULL) p_freeinfo(info);
}

struct fi_info *fi_dupinfo(const struct fi_info *info) {
    return kvxfer_fabric_load() == NULL ? p_dupinfo(info) : NULL;
}

int fi_fabric(struct fi_fabric_attr *attr, struct fid_fabric **fabric, void *context) {
    if (kvxfer_fabric_load() != NULL) return -FI_ENOSYS;
    return p_fabric(attr, fabric, context);
}

int fi_open(uint32_t version, const char *name, void *attr, size_t attr_len,
                   uint64_t flags, struct fid **fid, void *context) {
    if (kvxfer_fabric_load() != NULL) return -FI_ENOSYS;
    return p_open(version, name, attr, attr_len, flags, fid, context);
}

const char *fi_strerror(int errnum) {
    return kvxfer_fabric_load() == NULL ? p_strerror(errnum) : strerror(errnum);
}

char *fi_tostr(const void *data, enum fi_type datatype) {
    return kvxfer_fabric_load() == NULL ? p_tostr(data, datatype) : NULL;
}

uint32_t fi_version(void) { return kvxfer_fabric_load() == NULL ? p_version() : 0; }
