/*
 * QEMU TCG plugin: counts the guest instructions executed between two marker
 * addresses, for deterministic cost figures of the firmware example.
 *
 *   qemu-system-arm ... -plugin ./libinsncount.so,begin=0xADDR,end=0xADDR
 *   qemu-aarch64 ... -plugin ./libinsncount.so,begin_sym=NAME,end_sym=NAME
 *
 * The second form names the markers by symbol (QEMU looks them up in the guest ELF,
 * after relocation: for position-independent binaries under user-mode emulation,
 * whose load address the script does not know). A symbol marker fires on entry to the
 * function: at an instruction of that symbol that starts a translation block or
 * follows one of another symbol, so markers must be straight-line code.
 *
 * Every executed instruction adds one to a counter (inline, no callback); reaching
 * `begin` snapshots the counter, reaching `end` adds the difference to the total of
 * measured regions. At exit it prints `INSNS regions=N total=T all=A` (A: every
 * instruction the guest executed). With the argument `each=1` it first prints one
 * `REGION <index> <instructions>` line per region, as each region ends.
 *
 * The few declarations below are written from QEMU's documented plugin API
 * (version 1, as in QEMU 7.x), so no QEMU headers are needed to build it:
 *   gcc -O2 -shared -fPIC -o libinsncount.so insncount.c
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
typedef struct qemu_info_t qemu_info_t;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS = 0 };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 = 0 };

extern void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id,
    void (*cb)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb));
extern size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
extern struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
extern uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
extern const char *qemu_plugin_insn_symbol(const struct qemu_plugin_insn *insn);
extern void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *insn,
    enum qemu_plugin_op op, void *ptr, uint64_t imm);
extern void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn,
    void (*cb)(unsigned int vcpu_index, void *userdata), enum qemu_plugin_cb_flags flags, void *userdata);
extern void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id,
    void (*cb)(qemu_plugin_id_t id, void *userdata), void *userdata);
extern void qemu_plugin_outs(const char *string);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

static uint64_t executed;   /* every instruction (single vCPU) */
static uint64_t started;    /* `executed` when `begin` was reached */
static uint64_t measured;   /* sum over complete regions */
static uint64_t regions;
static int inside;
static int each;   /* print every region's count */
static uint64_t begin_addr, end_addr;
static const char *begin_sym, *end_sym;

/* Whether `sym` is `name` (either may be NULL) and `prev`, the symbol of the previous
 * instruction of the block, is not: the instruction is a function entry. */
static int enters(const char *name, const char *sym, const char *prev, int first) {
    return name && sym && strcmp(sym, name) == 0 && (first || !prev || strcmp(prev, name) != 0);
}

static void on_begin(unsigned int vcpu, void *udata) {
    (void)vcpu; (void)udata;
    started = executed;
    inside = 1;
}

static void on_end(unsigned int vcpu, void *udata) {
    (void)vcpu; (void)udata;
    if (inside) {
        measured += executed - started;
        if (each) {
            char line[80];
            snprintf(line, sizeof line, "REGION %" PRIu64 " %" PRIu64 "\n", regions, executed - started);
            qemu_plugin_outs(line);
        }
        regions++;
        inside = 0;
    }
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    const char *prev = NULL;
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t pc = qemu_plugin_insn_vaddr(insn);
        const char *sym = begin_sym ? qemu_plugin_insn_symbol(insn) : NULL;
        /* Callbacks run before the instruction, so `executed` counts the ones before. */
        if ((begin_addr && pc == begin_addr) || enters(begin_sym, sym, prev, i == 0)) {
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_begin, QEMU_PLUGIN_CB_NO_REGS, NULL);
        }
        if ((end_addr && pc == end_addr) || enters(end_sym, sym, prev, i == 0)) {
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_end, QEMU_PLUGIN_CB_NO_REGS, NULL);
        }
        prev = sym;
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &executed, 1);
    }
}

static void on_plugin_exit(qemu_plugin_id_t id, void *udata) {
    (void)id; (void)udata;
    char line[160];
    snprintf(line, sizeof line, "INSNS regions=%" PRIu64 " total=%" PRIu64 " all=%" PRIu64 "\n",
             regions, measured, executed);
    qemu_plugin_outs(line);
}

__attribute__((visibility("default")))
int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "begin=", 6) == 0) begin_addr = strtoull(argv[i] + 6, NULL, 0);
        if (strncmp(argv[i], "end=", 4) == 0) end_addr = strtoull(argv[i] + 4, NULL, 0);
        if (strcmp(argv[i], "each=1") == 0) each = 1;
        /* Copies: QEMU may free the arguments after install. */
        if (strncmp(argv[i], "begin_sym=", 10) == 0) begin_sym = strdup(argv[i] + 10);
        if (strncmp(argv[i], "end_sym=", 8) == 0) end_sym = strdup(argv[i] + 8);
    }
    if (!(begin_addr && end_addr) && !(begin_sym && end_sym)) {
        fprintf(stderr, "insncount: needs begin=ADDR,end=ADDR or begin_sym=NAME,end_sym=NAME\n");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_plugin_exit, NULL);
    return 0;
}
