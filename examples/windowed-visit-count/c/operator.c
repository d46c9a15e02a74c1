/* Visits per URL per minute of event time in C (the Rust example's twin, with the same
 * outputs): tumbling one-minute windows kept 10 s after they fire; later visits go to
 * the side output `late`. */
#include "weir.h"

static weir_tumbling per_minute = WEIR_TUMBLING("visits-per-minute", 60000, 10000);

static void emit(weir_context *ctx, weir_str url, const weir_window_result *counted) {
    weir_buf buf = {0};
    weir_buf_raw(&buf, "{\"url\":");
    weir_buf_json_string(&buf, url);
    weir_buf_raw(&buf, ",\"start\":");
    weir_buf_i64(&buf, counted->window.start);
    weir_buf_raw(&buf, ",\"end\":");
    weir_buf_i64(&buf, counted->window.end);
    weir_buf_raw(&buf, ",\"visits\":");
    weir_buf_i64(&buf, counted->result);
    weir_buf_raw(&buf, counted->update ? ",\"update\":true}" : ",\"update\":false}");
    weir_emit_at(ctx, weir_buf_view(&buf), counted->window.end - 1);
    weir_buf_free(&buf);
}

bool weir_process(const weir_record *record, weir_context *ctx) {
    weir_window_result counted;
    switch (weir_tumbling_add(&per_minute, record, &counted)) {
    case WEIR_WINDOW_RESULT:
        emit(ctx, record->key, &counted);
        break;
    case WEIR_WINDOW_LATE:
        weir_emit_to(ctx, "late", record->json);
        break;
    case WEIR_WINDOW_PENDING:
        break;
    }
    return true;
}

bool weir_on_timer(const weir_timer *timer, weir_context *ctx) {
    weir_window_result counted;
    if (weir_tumbling_on_timer(&per_minute, timer, &counted)) emit(ctx, timer->key, &counted);
    return true;
}
