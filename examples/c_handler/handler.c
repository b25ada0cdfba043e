// A text classifier handler in C, for byte-level models such as reddit_bytelstm.pt
// (16 Reddit topics).
//
// Input: text, the raw request body (or the `data`/`body` form field; a JSON body
// `{"text": "..."}` also works). Preprocess: its UTF-8 bytes as a uint8 tensor [1, L].
// Postprocess: the model already outputs [1, N] float32 probabilities; the answer is
// `{"topic": best, "probabilities": {label: p, ...}}` in the labels' order.
//
// Labels: one per line in /model/reddit_topics.txt (the archive's extra file), read at
// init with plain stdio: wasi-libc finds the preopened /model itself.
//
// Build: scripts/build-c-handler.sh. The bindings (handler.h, handler.c and
// handler_component_type.o) come from `wit-bindgen c --world handler wit/`.
//
// Ownership (wit-bindgen's C conventions): an export owns its arguments and frees them;
// what it returns (results and errors) must be malloc'd, and the generated post-return
// functions free it after the host has copied it out.

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handler.h"

#define LABELS_FILE "/model/reddit_topics.txt"

static char **labels;
static size_t n_labels;

// ---- small helpers ---------------------------------------------------------------------

static void log_line(wasmserve_handler_host_level_t level, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  handler_string_t msg = {(uint8_t *)buf, strlen(buf)};
  wasmserve_handler_host_log(level, &msg);
}

// Fills the WIT `error` record (the message is malloc'd; post-return frees it).
static bool fail(handler_error_t *err, uint16_t status, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  err->status = status;
  handler_string_dup(&err->message, buf);
  return false;
}

static bool str_is(const handler_string_t *s, const char *lit) {
  size_t n = strlen(lit);
  return s->len == n && memcmp(s->ptr, lit, n) == 0;
}

static bool str_starts(const handler_string_t *s, const char *lit) {
  size_t n = strlen(lit);
  return s->len >= n && memcmp(s->ptr, lit, n) == 0;
}

// A growable byte buffer.
typedef struct {
  char *p;
  size_t len, cap;
} buf_t;

static void buf_put(buf_t *b, const char *s, size_t n) {
  if (b->len + n > b->cap) {
    b->cap = (b->len + n) * 2 + 64;
    b->p = realloc(b->p, b->cap);
    if (!b->p) abort();
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
}

static void buf_puts(buf_t *b, const char *s) { buf_put(b, s, strlen(s)); }

// `s` as a JSON string, quotes included.
static void buf_json_string(buf_t *b, const char *s) {
  buf_puts(b, "\"");
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    char esc[8];
    if (c == '"' || c == '\\') {
      esc[0] = '\\', esc[1] = (char)c;
      buf_put(b, esc, 2);
    } else if (c < 0x20) {
      snprintf(esc, sizeof esc, "\\u%04x", c);
      buf_puts(b, esc);
    } else {
      buf_put(b, (const char *)&c, 1);
    }
  }
  buf_puts(b, "\"");
}

static void buf_utf8(buf_t *b, uint32_t cp) {
  char u[4];
  if (cp < 0x80) {
    u[0] = (char)cp;
    buf_put(b, u, 1);
  } else if (cp < 0x800) {
    u[0] = (char)(0xC0 | (cp >> 6)), u[1] = (char)(0x80 | (cp & 0x3F));
    buf_put(b, u, 2);
  } else if (cp < 0x10000) {
    u[0] = (char)(0xE0 | (cp >> 12)), u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    u[2] = (char)(0x80 | (cp & 0x3F));
    buf_put(b, u, 3);
  } else {
    u[0] = (char)(0xF0 | (cp >> 18)), u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), u[3] = (char)(0x80 | (cp & 0x3F));
    buf_put(b, u, 4);
  }
}

static const char *skip_ws(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
  return p;
}

static int hex4(const char *p, const char *end) {
  if (end - p < 4) return -1;
  int v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= c - '0';
    else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
    else return -1;
  }
  return v;
}

