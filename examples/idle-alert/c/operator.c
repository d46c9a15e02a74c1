/* Idle alert in C: the state machine per address, plus an alert when an address stops
 * mid-sequence for 30 s of event time (the Rust example's twin; `idle_ms` is not read
 * from the config here). */
#include <string.h>

#include "weir.h"

static weir_state state = WEIR_VALUE_STATE("state");
static weir_state deadline = WEIR_VALUE_STATE("deadline");

static const int64_t IDLE_MS = 30000;

/* The state after `event` from `from`, or NULL if there is no such transition (the
 * state-machine example's table). */
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

/* The key's state into `current` ("Initial" when it has none). */
static void current_state(weir_buf *current) {
    weir_buf stored = {0};
    if (!weir_value_get(&state, &stored) || !weir_json_string(weir_buf_view(&stored), current)) {
        weir_buf_clear(current);
        weir_buf_raw(current, "Initial");
    }
    weir_buf_free(&stored);
}

bool weir_process(const weir_record *record, weir_context *ctx) {
    if (!record->has_timestamp) return weir_fail(ctx, "the record has no event time: set `event_time`");
    weir_str field;
    weir_buf address = {0}, kind = {0}, current = {0}, out = {0}, stored = {0};
    bool ok = true;
    if (!weir_json_field(record->json, "address", &field) || !weir_json_string(field, &address) ||
        !weir_json_field(record->json, "type", &field) || !weir_json_string(field, &kind) ||
        kind.len != 1) {
        ok = weir_fail(ctx, "a record needs an `address` and a one-letter `type`");
        goto done;
    }
    current_state(&current);
    const char *next = transition(current.ptr, kind.ptr[0]);
    uint64_t pending;
    if (weir_value_get(&deadline, &stored) && weir_json_u64(weir_buf_view(&stored), &pending)) {
        weir_timer_delete(WEIR_EVENT_TIME, (int64_t)pending);
        weir_value_clear(&deadline);
    }
    if (next == NULL) {
        weir_buf_raw(&out, "{\"alert\":\"invalid\",\"address\":");
        weir_buf_json_string(&out, weir_buf_view(&address));
        weir_buf_raw(&out, ",\"state\":");
        weir_buf_json_string(&out, weir_buf_view(&current));
        weir_buf_raw(&out, ",\"event\":");
        weir_buf_json_string(&out, weir_buf_view(&kind));
        weir_buf_raw(&out, "}");
        weir_emit(ctx, weir_buf_view(&out));
    } else if (strcmp(next, "Terminal") == 0) {
        weir_value_clear(&state);
        goto done;
    } else {
        weir_buf_json_string(&out, weir_cstr(next));
        weir_value_set(&state, weir_buf_view(&out));
    }
    int64_t at = record->timestamp + IDLE_MS;
    weir_timer_register(WEIR_EVENT_TIME, at);
    weir_buf_clear(&stored);
    weir_buf_i64(&stored, at);
    weir_value_set(&deadline, weir_buf_view(&stored));
done:
    weir_buf_free(&address);
    weir_buf_free(&kind);
    weir_buf_free(&current);
    weir_buf_free(&out);
    weir_buf_free(&stored);
    return ok;
}

bool weir_on_timer(const weir_timer *timer, weir_context *ctx) {
    weir_buf current = {0}, out = {0};
    weir_value_clear(&deadline);
    current_state(&current);
    weir_buf_raw(&out, "{\"alert\":\"idle\",\"address\":");
    weir_buf_json_string(&out, timer->key);
    weir_buf_raw(&out, ",\"state\":");
    weir_buf_json_string(&out, weir_buf_view(&current));
    weir_buf_raw(&out, ",\"last_event\":");
    weir_buf_i64(&out, timer->timestamp - IDLE_MS);
    weir_buf_raw(&out, "}");
    weir_emit(ctx, weir_buf_view(&out));
    weir_buf_free(&current);
    weir_buf_free(&out);
    return true;
}
