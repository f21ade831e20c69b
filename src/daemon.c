/* placeholder: module daemon is being written */
