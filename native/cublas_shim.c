/*
 * Runtime half of the headroute cuBLAS shim: a library named libcublas.so.12 whose exported
 * functions (trampolines generated from cublas12-symbols.txt) jump through hrshim_table. This
 * file fills the table from libcublas.so.13 when the shim is loaded; an entry that cannot be
 * filled keeps pointing at its generated stub, which lands in hrshim_missing.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define HIDDEN __attribute__((visibility("hidden")))

/* Defined by the generated trampolines.S. */
extern void *hrshim_table[] HIDDEN;
extern const char hrshim_names[] HIDDEN;
extern const unsigned int hrshim_count HIDDEN;

void hrshim_missing(unsigned int index) HIDDEN __attribute__((noreturn));

#define DEFAULT_TARGET "libcublas.so.13"

/* Lets CublasLoader tell this file from a real libcublas.so.12 that happens to be on a search path. */
__attribute__((used)) static const char hrshim_marker[] = "HEADROUTE_CUBLAS_SHIM";

/* What the constructor opened (the loaded file's path when known) and, if dlopen failed, why. */
static char target[4096] = DEFAULT_TARGET;
static char failure[2048];

static const char *name_at(unsigned int index) {
    const char *p = hrshim_names;
    for (unsigned int i = 0; i < index && *p != '\0'; i++) {
        p += strlen(p) + 1;
    }
    return *p != '\0' ? p : "<unknown cuBLAS function>";
}

void hrshim_missing(unsigned int index) {
    const char *name = name_at(index);
    if (failure[0] != '\0') {
        fprintf(stderr,
                "headroute cublas shim: %s was called, but dlopen failed for %s: %s\n",
                name, target, failure);
    } else {
        fprintf(stderr, "headroute cublas shim: %s is not exported by libcublas.so.13 (%s)\n",
                name, target);
    }
    fflush(stderr);
    abort();
}

/* HEADROUTE_CUBLAS13 may name the library file or the directory that holds it; relative
 * values are ignored because they would depend on the process's working directory. */
static void choose_target(void) {
    const char *env = getenv("HEADROUTE_CUBLAS13");
    if (env == NULL || env[0] != '/') {
        return;
    }
    struct stat st;
    if (stat(env, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(target, sizeof target, "%s/%s", env, DEFAULT_TARGET);
    } else {
        snprintf(target, sizeof target, "%s", env);
    }
}

__attribute__((constructor)) static void hrshim_init(void) {
    /* A libcublas.so.13 already in the process wins, whatever its path: a bare soname matches a
     * library the JVM loaded by absolute path (the loader compares sonames), and RTLD_NOLOAD
     * keeps this from loading a second, different copy named by HEADROUTE_CUBLAS13. */
    void *lib = dlopen(DEFAULT_TARGET, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
    if (lib == NULL) {
        choose_target();
        lib = dlopen(target, RTLD_NOW | RTLD_GLOBAL);
    }
    if (lib == NULL) {
        const char *why = dlerror();
        snprintf(failure, sizeof failure, "%s", why != NULL ? why : "dlopen returned no error text");
        return;
    }
    struct link_map *map = NULL;
    if (dlinfo(lib, RTLD_DI_LINKMAP, &map) == 0 && map != NULL && map->l_name != NULL
            && map->l_name[0] != '\0') {
        snprintf(target, sizeof target, "%s", map->l_name);
    }
    const char *name = hrshim_names;
    for (unsigned int i = 0; i < hrshim_count; i++) {
        void *fn = dlsym(lib, name);
        if (fn != NULL) {
            hrshim_table[i] = fn;
        }
        name += strlen(name) + 1;
    }
}
