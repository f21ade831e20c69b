/* Intrusive doubly-linked lists: a list is any struct with `head` and `tail`
 * pointers, an item any struct with `prev` and `next` pointers. */
#pragma once

#include <stdbool.h>

#define LIST_APPEND(l, item)                              \
        do {                                              \
                (item)->prev = (l)->tail;                 \
                (item)->next = NULL;                      \
                if ((l)->tail)                            \
                        (l)->tail->next = (item);         \
                else                                      \
                        (l)->head = (item);               \
                (l)->tail = (item);                       \
        } while (0)

#define LIST_REMOVE(l, item)                              \
        do {                                              \
                if ((item)->prev)                         \
                        (item)->prev->next = (item)->next; \
                else                                      \
                        (l)->head = (item)->next;         \
                if ((item)->next)                         \
                        (item)->next->prev = (item)->prev; \
                else                                      \
                        (l)->tail = (item)->prev;         \
                (item)->prev = (item)->next = NULL;       \
        } while (0)

#define LIST_CONTAINS(l, item)                                       \
        ({                                                           \
                bool _found = false;                                 \
                for (__typeof__(item) _i = (l)->head; _i; _i = _i->next) \
                        if (_i == (item)) {                          \
                                _found = true;                       \
                                break;                               \
                        }                                            \
                _found;                                              \
        })
