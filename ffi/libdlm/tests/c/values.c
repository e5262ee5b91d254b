/*
 * Values through libdlm's C ABI: put/get/erase, compare-and-set
 * (CONFLICT writes the current revision), BUFFER_TOO_SMALL with the needed
 * size, NOT_FOUND, another owner's entry, server limits, the sealed
 * encoder, a custom encoder given as function pointers (an XOR-and-hex
 * codec that makes libdlm retry with a larger buffer), the legacy
 * framing, and a server out of memory.
 *
 * Usage: values ADDR TIGHT_ADDR   (a second server with a 4 KiB memory budget)
 */
#define _POSIX_C_SOURCE 200809L

#include "check.h"

#define SENTINEL ((void *)(uintptr_t)0x5eed)

static const char *addr;

/* Reads `name` into a fresh buffer, sized by asking first. */
static uint8_t *get_alloc(const dlm_client *c, const char *name, size_t *len, uint64_t *rev) {
  size_t need = 0;
  dlm_status s = dlm_client_get(c, name, strlen(name), NULL, 0, &need, NULL);
  if (s != DLM_OK && s != DLM_ERR_BUFFER_TOO_SMALL) {
    fprintf(stderr, "get %s: %s (%s)\n", name, dlm_status_string(s), client_error(c));
    return NULL;
  }
  uint8_t *buf = malloc(need + 1);
  if (!CHECK_OK(dlm_client_get(c, name, strlen(name), buf, need, len, rev))) {
    free(buf);
    return NULL;
  }
  CHECK(*len == need);
  return buf;
}

