/* SPDX-License-Identifier: MIT
 *
 * sse.c - text/event-stream parsing (WHATWG HTML, "Parsing an event stream")
 * specialised for OpenAI chat.completion.chunk streams: events come back
 * byte-exact for pass-through while the completion is rebuilt beside them, and
 * a cached completion can be replayed as a chunk stream. It does not touch
 * sockets, decide what is cached, or judge the answer (validate.c does).
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/jsonparse.h"
#include "tiergate/sse.h"

/* One tool call of one choice, keyed by its tool-call index. */
struct sse_tool {
    long index;
    struct tg_buf id, type, name, args;
};

/* One choice, keyed by its index. Strings grow without their own cap: the
 * stream's max_total bounds everything they hold together. */
struct sse_choice {
    long index;
    json_t *role;       /* owned, first non-null */
    json_t *finish;     /* owned, last non-null */
    json_t *lp_content; /* owned array of logprobs.content entries, or NULL */
    json_t *lp_refusal; /* owned array of logprobs.refusal entries, or NULL */
    struct tg_buf content, refusal;
    int has_content, has_refusal, has_logprobs;
    struct sse_tool *tools; /* sorted by index */
    size_t ntools, tools_cap;
};

/* Top-level chunk fields kept from the first chunk that has them non-null. */
enum { TOP_ID, TOP_CREATED, TOP_MODEL, TOP_SERVICE_TIER, TOP_FINGERPRINT, TOP__COUNT };
static const char *const top_keys[TOP__COUNT] = {"id", "created", "model", "service_tier",
                                                 "system_fingerprint"};

/* A buffer holding more than this after an event is given back, so one large
 * event does not pin its memory for the rest of a long stream. */
#define SSE_KEEP_BYTES ((size_t)64 << 10)

struct tg_sse_stream {
    /* parser */
    struct tg_buf raw;             /* bytes of the pending event, capped at max_event */
    struct tg_buf data;            /* its data field values, each followed by \n */
    struct tg_buf backlog;         /* unparsed bytes kept while a callback paused us */
    size_t line_start;             /* offset in raw of the line being read */
    unsigned cr_seen : 1;          /* last byte was CR: an LF right after belongs to it */
    unsigned dispatch_pending : 1; /* blank line ended by CR, waiting for that LF */
    unsigned has_data : 1;
    unsigned event_error : 1; /* "event: error" */
    unsigned started : 1;     /* first line seen (BOM check done) */
    /* reassembly */
    size_t max_total, total;
    json_t *top[TOP__COUNT];
    json_t *usage;
    json_t *error;              /* first error event's "error" member */
    struct sse_choice *choices; /* sorted by index */
    size_t nchoices, choices_cap;
    struct tg_sse_stats st;
};

/* Parsing, in the order bytes meet it. */
static tg_rc parse(struct tg_sse_stream *s, const char *p, size_t n, size_t *used,
                   tg_sse_event_cb cb, void *ud);
static tg_rc on_line(struct tg_sse_stream *s, size_t len, int *blank);
static tg_rc on_field(struct tg_sse_stream *s, const char *line, size_t len);
static tg_rc on_event(struct tg_sse_stream *s, tg_sse_event_cb cb, void *ud, int *stop);
static void event_reset(struct tg_sse_stream *s);
/* Reassembly. */
static tg_rc absorb(struct tg_sse_stream *s, const json_t *chunk, size_t cost);
static tg_rc absorb_choice(struct tg_sse_stream *s, const json_t *cj, size_t cost);
static tg_rc absorb_tool(struct tg_sse_stream *s, struct sse_choice *c, const json_t *tj);
static tg_rc absorb_logprobs(struct tg_sse_stream *s, struct sse_choice *c, const json_t *lp,
                             size_t cost);
static struct sse_choice *choice_at(struct tg_sse_stream *s, long index, tg_rc *rc);
static struct sse_tool *tool_at(struct sse_choice *c, long index, tg_rc *rc);
static tg_rc charge(struct tg_sse_stream *s, size_t n);
static void choice_free(struct sse_choice *c);

/* ------------------------------------------------------------------------ */
/* Lifetime                                                                  */

struct tg_sse_stream *tg_sse_stream_new(size_t max_event_bytes, size_t max_total_bytes)
{
    struct tg_sse_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    if (!max_event_bytes)
        max_event_bytes = TG_SSE_DEFAULT_MAX_EVENT;
    if (!max_total_bytes)
        max_total_bytes = TG_SSE_DEFAULT_MAX_TOTAL;
    tg_buf_init(&s->raw, max_event_bytes);
    tg_buf_init(&s->data, max_event_bytes);
    tg_buf_init(&s->backlog, 0);
    s->max_total = max_total_bytes;
    s->st.rc = TG_OK;
    return s;
}

static void choice_free(struct sse_choice *c)
{
    json_decref(c->role);
    json_decref(c->finish);
    json_decref(c->lp_content);
    json_decref(c->lp_refusal);
    tg_buf_free(&c->content);
    tg_buf_free(&c->refusal);
    for (size_t i = 0; i < c->ntools; i++) {
        tg_buf_free(&c->tools[i].id);
        tg_buf_free(&c->tools[i].type);
        tg_buf_free(&c->tools[i].name);
        tg_buf_free(&c->tools[i].args);
    }
    free(c->tools);
}

