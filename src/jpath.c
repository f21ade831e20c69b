/* placeholder: module jpath is being written */
