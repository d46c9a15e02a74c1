/* State machine in C: alerts on invalid event sequences per address (the Rust example's
 * twin). States are stored as JSON strings ("W", "X", ...), as the Rust version stores them. */
#include <string.h>

#include "weir.h"

static weir_state state = WEIR_VALUE_STATE("state");

/* The state after `event` from `from`, or NULL if there is no such transition. */
static const char *transition(const char *from, char event) {
    static const struct {
        const char *from;
        char event;
        const char *to;
    } table[] = {
        {"Initial", 'a', "W"}, {"Initial", 'c', "X"}, {"W", 'b', "Y"}, {"X", 'b', "Y"},
        {"W", 'd', "Z"},       {"X", 'd', "Z"},       {"Y", 'e', "Z"}, {"Z", 'g', "Terminal"},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(table[i].from, from) == 0 && table[i].event == event) return table[i].to;
    return NULL;
}

bool weir_process(const weir_record *record, weir_context *ctx) {
    weir_str field;
    weir_buf address = {0}, kind = {0}, current = {0}, out = {0};
    bool ok = true;
    if (!weir_json_field(record->json, "address", &field) || !weir_json_string(field, &address)) {
        ok = weir_fail(ctx, "missing field `address`");
    } else if (!weir_json_field(record->json, "type", &field) || !weir_json_string(field, &kind) ||
               kind.len != 1 || kind.ptr[0] < 'a' || kind.ptr[0] > 'g') {
        ok = weir_fail(ctx, "field `type` is not an event type (a to g)");
    } else {
        weir_buf stored = {0};
        if (!weir_value_get(&state, &stored) || !weir_json_string(weir_buf_view(&stored), &current)) {
            weir_buf_clear(&current);
            weir_buf_raw(&current, "Initial");
        }
        weir_buf_free(&stored);
        const char *next = transition(current.ptr, kind.ptr[0]);
        if (next == NULL) {
            weir_buf_raw(&out, "{\"address\":");
            weir_buf_json_string(&out, weir_buf_view(&address));
            weir_buf_raw(&out, ",\"state\":");
            weir_buf_json_string(&out, weir_buf_view(&current));
            weir_buf_raw(&out, ",\"event\":");
            weir_buf_json_string(&out, weir_buf_view(&kind));
            weir_buf_raw(&out, "}");
            weir_emit(ctx, weir_buf_view(&out));
        } else if (strcmp(next, "Terminal") == 0) {
            weir_value_clear(&state);
        } else {
            weir_buf_json_string(&out, weir_cstr(next));
            weir_value_set(&state, weir_buf_view(&out));
        }
    }
    weir_buf_free(&address);
    weir_buf_free(&kind);
    weir_buf_free(&current);
    weir_buf_free(&out);
    return ok;
}
