/* Every input limit in one place. A limit that is hit has its own errno so
 * that callers and tests can tell them apart:
 *   -E2BIG     a size limit (body, document, string, file)
 *   -ENOBUFS   a count limit (rules, sources, queue depth, connections)
 *   -EMSGSIZE  a header or line limit
 *   -ELOOP     a nesting limit */
#pragma once

/* config */
#define LIMIT_CONFIG_DOCUMENT_BYTES   (4u * 1024u * 1024u)  /* one YAML file */
#define LIMIT_CONFIG_INCLUDE_FILES    256u
#define LIMIT_CONFIG_RULES            10000u
#define LIMIT_CONFIG_SOURCES          256u
#define LIMIT_CONFIG_CONDITION_DEPTH  16u
#define LIMIT_CONFIG_CONDITION_NODES  4096u   /* per rule */
#define LIMIT_CONFIG_STRING_BYTES     4096u   /* any scalar */
#define LIMIT_CONFIG_LIST_ITEMS       4096u   /* in:, protected_users, ... */
#define LIMIT_NAME_BYTES              128u    /* rule and source names */
#define LIMIT_SECRET_FILE_BYTES       65536u
#define LIMIT_SECRETS_PER_FILE        16u
#define LIMIT_TEMPLATE_OUTPUT_BYTES   4096u
#define LIMIT_REGEX_BYTES             1024u
/* Memory glibc's regcomp() may take for one pattern, and for all the
 * patterns of a config, as rules_regex_cost() estimates it before
 * compiling: repetitions are spelled out (nested bounds multiply, stacked
 * '+' double) and runs of things that may match nothing cost quadratic
 * time and memory (a{0,10000}: 790 MB measured). */
#define LIMIT_REGEX_COMPILE_BYTES         (16u * 1024u * 1024u)
#define LIMIT_CONFIG_REGEX_COMPILE_BYTES  (256u * 1024u * 1024u)

/* webhook */
#define LIMIT_BODY_BYTES_DEFAULT      (1024u * 1024u)
#define LIMIT_BODY_BYTES_MAX          (64u * 1024u * 1024u)
#define LIMIT_JSON_DEPTH              64
#define LIMIT_ACTIONS_PER_EVENT       1000u
#define LIMIT_FOR_EACH_ITEMS          1000u
/* The answer to a delivery: LIMIT_ACTIONS_PER_EVENT actions whose user
 * (LIMIT_TEMPLATE_OUTPUT_BYTES) and rule name (LIMIT_NAME_BYTES) are all
 * control characters, each escaped to 6 bytes, take 25.5 MB: never hit. */
#define LIMIT_WEBHOOK_RESPONSE_BYTES  (32u * 1024u * 1024u)
#define LIMIT_HTTP_CONNECTIONS        4096u
/* MHD's per-connection pool (request line, headers, read buffer, response
 * head): headers are limited to LIMIT_HEADER_BYTES, and MHD zeroes the pool
 * for every request, so a larger pool only costs time (64 KiB: ~3% of the
 * loop under load). */
#define LIMIT_HTTP_CONNECTION_MEMORY  (16u * 1024u)
#define LIMIT_HTTP_CONNECTION_TIMEOUT_SEC 30u
/* Past 3/4 of the connection limit, connections without a request time out
 * after this long idle (http_server.c: connection pressure). */
#define LIMIT_HTTP_IDLE_TIMEOUT_PRESSURE_SEC 2u
#define LIMIT_HEADER_BYTES            8192u
/* A chunked body past its limit is read and dropped up to this much more
 * so that the sender sees the 413; beyond it the connection is closed. */
#define LIMIT_HTTP_DISCARD_BYTES      (4u * 1024u * 1024u)

/* 1Password client */
#define LIMIT_API_RESPONSE_BYTES      (16u * 1024u * 1024u)
#define LIMIT_API_RETRIES             12u
#define LIMIT_API_BACKOFF_MAX_USEC    (300ULL * 1000000ULL)
#define LIMIT_DIRECTORY_USERS         1000000u
#define LIMIT_DIRECTORY_PAGES         10000u
#define LIMIT_CONTROL_USERS_RESPONSE_BYTES (256u * 1024u * 1024u) /* remedyctl users through the daemon */

/* queue */
#define LIMIT_QUEUE_INFLIGHT          64u
#define LIMIT_QUEUE_DEPTH             1000000u

/* state store */
#define LIMIT_STORE_PENDING           262144u  /* submitted, not yet committed */
#define LIMIT_STORE_READ_ROWS         10000u   /* list/history answers */
/* Deliveries of the dedup window the in-memory dedup index holds (24-byte
 * slots, a power of two of them, 2 to 4 per key: 192 MiB at the limit, 46
 * deliveries a second for a whole day). Past it the oldest are forgotten first: such a
 * redelivery would be taken as a new event, which cooldowns then hold. */
#define LIMIT_DEDUP_KEYS              4194304u

/* notifications (interface.md section 9) */
#define LIMIT_NOTIFY_SINKS            64u
#define LIMIT_NOTIFY_INFLIGHT         16u                  /* deliveries at once, per instance */
#define LIMIT_NOTIFY_ATTEMPTS         20u                  /* then the row is failed */
#define LIMIT_NOTIFY_RETENTION_USEC   (7ULL * 24 * 3600 * 1000000ULL) /* delivered/failed rows kept */
#define LIMIT_NOTIFY_MESSAGE_BYTES    (64u * 1024u)        /* one rendered message */
#define LIMIT_NOTIFY_FIELD_BYTES      2048u                /* one alert value inside a message */

/* rules: JSON paths and conditions */
#define LIMIT_JPATH_BYTES             1024u   /* one path or pointer */
#define LIMIT_JPATH_SEGMENTS          64u
#define LIMIT_JPATH_LOOKUP_STEPS      4096u   /* literal-dotted-key backtracking per lookup */
#define LIMIT_CONFIG_PROBLEMS         1000u   /* problems reported per load */
