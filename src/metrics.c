/* placeholder: module metrics is being written */
