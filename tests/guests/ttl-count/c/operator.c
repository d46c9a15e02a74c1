/* The TTL count test guest in C: `count` and `recent` expire after the config's `ttl_ms`
 * (`domain` "event" or "processing"), `total` never does; the Rust version's outputs. */
#include "weir.h"

static weir_state count = WEIR_VALUE_STATE_TTL("count", WEIR_EVENT_TIME, 1000);
static weir_state recent = WEIR_LIST_STATE_TTL("recent", WEIR_EVENT_TIME, 1000);
static weir_state total = WEIR_VALUE_STATE("total");

bool weir_open(weir_str config_json, const weir_task *task, weir_context *ctx) {
    (void)task;
    weir_str field;
    uint64_t ms = 0;
    if (weir_json_field(config_json, "ttl_ms", &field)) {
        if (!weir_json_u64(field, &ms) || ms == 0) return weir_fail(ctx, "ttl_ms: a positive integer");
        count.ttl_ms = recent.ttl_ms = ms;
    }
    if (weir_json_field(config_json, "domain", &field) && weir_json_is(field, "processing"))
        count.ttl_domain = recent.ttl_domain = WEIR_PROCESSING_TIME;
    return true;
}

/* The current key's value of `state` as a count (0 when none). */
static uint64_t get_count(weir_state *state, weir_buf *buf) {
    uint64_t n = 0;
    weir_buf_clear(buf);
    if (weir_value_get(state, buf)) weir_json_u64(weir_buf_view(buf), &n);
    return n;
}

static void set_count(weir_state *state, weir_buf *buf, uint64_t n) {
    weir_buf_clear(buf);
    weir_buf_u64(buf, n);
    weir_value_set(state, weir_buf_view(buf));
}

bool weir_process(const weir_record *record, weir_context *ctx) {
    weir_str field;
    weir_buf key = {0}, buf = {0};
    if (!weir_json_field(record->json, "key", &field) || !weir_json_string(field, &key)) {
        weir_buf_free(&key);
        return weir_fail(ctx, "missing field `key`");
    }
    uint64_t n = get_count(&count, &buf) + 1;
    set_count(&count, &buf, n);
    weir_buf_clear(&buf);
    weir_buf_i64(&buf, record->has_timestamp ? record->timestamp : 0);
    weir_list_add(&recent, weir_buf_view(&buf));
    weir_buf_clear(&buf);
    weir_list_get(&recent, &buf);
    size_t elements = 0;
    weir_str rest = weir_buf_view(&buf), item;
    while (weir_json_next(&rest, &item)) elements++;
    uint64_t all = get_count(&total, &buf) + 1;
    set_count(&total, &buf, all);

    weir_buf_clear(&buf);
    weir_buf_raw(&buf, "{\"key\":");
    weir_buf_json_string(&buf, weir_buf_view(&key));
    weir_buf_raw(&buf, ",\"count\":");
    weir_buf_u64(&buf, n);
    weir_buf_raw(&buf, ",\"recent\":");
    weir_buf_u64(&buf, elements);
    weir_buf_raw(&buf, ",\"total\":");
    weir_buf_u64(&buf, all);
    weir_buf_raw(&buf, "}");
    weir_emit(ctx, weir_buf_view(&buf));
    weir_buf_free(&key);
    weir_buf_free(&buf);
    return true;
}
