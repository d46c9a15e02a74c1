/*
 * Write Weir stream operators in C.
 *
 * An operator defines `weir_process`, called once per record (its JSON text, its key and
 * time); it reads and writes keyed state (state scoped to the key of the record being
 * processed), registers timers for that key (`weir_on_timer` is called when they fire)
 * and emits output records. The host snapshots that state at checkpoints and
 * restores it after failures: the operator never sees a checkpoint.
 *
 *     #include "weir.h"
 *
 *     static weir_state visits = WEIR_VALUE_STATE("visits");
 *
 *     bool weir_process(const weir_record *record, weir_context *ctx) {
 *         weir_str url;
 *         if (!weir_json_field(record->json, "url", &url))
 *             return weir_fail(ctx, "missing field `url`");
 *         uint64_t count = 0;
 *         weir_buf old = {0}, out = {0};
 *         if (weir_value_get(&visits, &old)) weir_json_u64(weir_buf_view(&old), &count);
 *         ...
 *     }
 *
 * State values and map keys are JSON text, stored exactly as the Rust SDK stores them,
 * so `host state` shows them and a savepoint is readable by an operator in any language.
 * Keep everything that must survive a failure in state: globals are lost on recovery.
 *
 * Build: generate the bindings with `wit-bindgen c <weir>/wit --world operator`, then
 * compile them, weir.c and your file with `clang --target=wasm32-wasip1
 * -mexec-model=reactor` and link `operator_component_type.o`. `host` turns the module
 * into a component itself (see docs/c.md).
 */
#ifndef WEIR_H
#define WEIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A borrowed byte string, not NUL-terminated. */
typedef struct {
    const char *ptr;
    size_t len;
} weir_str;

/* A growable byte buffer the SDK writes into; zero-initialise it, free it with
 * weir_buf_free. Its bytes are NUL-terminated (the NUL is not counted in len). */
typedef struct {
    char *ptr;
    size_t len;
    size_t cap;
} weir_buf;

/* One input record. */
typedef struct {
    weir_str key;   /* the value at the operator's key_by pointer (a string's UTF-8);
                     * empty for a record of a broadcast input */
    weir_str json;  /* the record, a JSON document */
    weir_str input; /* the input it came from, as the job file's `input` names it */
    bool broadcast; /* whether that input is broadcast (see weir_for_each_key) */
    bool has_timestamp;
    int64_t timestamp; /* event time, milliseconds since the Unix epoch */
} weir_record;

/* Which instance of which operator this is. */
typedef struct {
    weir_str operator_name;
    uint32_t subtask;
    uint32_t parallelism;
    uint32_t attempt;
} weir_task;

/* Where outputs and errors of one call go. */
typedef struct weir_context weir_context;

/* ---- What the operator defines ------------------------------------------------ */

/* Processes one record. Returns true, or weir_fail(ctx, ...) to fail the record. */
bool weir_process(const weir_record *record, weir_context *ctx);
/* Optional: called once before the first record with the [operator.config] table. */
bool weir_open(weir_str config_json, const weir_task *task, weir_context *ctx);
/* Optional: called once after the last record of a job that finishes (after every
 * event-time timer has fired). */
bool weir_close(weir_context *ctx);

/* Which clock a timer follows: event time (the watermark; replayable) or processing
 * time (the host's wall clock; not replayable). */
typedef enum { WEIR_EVENT_TIME, WEIR_PROCESSING_TIME } weir_time_domain;

/* A timer that came due. */
typedef struct {
    weir_str key;      /* the key it was registered for */
    int64_t timestamp; /* milliseconds since the Unix epoch */
    weir_time_domain domain;
} weir_timer;

/* Optional: called for each timer that came due, in timestamp order, between records;
 * keyed state acts on the timer's key, and outputs go out as from weir_process (at the
 * timer's timestamp for an event-time timer). Returns true, or weir_fail(ctx, ...). */
bool weir_on_timer(const weir_timer *timer, weir_context *ctx);

/* ---- Timers (inside weir_process or weir_on_timer: for the current key) ------------ */

/* Registers the current key's timer at `timestamp` (one per key, domain and time). */
void weir_timer_register(weir_time_domain domain, int64_t timestamp);
/* Deletes the current key's timer at `timestamp`, if pending. */
void weir_timer_delete(weir_time_domain domain, int64_t timestamp);
/* The event-time watermark into *out; false before the first one. */
bool weir_current_watermark(int64_t *out);
/* The host's wall clock, ms since the Unix epoch (Wasm's own clocks are frozen). */
int64_t weir_current_processing_time(void);

/* ---- Outputs, errors and the log ---------------------------------------------- */

