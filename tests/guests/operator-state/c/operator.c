/* The operator-state test guest in C: on the first start each instance deals itself ten
 * tokens into split list state and its subtask number into union list state; a restore
 * adds nothing. Each record is passed on with the union list (one copy of each element,
 * in order), which a restore at any parallelism must leave at the first start's subtasks. */
#include "weir.h"

static weir_operator_list tokens = WEIR_OPERATOR_LIST_STATE("tokens");
static weir_operator_list started = WEIR_UNION_LIST_STATE("started");

bool weir_open(weir_str config_json, const weir_task *task, weir_context *ctx) {
    (void)config_json;
    (void)ctx;
    weir_buf list = {0}, buf = {0};
    weir_operator_list_get(&started, &list);
    if (weir_buf_view(&list).len <= 2) { /* "[]": the first start */
        for (int n = 0; n < 10; n++) {
            weir_buf_clear(&buf);
            weir_buf_raw(&buf, "\"");
            weir_buf_u64(&buf, task->subtask);
            weir_buf_raw(&buf, "-");
            weir_buf_u64(&buf, (uint64_t)n);
            weir_buf_raw(&buf, "\"");
            weir_operator_list_add(&tokens, weir_buf_view(&buf));
        }
        weir_buf_clear(&buf);
        weir_buf_u64(&buf, task->subtask);
        weir_operator_list_add(&started, weir_buf_view(&buf));
    } else {
        /* Union state gives every instance every instance's copy: keep one of each.
         * Subtask numbers are below 64 here. */
        uint64_t seen = 0, n;
        weir_str rest = weir_buf_view(&list), item;
        while (weir_json_next(&rest, &item)) {
            if (weir_json_u64(item, &n) && n < 64) seen |= 1ull << n;
        }
        weir_operator_list_clear(&started);
        for (n = 0; n < 64; n++) {
            if (!(seen & (1ull << n))) continue;
            weir_buf_clear(&buf);
            weir_buf_u64(&buf, n);
            weir_operator_list_add(&started, weir_buf_view(&buf));
        }
    }
    weir_buf_free(&list);
    weir_buf_free(&buf);
    return true;
}

bool weir_process(const weir_record *record, weir_context *ctx) {
    weir_str key, seq;
    if (!weir_json_field(record->json, "key", &key) || !weir_json_field(record->json, "seq", &seq)) {
        return weir_fail(ctx, "missing field `key` or `seq`");
    }
    weir_buf list = {0}, out = {0};
    weir_operator_list_get(&started, &list);
    weir_buf_raw(&out, "{\"key\":");
    weir_buf_bytes(&out, key);
    weir_buf_raw(&out, ",\"seq\":");
    weir_buf_bytes(&out, seq);
    weir_buf_raw(&out, ",\"started\":");
    weir_buf_bytes(&out, weir_buf_view(&list));
    weir_buf_raw(&out, "}");
    weir_emit(ctx, weir_buf_view(&out));
    weir_buf_free(&list);
    weir_buf_free(&out);
    return true;
}
