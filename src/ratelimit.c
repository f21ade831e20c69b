/* placeholder: module ratelimit is being written */
