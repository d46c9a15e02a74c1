/* Visit count in C: a running count of visits per URL (the Rust example's twin). */
#include "weir.h"

static weir_state visits = WEIR_VALUE_STATE("visits");

bool weir_process(const weir_record *record, weir_context *ctx) {
    weir_str field;
    weir_buf url = {0}, buf = {0};
    if (!weir_json_field(record->json, "url", &field) || !weir_json_string(field, &url)) {
        weir_buf_free(&url);
        return weir_fail(ctx, "missing field `url`");
    }

    uint64_t count = 0;
    if (weir_value_get(&visits, &buf) && !weir_json_u64(weir_buf_view(&buf), &count)) {
        weir_buf_free(&url);
        weir_buf_free(&buf);
        return weir_fail(ctx, "state `visits` does not hold a count");
    }
    count += 1;
    weir_buf_clear(&buf);
    weir_buf_u64(&buf, count);
    weir_value_set(&visits, weir_buf_view(&buf));

    weir_buf_clear(&buf);
    weir_buf_raw(&buf, "{\"url\":");
    weir_buf_json_string(&buf, weir_buf_view(&url));
    weir_buf_raw(&buf, ",\"count\":");
    weir_buf_u64(&buf, count);
    weir_buf_raw(&buf, "}");
    weir_emit(ctx, weir_buf_view(&buf));
    weir_buf_free(&url);
    weir_buf_free(&buf);
    return true;
}