void tg_sse_stream_free(struct tg_sse_stream *s)
{
    if (!s)
        return;
    tg_buf_free(&s->raw);
    tg_buf_free(&s->data);
    tg_buf_free(&s->backlog);
    for (int k = 0; k < TOP__COUNT; k++)
        json_decref(s->top[k]);
    json_decref(s->usage);
    json_decref(s->error);
    for (size_t i = 0; i < s->nchoices; i++)
        choice_free(&s->choices[i]);
    free(s->choices);
    free(s);
}

/* ------------------------------------------------------------------------ */
/* Parsing                                                                   */

tg_rc tg_sse_stream_feed(struct tg_sse_stream *s, const char *p, size_t n, tg_sse_event_cb cb,
                         void *ud)
{
    size_t used = 0;
    tg_rc rc;

    if (s->st.rc != TG_OK)
        return s->st.rc;

    if (tg_buf_unread(&s->backlog) > 0) {
        if (n) {
            /* Compact first so a long pause/resume dance does not creep. */
            struct tg_buf *b = &s->backlog;
            if (b->off) {
                memmove(b->data, b->data + b->off, b->len - b->off);
                b->len -= b->off;
                b->off = 0;
                b->data[b->len] = '\0';
            }
            if ((rc = tg_buf_append(b, p, n)) != TG_OK)
                return s->st.rc = rc;
        }
        rc = parse(s, tg_buf_head(&s->backlog), tg_buf_unread(&s->backlog), &used, cb, ud);
        tg_buf_consume(&s->backlog, used);
        if (tg_buf_unread(&s->backlog) == 0)
            tg_buf_free(&s->backlog);
        return rc;
    }

    rc = parse(s, p, n, &used, cb, ud);
    if (rc == TG_AGAIN && used < n) {
        tg_rc rc2 = tg_buf_append(&s->backlog, p + used, n - used);
        if (rc2 != TG_OK)
            return s->st.rc = rc2;
    }
    return rc;
}

tg_rc tg_sse_stream_finish(struct tg_sse_stream *s, tg_sse_event_cb cb, void *ud)
{
    tg_rc rc;
    int stop = 0;

    if (s->st.rc != TG_OK)
        return s->st.rc;
    if (tg_buf_unread(&s->backlog) > 0 && (rc = tg_sse_stream_feed(s, NULL, 0, cb, ud)) != TG_OK)
        return rc;
    s->cr_seen = 0;
    if (s->dispatch_pending) {
        s->dispatch_pending = 0;
        if ((rc = on_event(s, cb, ud, &stop)) != TG_OK)
            return s->st.rc = rc;
    }
    if (s->raw.len > 0) {
        s->st.truncated = 1;
        event_reset(s);
    }
    return TG_OK;
}

/* Splits p into lines, appending every byte to the pending event's raw
 * buffer. A lone CR is a line end, so after a CR we look at the next byte
 * (possibly in the next call) before treating a blank line as the event's
 * end: that keeps raw slices identical however the bytes were split. */
static tg_rc parse(struct tg_sse_stream *s, const char *p, size_t n, size_t *used,
                   tg_sse_event_cb cb, void *ud)
{
    size_t i = 0;
    int stop = 0;
    tg_rc rc = TG_OK;

    while (i < n && !stop) {
        if (s->cr_seen) {
            s->cr_seen = 0;
            if (p[i] == '\n') {
                if ((rc = tg_buf_putc(&s->raw, '\n')) != TG_OK)
                    goto out;
                s->line_start = s->raw.len;
                i++;
            }
            if (s->dispatch_pending) {
                s->dispatch_pending = 0;
                if ((rc = on_event(s, cb, ud, &stop)) != TG_OK)
                    goto out;
            }
            continue;
        }

        size_t j = i;
        while (j < n && p[j] != '\n' && p[j] != '\r')
            j++;
        if (j == n) {
            if ((rc = tg_buf_append(&s->raw, p + i, n - i)) != TG_OK)
                goto out;
            i = n;
            break;
        }
        if ((rc = tg_buf_append(&s->raw, p + i, j - i + 1)) != TG_OK)
            goto out;
        i = j + 1;

        int blank = 0;
        if ((rc = on_line(s, s->raw.len - 1 - s->line_start, &blank)) != TG_OK)
            goto out;
        s->line_start = s->raw.len;
        if (p[j] == '\r')
            s->cr_seen = 1;
        if (blank) {
            if (s->cr_seen)
                s->dispatch_pending = 1;
            else if ((rc = on_event(s, cb, ud, &stop)) != TG_OK)
                goto out;
        }
    }
out:
    *used = i;
    if (rc != TG_OK)
        return s->st.rc = rc;
    return stop ? TG_AGAIN : TG_OK;
}

/* The line of len bytes at raw + line_start has just ended. */
static tg_rc on_line(struct tg_sse_stream *s, size_t len, int *blank)
{
    const char *line = s->raw.data + s->line_start;

    /* WHATWG: one leading U+FEFF of the stream is ignored. */
    if (!s->started) {
        s->started = 1;
        if (len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
            line += 3;
            len -= 3;
        }
    }
    if (len == 0) {
        *blank = 1;
        return TG_OK;
    }
    return on_field(s, line, len);
}