/* Emits `json` (one JSON document) as an output record at the input record's time. */
void weir_emit(weir_context *ctx, weir_str json);
/* Emits `json` as an output record at `timestamp` (ms since the Unix epoch). */
void weir_emit_at(weir_context *ctx, weir_str json, int64_t timestamp);
/* Emits `json` to the side output `side_output` (the job file's `side_outputs`; a name it
 * does not declare fails the call) at the input record's time. */
void weir_emit_to(weir_context *ctx, const char *side_output, weir_str json);
/* Records a printf-style message for the failing call; returns false. */
bool weir_fail(weir_context *ctx, const char *format, ...) __attribute__((format(printf, 2, 3)));

typedef enum { WEIR_TRACE, WEIR_DEBUG, WEIR_INFO, WEIR_WARN, WEIR_ERROR } weir_level;
/* Writes a printf-style message to the host's log. */
void weir_log(weir_level level, const char *format, ...) __attribute__((format(printf, 2, 3)));

/* ---- Buffers and JSON --------------------------------------------------------- */

weir_str weir_cstr(const char *s);
weir_str weir_buf_view(const weir_buf *buf);
void weir_buf_clear(weir_buf *buf);
void weir_buf_free(weir_buf *buf);
/* Appends raw bytes (already JSON, or punctuation such as "{" and ","). */
void weir_buf_raw(weir_buf *buf, const char *s);
void weir_buf_bytes(weir_buf *buf, weir_str bytes);
/* Appends `s` as a JSON string, quoted and escaped as serde_json does. */
void weir_buf_json_string(weir_buf *buf, weir_str s);
void weir_buf_u64(weir_buf *buf, uint64_t n);
void weir_buf_i64(weir_buf *buf, int64_t n);

/* The raw JSON text of member `name` of the object `json`; false if absent. */
bool weir_json_field(weir_str json, const char *name, weir_str *value);
/* The raw JSON text of the next item of an array: start with `*rest` = the array's
 * text; false when there are no more. */
bool weir_json_next(weir_str *rest, weir_str *item);
/* Decodes the JSON string `value` into `out` (replacing its contents). */
bool weir_json_string(weir_str value, weir_buf *out);
/* Decodes a non-negative JSON integer. */
bool weir_json_u64(weir_str value, uint64_t *out);
/* Whether the JSON text `value` equals the JSON string `s` (e.g. a field against "a"). */
bool weir_json_is(weir_str value, const char *s);

/* ---- Keyed state (always the current record's key) ---------------------------- */

typedef enum {
    WEIR_VALUE,
    WEIR_LIST,
    WEIR_MAP,
    WEIR_REDUCING,
    WEIR_AGGREGATING
} weir_state_kind;

/* A state handle: declare it static with one of the macros below. */
typedef struct {
    const char *name;
    weir_state_kind kind;
    bool registered;
    uint32_t id;
    /* Time-to-live in milliseconds (0: none), its clock, and whether reads renew. */
    uint64_t ttl_ms;
    weir_time_domain ttl_domain;
    bool ttl_on_read;
} weir_state;

#define WEIR_VALUE_STATE(name) {(name), WEIR_VALUE, false, 0, 0, WEIR_EVENT_TIME, false}
#define WEIR_LIST_STATE(name) {(name), WEIR_LIST, false, 0, 0, WEIR_EVENT_TIME, false}
#define WEIR_MAP_STATE(name) {(name), WEIR_MAP, false, 0, 0, WEIR_EVENT_TIME, false}

/* The same with a time-to-live: each entry (a value, a list element, a map entry) is
 * forgotten `ms` milliseconds after its last write. WEIR_EVENT_TIME: stamped with the
 * record's event time, expired once the watermark reaches stamp + `ms` (replayable);
 * WEIR_PROCESSING_TIME: the host's wall clock (not replayable). Set `ttl_on_read` to
 * renew entries on reads too. */
#define WEIR_VALUE_STATE_TTL(name, domain, ms) {(name), WEIR_VALUE, false, 0, (ms), (domain), false}
#define WEIR_LIST_STATE_TTL(name, domain, ms) {(name), WEIR_LIST, false, 0, (ms), (domain), false}
#define WEIR_MAP_STATE_TTL(name, domain, ms) {(name), WEIR_MAP, false, 0, (ms), (domain), false}

/* Value state: true and the value's JSON in `out` if the key has one. */
bool weir_value_get(weir_state *state, weir_buf *out);
void weir_value_set(weir_state *state, weir_str json);
void weir_value_clear(weir_state *state);

/* List state: the elements as one JSON array in `out` (iterate with weir_json_next). */
void weir_list_get(weir_state *state, weir_buf *out);
void weir_list_add(weir_state *state, weir_str json);
void weir_list_clear(weir_state *state);

