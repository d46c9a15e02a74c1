/* Fraud rules in C: the Rust example's twin (see src/lib.rs for the design). Rule keys
 * are the JSON array [category, version], as the other languages write them. */
#include <string.h>

#include "weir.h"

static weir_broadcast_state rules = WEIR_BROADCAST_STATE("rules");
static weir_state waiting = WEIR_LIST_STATE("waiting");
static weir_state totals = WEIR_MAP_STATE("totals");

/* The raw JSON text of fields `category`, `rule` (or `version`) of `json`. */
static bool rule_key(weir_str json, const char *version, weir_buf *key) {
    weir_str category, number;
    if (!weir_json_field(json, "category", &category) || !weir_json_field(json, version, &number)) {
        return false;
    }
    weir_buf_clear(key);
    weir_buf_raw(key, "[");
    weir_buf_bytes(key, category);
    weir_buf_raw(key, ",");
    weir_buf_bytes(key, number);
    weir_buf_raw(key, "]");
    return true;
}

/* Settles one transaction if its rule has arrived; false if it must wait. */
static bool settle_one(weir_str tx, weir_context *ctx, bool *failed) {
    weir_buf key = {0}, limit_text = {0}, total_text = {0}, out = {0};
    weir_str category, amount_text, card, rule;
    uint64_t limit = 0, amount = 0, total = 0;
    bool settled = false;
    if (!rule_key(tx, "rule", &key) || !weir_json_field(tx, "category", &category) ||
        !weir_json_field(tx, "amount", &amount_text) || !weir_json_u64(amount_text, &amount) ||
        !weir_json_field(tx, "card", &card) || !weir_json_field(tx, "rule", &rule)) {
        *failed = true;
    } else if (weir_broadcast_get(&rules, weir_buf_view(&key), &limit_text) &&
               weir_json_u64(weir_buf_view(&limit_text), &limit)) {
        if (weir_map_get(&totals, category, &total_text)) {
            weir_json_u64(weir_buf_view(&total_text), &total);
        }
        total += amount;
        weir_buf_clear(&total_text);
        weir_buf_u64(&total_text, total);
        weir_map_put(&totals, category, weir_buf_view(&total_text));
        if (total > limit) {
            weir_buf_raw(&out, "{\"card\":");
            weir_buf_bytes(&out, card);
            weir_buf_raw(&out, ",\"category\":");
            weir_buf_bytes(&out, category);
            weir_buf_raw(&out, ",\"total\":");
            weir_buf_u64(&out, total);
            weir_buf_raw(&out, ",\"limit\":");
            weir_buf_u64(&out, limit);
            weir_buf_raw(&out, ",\"rule\":");
            weir_buf_bytes(&out, rule);
            weir_buf_raw(&out, "}");
            weir_emit(ctx, weir_buf_view(&out));
        }
        settled = true;
    }
    weir_buf_free(&key);
    weir_buf_free(&limit_text);
    weir_buf_free(&total_text);
    weir_buf_free(&out);
    return settled;
}

/* Settles the current card's waiting transactions in order, up to the first whose rule
 * has not arrived; that one and every later one keep waiting. */
static bool settle(weir_context *ctx) {
    weir_buf list = {0}, rest = {0};
    weir_list_get(&waiting, &list);
    weir_str items = weir_buf_view(&list), item;
    bool failed = false, blocked = false, settled = false;
    size_t kept = 0;
    weir_buf_raw(&rest, "[");
    while (!failed && weir_json_next(&items, &item)) {
        if (!blocked && settle_one(item, ctx, &failed)) {
            settled = true;
            continue;
        }
        blocked = true;
        if (kept++) weir_buf_raw(&rest, ",");
        weir_buf_bytes(&rest, item);
    }
    weir_buf_raw(&rest, "]");
    if (!failed && settled) {
        weir_list_clear(&waiting);
        weir_str remaining = weir_buf_view(&rest);
        while (weir_json_next(&remaining, &item)) weir_list_add(&waiting, item);
    }
    weir_buf_free(&list);
    weir_buf_free(&rest);
    return failed ? weir_fail(ctx, "state `waiting` holds a malformed transaction") : true;
}

static bool settle_waiting(weir_str card, weir_context *ctx, void *arg) {
    (void)card, (void)arg;
    return settle(ctx);
}

bool weir_process(const weir_record *record, weir_context *ctx) {
    if (!record->broadcast) {
        weir_str field;
        const char *fields[] = {"card", "category", "amount", "rule"};
        for (size_t i = 0; i < 4; i++) {
            if (!weir_json_field(record->json, fields[i], &field)) {
                return weir_fail(ctx, "a transaction needs card, category, amount and rule");
            }
        }
        /* Behind the card's waiting transactions: they settle in order. */
        weir_list_add(&waiting, record->json);
        return settle(ctx);
    }
    weir_buf key = {0};
    weir_str limit;
    if (!rule_key(record->json, "version", &key) || !weir_json_field(record->json, "limit", &limit)) {
        weir_buf_free(&key);
        return weir_fail(ctx, "a rule needs category, version and limit");
    }
    weir_broadcast_put(&rules, weir_buf_view(&key), limit);
    weir_buf_free(&key);
    return weir_for_each_key(&waiting, ctx, settle_waiting, NULL);
}