/* WHATWG field rules: ":" starts a comment; "name: value" with one optional
 * space after the colon; a line without a colon is a name with an empty
 * value. data values are joined with \n. id and retry carry nothing a
 * gateway replaying a finished stream needs, so they are accepted and
 * ignored, as are unknown names. */
static tg_rc on_field(struct tg_sse_stream *s, const char *line, size_t len)
{
    if (line[0] == ':')
        return TG_OK;

    const char *colon = memchr(line, ':', len);
    size_t name_len = colon ? (size_t)(colon - line) : len;
    const char *value = colon ? colon + 1 : line + len;
    size_t vlen = len - (size_t)(value - line);
    if (vlen && *value == ' ') {
        value++;
        vlen--;
    }

    if (name_len == 4 && memcmp(line, "data", 4) == 0) {
        tg_rc rc = tg_buf_append(&s->data, value, vlen);
        if (rc == TG_OK)
            rc = tg_buf_putc(&s->data, '\n');
        s->has_data = 1;
        return rc;
    }
    if (name_len == 5 && memcmp(line, "event", 5) == 0)
        s->event_error = vlen == 5 && memcmp(value, "error", 5) == 0;
    return TG_OK;
}

static void event_reset(struct tg_sse_stream *s)
{
    if (s->raw.cap > SSE_KEEP_BYTES)
        tg_buf_free(&s->raw);
    else
        tg_buf_reset(&s->raw);
    if (s->data.cap > SSE_KEEP_BYTES)
        tg_buf_free(&s->data);
    else
        tg_buf_reset(&s->data);
    s->line_start = 0;
    s->has_data = 0;
    s->event_error = 0;
}

/* A blank line ended the event in raw: classify it, fold it into the
 * completion, then show it to the callback. */
