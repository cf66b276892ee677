/*
 * QEMU TCG plugin: flat instruction profile of the code executed between two marker
 * addresses. Every translation block's executions inside a region are counted; at
 * exit it prints one `PC COUNT` line per guest instruction executed there, then
 * `INSNS regions=N total=T`.
 *
 *   qemu-system-arm ... -plugin ./libinsnprofile.so,begin=0xADDR,end=0xADDR -d plugin
 *
 * Attribution to source (functions, inlined frames included) is left to the host:
 * `llvm-symbolizer --inlining --obj=ELF` on the addresses. Same plugin API (version 1)
 * declarations as insncount.c; build: gcc -O2 -shared -fPIC -o libinsnprofile.so insnprofile.c
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

extern void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id,
    void (*cb)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb));
extern size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
extern struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
extern uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
extern void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb,
    void (*cb)(unsigned int vcpu_index, void *userdata), enum qemu_plugin_cb_flags flags, void *userdata);
extern void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn,
    void (*cb)(unsigned int vcpu_index, void *userdata), enum qemu_plugin_cb_flags flags, void *userdata);
extern void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id,
    void (*cb)(qemu_plugin_id_t id, void *userdata), void *userdata);
extern void qemu_plugin_outs(const char *string);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

/* One translated block: its instructions' addresses and how often it ran in a region. */
struct block {
    uint64_t runs;
    size_t n;
    uint64_t *pcs;
    struct block *next;
};

static struct block *blocks;
static uint64_t begin_addr, end_addr, regions;
static int inside;

static void on_begin(unsigned int vcpu, void *udata) { (void)vcpu; (void)udata; inside = 1; }
static void on_end(unsigned int vcpu, void *udata) {
    (void)vcpu; (void)udata;
    if (inside) regions++;
    inside = 0;
}
static void on_block(unsigned int vcpu, void *udata) {
    (void)vcpu;
    if (inside) ((struct block *)udata)->runs++;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    struct block *b = calloc(1, sizeof *b);
    b->n = qemu_plugin_tb_n_insns(tb);
    b->pcs = calloc(b->n, sizeof *b->pcs);
    b->next = blocks;
    blocks = b;
    /* Registered first: a block that starts at `end` is not counted, one that starts
     * at `begin` is (markers are function entries, so they start blocks). */
    for (size_t i = 0; i < b->n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        b->pcs[i] = qemu_plugin_insn_vaddr(insn);
        if (b->pcs[i] == begin_addr)
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_begin, QEMU_PLUGIN_CB_NO_REGS, NULL);
        if (b->pcs[i] == end_addr)
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_end, QEMU_PLUGIN_CB_NO_REGS, NULL);
    }
    qemu_plugin_register_vcpu_tb_exec_cb(tb, on_block, QEMU_PLUGIN_CB_NO_REGS, b);
}

static void on_plugin_exit(qemu_plugin_id_t id, void *udata) {
    (void)id; (void)udata;
    char line[160];
    uint64_t total = 0;
    for (struct block *b = blocks; b; b = b->next) {
        if (!b->runs) continue;
        for (size_t i = 0; i < b->n; i++) {
            snprintf(line, sizeof line, "0x%" PRIx64 " %" PRIu64 "\n", b->pcs[i], b->runs);
            qemu_plugin_outs(line);
            total += b->runs;
        }
    }
    snprintf(line, sizeof line, "INSNS regions=%" PRIu64 " total=%" PRIu64 "\n", regions, total);
    qemu_plugin_outs(line);
}

__attribute__((visibility("default")))
int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "begin=", 6) == 0) begin_addr = strtoull(argv[i] + 6, NULL, 0);
        if (strncmp(argv[i], "end=", 4) == 0) end_addr = strtoull(argv[i] + 4, NULL, 0);
    }
    if (!begin_addr || !end_addr) {
        fprintf(stderr, "insnprofile: needs begin=ADDR,end=ADDR\n");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_plugin_exit, NULL);
    return 0;
}