// Decodes the JSON string starting at `*pp` (at its opening quote) into `out`.
static bool json_string(const char **pp, const char *end, buf_t *out) {
  const char *p = *pp;
  if (p >= end || *p != '"') return false;
  for (p++; p < end; p++) {
    if (*p == '"') {
      *pp = p + 1;
      return true;
    }
    if (*p != '\\') {
      buf_put(out, p, 1);
      continue;
    }
    if (++p >= end) return false;
    switch (*p) {
      case '"': buf_puts(out, "\""); break;
      case '\\': buf_puts(out, "\\"); break;
      case '/': buf_puts(out, "/"); break;
      case 'b': buf_puts(out, "\b"); break;
      case 'f': buf_puts(out, "\f"); break;
      case 'n': buf_puts(out, "\n"); break;
      case 'r': buf_puts(out, "\r"); break;
      case 't': buf_puts(out, "\t"); break;
      case 'u': {
        int cp = hex4(p + 1, end);
        if (cp < 0) return false;
        p += 4;
        if (cp >= 0xD800 && cp < 0xDC00 && end - p > 6 && p[1] == '\\' && p[2] == 'u') {
          int lo = hex4(p + 3, end);
          if (lo >= 0xDC00 && lo < 0xE000) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            p += 6;
          }
        }
        buf_utf8(out, (uint32_t)cp);
        break;
      }
      default: return false;
    }
  }
  return false;
}

// The text of a JSON body: a string, or the string value of the top-level key "text"
// (or "data"). Only as much JSON as that needs: other values are skipped when they are
// strings, numbers, literals or flat; nested objects or arrays before "text" fail.
static bool json_text(const char *p, const char *end, buf_t *out) {
  p = skip_ws(p, end);
  if (p < end && *p == '"') return json_string(&p, end, out);
  if (p >= end || *p != '{') return false;
  p++;
  for (;;) {
    p = skip_ws(p, end);
    buf_t key = {0};
    if (!json_string(&p, end, &key)) return free(key.p), false;
    p = skip_ws(p, end);
    if (p >= end || *p != ':') return free(key.p), false;
    p = skip_ws(p + 1, end);
    bool want = (key.len == 4 && (memcmp(key.p, "text", 4) == 0 || memcmp(key.p, "data", 4) == 0));
    free(key.p);
    if (p < end && *p == '"') {
      buf_t val = {0};
      if (!json_string(&p, end, &val)) return free(val.p), false;
      if (want) {
        buf_put(out, val.p ? val.p : "", val.len);
        free(val.p);
        return true;
      }
      free(val.p);
    } else {
      if (want) return false;
      while (p < end && *p != ',' && *p != '}' && *p != '{' && *p != '[') p++;
      if (p < end && (*p == '{' || *p == '[')) return false;
    }
    p = skip_ws(p, end);
    if (p < end && *p == ',') {
      p++;
      continue;
    }
    return false;  // '}' without "text", or junk
  }
}

// ---- init ------------------------------------------------------------------------------