static void round_trip_and_cas(void) {
  dlm_client *a = connect_as(addr, "values-a");
  dlm_client *b = connect_as(addr, "values-b");
  static const uint8_t binary[] = {0, 255, 'b', 'i', 'n', 0, 'a', 'r', 'y', '\n', '"'};
  uint8_t buf[64];
  size_t n = 0;
  uint64_t rev = 0;
  CHECK(a != NULL && b != NULL);

  /* Nothing there yet: NOT_FOUND, out-parameters untouched. */
  n = 77;
  rev = 77;
  CHECK_STATUS(dlm_client_get(a, S("k"), buf, sizeof buf, &n, &rev), DLM_ERR_NOT_FOUND);
  CHECK(n == 77 && rev == 77);
  CHECK(strcmp(client_error(a), "") == 0); /* the status says it all */

  CHECK_OK(dlm_client_put(a, S("k"), binary, sizeof binary, 10000, &rev));
  CHECK(rev == 1);
  memset(buf, 0xAA, sizeof buf);
  CHECK_OK(dlm_client_get(a, S("k"), buf, sizeof buf, &n, &rev));
  CHECK(n == sizeof binary && memcmp(buf, binary, n) == 0 && rev == 1);
  CHECK(buf[n] == 0xAA); /* values are not NUL-terminated */
  CHECK_OK(dlm_client_get(a, S("k"), buf, sizeof binary, &n, NULL)); /* exact fit */

  /* Too small a buffer: the needed size, nothing else written. */
  memset(buf, 0xAA, sizeof buf);
  rev = 77;
  CHECK_STATUS(dlm_client_get(a, S("k"), buf, 3, &n, &rev), DLM_ERR_BUFFER_TOO_SMALL);
  CHECK(n == sizeof binary && rev == 77 && buf[0] == 0xAA);
  CHECK_STATUS(dlm_client_get(a, S("k"), NULL, 0, &n, &rev), DLM_ERR_BUFFER_TOO_SMALL);
  CHECK(n == sizeof binary && rev == 77);
  size_t len = 0;
  uint8_t *copy = get_alloc(a, "k", &len, &rev);
  CHECK(copy != NULL && len == sizeof binary && memcmp(copy, binary, len) == 0);
  free(copy);

  /* Compare-and-set: CONFLICT writes the current revision. */
  rev = 77;
  CHECK_STATUS(dlm_client_put_if(a, S("k"), S("x"), 10000, 7, &rev), DLM_ERR_CONFLICT);
  CHECK(rev == 1);
  CHECK(strcmp(client_error(a), "current revision 1") == 0);
  rev = 77;
  CHECK_STATUS(dlm_client_put_if(a, S("k"), S("x"), 10000, 0, &rev), DLM_ERR_CONFLICT);
  CHECK(rev == 1);
  CHECK_OK(dlm_client_put_if(a, S("k"), S("y"), 10000, 1, &rev));
  CHECK(rev == 2);
  CHECK_STATUS(dlm_client_put_if(a, S("k"), S("z"), 10000, 1, NULL), DLM_ERR_CONFLICT);
  CHECK_OK(dlm_client_get(a, S("k"), buf, sizeof buf, &n, &rev));
  CHECK(n == 1 && buf[0] == 'y' && rev == 2);
  CHECK_OK(dlm_client_put(a, S("k"), S("plain"), 10000, NULL));
  CHECK_OK(dlm_client_get(a, S("k"), buf, sizeof buf, &n, &rev));
  CHECK(n == 5 && rev == 3);
  /* On an absent entry: 0 means "only if absent"; anything else conflicts
   * with revision 0. */
  rev = 77;
  CHECK_STATUS(dlm_client_put_if(a, S("fresh"), S("v"), 10000, 5, &rev), DLM_ERR_CONFLICT);
  CHECK(rev == 0);
  CHECK_OK(dlm_client_put_if(a, S("fresh"), S("v"), 10000, 0, &rev));
  CHECK(rev == 1);

  /* Another owner's entry. */
  CHECK_STATUS(dlm_client_get(b, S("k"), buf, sizeof buf, &n, &rev), DLM_ERR_NOT_OWNER);
  CHECK_STATUS(dlm_client_put(b, S("k"), S("mine"), 10000, &rev), DLM_ERR_NOT_OWNER);
  CHECK_STATUS(dlm_client_erase(b, S("k")), DLM_ERR_NOT_OWNER);

  /* Erase, then it is gone. */
  CHECK_OK(dlm_client_erase(a, S("k")));
  CHECK_STATUS(dlm_client_erase(a, S("k")), DLM_ERR_NOT_FOUND);
  CHECK_STATUS(dlm_client_get(a, S("k"), buf, sizeof buf, &n, &rev), DLM_ERR_NOT_FOUND);

  /* An empty value, read into no buffer at all. */
  CHECK_OK(dlm_client_put(a, S("empty"), NULL, 0, 10000, &rev));
  n = 77;
  CHECK_OK(dlm_client_get(a, S("empty"), NULL, 0, &n, &rev));
  CHECK(n == 0 && rev == 1);

  /* Values expire. */
  uint64_t expires = now_ms() + 100; /* the server counts from later */
  CHECK_OK(dlm_client_put(a, S("brief"), S("v"), 100, NULL));
  dlm_status got = DLM_OK;
  while ((got = dlm_client_get(a, S("brief"), buf, sizeof buf, &n, NULL)) == DLM_OK &&
         now_ms() < expires + 5000) {
    sleep_ms(10);
  }
  CHECK_STATUS(got, DLM_ERR_NOT_FOUND);
  CHECK(now_ms() + 1 >= expires); /* not before its TTL (whole ms) */

  /* Invalid arguments, and the server's limits. */
  CHECK_STATUS(dlm_client_put(a, S("k"), S("v"), 0, NULL), DLM_ERR_INVALID_ARGUMENT);
  CHECK_CONTAINS(client_error(a), "TTL");
  CHECK_STATUS(dlm_client_put_if(a, S("k"), S("v"), 0, 0, NULL), DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_client_put(a, S(""), S("v"), 1000, NULL), DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_client_put(a, S("\xc0\x80"), S("v"), 1000, NULL), DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_client_get(a, S(""), buf, sizeof buf, &n, NULL), DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_client_erase(a, S("\xff")), DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_client_test_lock(a, S(""), &(dlm_lock_state){0}, NULL, NULL),
               DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_client_unlock(a, S("\xff"), 0), DLM_ERR_INVALID_ARGUMENT);
  static uint8_t big[20000];
  memset(big, 'x', sizeof big);
  CHECK_STATUS(dlm_client_put(a, S("big"), big, sizeof big, 1000, NULL), DLM_ERR_BAD_REQUEST);
  CHECK_CONTAINS(client_error(a), "DataStore"); /* the server's reason */
  CHECK_STATUS(dlm_client_put(a, S("long"), S("v"), 3600000, NULL), DLM_ERR_BAD_REQUEST);

  dlm_client_free(a);
  dlm_client_free(b);
}

