/* Forward declarations of every type that crosses a module boundary, so that
 * headers never include each other in a circle. */
#pragma once

typedef struct Config Config;
typedef struct Source Source;
typedef struct NotifySink NotifySink;
typedef struct SourceAuth SourceAuth;
typedef struct Rule Rule;
typedef struct Condition Condition;
typedef struct Template Template;
typedef struct JPath JPath;
typedef struct RuleHit RuleHit;
typedef struct RuleHits RuleHits;

typedef struct Store Store;
typedef struct StoreEvent StoreEvent;
typedef struct StoreAction StoreAction;

typedef struct HttpClient HttpClient;
typedef struct HttpRequest HttpRequest;
typedef struct HttpResponse HttpResponse;
typedef struct OAuth OAuth;
typedef struct UsersApi UsersApi;
typedef struct OpUser OpUser;
typedef struct Directory Directory;

typedef struct HttpServer HttpServer;
typedef struct Webhook Webhook;
typedef struct RateLimit RateLimit;
typedef struct Executor Executor;
typedef struct Metrics Metrics;
typedef struct Status Status;
typedef struct Control Control;
typedef struct Notify Notify;
typedef struct Daemon Daemon;
typedef struct StrBuf StrBuf;