bool exports_handler_init(handler_context_t *ctx, handler_string_t *err) {
  handler_context_free(ctx);
  FILE *f = fopen(LABELS_FILE, "r");
  if (!f) {
    char msg[256];
    snprintf(msg, sizeof msg, "cannot open %s", LABELS_FILE);
    handler_string_dup(err, msg);
    return false;
  }
  char line[1024];
  size_t cap = 0;
  while (fgets(line, sizeof line, f)) {
    char *s = line, *e = line + strlen(line);
    while (s < e && (*s == ' ' || *s == '\t')) s++;
    while (e > s && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t')) e--;
    if (e == s) continue;
    if (n_labels == cap) {
      cap = cap ? cap * 2 : 16;
      labels = realloc(labels, cap * sizeof *labels);
    }
    labels[n_labels++] = strndup(s, (size_t)(e - s));
  }
  fclose(f);
  if (n_labels == 0) {
    handler_string_dup(err, "no labels in " LABELS_FILE);
    return false;
  }
  log_line(WASMSERVE_HANDLER_HOST_LEVEL_INFO, "text classifier with %zu labels", n_labels);
  return true;
}

// ---- preprocess ------------------------------------------------------------------------

// TorchServe's convention: the `data` part, else `body`, else the only part.
static wasmserve_handler_types_part_t *input_part(handler_request_t *req) {
  for (size_t i = 0; i < req->parts.len; i++)
    if (str_is(&req->parts.ptr[i].name, "data")) return &req->parts.ptr[i];
  for (size_t i = 0; i < req->parts.len; i++)
    if (str_is(&req->parts.ptr[i].name, "body")) return &req->parts.ptr[i];
  return req->parts.len == 1 ? &req->parts.ptr[0] : NULL;
}

bool exports_handler_preprocess(handler_request_t *req, handler_list_tensor_t *ret,
                                handler_error_t *err) {
  bool ok = false;
  wasmserve_handler_types_part_t *part = input_part(req);
  buf_t text = {0};
  if (!part) {
    fail(err, 400, "the request has no 'data' or 'body' part");
    goto out;
  }
  const char *data = (const char *)part->data.ptr;
  size_t len = part->data.len;
  if (part->content_type.is_some && str_starts(&part->content_type.val, "application/json")) {
    if (!json_text(data, data + len, &text)) {
      fail(err, 400, "expected {\"text\": \"...\"}");
      goto out;
    }
    data = text.p, len = text.len;
  }
  if (len == 0) {
    fail(err, 400, "empty text");
    goto out;
  }
  // One uint8 tensor [1, L]: the text's bytes (copied: the request is freed below).
  handler_tensor_t *t = calloc(1, sizeof *t);
  t->dtype = WASMSERVE_HANDLER_TYPES_DTYPE_UINT8;
  t->shape.len = 2;
  t->shape.ptr = malloc(2 * sizeof(uint64_t));
  t->shape.ptr[0] = 1;
  t->shape.ptr[1] = len;
  t->data.len = len;
  t->data.ptr = malloc(len);
  memcpy(t->data.ptr, data, len);
  ret->ptr = t;
  ret->len = 1;
  ok = true;
out:
  free(text.p);
  handler_request_free(req);
  return ok;
}

// ---- postprocess -----------------------------------------------------------------------

bool exports_handler_postprocess(handler_request_t *req, handler_list_tensor_t *outputs,
                                 handler_response_t *ret, handler_error_t *err) {
  bool ok = false;
  if (outputs->len < 1 || outputs->ptr[0].dtype != WASMSERVE_HANDLER_TYPES_DTYPE_FLOAT32) {
    fail(err, 500, "expected one float32 output");
    goto out;
  }
  handler_tensor_t *out = &outputs->ptr[0];
  size_t n = out->data.len / 4;
  if (n != n_labels) {
    fail(err, 500, "the model gave %zu scores for %zu labels", n, n_labels);
    goto out;
  }
  buf_t json = {0};
  buf_puts(&json, "{\"probabilities\":{");
  size_t best = 0;
  float best_p = -INFINITY;
  for (size_t i = 0; i < n; i++) {
    float p;
    memcpy(&p, out->data.ptr + 4 * i, 4);  // little-endian, as is wasm32
    if (p > best_p) best_p = p, best = i;
    char num[32];
    if (p != p || p == INFINITY || p == -INFINITY) snprintf(num, sizeof num, "null");
    else snprintf(num, sizeof num, "%.9g", (double)p);
    if (i) buf_puts(&json, ",");
    buf_json_string(&json, labels[i]);
    buf_puts(&json, ":");
    buf_puts(&json, num);
  }
  buf_puts(&json, "}}");
  // "topic" first, like the JavaScript handler's answer.
  buf_t answer = {0};
  buf_puts(&answer, "{\"topic\":");
  buf_json_string(&answer, labels[best]);
  buf_puts(&answer, ",");
  buf_put(&answer, json.p + 1, json.len - 1);
  free(json.p);
  ret->status = 200;
  ret->headers.ptr = NULL;
  ret->headers.len = 0;
  ret->body.ptr = (uint8_t *)answer.p;
  ret->body.len = answer.len;
  ok = true;
out:
  handler_request_free(req);
  handler_list_tensor_free(outputs);
  return ok;
}