static dlm_client *sealed_client(const uint8_t *key, size_t key_len) {
  dlm_options *o = NULL;
  dlm_client *c = NULL;
  CHECK_OK(dlm_options_new(&o));
  CHECK_OK(dlm_options_set_client_id(o, S("sealed")));
  if (key != NULL) {
    CHECK_OK(dlm_options_set_sealed_key(o, key, key_len));
  }
  CHECK_OK(dlm_client_new(addr, strlen(addr), o, &c));
  dlm_options_free(o);
  return c;
}

static void sealed(void) {
  uint8_t key[32], other_key[32];
  for (int i = 0; i < 32; i++) {
    key[i] = (uint8_t)(i * 7 + 1);
    other_key[i] = (uint8_t)(i * 7 + 2);
  }
  dlm_client *s = sealed_client(key, sizeof key);
  dlm_client *raw = sealed_client(NULL, 0);
  dlm_client *wrong = sealed_client(other_key, sizeof other_key);
  uint8_t buf[64];
  size_t n = 0;
  CHECK(s != NULL && raw != NULL && wrong != NULL);

  CHECK_OK(dlm_client_put(s, S("cfg"), S("db-password"), 10000, NULL));
  CHECK_OK(dlm_client_get(s, S("cfg"), buf, sizeof buf, &n, NULL));
  CHECK(n == 11 && memcmp(buf, "db-password", 11) == 0);
  /* The same owner without the key (table encoder) or with another key
   * cannot read it: the server holds ciphertext only. */
  CHECK_STATUS(dlm_client_get(raw, S("cfg"), buf, sizeof buf, &n, NULL), DLM_ERR_ENCODING);
  CHECK_CONTAINS(client_error(raw), "written with the sealed encoder");
  CHECK_STATUS(dlm_client_get(wrong, S("cfg"), buf, sizeof buf, &n, NULL), DLM_ERR_ENCODING);
  /* Bound to its name: the ciphertext cannot be replayed under another. */
  CHECK_OK(dlm_client_put(s, S("cfg2"), S("x"), 10000, NULL));
  CHECK_OK(dlm_client_get(s, S("cfg2"), buf, sizeof buf, &n, NULL));
  CHECK(n == 1 && buf[0] == 'x');

  dlm_client_free(s);
  dlm_client_free(raw);
  dlm_client_free(wrong);
}

/* The custom codec's state, shared by both directions. */
struct codec {
  uint8_t xor_key;
  const char *expected_name; /* the data key it is called with */
  int encodes, decodes, too_small, wrong_name;
  int fail_decode;           /* return an error status from decode */
  int always_too_small;      /* keep asking for more */
  int not_utf8;              /* encode to invalid UTF-8 */
};

static const char HEX[] = "0123456789abcdef";

/* "x:" then the hex of each byte XOR the key: 2 + 2n bytes, which is more
 * than the 2n libdlm first offers, so each value takes a retry. */
static uint32_t xor_hex_encode(void *userdata, const char *name, size_t name_len,
                               const uint8_t *input, size_t input_len, uint8_t *out,
                               size_t out_cap, size_t *out_len) {
  struct codec *c = userdata;
  c->encodes++;
  if (name_len != strlen(c->expected_name) || memcmp(name, c->expected_name, name_len) != 0) {
    c->wrong_name++;
  }
  size_t need = 2 + 2 * input_len;
  if (c->always_too_small) {
    need = out_cap + 1;
  }
  if (out_cap < need) {
    c->too_small++;
    *out_len = need;
    return DLM_ERR_BUFFER_TOO_SMALL;
  }
  out[0] = 'x';
  out[1] = ':';
  for (size_t i = 0; i < input_len; i++) {
    uint8_t b = input[i] ^ c->xor_key;
    out[2 + 2 * i] = (uint8_t)HEX[b >> 4];
    out[3 + 2 * i] = (uint8_t)HEX[b & 15];
  }
  if (c->not_utf8) {
    out[0] = 0xff;
  }
  *out_len = need;
  return DLM_OK;
}

