/* libdwfl's file callbacks for a live target, opening everything through
 * safefile.h instead of elfutils' own open(): the mapped objects
 * (find_elf) and their separate debug files (find_debuginfo: by build-id
 * under /usr/lib/debug/.build-id, then by .gnu_debuglink name next to the
 * object, in its .debug/ and under /usr/lib/debug), and the dwz files
 * (.gnu_debugaltlink) those name. The object's directory is the target's
 * (resolved in its root); /usr/lib/debug is the injector's own, as for gdb
 * and perf: the target chooses a build-id there, not a directory.
 *
 * A debug file is taken only if it carries the object's build-id (when the
 * object has one) and if its dwz file, when it names one, could be opened
 * the same way: libdw would otherwise look for that dwz file itself, later,
 * with a plain open(). What remains of libdw's own opens (split DWARF .dwo
 * files, which the lookups here do not reach) happens within ksi_tf_enter,
 * with the target's credentials, under the injector's deadline.
 *
 * Not debuginfod: a root injector does not fetch files a target asks for by
 * build-id from the network. */
#ifndef KSI_FINDFILES_H
#define KSI_FINDFILES_H

#include <elfutils/libdwfl.h>

#include "safefile.h"

/* The target the callbacks work for until the next call (the injector
 * works on one Dwfl at a time; the callbacks get no context of their own). */
void ksi_ff_use(struct ksi_tf *t);

int ksi_ff_find_elf(Dwfl_Module *mod, void **userdata, const char *name, Dwarf_Addr base,
                    char **file_name, Elf **elfp);
int ksi_ff_find_debuginfo(Dwfl_Module *mod, void **userdata, const char *modname,
                          GElf_Addr base, const char *file_name, const char *debuglink,
                          GElf_Word crc, char **debuginfo_file_name);

/* Opens again, as find_debuginfo did, the separate debug file libdwfl took
 * for MOD (after a symbol lookup made it look), for a reader of its own
 * (dwline.h). Returns an fd, or -1 (none, or its DWARF is in the object). */
int ksi_ff_open_debug(Dwfl_Module *mod, struct ksi_tf *t);

#endif
