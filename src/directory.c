/* placeholder: module directory is being written */