static int hex_digit(uint8_t ch) {
  if (ch >= '0' && ch <= '9') {
    return ch - '0';
  }
  if (ch >= 'a' && ch <= 'f') {
    return ch - 'a' + 10;
  }
  return -1;
}

static uint32_t xor_hex_decode(void *userdata, const char *name, size_t name_len,
                               const uint8_t *input, size_t input_len, uint8_t *out,
                               size_t out_cap, size_t *out_len) {
  struct codec *c = userdata;
  c->decodes++;
  if (name_len != strlen(c->expected_name) || memcmp(name, c->expected_name, name_len) != 0) {
    c->wrong_name++;
  }
  if (c->fail_decode || input_len < 2 || input[0] != 'x' || input[1] != ':' ||
      input_len % 2 != 0) {
    return DLM_ERR_INVALID_ARGUMENT;
  }
  size_t need = (input_len - 2) / 2;
  if (out_cap < need) {
    *out_len = need;
    return DLM_ERR_BUFFER_TOO_SMALL;
  }
  for (size_t i = 0; i < need; i++) {
    int hi = hex_digit(input[2 + 2 * i]), lo = hex_digit(input[3 + 2 * i]);
    if (hi < 0 || lo < 0) {
      return DLM_ERR_INVALID_ARGUMENT;
    }
    out[i] = (uint8_t)((hi << 4 | lo) ^ c->xor_key);
  }
  *out_len = need;
  return DLM_OK;
}

static dlm_client *codec_client(struct codec *codec) {
  dlm_options *o = NULL;
  dlm_client *c = NULL;
  CHECK_OK(dlm_options_new(&o));
  CHECK_OK(dlm_options_set_client_id(o, S("codec")));
  CHECK_STATUS(dlm_options_set_encoder(o, xor_hex_encode, NULL, codec), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_options_set_encoder(o, NULL, xor_hex_decode, codec), DLM_ERR_NULL_PARAMETER);
  CHECK_OK(dlm_options_set_encoder(o, xor_hex_encode, xor_hex_decode, codec));
  CHECK_OK(dlm_client_new(addr, strlen(addr), o, &c));
  dlm_options_free(o);
  return c;
}

static void custom_encoder(void) {
  struct codec codec = {0x5a, "enc-key", 0, 0, 0, 0, 0, 0, 0};
  dlm_client *c = codec_client(&codec);
  dlm_client *table = connect_as(addr, "codec");
  uint8_t value[100], buf[256];
  size_t n = 0;
  for (size_t i = 0; i < sizeof value; i++) {
    value[i] = (uint8_t)(i * 37);
  }
  CHECK(c != NULL && table != NULL);

  /* A value of 100 bytes: libdlm offers 200, the codec needs 202 and says
   * so, and libdlm calls again with that. */
  CHECK_OK(dlm_client_put(c, S("enc-key"), value, sizeof value, 10000, NULL));
  CHECK(codec.encodes == 2 && codec.too_small == 1);
  CHECK_OK(dlm_client_get(c, S("enc-key"), buf, sizeof buf, &n, NULL));
  CHECK(n == sizeof value && memcmp(buf, value, n) == 0);
  CHECK(codec.decodes >= 1 && codec.wrong_name == 0);
  /* What the server stores is the codec's text, which the table codec
   * cannot read. */
  CHECK_STATUS(dlm_client_get(table, S("enc-key"), buf, sizeof buf, &n, NULL), DLM_ERR_ENCODING);

  /* A decoder that fails makes the call fail with ENCODING. */
  codec.fail_decode = 1;
  CHECK_STATUS(dlm_client_get(c, S("enc-key"), buf, sizeof buf, &n, NULL), DLM_ERR_ENCODING);
  CHECK_CONTAINS(client_error(c), "custom encoder");
  codec.fail_decode = 0;

  /* An encoder that never has room enough is given up on. */
  codec.always_too_small = 1;
  CHECK_STATUS(dlm_client_put(c, S("enc-key"), S("v"), 10000, NULL), DLM_ERR_ENCODING);
  codec.always_too_small = 0;

  /* Output that is not UTF-8 is refused. */
  codec.not_utf8 = 1;
  CHECK_STATUS(dlm_client_put(c, S("enc-key"), S("v"), 10000, NULL), DLM_ERR_ENCODING);
  CHECK_CONTAINS(client_error(c), "UTF-8");
  codec.not_utf8 = 0;

  /* Nothing was stored by the failed puts. */
  CHECK_OK(dlm_client_get(c, S("enc-key"), buf, sizeof buf, &n, NULL));
  CHECK(n == sizeof value && memcmp(buf, value, n) == 0);

  dlm_client_free(c);
  dlm_client_free(table);
}