static tg_rc on_event(struct tg_sse_stream *s, tg_sse_event_cb cb, void *ud, int *stop)
{
    struct tg_sse_event ev = {TG_SSE_OTHER, s->raw.data ? s->raw.data : "", s->raw.len, NULL, 0};
    json_t *j = NULL;
    tg_rc rc = TG_OK;

    s->st.events++;
    if (s->has_data) {
        const char *d = s->data.data;
        size_t dl = s->data.len - 1; /* the \n after the last value */

        if (dl == 6 && memcmp(d, "[DONE]", 6) == 0) {
            ev.kind = TG_SSE_DONE;
            s->st.done_seen = 1;
        } else if (!(j = tg_json_parse(d, dl, JSON_ALLOW_NUL, NULL)) || !json_is_object(j)) {
            s->st.malformed++;
        } else {
            json_t *err = json_object_get(j, "error");
            ev.json = j;
            if (s->event_error || (err && !json_is_null(err))) {
                ev.kind = TG_SSE_ERROR;
                s->st.error_seen = 1;
                if (!s->error)
                    s->error = json_incref(err && !json_is_null(err) ? err : j);
            } else {
                json_t *ch = json_object_get(j, "choices");
                json_t *u = json_object_get(j, "usage");
                ev.kind = TG_SSE_CHUNK;
                ev.usage_only =
                    json_is_array(ch) && json_array_size(ch) == 0 && u && !json_is_null(u);
                s->st.chunks++;
                if (s->st.done_seen)
                    s->st.malformed++; /* nothing may follow [DONE] */
                else
                    rc = absorb(s, j, dl);
            }
        }
    }
    if (rc == TG_OK && cb)
        *stop = cb(ud, &ev) != 0;
    json_decref(j);
    event_reset(s);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Reassembly                                                                */

static tg_rc charge(struct tg_sse_stream *s, size_t n)
{
    if (n > s->max_total - s->total)
        return TG_ERR_TOO_LARGE;
    s->total += n;
    return TG_OK;
}

/* Appends (or, with replace, sets) the string v to b. */
static tg_rc put_str(struct tg_sse_stream *s, struct tg_buf *b, const json_t *v, int replace)
{
    size_t n = json_string_length(v);
    tg_rc rc = charge(s, n);
    if (rc != TG_OK)
        return rc;
    if (replace)
        tg_buf_reset(b);
    return tg_buf_append(b, json_string_value(v), n);
}

/* An index member: absent means 0; anything but a small non-negative
 * integer is malformed. */
static tg_rc read_index(const json_t *v, long *out)
{
    if (!v) {
        *out = 0;
        return TG_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT_MAX)
        return TG_ERR_INVALID;
    *out = (long)json_integer_value(v);
    return TG_OK;
}

/* Folds one chat.completion.chunk in. Field-level problems count the chunk
 * as malformed and keep what was usable; only OOM and caps are errors.
 * cost is the chunk's size, charged for logprobs entries kept by reference. */
static tg_rc absorb(struct tg_sse_stream *s, const json_t *chunk, size_t cost)
{
    int bad = 0;
    tg_rc rc;

    for (int k = 0; k < TOP__COUNT; k++) {
        json_t *v = json_object_get(chunk, top_keys[k]);
        if (!s->top[k] && v && !json_is_null(v))
            s->top[k] = json_incref(v);
    }

    json_t *u = json_object_get(chunk, "usage");
    if (u && !json_is_null(u)) {
        if (json_is_object(u)) {
            json_decref(s->usage);
            s->usage = json_incref(u);
            s->st.usage_seen = 1;
        } else {
            bad = 1;
        }
    }

    json_t *ch = json_object_get(chunk, "choices");
    if (ch && !json_is_null(ch)) {
        if (!json_is_array(ch)) {
            bad = 1;
        } else {
            for (size_t i = 0; i < json_array_size(ch); i++) {
                rc = absorb_choice(s, json_array_get(ch, i), cost);
                if (rc == TG_ERR_INVALID)
                    bad = 1;
                else if (rc != TG_OK)
                    return rc;
            }
        }
    }
    if (bad)
        s->st.malformed++;
    return TG_OK;
}

/* Returns TG_ERR_INVALID for a malformed choice (after keeping what it could). */
static tg_rc absorb_choice(struct tg_sse_stream *s, const json_t *cj, size_t cost)
{
    struct sse_choice *c;
    json_t *v;
    long idx;
    int bad = 0;
    tg_rc rc;

    if (!json_is_object(cj))
        return TG_ERR_INVALID;
    if ((rc = read_index(json_object_get(cj, "index"), &idx)) != TG_OK)
        return rc;
    if (!(c = choice_at(s, idx, &rc)))
        return rc;

    json_t *delta = json_object_get(cj, "delta");
    if (json_is_object(delta)) {
        v = json_object_get(delta, "role");
        if (json_is_string(v)) {
            if (!c->role)
                c->role = json_incref(v);
        } else if (v && !json_is_null(v)) {
            bad = 1;
        }

        v = json_object_get(delta, "content");
        if (json_is_string(v)) {
            if ((rc = put_str(s, &c->content, v, 0)) != TG_OK)
                return rc;
            c->has_content = 1;
        } else if (v && !json_is_null(v)) {
            bad = 1;
        }

        v = json_object_get(delta, "refusal");
        if (json_is_string(v)) {
            if ((rc = put_str(s, &c->refusal, v, 0)) != TG_OK)
                return rc;
            c->has_refusal = 1;
        } else if (v && !json_is_null(v)) {
            bad = 1;
        }

        v = json_object_get(delta, "tool_calls");
        if (json_is_array(v)) {
            for (size_t i = 0; i < json_array_size(v); i++) {
                rc = absorb_tool(s, c, json_array_get(v, i));
                if (rc == TG_ERR_INVALID)
                    bad = 1;
                else if (rc != TG_OK)
                    return rc;
            }
        } else if (v && !json_is_null(v)) {
            bad = 1;
        }
    } else if (delta && !json_is_null(delta)) {
        bad = 1;
    }

    v = json_object_get(cj, "finish_reason");
    if (json_is_string(v)) {
        json_decref(c->finish);
        c->finish = json_incref(v);
    } else if (v && !json_is_null(v)) {
        bad = 1;
    }

    v = json_object_get(cj, "logprobs");
    if (v && !json_is_null(v)) {
        rc = absorb_logprobs(s, c, v, cost);
        if (rc == TG_ERR_INVALID)
            bad = 1;
        else if (rc != TG_OK)
            return rc;
    }
    return bad ? TG_ERR_INVALID : TG_OK;
}

/* logprobs: {"content":[...]|null,"refusal":[...]|null}; entries appended. */
static tg_rc absorb_logprobs(struct tg_sse_stream *s, struct sse_choice *c, const json_t *lp,
                             size_t cost)
{
    static const char *const keys[2] = {"content", "refusal"};
    json_t **dst[2] = {&c->lp_content, &c->lp_refusal};
    int bad = 0, charged = 0;

    if (!json_is_object(lp))
        return TG_ERR_INVALID;
    c->has_logprobs = 1;
    for (int k = 0; k < 2; k++) {
        json_t *a = json_object_get(lp, keys[k]);
        if (!a || json_is_null(a))
            continue;
        if (!json_is_array(a)) {
            bad = 1;
            continue;
        }
        if (json_array_size(a) && !charged) {
            tg_rc rc = charge(s, cost);
            if (rc != TG_OK)
                return rc;
            charged = 1;
        }
        if (!*dst[k] && !(*dst[k] = json_array()))
            return TG_ERR_NOMEM;
        if (json_array_extend(*dst[k], a) != 0)
            return TG_ERR_NOMEM;
    }
    return bad ? TG_ERR_INVALID : TG_OK;
}

/* A tool-call delta. OpenAI sends index, id, type and function.name in the
 * first piece and arguments in later ones. Some compatible servers repeat id
 * and name in every piece, so those are replaced, not concatenated (as the
 * openai-node accumulator does); arguments are always concatenated. A piece
 * without index continues the last call unless it brings a new id. */
static tg_rc absorb_tool(struct tg_sse_stream *s, struct sse_choice *c, const json_t *tj)
{
    struct sse_tool *t;
    json_t *v, *id;
    long idx;
    int bad = 0;
    tg_rc rc;

    if (!json_is_object(tj))
        return TG_ERR_INVALID;
    id = json_object_get(tj, "id");
    v = json_object_get(tj, "index");
    if (v) {
        if ((rc = read_index(v, &idx)) != TG_OK)
            return rc;
    } else if (c->ntools == 0) {
        idx = 0;
    } else {
        struct sse_tool *last = &c->tools[c->ntools - 1];
        idx = last->index;
        if (json_is_string(id) && json_string_length(id) &&
            (last->id.len != json_string_length(id) ||
             memcmp(last->id.data, json_string_value(id), last->id.len) != 0)) {
            if (last->index >= INT_MAX)
                return TG_ERR_INVALID;
            idx = last->index + 1;
        }
    }
    if (!(t = tool_at(c, idx, &rc)))
        return rc;

    if (json_is_string(id)) {
        if (json_string_length(id) && (rc = put_str(s, &t->id, id, 1)) != TG_OK)
            return rc;
    } else if (id && !json_is_null(id)) {
        bad = 1;
    }
    v = json_object_get(tj, "type");
    if (json_is_string(v)) {
        if (json_string_length(v) && (rc = put_str(s, &t->type, v, 1)) != TG_OK)
            return rc;
    } else if (v && !json_is_null(v)) {
        bad = 1;
    }

    json_t *fn = json_object_get(tj, "function");
    if (json_is_object(fn)) {
        v = json_object_get(fn, "name");
        if (json_is_string(v)) {
            if (json_string_length(v) && (rc = put_str(s, &t->name, v, 1)) != TG_OK)
                return rc;
        } else if (v && !json_is_null(v)) {
            bad = 1;
        }
        v = json_object_get(fn, "arguments");
        if (json_is_string(v)) {
            if ((rc = put_str(s, &t->args, v, 0)) != TG_OK)
                return rc;
        } else if (v && !json_is_null(v)) {
            bad = 1;
        }
    } else if (fn && !json_is_null(fn)) {
        bad = 1;
    }
    return bad ? TG_ERR_INVALID : TG_OK;
}

/* Finds or inserts (sorted) the choice with this index. n is small (<= 128),
 * so a linear walk beats anything cleverer. */
static struct sse_choice *choice_at(struct tg_sse_stream *s, long index, tg_rc *rc)
{
    size_t i = 0;
    while (i < s->nchoices && s->choices[i].index < index)
        i++;
    if (i < s->nchoices && s->choices[i].index == index)
        return &s->choices[i];
    if (s->nchoices >= TG_SSE_MAX_CHOICES) {
        *rc = TG_ERR_INVALID;
        return NULL;
    }
    if (s->nchoices == s->choices_cap) {
        size_t cap = s->choices_cap ? s->choices_cap * 2 : 2;
        struct sse_choice *p = realloc(s->choices, cap * sizeof(*p));
        if (!p) {
            *rc = TG_ERR_NOMEM;
            return NULL;
        }
        s->choices = p;
        s->choices_cap = cap;
    }
    memmove(&s->choices[i + 1], &s->choices[i], (s->nchoices - i) * sizeof(*s->choices));
    s->nchoices++;
    struct sse_choice *c = &s->choices[i];
    memset(c, 0, sizeof(*c));
    c->index = index;
    tg_buf_init(&c->content, 0);
    tg_buf_init(&c->refusal, 0);
    return c;
}

static struct sse_tool *tool_at(struct sse_choice *c, long index, tg_rc *rc)
{
    size_t i = 0;
    while (i < c->ntools && c->tools[i].index < index)
        i++;
    if (i < c->ntools && c->tools[i].index == index)
        return &c->tools[i];
    if (c->ntools >= TG_SSE_MAX_TOOL_CALLS) {
        *rc = TG_ERR_INVALID;
        return NULL;
    }
    if (c->ntools == c->tools_cap) {
        size_t cap = c->tools_cap ? c->tools_cap * 2 : 2;
        struct sse_tool *p = realloc(c->tools, cap * sizeof(*p));
        if (!p) {
            *rc = TG_ERR_NOMEM;
            return NULL;
        }
        c->tools = p;
        c->tools_cap = cap;
    }
    memmove(&c->tools[i + 1], &c->tools[i], (c->ntools - i) * sizeof(*c->tools));
    c->ntools++;
    struct sse_tool *t = &c->tools[i];
    t->index = index;
    tg_buf_init(&t->id, 0);
    tg_buf_init(&t->type, 0);
    tg_buf_init(&t->name, 0);
    tg_buf_init(&t->args, 0);
    return t;
}

/* ------------------------------------------------------------------------ */
/* Accessors and the rebuilt completion                                      */

int tg_sse_stream_failed(const struct tg_sse_stream *s)
{
    return s->st.rc != TG_OK || s->st.error_seen || s->st.malformed > 0;
}

int tg_sse_stream_done(const struct tg_sse_stream *s)
{
    return s->st.done_seen && !tg_sse_stream_failed(s);
}

void tg_sse_stream_stats(const struct tg_sse_stream *s, struct tg_sse_stats *out)
{
    *out = s->st;
}

const json_t *tg_sse_stream_error(const struct tg_sse_stream *s)
{
    return s->error;
}

static json_t *buf_string(const struct tg_buf *b)
{
    return json_stringn(b->data ? b->data : "", b->len);
}

static json_t *build_tool(const struct sse_tool *t)
{
    json_t *o = json_object(), *fn = json_object();
    if (!o || !fn)
        goto fail;
    if (json_object_set_new(o, "id", buf_string(&t->id)) != 0 ||
        json_object_set_new(o, "type",
                            t->type.len ? buf_string(&t->type) : json_string("function")) != 0 ||
        json_object_set_new(fn, "name", buf_string(&t->name)) != 0 ||
        json_object_set_new(fn, "arguments", buf_string(&t->args)) != 0)
        goto fail;
    if (json_object_set_new(o, "function", fn) != 0) {
        fn = NULL; /* set_new consumed it */
        goto fail;
    }
    return o;
fail:
    json_decref(fn);
    json_decref(o);
    return NULL;
}

static json_t *build_choice(const struct sse_choice *c)
{
    json_t *o = json_object(), *msg = json_object();
    if (!o || !msg)
        goto fail;
    if (json_object_set_new(o, "index", json_integer(c->index)) != 0 ||
        json_object_set_new(msg, "role",
                            c->role ? json_deep_copy(c->role) : json_string("assistant")) != 0 ||
        json_object_set_new(msg, "content",
                            c->has_content ? buf_string(&c->content) : json_null()) != 0 ||
        json_object_set_new(msg, "refusal",
                            c->has_refusal ? buf_string(&c->refusal) : json_null()) != 0)
        goto fail;
    if (c->ntools) {
        json_t *tools = json_array();
        if (json_object_set_new(msg, "tool_calls", tools) != 0)
            goto fail;
        for (size_t i = 0; i < c->ntools; i++)
            if (json_array_append_new(tools, build_tool(&c->tools[i])) != 0)
                goto fail;
    }
    if (json_object_set_new(o, "message", msg) != 0) {
        msg = NULL;
        goto fail;
    }
    msg = NULL;

    json_t *lp = c->has_logprobs ? json_object() : json_null();
    if (!lp)
        goto fail;
    if (c->has_logprobs &&
        (json_object_set_new(lp, "content",
                             c->lp_content ? json_deep_copy(c->lp_content) : json_null()) != 0 ||
         json_object_set_new(lp, "refusal",
                             c->lp_refusal ? json_deep_copy(c->lp_refusal) : json_null()) != 0)) {
        json_decref(lp);
        goto fail;
    }
    if (json_object_set_new(o, "logprobs", lp) != 0 ||
        json_object_set_new(o, "finish_reason",
                            c->finish ? json_deep_copy(c->finish) : json_null()) != 0)
        goto fail;
    return o;
fail:
    json_decref(msg);
    json_decref(o);
    return NULL;
}

json_t *tg_sse_completion(const struct tg_sse_stream *s)
{
    json_t *o = json_object(), *choices = json_array();
    if (!o || !choices)
        goto fail;

    /* OpenAI's key order: id, object, created, model, choices, usage,
     * service_tier, system_fingerprint. */
    if (s->top[TOP_ID] && json_object_set_new(o, "id", json_deep_copy(s->top[TOP_ID])) != 0)
        goto fail;
    if (json_object_set_new(o, "object", json_string("chat.completion")) != 0)
        goto fail;
    if (s->top[TOP_CREATED] &&
        json_object_set_new(o, "created", json_deep_copy(s->top[TOP_CREATED])) != 0)
        goto fail;
    if (s->top[TOP_MODEL] &&
        json_object_set_new(o, "model", json_deep_copy(s->top[TOP_MODEL])) != 0)
        goto fail;
    for (size_t i = 0; i < s->nchoices; i++)
        if (json_array_append_new(choices, build_choice(&s->choices[i])) != 0)
            goto fail;
    if (json_object_set_new(o, "choices", choices) != 0) {
        choices = NULL;
        goto fail;
    }
    choices = NULL;
    if (s->usage && json_object_set_new(o, "usage", json_deep_copy(s->usage)) != 0)
        goto fail;
    if (s->top[TOP_SERVICE_TIER] &&
        json_object_set_new(o, "service_tier", json_deep_copy(s->top[TOP_SERVICE_TIER])) != 0)
        goto fail;
    if (s->top[TOP_FINGERPRINT] &&
        json_object_set_new(o, "system_fingerprint", json_deep_copy(s->top[TOP_FINGERPRINT])) != 0)
        goto fail;
    return o;
fail:
    json_decref(choices);
    json_decref(o);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Synthesis                                                                 */

/* A writer that remembers its first failure, so emit code reads straight. */
struct w {
    struct tg_buf *b;
    tg_rc rc;
};

static void w_put(struct w *w, const char *p, size_t n)
{
    if (w->rc == TG_OK)
        w->rc = tg_buf_append(w->b, p, n);
}

static void w_puts(struct w *w, const char *p)
{
    w_put(w, p, strlen(p));
}

static void w_str(struct w *w, const char *p, size_t n)
{
    if (w->rc == TG_OK)
        w->rc = tg_buf_json_str(w->b, p, n);
}

static void w_int(struct w *w, json_int_t v)
{
    if (w->rc == TG_OK)
        w->rc = tg_buf_printf(w->b, "%" JSON_INTEGER_FORMAT, v);
}

static int w_dump_cb(const char *p, size_t n, void *ud)
{
    struct w *w = ud;
    w_put(w, p, n);
    return w->rc == TG_OK ? 0 : -1;
}

/* Any JSON value, compact; NULL is written as null. */
static void w_json(struct w *w, const json_t *v)
{
    if (w->rc != TG_OK)
        return;
    if (!v) {
        w_puts(w, "null");
        return;
    }
    if (json_dump_callback(v, w_dump_cb, w, JSON_COMPACT | JSON_ENCODE_ANY) != 0 && w->rc == TG_OK)
        w->rc = TG_ERR_NOMEM;
}

struct synth {
    struct w w;
    struct tg_buf head; /* `data: {"id":..,..,"choices":[` */
    const char *tail;   /* `]}\n\n`, or with `"usage":null` */
    size_t chunk_chars;
};

/* Byte length of the next piece: at most `chars` UTF-8 characters (0: all),
 * never cutting a character. */
static size_t piece_len(const char *p, size_t n, size_t chars)
{
    size_t i = 0, k = 0;
    if (chars == 0)
        return n;
    for (; i < n; i++) {
        if (((unsigned char)p[i] & 0xC0) != 0x80) {
            if (k == chars)
                break;
            k++;
        }
    }
    return i;
}

static size_t count_pieces(const char *p, size_t n, size_t chars)
{
    size_t k = 0;
    for (size_t off = 0; off < n; k++)
        off += piece_len(p + off, n - off, chars);
    return k;
}

static void chunk_open(struct synth *y, json_int_t index)
{
    w_put(&y->w, y->head.data, y->head.len);
    w_puts(&y->w, "{\"index\":");
    w_int(&y->w, index);
    w_puts(&y->w, ",\"delta\":");
}

static void chunk_close(struct synth *y, const json_t *finish)
{
    w_puts(&y->w, ",\"finish_reason\":");
    w_json(&y->w, finish && !json_is_null(finish) ? finish : NULL);
    w_puts(&y->w, "}");
    w_puts(&y->w, y->tail);
}

/* `{"content":[a..b),"refusal":null}` or the refusal twin. */
static void w_lp_slice(struct w *w, const json_t *arr, size_t a, size_t b, int refusal)
{
    w_puts(w, refusal ? "{\"content\":null,\"refusal\":[" : "{\"content\":[");
    for (size_t i = a; i < b; i++) {
        if (i > a)
            w_puts(w, ",");
        w_json(w, json_array_get(arr, i));
    }
    w_puts(w, refusal ? "]}" : "],\"refusal\":null}");
}

/* Content or refusal pieces; logprobs entries (lp, may be NULL) are shared
 * out over the pieces in order. Returns the number of pieces. */
static size_t emit_text(struct synth *y, json_int_t index, const char *field, const json_t *text,
                        const json_t *lp, int refusal)
{
    const char *p = json_string_value(text);
    size_t n = json_string_length(text);
    size_t pieces = count_pieces(p, n, y->chunk_chars);
    size_t m = json_is_array(lp) ? json_array_size(lp) : 0;
    size_t off = 0;

    for (size_t j = 0; j < pieces && y->w.rc == TG_OK; j++) {
        size_t len = piece_len(p + off, n - off, y->chunk_chars);
        chunk_open(y, index);
        w_puts(&y->w, "{\"");
        w_puts(&y->w, field);
        w_puts(&y->w, "\":");
        w_str(&y->w, p + off, len);
        w_puts(&y->w, "},\"logprobs\":");
        if (json_is_array(lp))
            w_lp_slice(&y->w, lp, j * m / pieces, (j + 1) * m / pieces, refusal);
        else
            w_puts(&y->w, "null");
        chunk_close(y, NULL);
        off += len;
    }
    return pieces;
}

static void emit_tool(struct synth *y, json_int_t index, size_t k, const json_t *tc)
{
    const json_t *id = json_object_get(tc, "id");
    const json_t *type = json_object_get(tc, "type");
    const json_t *fn = json_object_get(tc, "function");
    const json_t *name = json_object_get(fn, "name");
    const json_t *args = json_object_get(fn, "arguments");

    chunk_open(y, index);
    w_puts(&y->w, "{\"tool_calls\":[{\"index\":");
    w_int(&y->w, (json_int_t)k);
    if (id && !json_is_null(id)) {
        w_puts(&y->w, ",\"id\":");
        w_json(&y->w, id);
    }
    w_puts(&y->w, ",\"type\":");
    if (json_is_string(type))
        w_json(&y->w, type);
    else
        w_puts(&y->w, "\"function\"");
    w_puts(&y->w, ",\"function\":{\"name\":");
    if (json_is_string(name))
        w_json(&y->w, name);
    else
        w_puts(&y->w, "\"\"");
    w_puts(&y->w, ",\"arguments\":\"\"}}]},\"logprobs\":null");
    chunk_close(y, NULL);

    if (!json_is_string(args))
        return;
    const char *p = json_string_value(args);
    size_t n = json_string_length(args);
    for (size_t off = 0; off < n && y->w.rc == TG_OK;) {
        size_t len = piece_len(p + off, n - off, y->chunk_chars);
        chunk_open(y, index);
        w_puts(&y->w, "{\"tool_calls\":[{\"index\":");
        w_int(&y->w, (json_int_t)k);
        w_puts(&y->w, ",\"function\":{\"arguments\":");
        w_str(&y->w, p + off, len);
        w_puts(&y->w, "}}]},\"logprobs\":null");
        chunk_close(y, NULL);
        off += len;
    }
}

static void emit_choice(struct synth *y, size_t pos, const json_t *choice)
{
    const json_t *v = json_object_get(choice, "index");
    json_int_t index = json_is_integer(v) ? json_integer_value(v) : (json_int_t)pos;
    const json_t *msg = json_object_get(choice, "message");
    const json_t *role = json_object_get(msg, "role");
    const json_t *content = json_object_get(msg, "content");
    const json_t *refusal = json_object_get(msg, "refusal");
    const json_t *tools = json_object_get(msg, "tool_calls");
    const json_t *lp = json_object_get(choice, "logprobs");
    const json_t *lpc = json_object_get(lp, "content");
    const json_t *lpr = json_object_get(lp, "refusal");
    size_t nc = 0, nr = 0;

    /* Role first, as OpenAI does: content "" for a text answer, null when
     * the answer has no content (tool calls, refusals); refusal "" when the
     * answer is a refusal, so even an empty one survives the replay. */
    chunk_open(y, index);
    w_puts(&y->w, "{\"role\":");
    if (json_is_string(role))
        w_json(&y->w, role);
    else
        w_puts(&y->w, "\"assistant\"");
    w_puts(&y->w, json_is_string(content) ? ",\"content\":\"\"" : ",\"content\":null");
    w_puts(&y->w, json_is_string(refusal) ? ",\"refusal\":\"\"}" : "}");
    w_puts(&y->w, ",\"logprobs\":null");
    chunk_close(y, NULL);

    if (json_is_string(content))
        nc = emit_text(y, index, "content", content, lpc, 0);
    if (json_is_string(refusal))
        nr = emit_text(y, index, "refusal", refusal, lpr, 1);
    if (json_is_array(tools))
        for (size_t k = 0; k < json_array_size(tools); k++)
            emit_tool(y, index, k, json_array_get(tools, k));

    /* Finish chunk. logprobs entries no piece could carry ride here, and an
     * otherwise empty logprobs object is kept so the replay rebuilds it. */
    chunk_open(y, index);
    w_puts(&y->w, "{},\"logprobs\":");
    int need_c = json_is_array(lpc) && nc == 0;
    int need_r = json_is_array(lpr) && nr == 0;
    int carried = (json_is_array(lpc) && nc) || (json_is_array(lpr) && nr);
    if (json_is_object(lp) && (need_c || need_r || !carried)) {
        w_puts(&y->w, "{\"content\":");
        w_json(&y->w, need_c ? lpc : NULL);
        w_puts(&y->w, ",\"refusal\":");
        w_json(&y->w, need_r ? lpr : NULL);
        w_puts(&y->w, "}");
    } else {
        w_puts(&y->w, "null");
    }
    chunk_close(y, json_object_get(choice, "finish_reason"));
}

tg_rc tg_sse_synthesize(const json_t *completion, int include_usage, size_t chunk_chars,
                        struct tg_buf *out)
{
    static const char *const head_keys[] = {"id", "created", "model", "service_tier",
                                            "system_fingerprint"};
    struct synth y = {{out, TG_OK}, {0}, NULL, chunk_chars};
    struct w hw;
    size_t start = out->len;
    const json_t *choices = json_object_get(completion, "choices");
    const json_t *usage = json_object_get(completion, "usage");

    if (!json_is_object(completion) || !json_is_array(choices))
        return TG_ERR_INVALID;

    /* The prefix every chunk shares, in OpenAI's key order. */
    tg_buf_init(&y.head, 0);
    hw.b = &y.head;
    hw.rc = TG_OK;
    w_puts(&hw, "data: {");
    for (size_t k = 0; k < TG_ARRAY_LEN(head_keys); k++) {
        const json_t *v = json_object_get(completion, head_keys[k]);
        if (v && !json_is_null(v)) {
            w_puts(&hw, "\"");
            w_puts(&hw, head_keys[k]);
            w_puts(&hw, "\":");
            w_json(&hw, v);
            w_puts(&hw, ",");
        }
        if (k == 0)
            w_puts(&hw, "\"object\":\"chat.completion.chunk\",");
    }
    w_puts(&hw, "\"choices\":[");
    if (hw.rc != TG_OK) {
        y.w.rc = hw.rc;
        goto out;
    }
    y.tail = include_usage ? "],\"usage\":null}\n\n" : "]}\n\n";

    for (size_t i = 0; i < json_array_size(choices) && y.w.rc == TG_OK; i++)
        emit_choice(&y, i, json_array_get(choices, i));

    /* stream_options.include_usage: a last chunk with no choices. */
    if (include_usage && json_is_object(usage)) {
        w_put(&y.w, y.head.data, y.head.len);
        w_puts(&y.w, "],\"usage\":");
        w_json(&y.w, usage);
        w_puts(&y.w, "}\n\n");
    }
    w_puts(&y.w, "data: [DONE]\n\n");
out:
    tg_buf_free(&y.head);
    if (y.w.rc != TG_OK) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
    }
    return y.w.rc;
}

tg_rc tg_sse_error_event(struct tg_buf *out, const char *message, const char *type,
                         const char *code)
{
    struct w w = {out, TG_OK};
    size_t start = out->len;

    w_puts(&w, "data: {\"error\":{\"message\":");
    w_str(&w, message ? message : "", message ? strlen(message) : 0);
    w_puts(&w, ",\"type\":");
    if (type)
        w_str(&w, type, strlen(type));
    else
        w_puts(&w, "null");
    w_puts(&w, ",\"param\":null,\"code\":");
    if (code)
        w_str(&w, code, strlen(code));
    else
        w_puts(&w, "null");
    w_puts(&w, "}}\n\n");
    if (w.rc != TG_OK) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
    }
    return w.rc;
}
