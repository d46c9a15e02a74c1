/* {{name}}: a running count of events per user. Make it yours: change weir_process. */
#include "weir.h"

/* The user's count so far: keyed state, snapshotted and restored by the host. */
static weir_state count_state = WEIR_VALUE_STATE("count");

bool weir_process(const weir_record *record, weir_context *ctx) {
    weir_str user;
    if (!weir_json_field(record->json, "user", &user)) return weir_fail(ctx, "missing field `user`");
    weir_buf buf = {0};
    uint64_t count = 0;
    if (weir_value_get(&count_state, &buf)) weir_json_u64(weir_buf_view(&buf), &count);
    count = count + 1;
    weir_buf_clear(&buf);
    weir_buf_u64(&buf, count);
    weir_value_set(&count_state, weir_buf_view(&buf));

    weir_buf_clear(&buf);
    weir_buf_raw(&buf, "{\"user\":");
    weir_buf_bytes(&buf, user); /* already JSON text */
    weir_buf_raw(&buf, ",\"count\":");
    weir_buf_u64(&buf, count);
    weir_buf_raw(&buf, "}");
    weir_emit(ctx, weir_buf_view(&buf));
    weir_buf_free(&buf);
    return true;
}