static void legacy_framing(void) {
  dlm_options *o = NULL;
  dlm_client *c = NULL;
  dlm_lock *l = NULL;
  uint8_t buf[64];
  size_t n = 0;
  uint64_t rev = 0;
  CHECK_OK(dlm_options_new(&o));
  CHECK_OK(dlm_options_set_client_id(o, S("legacy")));
  CHECK_OK(dlm_options_set_legacy_framing(o, true));
  CHECK_OK(dlm_client_new(addr, strlen(addr), o, &c));
  dlm_options_free(o);
  if (!CHECK(c != NULL)) {
    return;
  }
  CHECK_OK(dlm_client_put(c, S("old"), S("school"), 10000, &rev));
  CHECK(rev == 1);
  CHECK_OK(dlm_client_get(c, S("old"), buf, sizeof buf, &n, NULL));
  CHECK(n == 6 && memcmp(buf, "school", 6) == 0);
  if (CHECK_OK(dlm_client_lock(c, S("old"), 5000, 0, 0, NULL, NULL, NULL, &l))) {
    CHECK_OK(dlm_lock_extend(l, 5000));
    CHECK_OK(dlm_lock_release(l));
    dlm_lock_free(l);
  }
  CHECK_OK(dlm_client_server_version(c, (char *)buf, sizeof buf, &n));
  CHECK_CONTAINS((char *)buf, "JackrabbitDLM");
  /* A plain-framing client of the same owner sees the same entry. */
  dlm_client *plain = connect_as(addr, "legacy");
  CHECK_OK(dlm_client_get(plain, S("old"), buf, sizeof buf, &n, NULL));
  CHECK(n == 6);
  dlm_client_free(plain);
  dlm_client_free(c);
}

/* A server whose memory budget (4 KiB) holds one such value, not two. */
static void out_of_memory(const char *tight) {
  dlm_client *c = connect_as(tight, "tight");
  static uint8_t value[1500];
  uint64_t rev = 77;
  memset(value, 'm', sizeof value);
  if (!CHECK(c != NULL)) {
    return;
  }
  CHECK_OK(dlm_client_put(c, S("first"), value, sizeof value, 10000, NULL));
  CHECK_STATUS(dlm_client_put(c, S("second"), value, sizeof value, 10000, &rev),
               DLM_ERR_NO_MEMORY);
  CHECK(rev == 77);
  CHECK(strcmp(client_error(c), "") == 0);
  /* Room again once the first is gone. */
  CHECK_OK(dlm_client_erase(c, S("first")));
  CHECK_OK(dlm_client_put(c, S("second"), value, sizeof value, 10000, &rev));
  dlm_client_free(c);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s ADDR TIGHT_ADDR\n", argv[0]);
    return 2;
  }
  addr = argv[1];
  round_trip_and_cas();
  sealed();
  custom_encoder();
  legacy_framing();
  out_of_memory(argv[2]);
  return checks_done("values");
}
