/* placeholder: module safety is being written */
