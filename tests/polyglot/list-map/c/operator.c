/* list-map in C: list and map state through the C SDK, emitting what the Python version
 * emits for the same records. */
#include <stdio.h>
#include <stdlib.h>

#include "weir.h"

static weir_state seen = WEIR_LIST_STATE("seen");
static weir_state by_residue = WEIR_MAP_STATE("by-residue");

bool weir_process(const weir_record *record, weir_context *ctx) {
    weir_str field;
    weir_buf key = {0}, out = {0}, value = {0}, got = {0};
    char residue[8], number[24];
    long long v;
    if (!weir_json_field(record->json, "key", &field) || !weir_json_string(field, &key) ||
        !(weir_json_field(record->json, "v", &field) || weir_json_field(record->json, "seq", &field)) ||
        field.len >= sizeof number) {
        weir_buf_free(&key);
        return weir_fail(ctx, "a record needs `key` and `v` (or `seq`)");
    }
    snprintf(number, sizeof number, "%.*s", (int)field.len, field.ptr);
    v = atoll(number);
    snprintf(residue, sizeof residue, "%lld", ((v % 5) + 5) % 5);
    if (v == 0) {
        weir_list_clear(&seen);
        weir_map_clear(&by_residue);
    } else {
        weir_list_add(&seen, weir_cstr(number));
        if (v % 3 == 0) {
            weir_map_remove(&by_residue, weir_cstr(residue));
        } else {
            weir_buf_raw(&value, "{\"v\":");
            weir_buf_raw(&value, number);
            weir_buf_raw(&value, ",\"key\":");
            weir_buf_json_string(&value, weir_buf_view(&key));
            weir_buf_raw(&value, "}");
            weir_map_put(&by_residue, weir_cstr(residue), weir_buf_view(&value));
        }
    }
    weir_buf_raw(&out, "{\"key\":");
    weir_buf_json_string(&out, weir_buf_view(&key));
    weir_buf_raw(&out, ",\"seen\":");
    weir_list_get(&seen, &got);
    weir_buf_bytes(&out, weir_buf_view(&got));
    weir_buf_raw(&out, ",\"has_3\":");
    weir_buf_raw(&out, weir_map_contains(&by_residue, weir_cstr("3")) ? "true" : "false");
    weir_buf_raw(&out, ",\"residue\":");
    if (weir_map_get(&by_residue, weir_cstr(residue), &got)) {
        weir_buf_bytes(&out, weir_buf_view(&got));
    } else {
        weir_buf_raw(&out, "null");
    }
    weir_buf_raw(&out, ",\"time\":");
    if (record->has_timestamp) {
        weir_buf_i64(&out, record->timestamp);
    } else {
        weir_buf_raw(&out, "null");
    }
    weir_buf_raw(&out, "}");
    weir_emit(ctx, weir_buf_view(&out));
    weir_buf_free(&key);
    weir_buf_free(&out);
    weir_buf_free(&value);
    weir_buf_free(&got);
    return true;
}