/* ---- Windows -------------------------------------------------------------------- */

/* Tumbling event-time windows of one key with an integer aggregate, as the Rust SDK's
 * `Windows::tumbling` has them (the same state, so savepoints move between the two): a
 * window [start, end) comes out once the watermark reaches end - 1, is kept
 * `allowed_lateness_ms` more for records that update it, and a record later than that
 * changes nothing and is reported late. `add` folds a record into a window's
 * accumulator (NULL: counts records); `initial` is an empty window's. Declare it static
 * with WEIR_TUMBLING and hand it every record (weir_tumbling_add) and every timer
 * (weir_tumbling_on_timer). */
typedef struct {
    weir_state state;
    int64_t size_ms;
    int64_t allowed_lateness_ms;
    int64_t initial;
    int64_t (*add)(int64_t acc, const weir_record *record);
} weir_tumbling;

#define WEIR_TUMBLING(name, size_ms, allowed_lateness_ms) \
    {WEIR_VALUE_STATE(name), (size_ms), (allowed_lateness_ms), 0, NULL}

typedef struct {
    int64_t start; /* the window's first millisecond */
    int64_t end;   /* the first millisecond after it */
} weir_window;

typedef enum {
    WEIR_WINDOW_PENDING, /* added: nothing comes out yet */
    WEIR_WINDOW_RESULT,  /* added, and the window's result comes out now */
    WEIR_WINDOW_LATE     /* too late for its window: nothing changed */
} weir_window_status;

/* A window's result: `update` when it came out before. */
typedef struct {
    weir_window window;
    int64_t result;
    bool update;
} weir_window_result;

/* Adds the record being processed to its window; on WEIR_WINDOW_RESULT, `out` holds
 * what to emit (a record within the lateness updated a window that came out). Traps
 * for a record without event time. */
weir_window_status weir_tumbling_add(weir_tumbling *windows, const weir_record *record,
                                     weir_window_result *out);
/* In weir_on_timer: true and the window's result in `out` when `timer` fires one of
 * the key's windows; forgets the windows whose lateness it ends. */
bool weir_tumbling_on_timer(weir_tumbling *windows, const weir_timer *timer,
                            weir_window_result *out);

/* Map state: keys and values are JSON text. */
bool weir_map_get(weir_state *state, weir_str key, weir_buf *out);
void weir_map_put(weir_state *state, weir_str key, weir_str value);
void weir_map_remove(weir_state *state, weir_str key);
bool weir_map_contains(weir_state *state, weir_str key);
void weir_map_clear(weir_state *state);

/* ---- Operator state (this subtask's, not a key's): in open, process and close --- */

/* How a list's elements are shared out when the operator's parallelism changes: split
 * deals every element to one new subtask, union gives every subtask all of them. */
typedef enum { WEIR_SPLIT, WEIR_UNION } weir_redistribution;

/* An operator list state handle: declare it static with one of the macros below. */
typedef struct {
    const char *name;
    weir_redistribution mode;
    bool registered;
    uint32_t id;
} weir_operator_list;

#define WEIR_OPERATOR_LIST_STATE(name) {(name), WEIR_SPLIT, false, 0}
#define WEIR_UNION_LIST_STATE(name) {(name), WEIR_UNION, false, 0}

/* The elements as one JSON array in `out` (iterate with weir_json_next). */
void weir_operator_list_get(weir_operator_list *state, weir_buf *out);
void weir_operator_list_add(weir_operator_list *state, weir_str json);
void weir_operator_list_clear(weir_operator_list *state);

/* Broadcast state: a map, the same on every subtask, that every new subtask gets a copy
 * of on rescale. Readable anywhere; changed only while processing a record of a
 * broadcast input (elsewhere the call traps). Keys and values are JSON text. */
typedef struct {
    const char *name;
    bool registered;
    uint32_t id;
} weir_broadcast_state;

#define WEIR_BROADCAST_STATE(name) {(name), false, 0}

bool weir_broadcast_get(weir_broadcast_state *state, weir_str key, weir_buf *out);
void weir_broadcast_put(weir_broadcast_state *state, weir_str key, weir_str value);
void weir_broadcast_remove(weir_broadcast_state *state, weir_str key);

/* While processing a record of a broadcast input (which has no key): calls `fn` for
 * every key of this subtask that holds `state`, in order, with keyed state acting on
 * that key (Flink's applyToKeyedState). Stops at the first `fn` that returns false and
 * returns false; else true. */
bool weir_for_each_key(weir_state *state, weir_context *ctx,
                       bool (*fn)(weir_str key, weir_context *ctx, void *arg), void *arg);

#endif
