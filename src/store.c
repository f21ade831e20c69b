/* placeholder: module store is being written */
